//! A concurrent workload against a cluster, recorded as a history.
//!
//! Every client is sequential and talks through a [`GroupClient`]. The clients of the primary's
//! lane follow the primary: their writes are tagged and retried through failovers, and their
//! reads are `READ:linearizable`, recorded as linearizable when answered. The clients of a
//! backup's lane stick to their backup: reads there are sequentially consistent, and tagged
//! writes sent there are forwarded to the primary. Written values are unique, and differ from
//! the value the register held when the run began, so every read names the write it saw (see
//! [`value`]).
//!
//! A write retried until it got its answer is one operation, from its first invocation to its
//! final answer: the group applies a tagged write at most once, somewhere in that interval. It
//! is recorded `unknown` only when its deadline passed without a definite answer (and some
//! attempt may have been applied); `fail` when every attempt was definitely refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::collections::BTreeMap;

use ditto_check::{OpKind, Outcome, Recorder};
use ditto_core::{Addr, wire};
use ditto_server::{Conclusion, GroupClient, GroupOptions, ReadPolicy};
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
    /// How long a client waits for a connection or a reply before it tries again.
    pub timeout: Duration,
    /// How long a client keeps trying one operation before it records it as failed or unknown.
    pub deadline: Duration,
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

/// One client of the workload: its id, the server it belongs to, the port it dials (the
/// server's own, or a proxy in front of it), and whether that server is the primary, whose
/// clients follow the primary after a failover.
#[derive(Clone, Copy, Debug)]
pub struct ClientSpec {
    pub id: u64,
    pub server: u16,
    pub dial: u16,
    pub primary: bool,
}

/// Runs every client to completion and returns when all have stopped.
pub async fn run(workload: &Workload, clients: &[ClientSpec], recorder: Arc<Recorder>) {
    let budget = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + workload.duration;
    // Every server is dialed as its clients dial it, also by the clients that follow the
    // primary there.
    let dial: BTreeMap<Addr, Addr> = clients
        .iter()
        .map(|c| (Addr::local(c.server), Addr::local(c.dial)))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for &spec in clients {
        let (w, rec, budget) = (workload.clone(), recorder.clone(), budget.clone());
        let dial = dial.clone();
        tasks.spawn(async move { client(spec, dial, w, rec, budget, deadline).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn client(
    spec: ClientSpec,
    dial: BTreeMap<Addr, Addr>,
    w: Workload,
    rec: Arc<Recorder>,
    budget: Arc<AtomicU64>,
    deadline: Instant,
) {
    let mut rng = Rng::new(w.seed ^ spec.id.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let policy = if spec.primary {
        ReadPolicy::Primary
    } else {
        ReadPolicy::Sticky
    };
    let mut opts = GroupOptions::new(policy, w.timeout, w.deadline);
    opts.follow = spec.primary;
    opts.dial = dial;
    let mut group = GroupClient::new(vec![Addr::local(spec.server)], opts);
    // Learn the group before the first operation, so that the first write is tagged and the
    // first read of the primary's lane is linearizable. If nobody answers now, the first
    // request asks again.
    group.learn().await;
    let mut counter: u32 = 0;
    while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < w.max_ops {
        let write = rng.next_f64() < w.write_ratio;
        let server = Some(group.server().port());
        let outcome = if write {
            // A client that ran out of values stops rather than write one twice.
            let Some(next) = counter.checked_add(1) else {
                break;
            };
            counter = next;
            let v = value(w.tag, spec.id, counter);
            let token = rec.invoke(spec.id, server, OpKind::Write, Some(v));
            let outcome = match group.write(v).await {
                Ok(reply) => match Conclusion::of(true, &Ok(reply)) {
                    Conclusion::Done(_) => Outcome::Ok,
                    Conclusion::NotApplied => Outcome::Fail,
                    Conclusion::Unknown => Outcome::Unknown,
                },
                Err(e) if e.maybe_applied() => Outcome::Unknown,
                Err(_) => Outcome::Fail,
            };
            rec.complete(token, outcome, None);
            outcome
        } else {
            let token = rec.invoke(spec.id, server, OpKind::Read, None);
            let answer = group.read().await;
            match answer.ok().and_then(|r| wire::parse_value_reply(&r)) {
                Some(v) if group.reads_linearizable() => {
                    rec.complete_linearizable_read(token, v);
                    Outcome::Ok
                }
                Some(v) => {
                    rec.complete(token, Outcome::Ok, Some(v));
                    Outcome::Ok
                }
                None => {
                    rec.complete(token, Outcome::Fail, None);
                    Outcome::Fail
                }
            }
        };
        if outcome != Outcome::Ok {
            // Back off a little so a server that cannot serve is not hammered.
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
