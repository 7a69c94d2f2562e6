//! `ditto`: a replicated data store speaking the primary-based remote-write protocol.
//!
//! One binary plays every part: `primary`, `backup`, `client`, and the tools around them (`up`
//! starts a local cluster, `bench` measures it).

mod check;
mod cluster;
mod cmd;
mod keys;
mod logging;
mod rng;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A replicated data store: one primary, any number of backups, sequentially consistent.
#[derive(Debug, Parser)]
#[command(name = "ditto", version, long_about = None, disable_help_subcommand = true)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: String,

    /// Exit when standard input reaches end of file (used by `ditto up` for its children, so
    /// they never outlive it).
    #[arg(long, global = true, hide = true)]
    exit_on_stdin_eof: bool,

    /// Print one line, `ready`, on standard output once the server listens on its port (used
    /// by `ditto up`, which waits for it: an older server on the same port answers too, so
    /// that something answers there says nothing).
    #[arg(long, global = true, hide = true)]
    announce_ready: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the primary server on PORT.
    Primary(cmd::serve::PrimaryArgs),
    /// Run a backup server on BACKUP_PORT that joins the primary at PRIMARY_PORT.
    Backup(cmd::serve::BackupArgs),
    /// Send commands to the server at PORT: the given one, or lines typed or piped in.
    Client(cmd::client::ClientArgs),
    /// Start a local cluster (a primary and backups) and open a prompt on the primary.
    Up(cmd::up::UpArgs),
    /// Measure throughput and latency against running servers.
    Bench(cmd::bench::BenchArgs),
    /// Run a workload (with faults, if asked), record its history and check its consistency.
    Check(cmd::check::CheckArgs),
    /// Show what a server says of itself and its group: role, view, commit point, members, lag.
    Status(cmd::status::StatusArgs),
    /// Hand the primary role over to a backup without losing anything (a switchover).
    Failover(cmd::status::FailoverArgs),
    /// Print this message or the help of the given subcommand(s).
    Help(HelpArgs),
}

/// `ditto help [COMMAND]...`, our own rather than clap's, which refuses `ditto help --help`:
/// here `-h` and `--help` change nothing, so `ditto help --help` is `ditto --help` and
/// `ditto help backup --help` is `ditto backup --help`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
struct HelpArgs {
    /// The subcommand to describe, e.g. `backup`.
    command: Vec<String>,
    #[arg(short, long, hide = true)]
    help: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
    if let Command::Help(args) = &cli.command {
        return print_help(args);
    }

    logging::init(&cli.log_level);
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (exit_on_eof, announce) = (cli.exit_on_stdin_eof, cli.announce_ready);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Primary(args) => serve(cmd::serve::primary(args, exit_on_eof), announce).await,
            Command::Backup(args) => serve(cmd::serve::backup(args, exit_on_eof), announce).await,
            Command::Client(args) => cmd::client::run(args).await,
            Command::Up(args) => cmd::up::run(args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::Check(args) => cmd::check::run(args).await,
            Command::Status(args) => cmd::status::status(args).await,
            Command::Failover(args) => cmd::status::failover(args).await,
            Command::Help(_) => unreachable!("help is printed before the runtime starts"),
        }
    });
    // The prompt may leave a thread blocked on the terminal; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a server; if `announce`, prints [`cluster::READY_LINE`] once it listens.
///
/// `cmd::serve` binds the port first, before anything a server waits for, and binding a literal
/// address completes at once: so a server still running after its first poll is listening, and
/// one that could not bind has already returned its error (which `main` prints as one line,
/// exiting 1). This rests on that order in `cmd::serve`.
async fn serve(
    server: impl Future<Output = anyhow::Result<ExitCode>>,
    announce: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut server = std::pin::pin!(server);
    if announce {
        if let std::task::Poll::Ready(result) = futures::poll!(server.as_mut()) {
            return result;
        }
        // Whoever started this server may have stopped reading; it runs on all the same.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", cluster::READY_LINE).and_then(|()| stdout.flush());
    }
    server.await
}

/// What a command line clap did not run comes to: help or the version printed, or a one-line
/// error.
fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    // One line, not clap's usage block: scripts and people both read the first line.
    // The message proper runs up to the first blank line (a missing argument's name is
    // on the line after "not provided:"); the usage that follows is left out.
    let text = e.to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    eprintln!("{} (see `ditto --help`)", message.join(" "));
    ExitCode::from(2)
}

/// `ditto help A B` prints what `ditto A B --help` prints, by parsing exactly that: the same
/// text, and the same one-line error for a subcommand that does not exist.
fn print_help(args: &HelpArgs) -> ExitCode {
    let names = args.command.iter().skip_while(|name| *name == "help");
    let argv = std::iter::once("ditto")
        .chain(names.map(String::as_str))
        .chain(std::iter::once("--help"));
    match Cli::try_parse_from(argv) {
        Err(e) => parse_error(e),
        // Only `help` itself parses with `--help` attached, and those were skipped above.
        Ok(_) => parse_error(Cli::try_parse_from(["ditto", "--help"]).unwrap_err()),
    }
}

/// Raises the soft limit on open files to the hard limit: a server with thousands of clients,
/// or a bench opening thousands of connections, would otherwise stop at the common default of
/// 1,024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("cannot raise the open-file limit from {soft} to {hard}: {e}");
    }
}
