//! A concurrent workload against a cluster, recorded as a history.
//!
//! Every client is sequential and sticks to one server. Written values are unique, and differ
//! from the value the register held when the run began, so every read names the write it saw
//! (see [`value`]). A request that times out or loses its connection is recorded as `unknown`
//! (for a write: it may still be applied) and the client reconnects, so a late reply can never be
//! taken for the next request's.

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
    /// Tag of this run's written values: see [`value`] and [`tag_after`].
    pub tag: u16,
}

/// Most clients a workload can tell apart in its values.
pub const MAX_CLIENTS: u64 = 0xFFFE;

/// The value the `counter`th write (from 1) of client `client` writes in a run tagged `tag`:
/// bits 48 to 62 hold the tag, 32 to 47 the client id plus one, 0 to 31 the counter. Values are
/// positive and never 0, distinct between clients and writes of one run, and distinct from
/// every value of a run with another tag.
pub fn value(tag: u16, client: u64, counter: u32) -> i64 {
    debug_assert!((1..=0x7FFF).contains(&tag) && client < MAX_CLIENTS);
    (i64::from(tag) << 48) | (((client as i64 + 1) & 0xFFFF) << 32) | i64::from(counter)
}

/// The tag of a run that starts with the register holding `initial`: the next one after the
/// tag `initial` has, so that no value of the run equals it, even when it was written by the
/// previous run on the same cluster.
pub fn tag_after(initial: i64) -> u16 {
    let tag = ((initial >> 48) & 0x7FFF) as u16;
    tag % 0x7FFF + 1
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
    let mut counter: u32 = 0;
    while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < w.max_ops {
        let write = rng.next_f64() < w.write_ratio;
        let (kind, value, line) = if write {
            // A client that ran out of values stops rather than write one twice.
            let Some(next) = counter.checked_add(1) else {
                break;
            };
            counter = next;
            let v = value(w.tag, spec.id, counter);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_avoid_the_initial_value() {
        let mut seen = std::collections::HashSet::new();
        for client in [0, 1, 2, 4351, MAX_CLIENTS - 1] {
            for counter in [1, 2, u32::MAX] {
                let v = value(1, client, counter);
                assert!(v > 0);
                assert!(seen.insert(v), "{v} twice");
            }
        }
        for initial in [
            0,
            5,
            -5,
            i64::MAX,
            i64::MIN,
            value(1, 3, 7),
            value(0x7FFF, 0, 1),
        ] {
            let tag = tag_after(initial);
            assert!((1..=0x7FFF).contains(&tag));
            for client in [0, 3, MAX_CLIENTS - 1] {
                for counter in [1, 7, u32::MAX] {
                    assert_ne!(value(tag, client, counter), initial);
                }
            }
        }
        assert_eq!(tag_after(0), 1);
        assert_eq!(tag_after(value(1, 3, 7)), 2);
        assert_eq!(tag_after(value(0x7FFF, 0, 1)), 1);
    }
}
