//! `ditto bench`: a load generator in the spirit of redis-benchmark.
//!
//! Each connection keeps `--pipeline` requests in flight and replaces each one as its reply
//! arrives; latency is measured per request from send to reply, into HdrHistograms merged at the
//! end.
//!
//! It speaks one of two protocols. Over ditto's line protocol (the default) it reads and writes
//! the one register: written values are unique, so a bench run can also feed a history checker,
//! and writes go through the group client: tagged for at-most-once, and retried at a live member
//! of the group when the connection's server dies, so a bench survives a failover. Over RESP
//! (`--resp`) it sends `SET`, `GET` and `INCR` on keys, as redis-benchmark does, so that ditto
//! and Redis are measured by one generator; each connection talks to the one server it was
//! given, with no discovery, so that reads sent to a backup or replica are measured there.

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use ditto_core::resp::Reply;
use ditto_core::{Addr, wire};
use ditto_server::{GroupClient, GroupError, GroupOptions, ReadPolicy, RespClient};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::keys::{Dist, Keys};
use crate::rng::Rng;

/// Longest `--value-size`: the longest bulk string a stock Redis accepts
/// (`proto-max-bulk-len`).
const MAX_VALUE_SIZE: u32 = 512 * 1024 * 1024;

#[derive(Debug, Args)]
#[command(after_help = "\
Protocols:
  By default the bench speaks ditto's line protocol: READ and WRITE:v on the one register,
  writes through the group client (which follows a failover), --writes of them writes.

  With --resp it speaks RESP, as Redis does, and runs each test of --tests in turn, -n requests
  (or --duration seconds) each, printing one line per test:
    set   SET key:<n> <value>     (--value-size bytes of 'x', as redis-benchmark's -d)
    get   GET key:<n>
    incr  INCR counter:<n>        (a key space of its own, as redis-benchmark's)
    mix   SET or GET key:<n>, --writes of them SETs (the default test)
  <n> is drawn from 0..--keys by --dist: uniform, or zipf (exponent 0.99, YCSB's, so key:0 is
  the hottest), or zipf:EXPONENT. Each connection stays with one server of --ports, taken in
  turn, and sends everything there: to measure reads at a backup or replica, give its port.

Examples:
  ditto bench -p 7000,7001,7002 -c 50 -d 10
  ditto bench --resp -p 6379 -c 50 -n 200000 -t set,get -P 16
  ditto bench --resp -p 6379 --keys 100000 --dist zipf -t mix --writes 0.1 --json")]
pub struct BenchArgs {
    /// Ports of the servers to load, comma-separated; connections are spread over them.
    #[arg(short, long, value_delimiter = ',', default_value = "7000", value_parser = super::port)]
    ports: Vec<u16>,
    /// Host the ports are on (an address or a name).
    #[arg(long, default_value = ditto_core::addr::LOCALHOST, value_parser = host)]
    host: String,
    /// Number of client connections.
    #[arg(short, long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Fraction of requests that are writes (0 = only reads, 1 = only writes); with --resp, of
    /// the mix test.
    #[arg(short, long, default_value_t = 0.5, value_parser = super::ratio)]
    writes: f64,
    /// How long to run (each test, with --resp), in seconds (ignored when --requests is given).
    #[arg(short, long, default_value_t = 5.0, value_parser = super::seconds)]
    duration: f64,
    /// Stop after this many requests in total (in each test, with --resp) instead of after
    /// --duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds to wait for a connection and for each reply.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
    /// Seed of the read/write mix and of the keys drawn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Speak RESP (SET, GET, INCR on keys) instead of ditto's line protocol.
    #[arg(long)]
    resp: bool,
    /// With --resp: the tests to run in turn, comma-separated.
    #[arg(
        short = 't',
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mix",
        requires = "resp"
    )]
    tests: Vec<Test>,
    /// With --resp: how many keys requests are spread over (key:0, key:1, ... up to N keys).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), requires = "resp")]
    keys: u64,
    /// With --resp: how keys are drawn: uniform, zipf (exponent 0.99) or zipf:EXPONENT.
    #[arg(long, default_value = "uniform", value_parser = dist, requires = "resp")]
    dist: Dist,
    /// With --resp: bytes in each SET's value (the default is redis-benchmark's).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=MAX_VALUE_SIZE as i64), requires = "resp")]
    value_size: u32,
}

