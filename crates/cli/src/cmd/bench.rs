//! `ditto bench`: a load generator in the spirit of redis-benchmark.
//!
//! Each connection keeps `--pipeline` requests in flight and replaces each one as its reply
//! arrives; latency is measured per request from send to reply, into HdrHistograms merged at the
//! end. Written values are unique, so a bench run can also feed a history checker. Writes go
//! through the group client: tagged for at-most-once, and retried at a live member of the group
//! when the connection's server dies, so a bench survives a failover.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use ditto_core::{Addr, wire};
use ditto_server::{GroupClient, GroupError, GroupOptions, ReadPolicy};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::rng::Rng;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Ports of the servers to load, comma-separated; connections are spread over them.
    #[arg(short, long, value_delimiter = ',', default_value = "7000", value_parser = super::port)]
    ports: Vec<u16>,
    /// Number of client connections.
    #[arg(short, long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    connections: u32,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Fraction of requests that are writes (0 = only reads, 1 = only writes).
    #[arg(short, long, default_value_t = 0.5, value_parser = super::ratio)]
    writes: f64,
    /// How long to run, in seconds (ignored when --requests is given).
    #[arg(short, long, default_value_t = 5.0, value_parser = super::seconds)]
    duration: f64,
    /// Stop after this many requests in total instead of after --duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds to wait for a connection and for each reply.
    #[arg(long, default_value_t = 10.0, value_parser = super::seconds)]
    timeout: f64,
    /// Seed of the read/write mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
}

async fn connection(
    id: u64,
    port: u16,
    args: Arc<BenchArgs>,
    budget: Arc<AtomicU64>,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let timeout = Duration::from_secs_f64(args.timeout);
    // Writes are tagged and, when the server dies, retried at a live member of its group;
    // reads stay with the connection's server as long as it lives. The connection is kept,
    // and the group is asked what it is once, here, not per request.
    let opts = GroupOptions::new(ReadPolicy::Sticky, timeout, timeout);
    let mut group = GroupClient::new(vec![Addr::local(port)], opts);
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
            Ok((_, reply)) if !wire::is_error_reply(reply.as_bytes()) => {
                let ns = sent.elapsed().as_nanos() as u64;
                let h = if write {
                    &mut tally.writes
                } else {
                    &mut tally.reads
                };
                h.saturating_record(ns.max(1_000));
            }
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

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let args = Arc::new(args);
    let budget = Arc::new(AtomicU64::new(0));
    // With --requests the count bounds the run; an hour bounds it too, so it always ends.
    let duration = if args.requests.is_some() {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs_f64(args.duration)
    };
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.connections as u64 {
        let port = args.ports[id as usize % args.ports.len()];
        let (args, budget) = (args.clone(), budget.clone());
        tasks.spawn(connection(id, port, args, budget, deadline));
    }
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined??;
        total.reads.add(&tally.reads)?;
        total.writes.add(&tally.writes)?;
        total.errors += tally.errors;
        if let Some(e) = tally.first_error {
            total.first_error.get_or_insert(e);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = total.reads.clone();
    all.add(&total.writes)?;
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
            println!(
                "  {name:<7} latency p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max())
            );
        }
    }
    Ok(if total.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
