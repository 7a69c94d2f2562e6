//! `ditto check`: run a workload against a cluster (with faults, if asked), record the history,
//! and check it for sequential consistency (and linearizability at the primary).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ditto_check::timeline::{Highlight, render_html};
use ditto_check::{History, OpKind, Outcome, Recorder, linearizable, seqcst};
use tokio::time::Instant;

use crate::check::nemesis::{FaultEvent, FaultKind, Links, Nemesis};
use crate::check::proxy::Proxy;
use crate::check::workload::{self, ClientSpec, Workload};
use crate::cluster::{self, LocalCluster};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check a recorded history file (JSON lines) instead of running anything.
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
    /// Seconds a client waits for a reply before recording the outcome as unknown.
    #[arg(long, default_value_t = 1.0, value_parser = super::seconds)]
    op_timeout: f64,
    /// Seed of the workload's and the nemesis's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject, comma-separated: kill (a backup), kill-primary, pause, partition.
    /// Only for the cluster ditto check starts.
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<FaultKind>,
    /// Mean seconds between faults.
    #[arg(long, default_value_t = 1.0, value_parser = super::seconds)]
    nemesis_interval: f64,
    /// Mean seconds a fault lasts.
    #[arg(long, default_value_t = 0.8, value_parser = super::seconds)]
    fault_duration: f64,
    /// Directory for history.jsonl and timeline.html.
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

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.history {
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        );
        let history = History::from_jsonl(reader)?;
        let out = file.with_extension("html");
        return report(&history, args.primary, &[], &out, None);
    }
    if args.primary.is_some() && !args.nemesis.is_empty() {
        anyhow::bail!("--nemesis needs the cluster ditto check starts (drop --primary)");
    }
    let recorder = Arc::new(Recorder::new());
    let start = Instant::now();
    let workload = Workload {
        max_ops: args.ops,
        duration: Duration::from_secs_f64(args.duration),
        write_ratio: args.writes,
        timeout: Duration::from_secs_f64(args.op_timeout),
        seed: args.seed,
    };
    let (primary, faults, converged) = match args.primary {
        Some(primary) => {
            let mut servers = vec![primary];
            servers.extend(&args.backups);
            let clients = specs(&servers, args.clients_per_server, |p| p);
            workload::run(&workload, &clients, recorder.clone()).await;
            (primary, Vec::new(), None)
        }
        None => managed(&args, &workload, recorder.clone(), start).await?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let history = recorder.history();
    let path = args.out.join("history.jsonl");
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    history.write_jsonl(std::io::BufWriter::new(file))?;
    println!(
        "ditto check: {} operations recorded in {:.1} s, history in {}",
        history.len(),
        start.elapsed().as_secs_f64(),
        path.display()
    );
    report(
        &history,
        Some(primary),
        &faults,
        &args.out.join("timeline.html"),
        converged,
    )
}

fn specs(servers: &[u16], per_server: u16, dial: impl Fn(u16) -> u16) -> Vec<ClientSpec> {
    let mut clients = Vec::new();
    for &server in servers {
        for _ in 0..per_server {
            clients.push(ClientSpec {
                id: clients.len() as u64 + 1,
                server,
                dial: dial(server),
            });
        }
    }
    clients
}

/// Starts a cluster behind proxies, runs the workload with the nemesis, heals, and checks that
/// the replicas converge. Returns the primary's port, the faults, and the convergence verdict.
async fn managed(
    args: &CheckArgs,
    workload: &Workload,
    recorder: Arc<Recorder>,
    start: Instant,
) -> anyhow::Result<(u16, Vec<FaultEvent>, Option<Result<String, String>>)> {
    let n = args.cluster_backups as usize;
    let ports = free_ports(n + 1)?;
    let primary = ports[0];
    let mut links = Links::default();
    let mut backups = Vec::new();
    for &port in &ports[1..] {
        let proxy = Proxy::start(primary).await?;
        backups.push((port, proxy.port()));
        links.to_primary.insert(port, proxy);
    }
    for &port in &ports {
        links.from_clients.insert(port, Proxy::start(port).await?);
    }
    let mut cluster =
        LocalCluster::start_with(primary, &backups, &args.server_log_level, false).await?;
    let dial: BTreeMap<u16, u16> = links
        .from_clients
        .iter()
        .map(|(port, proxy)| (*port, proxy.port()))
        .collect();
    let clients = specs(&ports, args.clients_per_server, |p| dial[&p]);
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
    Ok((primary, faults, Some(converged)))
}

/// Waits (bounded) until every backup is synced and holds the primary's value and sequence.
async fn converge(cluster: &mut LocalCluster) -> Result<String, String> {
    if let Err(e) = cluster.await_synced().await {
        return Err(format!("backups did not rejoin: {e}"));
    }
    let field = |status: &str, key: &str| cluster::status_field(status, key).map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = cluster::status(cluster.primary).await.unwrap_or_default();
        let want = (field(&p, "last"), field(&p, "value"));
        let mut seen = Vec::new();
        for &b in &cluster.backups {
            let s = cluster::status(b).await.unwrap_or_default();
            seen.push((b, field(&s, "applied"), field(&s, "value")));
        }
        if want.0.is_some() && seen.iter().all(|(_, a, v)| (a, v) == (&want.0, &want.1)) {
            return Ok(format!(
                "every replica holds {} after entry {}",
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

/// Checks the history, prints the summary, writes the timeline; exit status 1 on a violation.
fn report(
    history: &History,
    primary: Option<u16>,
    faults: &[FaultEvent],
    timeline: &Path,
    converged: Option<Result<String, String>>,
) -> anyhow::Result<ExitCode> {
    let count = |o: Outcome| history.ops.iter().filter(|op| op.outcome == o).count();
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
    let started = std::time::Instant::now();
    let sc = seqcst::check(history)?;
    let sc_time = started.elapsed();
    println!("  sequential consistency ({:.1} ms): {sc}", ms(sc_time));
    let mut failed = !sc.is_ok();
    let mut highlight = Highlight::from(&sc);
    if let Some(primary) = primary {
        let started = std::time::Instant::now();
        let lin = linearizable::check(
            history,
            // Every write takes effect at the primary between its invocation and its reply,
            // wherever it was sent; reads are linearizable only where the primary answers them.
            |op| op.kind == OpKind::Write || op.server == Some(primary),
            &linearizable::Config::default(),
        )?;
        println!(
            "  linearizability (all writes, reads at the primary :{primary}) ({:.1} ms): {lin}",
            ms(started.elapsed())
        );
        if lin.violation().is_some() {
            failed = true;
            if sc.is_ok() {
                highlight = Highlight::from(&lin);
            }
        }
    }
    match converged {
        Some(Ok(text)) => println!("  convergence: {text}"),
        Some(Err(text)) => {
            println!("  convergence: FAILED: {text}");
            failed = true;
        }
        None => {}
    }
    let title = if failed {
        "ditto check: violation"
    } else {
        "ditto check: consistent"
    };
    std::fs::write(timeline, render_html(history, &highlight, title))
        .with_context(|| format!("cannot write {}", timeline.display()))?;
    println!("  timeline    {}", timeline.display());
    println!("  verdict     {}", if failed { "VIOLATION" } else { "OK" });
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
