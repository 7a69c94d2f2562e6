//! `ditto client`: send one command, or run a prompt (interactive or fed from stdin).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ditto_core::Addr;
use ditto_core::wire::{self, Request};
use ditto_server::{ClientError, GroupClient, GroupError, GroupOptions, Move, ReadPolicy};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a client waits for a connection and for each reply unless told otherwise: longer
/// than any wait a server makes before answering (the longest is the 10 s a backup gives a
/// write it forwarded as a seed `UPDATE`), so a reply that is coming is not reported as lost,
/// and a write that then commits is not reported as failed.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// The exit status, as `ditto client --help` tells it.
const EXIT_STATUS: &str = "\
Exit status:
  0  every command was answered, and no answer was an error
  1  a command failed: a server answered ERR:..., a line was not understood, or a server could
     not be reached or did not answer in time (commands from stdin go on after an ERR: answer
     or a failed connect, and stop at a missing answer, whose outcome is unknown)
  2  the command line is wrong";

#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS)]
pub struct ClientArgs {
    /// The server to talk to: a port (on 127.0.0.1) or HOST:PORT.
    #[arg(value_parser = super::addr, value_name = "SERVER")]
    server: Addr,
    /// A command to send and exit, e.g. `READ`, `WRITE:5` or `write 5`. Without one, commands
    /// are read from the prompt, or line by line from standard input when it is not a terminal.
    command: Vec<String>,
    /// Seconds to wait for a connection and for each reply. The default is longer than any wait
    /// a server makes before answering.
    #[arg(long, default_value_t = REPLY_TIMEOUT.as_secs_f64(), value_parser = super::seconds)]
    timeout: f64,
}

pub const HELP: &str = "\
Commands (a friendly form, or the raw protocol line):
  read               READ         the server's value
  write <n>          WRITE:<n>    set the value to n (a 64-bit integer)
  status             STATUS       role, sequence numbers, backups
  connect <port>|<host:port>      talk to another server
  help                            this text
  quit, exit, Ctrl-D              leave
Any other line is sent unchanged.";

/// What `join` answers instead of sending a `JOIN`: a primary waits for every backup that joined
/// before it acknowledges a write, so a `JOIN` naming a port where no backup listens stalls
/// writes until the primary gives that backup up. It is a message between servers.
const JOIN_REFUSED: &str = "JOIN is for backups: the primary would wait for a backup on that \
port on every write, so writes would stall";

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Send this protocol line.
    Send(String),
    Help,
    Connect(Addr),
    Quit,
    /// A blank line.
    Nothing,
}

/// Reads a typed line: friendly forms become protocol lines, raw lines pass through unchanged.
pub fn interpret(line: &str) -> Result<Typed, String> {
    let trimmed = line.trim();
    let mut words = trimmed.split_whitespace();
    let first = words.next().unwrap_or_default().to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    let one_arg = |verb: &str| match rest.as_slice() {
        [arg] => Ok(Typed::Send(format!("{verb}:{arg}"))),
        _ => Err(format!("usage: {} <n>", verb.to_ascii_lowercase())),
    };
    match (first.as_str(), rest.is_empty()) {
        ("", _) => Ok(Typed::Nothing),
        ("help" | "?", true) => Ok(Typed::Help),
        ("quit" | "exit", true) => Ok(Typed::Quit),
        ("read", true) => Ok(Typed::Send("READ".into())),
        ("status", true) => Ok(Typed::Send("STATUS".into())),
        ("write", false) => one_arg("WRITE"),
        ("update", false) => one_arg("UPDATE"),
        ("join", _) => Err(JOIN_REFUSED.into()),
        ("connect", _) => match rest.as_slice() {
            [p] => super::addr(p).map(Typed::Connect),
            _ => Err("usage: connect <port> or connect <host>:<port>".into()),
        },
        _ => Ok(Typed::Send(line.trim_end_matches(['\r', '\n']).to_owned())),
    }
}

