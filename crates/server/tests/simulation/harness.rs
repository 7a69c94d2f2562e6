//! One simulation per seed, the checks of its outcome, and the loop over seeds that turns a
//! failure into a seed and a command that replays it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ditto_check::timeline::{self, Highlight};
use ditto_check::{History, OpKind, Outcome, linearizable, seqcst};
use ditto_core::{NodeConfig, ReplicaConfig};
use ditto_server::{DriverConfig, Net, run_node};

use crate::faults::{self, FaultMix, Rng, Timed};
use crate::net::{SimNet, addr, host_name};
use crate::workload::{self, ClientSpec, ClientTiming};
use crate::{PRIMARY, SERVERS};

/// How far simulated time advances per step. Every host runs once per step.
const TICK: Duration = Duration::from_millis(5);
/// The latency of every segment, drawn from an exponential distribution over this range, so
/// segments of different connections overtake each other all the time. It is at least one
/// tick, so nothing sent in a step arrives in the same step: a reply is then always timestamped
/// after its request, on every host, which keeps the real-time order that the linearizability
/// check relies on true to causality.
pub const LATENCY: Range<Duration> = TICK..Duration::from_millis(40);
/// A run that has not finished by then is a failure: every client operation is bounded by
/// timeouts, so only a harness bug or a wedged simulation gets there.
const SIM_LIMIT: Duration = Duration::from_secs(120);
/// Faults start in this window of simulated time, while the clients of a 30-operation workload
/// are busy; a longer workload stretches it in proportion (see [`Scenario::fault_window`]).
const FAULT_WINDOW: Range<Duration> = Duration::from_millis(200)..Duration::from_millis(3_500);
/// How long the convergence probe lets the network settle after the last client finished and
/// the last fault healed: long enough for a backup to join again after its longest back-off.
const QUIET: Duration = Duration::from_secs(2);

const CLIENT_TIMING: ClientTiming = ClientTiming {
    connect_timeout: Duration::from_millis(300),
    reply_timeout: Duration::from_millis(800),
    // After the primary's discovery (1 s) and the backups' joining.
    start: 1_100..1_400,
    think: 0..40,
    backoff: Duration::from_millis(50),
};

/// A node's settings: the defaults of the binary (they suit the simulated latencies), a group
/// id drawn from the simulated clock (so a restarted primary that founds a group draws a new
/// one, as the binary does), and the primary's address as every backup's contact.
fn node_config(port: u16) -> NodeConfig {
    let contact = (port != PRIMARY).then(|| addr(PRIMARY));
    let group = workload::now_ns() ^ u64::from(port);
    let mut replica = ReplicaConfig::new(addr(port), contact, group);
    // Simulated time starts at a fixed wall-clock instant, so runs stay reproducible.
    replica.epoch = Some(1_700_000_000_000);
    NodeConfig::new(replica)
}

fn driver_config() -> DriverConfig {
    DriverConfig {
        connect_timeout: Duration::from_millis(300),
        ..DriverConfig::default()
    }
}

/// What one test simulates.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The test function, for the replay command.
    pub test: &'static str,
    /// Whether the test is `#[ignore]`d (the replay command then asks for ignored tests).
    pub ignored: bool,
    pub mix: FaultMix,
    /// The seeds that run unless `DITTO_SIM_SEEDS` or `DITTO_SIM_SEED` says otherwise.
    pub seeds: Range<u64>,
    pub clients_per_server: u64,
    /// Requests each client makes. Faults are drawn in one round per 30 of them.
    pub ops_per_client: u64,
    /// Ask every server for `STATUS` at the end and require the replicas to agree.
    pub converge: bool,
    /// Require every operation to succeed (no fault can excuse a failure).
    pub all_ok: bool,
}

impl Scenario {
    pub fn new(test: &'static str, mix: FaultMix, seeds: Range<u64>) -> Scenario {
        Scenario {
            test,
            ignored: false,
            mix,
            seeds,
            clients_per_server: 2,
            ops_per_client: 30,
            converge: false,
            all_ok: false,
        }
    }

    /// The command that replays `seed` of this test alone.
    pub fn replay_command(&self, seed: u64) -> String {
        let ignored = if self.ignored { " --ignored" } else { "" };
        format!(
            "DITTO_SIM_SEED={seed} cargo test -p ditto-server --test simulation {} -- --exact{ignored}",
            self.test
        )
    }

    /// The rounds of faults and the window they start in: one round of [`FAULT_WINDOW`]'s
    /// length per 30 operations per client.
    fn fault_window(&self) -> (u32, Range<Duration>) {
        let rounds = self.ops_per_client.div_ceil(30).max(1) as u32;
        let len = FAULT_WINDOW.end - FAULT_WINDOW.start;
        (
            rounds,
            FAULT_WINDOW.start..FAULT_WINDOW.start + len * rounds,
        )
    }

