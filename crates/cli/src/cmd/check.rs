//! `ditto check`: run a workload against a cluster (with faults, if asked), record the history,
//! and check it for sequential consistency (and linearizability at the primary).
//!
//! The exit status is a verdict, so that scripts can tell a bug from a test that proved nothing:
//! [`EXIT_OK`], [`EXIT_VIOLATION`], [`EXIT_UNDECIDED`] (a checker gave up, or no operation
//! succeeded, so nothing was tested) and [`EXIT_ERROR`] (the check could not run); a bad
//! command line exits with 2 like every ditto command.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::io::{BufRead, BufReader, Write};

use anyhow::Context;
use clap::Args;
use ditto_check::timeline::{self, Highlight};
use ditto_check::{History, OpKind, Outcome, Recorder, linearizable, seqcst};
use ditto_server::{Client, Conclusion};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use tokio::time::Instant;

use crate::check::nemesis::{FaultEvent, FaultKind, Links, Member, Nemesis};
use crate::check::proxy::Proxy;
use crate::check::workload::{self, ClientSpec, Workload};
use crate::cluster::{self, LocalCluster, ServerSpec};

/// Every check passed.
pub const EXIT_OK: u8 = 0;
/// A checker found a violation, or the replicas did not converge.
pub const EXIT_VIOLATION: u8 = 1;
/// Nothing was proved either way: a checker gave up, or no operation succeeded.
pub const EXIT_UNDECIDED: u8 = 3;
/// The check could not run: the cluster did not start, a file could not be read or written, or
/// the history is malformed.
pub const EXIT_ERROR: u8 = 4;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 if every check passed, 1 on a violation (or replicas that \
    did not converge), 2 on a bad command line, 3 if undecided (a checker gave up, or no \
    operation succeeded, so nothing was tested), 4 if the check could not run."
)]
pub struct CheckArgs {
    /// Check a recorded history file (JSON lines, gzip-compressed or not) instead of running
    /// anything; the timeline goes beside it.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Port of the primary of a running cluster to check; without it, ditto check starts a
    /// cluster of its own (and stops it afterwards).
    #[arg(long, value_parser = super::port)]
    primary: Option<u16>,
    /// Ports of the backups of the running cluster (with --primary), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = super::port)]
    backups: Vec<u16>,
    /// Number of backups of the cluster ditto check starts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=16))]
    cluster_backups: u16,
    /// Clients per server; each client sticks to its server.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    clients_per_server: u16,
    /// Most operations in total; the run ends at --ops or --duration, whichever comes first.
    #[arg(long, default_value_t = 1_000_000)]
    ops: u64,
    /// Seconds the workload runs (at most).
    #[arg(long, default_value_t = 5.0, value_parser = super::seconds)]
    duration: f64,
    /// Fraction of operations that are writes.
    #[arg(long, default_value_t = 0.5, value_parser = super::ratio)]
    writes: f64,
    /// Seconds a client waits for a connection or a reply before it tries again (it records an
    /// operation as unknown once 3 s more have passed without a definite answer).
    #[arg(long, default_value_t = 1.0, value_parser = super::seconds)]
    op_timeout: f64,
    /// Seed of the workload's and the nemesis's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject, comma-separated: kill (a backup), kill-primary, pause (any server),
    /// pause-primary, isolate-primary (from the other members; its clients still reach it),
    /// partition (a minority of the members from the rest), clients (a server from its
    /// clients), or all. Only for the cluster ditto check starts.
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<FaultKind>,
    /// Mean seconds between faults.
    #[arg(long, default_value_t = 1.0, value_parser = super::seconds)]
    nemesis_interval: f64,
    /// Mean seconds a fault lasts.
    #[arg(long, default_value_t = 0.8, value_parser = super::seconds)]
    fault_duration: f64,
    /// Directory for history.jsonl.gz and timeline.html.
    #[arg(long, default_value = "ditto-check-report")]
    out: PathBuf,
    /// Log level of the servers ditto check starts (their logs go to stderr).
    #[arg(long, default_value = "error")]
    server_log_level: String,
}