/// The client's session: a [`GroupClient`] that starts at the server named and sticks to it,
/// tags its writes when the server speaks ditto, and moves to a live member of the group (the
/// primary if there is one) when its server is gone, so that a write in flight is retried
/// there, applied once. Other lines go to the session's server unchanged.
#[derive(Debug)]
pub struct Session {
    group: GroupClient,
}

impl Session {
    /// A session with the server on 127.0.0.1:`port`.
    pub fn new(port: u16, timeout: Duration) -> Session {
        Session::at(Addr::local(port), timeout)
    }

    /// A session with the server at `addr`. Nothing is sent until the first command.
    pub fn at(addr: Addr, timeout: Duration) -> Session {
        // A command waits as long for its answer in all, retries after a failover included,
        // as for one reply.
        let opts = GroupOptions::new(ReadPolicy::Sticky, timeout, timeout);
        Session {
            group: GroupClient::new(vec![addr], opts),
        }
    }

    /// The server the session talks to now.
    pub fn server(&self) -> &Addr {
        self.group.server()
    }

    /// The server as messages name it: `port 7000` on this computer, else `host:port`.
    pub fn name(&self) -> String {
        name(self.server())
    }

    /// Sends a line unchanged and returns the reply.
    pub async fn request(&mut self, line: &str) -> Result<String, ClientError> {
        self.group.request(line).await
    }

    /// Replaces the connection with a new one to the same server. Without a connection (if
    /// that fails), the next request tries again.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.group.reconnect().await
    }

    /// Talks to `server` from now on, if a connection to it can be made; otherwise nothing
    /// changes, and the session stays with its server.
    pub async fn connect(&mut self, server: Addr) -> Result<(), ClientError> {
        self.group.switch_to(server).await
    }
}

/// A server as messages name it: `port 7000` on this computer, else `host:port`.
fn name(addr: &Addr) -> String {
    if addr.host() == ditto_core::addr::LOCALHOST {
        format!("port {}", addr.port())
    } else {
        addr.to_string()
    }
}

/// A server in a short note: `:7000` on this computer, else `host:port`.
fn short(addr: &Addr) -> String {
    if addr.host() == ditto_core::addr::LOCALHOST {
        format!(":{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The one line that tells that the session moved.
fn moved(m: &Move) -> String {
    let why = if m.gone {
        format!("server {} is gone", short(&m.from))
    } else {
        format!("server {} is not the primary", short(&m.from))
    };
    let role = if m.primary { ", the primary" } else { "" };
    format!("{why}; now talking to {}{role}", short(&m.to))
}

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut session = Session::at(args.server, timeout);
    if !args.command.is_empty() {
        return Ok(one_shot(&mut session, &args.command.join(" ")).await);
    }
    if std::io::stdin().is_terminal() {
        prompt(session, None, None).await
    } else {
        piped_session(session).await
    }
}

/// Where the client is talking: it decides where replies and notes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A person at the prompt: everything goes to stdout, in the order it happened.
    Prompt,
    /// Commands from stdin: one reply per command on stdout (error replies too, so that line n
    /// of the output answers command n); everything else on stderr.
    Piped,
    /// One command from the command line: its reply on stdout, or on stderr if it is an error.
    OneShot,
}

impl Mode {
    fn reply(self, reply: &str) {
        if self == Mode::OneShot && wire::is_error_reply(reply.as_bytes()) {
            eprintln!("{reply}");
        } else {
            println!("{reply}");
        }
    }

    fn note(self, note: &str) {
        match self {
            Mode::Prompt => println!("{note}"),
            Mode::Piped | Mode::OneShot => eprintln!("{note}"),
        }
    }
}

/// What handling one line came to.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Handled; `ok` is false if it failed: an error reply, or a line not understood.
    Done {
        ok: bool,
    },
    /// A request got no reply (or no connection); whether it took effect is unknown.
    Lost,
    Quit,
}

