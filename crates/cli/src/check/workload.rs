//! A concurrent workload against a cluster, recorded as a history.
//!
//! Every client is sequential and sticks to one server. Written values are unique (the client id
//! in the high bits, a counter in the low bits), so every read names the write it saw. A request
//! that times out or loses its connection is recorded as `unknown` (for a write: it may still be
//! applied) and the client reconnects, so a late reply can never be taken for the next request's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ditto_check::{OpKind, Outcome, Recorder};
use ditto_server::{Client, Conclusion};
use tokio::time::Instant;

use crate::rng::Rng;

/// Settings of a workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Most operations in total.
    pub max_ops: u64,
    /// How long clients keep issuing operations.
    pub duration: Duration,
    /// Fraction of operations that are writes.
    pub write_ratio: f64,
    /// How long a client waits for a connection or a reply before giving up on a request.
    pub timeout: Duration,
    /// Seed of every client's random choices.
    pub seed: u64,
}

/// One client of the workload: its id, the server it belongs to, and the port it dials (the
/// server's own, or a proxy in front of it).
#[derive(Clone, Copy, Debug)]
pub struct ClientSpec {
    pub id: u64,
    pub server: u16,
    pub dial: u16,
}

/// Runs every client to completion and returns when all have stopped.
pub async fn run(workload: &Workload, clients: &[ClientSpec], recorder: Arc<Recorder>) {
    let budget = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + workload.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for &spec in clients {
        let (w, rec, budget) = (workload.clone(), recorder.clone(), budget.clone());
        tasks.spawn(async move { client(spec, w, rec, budget, deadline).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn client(
    spec: ClientSpec,
    w: Workload,
    rec: Arc<Recorder>,
    budget: Arc<AtomicU64>,
    deadline: Instant,
) {
    let mut rng = Rng::new(w.seed ^ spec.id.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut conn: Option<Client> = None;
    let mut counter: i64 = 0;
    while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < w.max_ops {
        let write = rng.next_f64() < w.write_ratio;
        let (kind, value, line) = if write {
            counter += 1;
            let v = ((spec.id as i64 + 1) << 32) | counter;
            (OpKind::Write, Some(v), format!("WRITE:{v}"))
        } else {
            (OpKind::Read, None, "READ".to_owned())
        };
        if conn.is_none() {
            match Client::connect(spec.dial, w.timeout).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    // Nothing was sent: the operation definitely did not happen.
                    let t = rec.invoke(spec.id, Some(spec.server), kind, value);
                    rec.complete(t, Outcome::Fail, None);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let token = rec.invoke(spec.id, Some(spec.server), kind, value);
        let answer = c.request(&line).await;
        if answer.is_err() {
            conn = None;
        }
        let (outcome, read) = match Conclusion::of(write, &answer) {
            Conclusion::Done(read) => (Outcome::Ok, read),
            Conclusion::NotApplied => (Outcome::Fail, None),
            Conclusion::Unknown => (Outcome::Unknown, None),
        };
        rec.complete(token, outcome, read);
        if outcome != Outcome::Ok {
            // Back off a little so a dead server is not hammered.
            conn = None;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