/// Free loopback ports, found by binding port 0. Another process could take one before the
/// server binds it; the cluster start then fails with a clear message.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Runs `ditto check`; errors are printed here, so that they get their own exit status rather
/// than the one of a violation.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    Ok(match check(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    })
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.history {
        let history = read_history(file)?;
        let out = file.with_extension("").with_extension("html");
        // A file keeps the meaning it had before reads were marked: with --primary, the reads
        // made at that port count as the primary's too.
        return report(&history, args.primary, true, &[], &out, None);
    }
    if args.primary.is_some() && !args.nemesis.is_empty() {
        anyhow::bail!("--nemesis needs the cluster ditto check starts (drop --primary)");
    }
    let servers = 1 + args.backups.len().max(usize::from(args.cluster_backups)) as u64;
    if servers * u64::from(args.clients_per_server) > workload::MAX_CLIENTS {
        anyhow::bail!(
            "too many clients: at most {} in all (servers times --clients-per-server)",
            workload::MAX_CLIENTS
        );
    }
    let recorder = Arc::new(Recorder::new());
    let start = Instant::now();
    let workload = Workload {
        max_ops: args.ops,
        duration: Duration::from_secs_f64(args.duration),
        write_ratio: args.writes,
        timeout: Duration::from_secs_f64(args.op_timeout),
        // Long enough for a failover: a write is held up to 3 s for a new primary.
        deadline: Duration::from_secs_f64(args.op_timeout) + Duration::from_secs(3),
        seed: args.seed,
        tag: 1,
    };
    let (primary, initial, faults, converged) = match args.primary {
        Some(primary) => {
            let initial = initial_value(primary, workload.timeout).await?;
            let workload = Workload {
                tag: workload::tag_after(initial),
                ..workload
            };
            let mut servers = vec![primary];
            servers.extend(&args.backups);
            let clients = specs_for(&servers, args.clients_per_server, |p| p);
            workload::run(&workload, &clients, recorder.clone()).await;
            (primary, initial, Vec::new(), None)
        }
        None => managed(&args, &workload, recorder.clone(), start).await?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let history = recorder.history().with_initial(initial);
    let path = args.out.join("history.jsonl.gz");
    write_history(&history, &path).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "ditto check: {} operations recorded in {:.1} s, history in {}",
        history.len(),
        start.elapsed().as_secs_f64(),
        path.display()
    );
    report(
        &history,
        Some(primary),
        false,
        &faults,
        &args.out.join("timeline.html"),
        converged,
    )
}

fn specs_for(servers: &[u16], per_server: u16, dial: impl Fn(u16) -> u16) -> Vec<ClientSpec> {
    let mut clients = Vec::new();
    for &server in servers {
        for _ in 0..per_server {
            clients.push(ClientSpec {
                id: clients.len() as u64 + 1,
                server,
                dial: dial(server),
                // The primary comes first.
                primary: server == servers[0],
            });
        }
    }
    clients
}

/// Writes the history as gzip-compressed JSON lines (`zcat` reads them): a long run's history
/// is over a hundred bytes an operation as text, and about fifteen compressed.
fn write_history(history: &History, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    history.write_jsonl(&mut gz)?;
    gz.finish()?.flush()?;
    Ok(())
}

/// Reads a history file, gzip-compressed (as `ditto check` writes them) or plain.
fn read_history(path: &Path) -> anyhow::Result<History> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let gzipped = reader
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    let history = if gzipped {
        History::from_jsonl(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        History::from_jsonl(reader)
    };
    history.with_context(|| format!("cannot read the history {}", path.display()))
}

/// The register's value at the primary before the workload starts: the history's initial value.
/// Without it, a check of a cluster that already holds a value would take every read of that
/// value for a read of something nobody wrote.
async fn initial_value(primary: u16, timeout: Duration) -> anyhow::Result<i64> {
    let context = || format!("cannot read the starting value from the primary :{primary}");
    let mut client = Client::connect(primary, timeout)
        .await
        .with_context(context)?;
    let answer = client.request("READ").await;
    match Conclusion::of(false, &answer) {
        Conclusion::Done(Some(value)) => Ok(value),
        _ => Err(anyhow::anyhow!("the reply was {answer:?}")).with_context(context),
    }
}

/// What a run against a cluster produced besides its history: the primary's port, the value the
/// register started from, the faults injected, and the convergence verdict (for a cluster of
/// ditto check's own).
type RunResult = (u16, i64, Vec<FaultEvent>, Option<Result<String, String>>);

/// The address member `i` of a cluster of `ditto check`'s own connects to the others from:
/// one of its own, so that the proxies can tell the members apart (Linux routes all of
/// 127.0.0.0/8 to the loopback interface).
fn source_of(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
}