/// Handles one line the way every mode shares: sends it, or does what it asks.
async fn step(session: &mut Session, line: &str, mode: Mode) -> Step {
    match interpret(line) {
        Ok(Typed::Send(line)) => {
            // Reads and writes go through the group client (a write tagged and retried after a
            // failover); every other line is sent as it is.
            let result = match wire::parse_request(line.as_bytes()) {
                Ok(Request::Read) => Some(session.group.read().await),
                Ok(Request::Write(v)) => Some(session.group.write(v).await),
                _ => None,
            };
            if let Some(result) = result {
                for m in session.group.take_moves() {
                    mode.note(&moved(&m));
                }
                return match result {
                    Ok(reply) | Err(GroupError::Refused { reply, .. }) => {
                        mode.reply(&reply);
                        Step::Done {
                            ok: !wire::is_error_reply(reply.as_bytes()),
                        }
                    }
                    Err(GroupError::Lost { server, error, .. }) => {
                        mode.note(&describe(&server, &error));
                        Step::Lost
                    }
                    Err(e @ GroupError::Busy) => {
                        mode.note(&format!("error: {e}"));
                        Step::Lost
                    }
                };
            }
            let result = session.request(&line).await;
            if line.len() > wire::MAX_LINE {
                return overlong(session, result, mode).await;
            }
            match result {
                Ok(reply) => {
                    mode.reply(&reply);
                    Step::Done {
                        ok: !wire::is_error_reply(reply.as_bytes()),
                    }
                }
                Err(e) => {
                    mode.note(&describe(session.server(), &e));
                    Step::Lost
                }
            }
        }
        Ok(Typed::Help) => {
            println!("{HELP}");
            Step::Done { ok: true }
        }
        Ok(Typed::Connect(_) | Typed::Quit) if mode == Mode::OneShot => {
            mode.note(&format!(
                "error: '{}' only makes sense at the prompt",
                line.trim()
            ));
            Step::Done { ok: false }
        }
        Ok(Typed::Connect(server)) => match session.connect(server.clone()).await {
            Ok(()) => {
                if mode == Mode::Prompt {
                    mode.note(&format!("Now talking to {}.", name(&server)));
                }
                Step::Done { ok: true }
            }
            Err(e) => {
                let still = session.name();
                mode.note(&format!(
                    "{}; still talking to {still}.",
                    describe(&server, &e)
                ));
                Step::Done { ok: false }
            }
        },
        Ok(Typed::Quit) => Step::Quit,
        Ok(Typed::Nothing) => Step::Done { ok: true },
        Err(usage) => {
            mode.note(&usage);
            Step::Done { ok: false }
        }
    }
}

/// Reports what a line over the protocol's limit got, and reconnects. A server answers such a
/// line with an error and closes the connection, since the rest of the stream can no longer be
/// framed; if the line is still arriving, the close may come first and take the answer with it.
/// Either way nothing was applied, so the command failed rather than got lost, and the commands
/// after it go to a new connection.
async fn overlong(session: &mut Session, result: Result<String, ClientError>, mode: Mode) -> Step {
    let ok = match result {
        Ok(reply) => {
            mode.reply(&reply);
            !wire::is_error_reply(reply.as_bytes())
        }
        Err(e) => {
            mode.note(&describe(session.server(), &e));
            false
        }
    };
    let why = format!(
        "{} closes the connection after a line over {} bytes",
        session.name(),
        wire::MAX_LINE
    );
    match session.reconnect().await {
        Ok(()) => mode.note(&format!("({why}; reconnected.)")),
        Err(e) => mode.note(&format!(
            "({why}, and reconnecting failed: {e}; the next command tries again.)"
        )),
    }
    Step::Done { ok }
}

/// One line saying why a request got no reply, naming the server once.
fn describe(server: &Addr, e: &ClientError) -> String {
    match e {
        ClientError::Connect { .. }
        | ClientError::ConnectTimeout { .. }
        | ClientError::ConnectAddr { .. }
        | ClientError::ConnectAddrTimeout { .. } => format!("error: {e}"),
        _ => format!("error: {}: {e}", name(server)),
    }
}