    /// The seeds to run: the one in `DITTO_SIM_SEED`, else those in `DITTO_SIM_SEEDS` (`n`
    /// for `0..n`, or `a..b`), else `self.seeds`.
    pub fn seed_range(&self) -> Range<u64> {
        if let Some(seed) = env("DITTO_SIM_SEED") {
            let seed = parse_u64("DITTO_SIM_SEED", &seed);
            return seed..seed + 1;
        }
        match env("DITTO_SIM_SEEDS") {
            None => self.seeds.clone(),
            Some(text) => match text.split_once("..") {
                Some((a, b)) => parse_u64("DITTO_SIM_SEEDS", a)..parse_u64("DITTO_SIM_SEEDS", b),
                None => 0..parse_u64("DITTO_SIM_SEEDS", &text),
            },
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_u64(name: &str, text: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {text:?} is not a whole number"))
}

/// Everything one simulation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub seed: u64,
    /// Every client operation, in the order they finished.
    pub history: History,
    /// The fault schedule of the run.
    pub faults: Vec<Timed>,
    /// `STATUS` of each server at the end, if the scenario asks for convergence.
    pub statuses: Vec<(u16, String)>,
    /// Simulated time the run took.
    pub sim_time: Duration,
    /// Why the simulation stopped before every client finished, if it did.
    pub error: Option<String>,
}

impl Run {}

/// Runs the whole simulation of `seed`.
pub fn simulate(sc: &Scenario, seed: u64) -> Run {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        // A fixed start for the simulated wall clock: nothing may depend on the real one.
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(SIM_LIMIT)
        .tick_duration(TICK)
        .min_message_latency(LATENCY.start)
        .max_message_latency(LATENCY.end)
        .enable_random_order()
        .build();

    // A restarted host runs its closure again: a fresh process with nothing but its config.
    for port in SERVERS {
        sim.host(host_name(port), move || async move {
            let listener = SimNet.bind(port).await?;
            let cfg = node_config(port);
            run_node(
                SimNet,
                listener,
                cfg,
                driver_config(),
                std::future::pending(),
            )
            .await?;
            Ok(())
        });
    }

    let mut rng = Rng::new(seed ^ 0x5EED_D177_0000_0000);
    let ops = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(RefCell::new(0u64));
    // One client host per server, running that server's clients: fewer hosts make every step
    // cheaper (turmoil visits every link for every host), and a fault on the host's link
    // reaches all of them alike.
    let mut clients = Vec::new();
    for (nth, server) in SERVERS.into_iter().enumerate() {
        let name = format!("c{server}");
        clients.push((name.clone(), server));
        let specs: Vec<ClientSpec> = (0..sc.clients_per_server)
            .map(|i| ClientSpec {
                // Clients 1, 2, 3 talk to servers 7000, 7001, 7002, then 4, 5, 6, and so on.
                id: 1 + i * SERVERS.len() as u64 + nth as u64,
                server,
                ops: sc.ops_per_client,
                seed: rng.next_u64(),
            })
            .collect();
        let (ops, done) = (ops.clone(), done.clone());
        sim.client(name, async move {
            let tasks: Vec<_> = (specs.into_iter())
                .map(|spec| {
                    tokio::task::spawn_local(workload::client(spec, CLIENT_TIMING, ops.clone()))
                })
                .collect();
            for task in tasks {
                task.await??;
                *done.borrow_mut() += 1;
            }
            Ok(())
        });
    }
    let (rounds, window) = sc.fault_window();
    let schedule = faults::schedule(sc.mix, &mut rng, &clients, window, rounds);
    let statuses = Rc::new(RefCell::new(Vec::new()));
    if sc.converge {
        // Only once the last fault has healed can the replicas be expected to agree.
        let healed = schedule.last().map_or(Duration::ZERO, |t| t.at);
        let probe = workload::probe(
            SERVERS.to_vec(),
            sc.clients_per_server * SERVERS.len() as u64,
            done,
            healed,
            QUIET,
            CLIENT_TIMING,
            statuses.clone(),
        );
        sim.client("probe", probe);
    }
    let mut hosts: Vec<String> = SERVERS.iter().map(|&p| host_name(p)).collect();
    hosts.extend(clients.iter().map(|(name, _)| name.clone()));
    if sc.converge {
        hosts.push("probe".to_owned());
    }
    let mut due = schedule.iter().peekable();
    let error = loop {
        while let Some(t) = due.next_if(|t| t.at <= sim.elapsed()) {
            t.fault.apply(&mut sim, &hosts);
        }
        match sim.step() {
            Ok(true) => break None,
            Ok(false) => {}
            Err(e) => break Some(e.to_string()),
        }
    };
    let sim_time = sim.elapsed();
    drop(sim);
    let history = History::new(std::mem::take(&mut *ops.borrow_mut()));
    let statuses = std::mem::take(&mut *statuses.borrow_mut());
    Run {
        seed,
        history,
        faults: schedule,
        statuses,
        sim_time,
        error,
    }
}

/// The checkers' answers for one run.
#[derive(Debug)]
pub struct Verdicts {
    pub seqcst: seqcst::Verdict,
    pub linearizable: linearizable::Verdict,
}

impl Verdicts {
    /// Checks `history` as `ditto check` does: sequential consistency of everything, and
    /// linearizability of every write plus the reads a primary answered under its lease (the
    /// `READ:linearizable` of the clients of port 7000, whichever role it has by then).
    pub fn of(history: &History) -> Result<Verdicts, String> {
        let invalid = |e| format!("the history is invalid (a harness bug): {e}");
        Ok(Verdicts {
            seqcst: seqcst::check(history).map_err(invalid)?,
            linearizable: linearizable::check(
                history,
                |op| op.kind == OpKind::Write || op.linearizable,
                &linearizable::Config::default(),
            )
            .map_err(invalid)?,
        })
    }

    fn highlight(&self) -> Highlight {
        if self.seqcst.is_ok() {
            Highlight::from(&self.linearizable)
        } else {
            Highlight::from(&self.seqcst)
        }
    }
}

/// What is wrong with a run of `sc`; empty if nothing.
pub fn problems(sc: &Scenario, run: &Run, verdicts: &Result<Verdicts, String>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(e) = &run.error {
        problems.push(format!("the simulation did not finish: {e}"));
    }
    match verdicts {
        Err(e) => problems.push(e.clone()),
        Ok(v) => {
            if !v.seqcst.is_ok() {
                problems.push(v.seqcst.to_string());
            }
            if v.linearizable.violation().is_some() {
                problems.push(v.linearizable.to_string());
            }
        }
    }
    if sc.all_ok {
        let failed: Vec<String> = (run.history.ops.iter().enumerate())
            .filter(|(_, op)| op.outcome != Outcome::Ok)
            .map(|(i, op)| format!("#{i} {op}"))
            .collect();
        if !failed.is_empty() {
            problems.push(format!(
                "{} operations did not succeed without any fault, first: {}",
                failed.len(),
                failed[0]
            ));
        }
    }
    if sc.converge
        && let Err(e) = converged(&run.statuses)
    {
        problems.push(format!("the replicas did not converge: {e}"));
    }
    problems
}

/// Checks that exactly one server is primary and every other applied exactly its entries, in
/// its view, and holds its value.
fn converged(statuses: &[(u16, String)]) -> Result<(), String> {
    let fields = |line: &str| -> Result<BTreeMap<String, String>, String> {
        let rest = line
            .strip_prefix("STATUS:")
            .ok_or(format!("answered {line:?}"))?;
        Ok(rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    };
    let all = statuses
        .iter()
        .map(|(port, line)| {
            fields(line)
                .map(|f| (*port, f))
                .map_err(|e| format!(":{port} {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let primaries: Vec<&(u16, BTreeMap<String, String>)> = all
        .iter()
        .filter(|(_, f)| f.get("role").map(String::as_str) == Some("primary"))
        .collect();
    let [(pport, primary)] = primaries.as_slice() else {
        return Err(format!("{} primaries: {statuses:?}", primaries.len()));
    };
    for (port, backup) in &all {
        for key in ["group", "view", "applied", "value"] {
            if backup.get(key) != primary.get(key) {
                return Err(format!(
                    ":{port} has {key}={:?} but the primary :{pport} has {:?}",
                    backup.get(key),
                    primary.get(key)
                ));
            }
        }
    }
    Ok(())
}

/// Totals over the runs of one test.
#[derive(Debug, Default)]
pub struct Summary {
    pub runs: u64,
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub unknown: u64,
    pub max_ops: usize,
    pub faults: u64,
    pub undecided: u64,
    pub sim_time: Duration,
}

impl Summary {
    fn add(&mut self, run: &Run, verdicts: &Result<Verdicts, String>) {
        let count = |o| run.history.ops.iter().filter(|op| op.outcome == o).count() as u64;
        self.runs += 1;
        self.ops += run.history.len() as u64;
        self.ok += count(Outcome::Ok);
        self.fail += count(Outcome::Fail);
        self.unknown += count(Outcome::Unknown);
        self.max_ops = self.max_ops.max(run.history.len());
        self.faults += run.faults.len() as u64;
        self.sim_time += run.sim_time;
        if let Ok(v) = verdicts
            && matches!(v.linearizable, linearizable::Verdict::Exhausted(_))
        {
            self.undecided += 1;
        }
    }
}

/// Prints simulated time in log lines, so they line up with the history's timestamps.
struct SimClock;

impl tracing_subscriber::fmt::time::FormatTime for SimClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>8.3}s", t.as_secs_f64()),
            None => write!(w, "{:>9}", "-"),
        }
    }
}

/// With `DITTO_SIM_LOG` set (an `EnvFilter`, e.g. `info` or `ditto_server=debug`), prints the
/// servers' logs, each line with its simulated host and time.
fn init_logging() {
    if let Ok(filter) = std::env::var("DITTO_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimClock)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    }
}

/// Runs every seed of `sc` and panics at the first one with a problem, naming the seed and the
/// command that replays it. With `DITTO_SIM_SEED` set, also prints the run in full.
pub fn run_seeds(sc: &Scenario) -> Summary {
    init_logging();
    let verbose = env("DITTO_SIM_SEED").is_some();
    let started = Instant::now();
    let mut summary = Summary::default();
    for seed in sc.seed_range() {
        let run = simulate(sc, seed);
        let verdicts = Verdicts::of(&run.history);
        let problems = problems(sc, &run, &verdicts);
        summary.add(&run, &verdicts);
        let saved = (verbose || !problems.is_empty()).then(|| save(sc, &run, &verdicts));
        if verbose {
            eprintln!("{}", describe(sc, &run, &verdicts));
            eprintln!("{}", saved.as_deref().unwrap_or_default());
        }
        if let Some(saved) = saved.filter(|_| !problems.is_empty()) {
            let mut msg = format!("{}: seed {seed} failed:\n", sc.test);
            for p in &problems {
                let _ = writeln!(msg, "  - {p}");
            }
            let _ = writeln!(msg, "fault schedule:");
            for t in &run.faults {
                let _ = writeln!(msg, "  {t}");
            }
            let _ = write!(
                msg,
                "{saved}\nreplay this seed (prints the whole history):\n  {}",
                sc.replay_command(seed)
            );
            panic!("{msg}");
        }
    }
    eprintln!(
        "{}: {} seeds in {:.1} s ({:.0} s simulated), {} ops ({} ok, {} failed, {} unknown; \
         at most {} per run), {} faults, {} linearizability checks undecided, no violation",
        sc.test,
        summary.runs,
        started.elapsed().as_secs_f64(),
        summary.sim_time.as_secs_f64(),
        summary.ops,
        summary.ok,
        summary.fail,
        summary.unknown,
        summary.max_ops,
        summary.faults,
        summary.undecided,
    );
    summary
}

/// The run in full: faults, verdicts, statuses and every operation.
pub fn describe(sc: &Scenario, run: &Run, verdicts: &Result<Verdicts, String>) -> String {
    let mut out = format!(
        "{} seed {}: {} ops in {:.3} s simulated\n",
        sc.test,
        run.seed,
        run.history.len(),
        run.sim_time.as_secs_f64()
    );
    let _ = writeln!(out, "fault schedule:");
    for t in &run.faults {
        let _ = writeln!(out, "  {t}");
    }
    match verdicts {
        Ok(v) => {
            let _ = writeln!(out, "{}\n{}", v.seqcst, v.linearizable);
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
    for (port, status) in &run.statuses {
        let _ = writeln!(out, ":{port} {status}");
    }
    if let Some(e) = &run.error {
        let _ = writeln!(out, "simulation error: {e}");
    }
    let _ = writeln!(out, "history (by completion):");
    for (i, op) in run.history.ops.iter().enumerate() {
        let _ = writeln!(out, "  #{i} {op}");
    }
    out
}

/// Writes the history (JSON lines) and its timeline (HTML) under the target directory and says
/// where.
fn save(sc: &Scenario, run: &Run, verdicts: &Result<Verdicts, String>) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulation");
    let base = dir.join(format!("{}-{}", sc.test, run.seed));
    let jsonl = base.with_extension("jsonl");
    let html = base.with_extension("html");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut buf = Vec::new();
        run.history.write_jsonl(&mut buf)?;
        std::fs::write(&jsonl, buf)?;
        let highlight = verdicts
            .as_ref()
            .map(Verdicts::highlight)
            .unwrap_or_default();
        let title = format!("{} seed {}", sc.test, run.seed);
        std::fs::write(
            &html,
            timeline::render_html(&run.history, &highlight, &title),
        )
    });
    match written {
        Ok(()) => format!(
            "history ({} ops): {}\ntimeline: {}\nre-check: cargo run -p ditto -- check --history {}",
            run.history.len(),
            jsonl.display(),
            html.display(),
            jsonl.display()
        ),
        Err(e) => format!("could not save the history under {}: {e}", dir.display()),
    }
}