/// Starts a cluster behind proxies, runs the workload with the nemesis, heals, and checks that
/// the replicas converge.
///
/// Every server listens on a port of its own and is known to the group and to the clients by
/// the port of a proxy in front of it (`--advertise`); it connects to the others from an address
/// of its own (`--source-addr`). So every link, member to member or clients to member, goes
/// through the proxy of the server it reaches, which can tell who is calling and break the link
/// from one member, from several, or from the clients alone.
async fn managed(
    args: &CheckArgs,
    workload: &Workload,
    recorder: Arc<Recorder>,
    start: Instant,
) -> anyhow::Result<RunResult> {
    let n = args.cluster_backups as usize;
    let ports = free_ports(n + 1)?;
    let mut links = Links::default();
    for (i, &port) in ports.iter().enumerate() {
        links.members.push(Member {
            port,
            proxy: Proxy::start(port).await?,
            source: source_of(i),
        });
    }
    let known = |i: usize| links.members[i].proxy.port();
    let specs: Vec<ServerSpec> = links
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut spec = if i == 0 {
                ServerSpec::primary(m.port)
            } else {
                let mut spec = ServerSpec::backup(m.port, known(0));
                spec.args[2] = format!("127.0.0.1:{}", known(0));
                spec
            };
            spec.advertised = known(i);
            spec.args.extend([
                "--advertise".to_owned(),
                format!("127.0.0.1:{}", known(i)),
                "--source-addr".to_owned(),
                m.source.to_string(),
            ]);
            spec
        })
        .collect();
    let logs = cluster::Logs::Inherit;
    let mut cluster = LocalCluster::start_servers(&specs, &args.server_log_level, logs).await?;
    let initial = initial_value(ports[0], workload.timeout).await?;
    let workload = &Workload {
        tag: workload::tag_after(initial),
        ..workload.clone()
    };
    // Clients name a server by the port the group knows it by, and dial it there.
    let known_ports: Vec<u16> = (0..ports.len()).map(known).collect();
    let clients = specs_for(&known_ports, args.clients_per_server, |p| p);
    let nemesis = Nemesis {
        kinds: args.nemesis.clone(),
        interval: Duration::from_secs_f64(args.nemesis_interval),
        fault_duration: Duration::from_secs_f64(args.fault_duration),
        seed: args.seed,
    };
    let until = Instant::now() + workload.duration;
    let (_, faults) = tokio::join!(
        workload::run(workload, &clients, recorder),
        nemesis.run(&mut cluster, &links, start, until)
    );
    links.heal();
    let faults = faults?;
    let converged = converge(&mut cluster).await;
    cluster.stop().await;
    Ok((known(0), initial, faults, Some(converged)))
}