/// One `--resp` test: which command each request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Test {
    #[value(help = "SET key:<n> value")]
    Set,
    #[value(help = "GET key:<n>")]
    Get,
    #[value(help = "INCR counter:<n>")]
    Incr,
    #[value(help = "SET or GET key:<n>, --writes of them SETs")]
    Mix,
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::Set => "set",
            Test::Get => "get",
            Test::Incr => "incr",
            Test::Mix => "mix",
        }
    }
}

fn host(s: &str) -> Result<String, String> {
    Addr::new(s, 1)
        .map(|a| a.host().to_owned())
        .map_err(|e| format!("'{s}': {e}"))
}

fn dist(s: &str) -> Result<Dist, String> {
    s.parse()
}

/// What one connection measured.
struct Tally {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        // Nanoseconds from 1 µs to 60 s at 3 significant figures.
        let h = || Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds");
        Tally {
            reads: h(),
            writes: h(),
            errors: 0,
            first_error: None,
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    /// Records a request answered `sent` ago.
    fn record(&mut self, write: bool, sent: Instant) {
        let ns = sent.elapsed().as_nanos() as u64;
        let h = if write {
            &mut self.writes
        } else {
            &mut self.reads
        };
        h.saturating_record(ns.max(1_000));
    }

    fn add(&mut self, other: Tally) -> anyhow::Result<()> {
        self.reads.add(&other.reads)?;
        self.writes.add(&other.writes)?;
        self.errors += other.errors;
        if let Some(e) = other.first_error {
            self.first_error.get_or_insert(e);
        }
        Ok(())
    }

    /// Every request answered, reads and writes together.
    fn all(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = self.reads.clone();
        all.add(&self.writes)?;
        Ok(all)
    }
}

async fn connection(
    id: u64,
    addr: Addr,
    args: Arc<BenchArgs>,
    budget: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let timeout = Duration::from_secs_f64(args.timeout);
    // Writes are tagged and, when the server dies, retried at a live member of its group;
    // reads stay with the connection's server as long as it lives. The connection is kept,
    // and the group is asked what it is once, here, not per request.
    let opts = GroupOptions::new(ReadPolicy::Sticky, timeout, timeout);
    let mut group = GroupClient::new(vec![addr], opts);
    group.reconnect().await?;
    group.learn().await;
    let mut tally = Tally::new();
    let mut rng = Rng::new(args.seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut in_flight: VecDeque<(Instant, bool)> = VecDeque::new();
    let mut counter = 0u64;
    loop {
        while in_flight.len() < args.pipeline as usize && may_issue(&args, &budget, deadline) {
            let write = rng.next_f64() < args.writes;
            let sent = Instant::now();
            if write {
                counter += 1;
                group.submit_write(((id << 40) | counter) as i64).await;
            } else {
                group.submit_read().await;
            }
            in_flight.push_back((sent, write));
        }
        let Some((sent, write)) = in_flight.pop_front() else {
            return Ok(tally);
        };
        match group.next_reply().await {
            Ok((_, reply)) if !wire::is_error_reply(reply.as_bytes()) => tally.record(write, sent),
            Ok((_, reply)) | Err(GroupError::Refused { reply, .. }) => tally.error(reply),
            Err(e) => {
                tally.error(e.to_string());
                return Ok(tally);
            }
        }
    }
}

fn may_issue(args: &BenchArgs, budget: &AtomicU64, deadline: Instant) -> bool {
    match args.requests {
        Some(n) => budget.fetch_add(1, Ordering::Relaxed) < n,
        None => Instant::now() < deadline,
    }
}

/// When a run (or one test) must end: with --requests the count bounds it, and an hour bounds
/// it too, so it always ends.
fn deadline(args: &BenchArgs, start: Instant) -> Instant {
    start
        + if args.requests.is_some() {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs_f64(args.duration)
        }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// `p50 0.123 ms  p99 ...`, the latency figures of a text report.
fn latencies(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

fn addr(args: &BenchArgs, id: u64) -> Addr {
    let port = args.ports[id as usize % args.ports.len()];
    Addr::new(&args.host, port).expect("the host was checked when parsed")
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.resp {
        return run_resp(args).await;
    }
    let args = Arc::new(args);
    let budget = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = deadline(&args, start);
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.connections as u64 {
        let (args, budget) = (args.clone(), budget.clone());
        tasks.spawn(connection(id, addr(&args, id), args, budget, deadline));
    }
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        total.add(joined??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let all = total.all()?;
    let ops = all.len() as f64 / elapsed;
    if args.json {
        let report = serde_json::json!({
            "ports": args.ports,
            "connections": args.connections,
            "pipeline": args.pipeline,
            "write_ratio": args.writes,
            "seconds": elapsed,
            "ok": all.len(),
            "errors": total.errors,
            "first_error": total.first_error,
            "ops_per_sec": ops,
            "all": summary(&all),
            "reads": summary(&total.reads),
            "writes": summary(&total.writes),
        });
        println!("{report}");
    } else {
        let ports: Vec<String> = args.ports.iter().map(u16::to_string).collect();
        println!(
            "ditto bench: ports {}, {} connections x {} in flight, {:.0}% writes, {:.2} s",
            ports.join(","),
            args.connections,
            args.pipeline,
            args.writes * 100.0,
            elapsed
        );
        println!("  requests   {} ok, {} errors", all.len(), total.errors);
        if let Some(e) = &total.first_error {
            println!("  first error: {e}");
        }
        println!("  throughput {ops:.0} ops/s");
        for (name, h) in [
            ("all", &all),
            ("reads", &total.reads),
            ("writes", &total.writes),
        ] {
            if h.is_empty() {
                continue;
            }
            println!("  {name:<7} latency {}", latencies(h));
        }
    }
    Ok(if total.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// RESP
// ---------------------------------------------------------------------------------------------

/// What every connection of a `--resp` test shares.
struct Plan {
    args: BenchArgs,
    /// The value every SET writes.
    value: Vec<u8>,
    budget: AtomicU64,
}

/// The result of one `--resp` test.
struct Outcome {
    test: Test,
    seconds: f64,
    tally: Tally,
}

impl Outcome {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        let all = self.tally.all()?;
        Ok(serde_json::json!({
            "test": self.test.name(),
            "seconds": self.seconds,
            "ok": all.len(),
            "errors": self.tally.errors,
            "first_error": self.tally.first_error,
            "ops_per_sec": all.len() as f64 / self.seconds,
            "all": summary(&all),
            "reads": summary(&self.tally.reads),
            "writes": summary(&self.tally.writes),
        }))
    }
}

async fn run_resp(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let value = vec![b'x'; args.value_size as usize];
    let tests = args.tests.clone();
    let plan = Arc::new(Plan {
        args,
        value,
        budget: AtomicU64::new(0),
    });
    let args = &plan.args;
    if !args.json {
        let ports: Vec<String> = args.ports.iter().map(u16::to_string).collect();
        println!(
            "ditto bench --resp: {} ports {}, {} connections x {} in flight, {} keys {}, {}-byte values",
            args.host,
            ports.join(","),
            args.connections,
            args.pipeline,
            args.keys,
            args.dist,
            args.value_size,
        );
    }
    let mut outcomes = Vec::new();
    for (t, &test) in tests.iter().enumerate() {
        let outcome = resp_test(&plan, t as u64, test).await?;
        if !args.json {
            print_outcome(&outcome)?;
        }
        outcomes.push(outcome);
    }
    let errors: u64 = outcomes.iter().map(|o| o.tally.errors).sum();
    if args.json {
        let mut ok = 0;
        let mut reports = Vec::new();
        for o in &outcomes {
            ok += o.tally.reads.len() + o.tally.writes.len();
            reports.push(o.json()?);
        }
        let report = serde_json::json!({
            "protocol": "resp",
            "host": args.host,
            "ports": args.ports,
            "connections": args.connections,
            "pipeline": args.pipeline,
            "write_ratio": args.writes,
            "keys": args.keys,
            "dist": args.dist.to_string(),
            "value_size": args.value_size,
            "seed": args.seed,
            "ok": ok,
            "errors": errors,
            "tests": reports,
        });
        println!("{report}");
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_outcome(o: &Outcome) -> anyhow::Result<()> {
    let all = o.tally.all()?;
    let mut line = format!(
        "  {:<5} {} ok, {} errors in {:.2} s: {:.0} ops/s",
        o.test.name().to_uppercase(),
        all.len(),
        o.tally.errors,
        o.seconds,
        all.len() as f64 / o.seconds,
    );
    if !all.is_empty() {
        line.push_str(&format!("  latency {}", latencies(&all)));
    }
    println!("{line}");
    if let Some(e) = &o.tally.first_error {
        println!("        first error: {e}");
    }
    Ok(())
}

/// Runs one test: connects every connection first, so that connecting is not measured, then
/// sends until the budget or the deadline is spent.
async fn resp_test(plan: &Arc<Plan>, t: u64, test: Test) -> anyhow::Result<Outcome> {
    let args = &plan.args;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut connecting = tokio::task::JoinSet::new();
    for id in 0..args.connections as u64 {
        let addr = addr(args, id);
        connecting.spawn(async move { (id, RespClient::connect(&addr, timeout).await) });
    }
    let mut clients = Vec::with_capacity(args.connections as usize);
    while let Some(joined) = connecting.join_next().await {
        let (id, client) = joined?;
        clients.push((id, client?));
    }
    plan.budget.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let deadline = deadline(args, start);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, client) in clients {
        // Each test and each connection draws from a sequence of its own.
        let seed = args.seed
            ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (t + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        tasks.spawn(resp_connection(client, plan.clone(), test, seed, deadline));
    }
    let mut tally = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        tally.add(joined?)?;
    }
    Ok(Outcome {
        test,
        seconds: start.elapsed().as_secs_f64(),
        tally,
    })
}

/// One connection of a `--resp` test. It fills its pipeline, writes it in one go, waits for the
/// oldest reply, takes every other reply that arrived with it, and fills the pipeline again: so
/// a deep pipeline costs a write and a read per batch, not per request.
async fn resp_connection(
    mut client: RespClient,
    plan: Arc<Plan>,
    test: Test,
    seed: u64,
    deadline: Instant,
) -> Tally {
    let args = &plan.args;
    let mut tally = Tally::new();
    let mut rng = Rng::new(seed);
    let mut keys = Keys::new(args.keys, args.dist);
    let mut key = Vec::with_capacity(32);
    let mut in_flight: VecDeque<(Instant, bool)> = VecDeque::new();
    loop {
        while in_flight.len() < args.pipeline as usize && may_issue(args, &plan.budget, deadline) {
            let n = keys.next(&mut rng);
            key.clear();
            let write = match test {
                Test::Set | Test::Incr => true,
                Test::Get => false,
                Test::Mix => rng.next_f64() < args.writes,
            };
            if test == Test::Incr {
                let _ = write!(key, "counter:{n}");
                client.queue(&[b"INCR".as_slice(), &key]);
            } else if write {
                let _ = write!(key, "key:{n}");
                client.queue(&[b"SET".as_slice(), &key, &plan.value]);
            } else {
                let _ = write!(key, "key:{n}");
                client.queue(&[b"GET".as_slice(), &key]);
            }
            in_flight.push_back((Instant::now(), write));
        }
        if in_flight.is_empty() {
            return tally;
        }
        let mut reply = client.recv().await.map(Some);
        loop {
            match reply {
                Ok(None) => break,
                Ok(Some(r)) => {
                    let (sent, write) = in_flight.pop_front().expect("a request per reply");
                    match unexpected(test, write, &r) {
                        None => tally.record(write, sent),
                        Some(e) => tally.error(e),
                    }
                }
                Err(e) => {
                    // The connection is of no further use; what it had in flight is lost.
                    tally.error(e.to_string());
                    return tally;
                }
            }
            if in_flight.is_empty() {
                break;
            }
            reply = client.try_recv();
        }
    }
}

/// Why `reply` is not an answer the request should get, if it is not: an error reply, or one of
/// another type than the command's (which means the bench is not talking to what it thinks).
fn unexpected(test: Test, write: bool, reply: &Reply) -> Option<String> {
    let fits = match (test, write, reply) {
        (_, _, Reply::Error(e)) => return Some(e.clone()),
        (Test::Incr, _, Reply::Integer(_)) => true,
        (Test::Set | Test::Mix, true, Reply::Simple(s)) => s == "OK",
        (Test::Get | Test::Mix, false, Reply::Bulk(_) | Reply::Null) => true,
        _ => false,
    };
    (!fits).then(|| format!("unexpected reply to {}: {reply:?}", test.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_replies_a_command_gets_are_taken_as_answers() {
        let ok = Reply::ok();
        let bulk = Reply::Bulk(b"xxx".to_vec());
        assert_eq!(unexpected(Test::Set, true, &ok), None);
        assert_eq!(unexpected(Test::Mix, true, &ok), None);
        assert_eq!(unexpected(Test::Get, false, &bulk), None);
        assert_eq!(unexpected(Test::Mix, false, &Reply::Null), None);
        assert_eq!(unexpected(Test::Incr, true, &Reply::Integer(3)), None);
        assert_eq!(
            unexpected(Test::Incr, true, &Reply::err("value is not an integer")),
            Some("ERR value is not an integer".into())
        );
        for (test, write, reply) in [
            (Test::Set, true, Reply::Simple("QUEUED".into())),
            (Test::Set, true, bulk.clone()),
            (Test::Get, false, ok.clone()),
            (Test::Incr, true, bulk),
        ] {
            let why = unexpected(test, write, &reply).expect("not an answer");
            assert!(why.starts_with("unexpected reply to"), "{why}");
        }
    }
}