/// The exit status of a client: every command answered without error, or not.
fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn one_shot(session: &mut Session, line: &str) -> ExitCode {
    match step(session, line, Mode::OneShot).await {
        Step::Done { ok } => status(ok),
        Step::Lost | Step::Quit => status(false),
    }
}

/// Commands piped on stdin, handled as at the prompt: one reply line per command on stdout.
/// Fails (after the last command) if any command failed; stops at a request that got no reply,
/// since the commands after it may depend on its unknown outcome.
pub async fn piped_session(mut session: Session) -> anyhow::Result<ExitCode> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ok = true;
    while let Some(line) = lines.next_line().await? {
        match step(&mut session, &line, Mode::Piped).await {
            Step::Done { ok: done } => ok &= done,
            Step::Lost => return Ok(status(false)),
            Step::Quit => break,
        }
    }
    Ok(status(ok))
}

/// The interactive prompt, with line editing and history. `banner` is printed first; `notes`,
/// news from elsewhere, are printed as they come, above the line being typed.
pub async fn prompt(
    session: Session,
    banner: Option<String>,
    notes: Option<UnboundedReceiver<String>>,
) -> anyhow::Result<ExitCode> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || prompt_blocking(session, banner, notes, handle)).await?
}

fn prompt_blocking(
    mut session: Session,
    banner: Option<String>,
    notes: Option<UnboundedReceiver<String>>,
    handle: tokio::runtime::Handle,
) -> anyhow::Result<ExitCode> {
    use rustyline::ExternalPrinter;
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    if let Some(mut notes) = notes {
        // Printed through the editor, a note does not break into the line being typed: the
        // editor moves that line below it.
        let mut printer = editor.create_external_printer().ok();
        handle.spawn(async move {
            while let Some(note) = notes.recv().await {
                match printer.as_mut() {
                    Some(printer) => {
                        let _ = printer.print(format!("{note}\n"));
                    }
                    None => println!("{note}"),
                }
            }
        });
    }
    if let Some(banner) = banner {
        println!("{banner}");
    }
    println!("Connected to {}. Type `help` for commands.", session.name());
    loop {
        let here = short(session.server());
        let line = match editor.readline(&format!("ditto{here}> ")) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        // A person reads every failure as it happens; the prompt goes on.
        if handle.block_on(step(&mut session, &line, Mode::Prompt)) == Step::Quit {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_forms_become_protocol_lines() {
        let send = |s: &str| Ok(Typed::Send(s.to_owned()));
        assert_eq!(interpret("read"), send("READ"));
        assert_eq!(interpret("  READ "), send("READ"));
        assert_eq!(interpret("write 5"), send("WRITE:5"));
        assert_eq!(interpret("Write -7"), send("WRITE:-7"));
        assert_eq!(interpret("status"), send("STATUS"));
        assert_eq!(
            interpret("connect 7001"),
            Ok(Typed::Connect(Addr::local(7001)))
        );
        assert_eq!(
            interpret("connect db1:7001"),
            Ok(Typed::Connect("db1:7001".parse().unwrap()))
        );
        assert_eq!(interpret("help"), Ok(Typed::Help));
        assert_eq!(interpret("quit"), Ok(Typed::Quit));
        assert_eq!(interpret(""), Ok(Typed::Nothing));
    }

    #[test]
    fn raw_lines_pass_through_unchanged() {
        for raw in ["WRITE:5", "UPDATE:3", "JOIN:7003", "FROB", "write:5"] {
            assert_eq!(interpret(raw), Ok(Typed::Send(raw.to_owned())));
        }
    }

    #[test]
    fn malformed_friendly_forms_explain_themselves() {
        assert!(interpret("write").is_ok_and(|t| t == Typed::Send("write".into())));
        assert!(interpret("write 1 2").is_err());
        assert!(interpret("connect").is_err());
        assert!(interpret("connect 0").is_err());
        assert!(interpret("connect x").is_err());
        assert!(interpret("join 7003").is_err_and(|e| e.contains("for backups")));
    }
}