/// Waits (bounded) until the primary, whichever server it is now (a fault may have moved the
/// role), has every other server in its active set, and every one of them has applied the
/// primary's last entry and holds its value.
async fn converge(cluster: &mut LocalCluster) -> Result<String, String> {
    if let Err(e) = cluster.await_synced().await {
        return Err(format!("backups did not rejoin: {e}"));
    }
    let first = cluster.servers.first().map(|s| s.port);
    let field = |status: &str, key: &str| cluster::status_field(status, key).map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (primary, p) = cluster.primary_now().await.unwrap_or_default();
        let want = (field(&p, "last"), field(&p, "value"));
        let mut seen = Vec::new();
        for server in cluster.servers.iter().filter(|s| s.port != primary) {
            let s = cluster::status(server.port).await.unwrap_or_default();
            seen.push((server.advertised, field(&s, "applied"), field(&s, "value")));
        }
        if want.0.is_some() && seen.iter().all(|(_, a, v)| (a, v) == (&want.0, &want.1)) {
            let moved = match cluster.servers.iter().find(|s| s.port == primary) {
                Some(s) if Some(primary) != first => {
                    format!(" (the primary is now :{})", s.advertised)
                }
                _ => String::new(),
            };
            return Ok(format!(
                "every replica holds {} after entry {}{moved}",
                want.1.unwrap_or_default(),
                want.0.unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "replicas differ: primary last={:?} value={:?}, backups {:?}",
                want.0, want.1, seen
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the checks found, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Finding {
    Violation,
    Undecided,
    Ok,
}

/// Checks the history, prints the summary, writes the timeline, and returns the exit status: a
/// violation anywhere wins; then anything undecided (a checker that gave up, or a run in which
/// no operation succeeded) keeps the verdict from being OK.
///
/// The linearizability check takes every write and the reads marked linearizable (answered by
/// the primary under its lease); with `reads_at_primary`, also every read made at the port
/// `primary`, as histories recorded before reads were marked mean it.
fn report(
    history: &History,
    primary: Option<u16>,
    reads_at_primary: bool,
    faults: &[FaultEvent],
    page_path: &Path,
    converged: Option<Result<String, String>>,
) -> anyhow::Result<ExitCode> {
    let count = |o: Outcome| history.ops.iter().filter(|op| op.outcome == o).count();
    if history.initial != 0 {
        println!(
            "  initial     the register held {} at the start",
            history.initial
        );
    }
    println!(
        "  operations  {} attempted: {} ok, {} failed, {} unknown",
        history.len(),
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Unknown)
    );
    if !faults.is_empty() {
        println!("  faults      {} injected:", faults.len());
        for f in faults {
            println!("    {f}");
        }
    }
    let mut finding = Finding::Ok;
    let mut reasons: Vec<String> = Vec::new();
    if count(Outcome::Ok) == 0 {
        finding = Finding::Undecided;
        reasons.push("no operation succeeded, so nothing was tested".to_owned());
    }
    let started = std::time::Instant::now();
    let sc = seqcst::check(history)?;
    let sc_time = started.elapsed();
    println!("  sequential consistency ({:.1} ms): {sc}", ms(sc_time));
    if sc.violation().is_some() {
        finding = Finding::Violation;
        reasons.push("not sequentially consistent".to_owned());
    } else if sc.is_undecided() {
        finding = finding.min(Finding::Undecided);
        reasons.push("sequential consistency undecided".to_owned());
    }
    let mut highlight = Highlight::from(&sc);
    let mut verdicts = vec![sc.to_string()];
    let by_port = primary.filter(|_| reads_at_primary);
    let marked = history.ops.iter().filter(|op| op.linearizable).count();
    if primary.is_some() || marked > 0 {
        let started = std::time::Instant::now();
        let lin = linearizable::check(
            history,
            // Every write takes effect at the primary between its invocation and its reply,
            // wherever it was sent; a read is linearizable only where the primary answered it
            // under its lease.
            |op| {
                op.kind == OpKind::Write
                    || op.linearizable
                    || by_port.is_some_and(|p| op.server == Some(p))
            },
            &linearizable::Config::default(),
        )?;
        let reads = match by_port {
            Some(p) => format!("reads at the primary :{p} and {marked} marked linearizable"),
            None => format!("{marked} reads answered under the primary's lease"),
        };
        println!(
            "  linearizability (all writes, {reads}) ({:.1} ms): {lin}",
            ms(started.elapsed())
        );
        verdicts.push(format!("linearizability (all writes, {reads}): {lin}"));
        match &lin {
            linearizable::Verdict::Ok(_) => {}
            linearizable::Verdict::Violation(_) => {
                finding = Finding::Violation;
                reasons.push("not linearizable".to_owned());
                if sc.violation().is_none() {
                    highlight = Highlight::from(&lin);
                }
            }
            linearizable::Verdict::Exhausted(_) => {
                finding = finding.min(Finding::Undecided);
                reasons.push("linearizability undecided".to_owned());
            }
        }
    }
    match converged {
        Some(Ok(text)) => {
            println!("  convergence: {text}");
            verdicts.push(format!("convergence: {text}"));
        }
        Some(Err(text)) => {
            println!("  convergence: FAILED: {text}");
            verdicts.push(format!("convergence FAILED: {text}"));
            finding = Finding::Violation;
            reasons.push("the replicas did not converge".to_owned());
        }
        None => {}
    }
    let title = match finding {
        Finding::Violation => "ditto check: violation",
        Finding::Undecided => "ditto check: undecided",
        Finding::Ok => "ditto check: consistent",
    };
    // The page states every verdict, and outlines the operations of the one it explains.
    highlight.violation = finding == Finding::Violation;
    highlight.undecided = finding == Finding::Undecided;
    highlight.explanation = verdicts.join("\n");
    let shaded: Vec<timeline::Fault> = faults.iter().map(shade).collect();
    let page = timeline::render_html_with_faults(history, &highlight, title, &shaded);
    std::fs::write(page_path, page)
        .with_context(|| format!("cannot write {}", page_path.display()))?;
    println!("  timeline    {}", page_path.display());
    let (word, code) = match finding {
        Finding::Violation => ("VIOLATION", EXIT_VIOLATION),
        Finding::Undecided => ("UNDECIDED", EXIT_UNDECIDED),
        Finding::Ok => ("OK", EXIT_OK),
    };
    if reasons.is_empty() {
        println!("  verdict     {word}");
    } else {
        println!("  verdict     {word}: {}", reasons.join("; "));
    }
    Ok(ExitCode::from(code))
}

/// A fault as the timeline shades it: the servers it hit are the ports its description names
/// (`pause :7001 (SIGSTOP), resume`, `partition backup :7002 <-> primary`).
fn shade(fault: &FaultEvent) -> timeline::Fault {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let servers = fault
        .what
        .split(':')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    timeline::Fault {
        start_ns: ns(fault.at),
        end_ns: ns(fault.at + fault.lasted),
        what: fault.what.clone(),
        servers,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
