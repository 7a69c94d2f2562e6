//! Recording a history while a workload runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{ClientId, History, Op, OpKind, Outcome, Value};

/// Distinguishes recorders so that a token is only ever completed by the recorder that issued it.
static NEXT_RECORDER_ID: AtomicU64 = AtomicU64::new(0);

/// Collects operations from many concurrent clients into one [`History`].
///
/// Share it behind an `Arc`; every method takes `&self`. Each call holds a mutex only long enough
/// to read the clock and push or update one entry, so it is cheap enough to call around every
/// request, from any number of tokio tasks or threads (it never blocks across an `.await`).
///
/// Times are nanoseconds since the recorder was created, and every recorded event gets a distinct,
/// strictly increasing time: two events that read the same clock tick would otherwise be
/// ambiguous about which came first, and real-time order is what linearizability is about.
///
/// ```
/// use ditto_check::history::{OpKind, Outcome, Recorder};
/// let rec = Recorder::new();
/// let t = rec.invoke(1, Some(7001), OpKind::Write, Some(5));
/// rec.complete(t, Outcome::Ok, None);
/// let t = rec.invoke(1, Some(7001), OpKind::Read, None);
/// rec.complete(t, Outcome::Ok, Some(5));
/// let _lost = rec.invoke(2, Some(7002), OpKind::Write, Some(6)); // never completed
/// let history = rec.history();
/// assert_eq!(history.len(), 3);
/// assert_eq!(history.ops[2].outcome, Outcome::Unknown);
/// ```
#[derive(Debug)]
pub struct Recorder {
    id: u64,
    start: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ops: Vec<Op>,
    last_ns: Option<u64>,
}

impl State {
    /// The current time, bumped past the last recorded one so that times are unique.
    fn tick(&mut self, start: Instant) -> u64 {
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let ns = match self.last_ns {
            Some(last) if now <= last => last.saturating_add(1),
            _ => now,
        };
        self.last_ns = Some(ns);
        ns
    }
}

/// Names one invoked operation until it is completed; see [`Recorder::complete`].
///
/// Dropping a token without completing it leaves the operation `unknown` with no return time,
/// which is exactly right for a request abandoned by a cancelled task.
#[derive(Debug)]
#[must_use = "complete the operation with Recorder::complete, or it is recorded as unknown"]
pub struct Token {
    recorder: u64,
    index: usize,
}

impl Recorder {
    /// A recorder whose time zero is now.
    pub fn new() -> Self {
        Self {
            id: NEXT_RECORDER_ID.fetch_add(1, Ordering::Relaxed),
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Records that `client` sends a request to `server`: call it just before sending.
    ///
    /// `value` is the value written for a write and `None` for a read. Until completed, the
    /// operation counts as `unknown` with no return time.
    pub fn invoke(
        &self,
        client: ClientId,
        server: Option<u16>,
        kind: OpKind,
        value: Option<Value>,
    ) -> Token {
        self.invoke_op(Op {
            client,
            server,
            kind,
            value,
            ..Op::default()
        })
    }

    /// Records that a client sends the request `op` describes, of any kind (keys, incr, cas,
    /// mset, mget): call it just before sending. Only what the client asked is kept (client,
    /// server, kind, keys and arguments); the time is now, and what it returned is left for
    /// [`Recorder::complete`] or [`Recorder::complete_mget`].
    ///
    /// ```
    /// use ditto_check::history::{Op, Outcome, Recorder};
    /// let rec = Recorder::new();
    /// let t = rec.invoke_op(Op::incr(1, "hits", 2, 0, 0, 0).at(7001));
    /// rec.complete(t, Outcome::Ok, Some(2));
    /// let t = rec.invoke_op(Op::mget(1, [("hits", None), ("misses", None)], 0, 0));
    /// rec.complete_mget(t, Outcome::Ok, vec![Some(2), None]);
    /// let history = rec.history();
    /// assert_eq!(history.ops[0].to_string().split(" (").next(), Some("client 1 incr hits by 2 -> 2"));
    /// history.validate().unwrap();
    /// ```
    pub fn invoke_op(&self, op: Op) -> Token {
        let mut op = op.never_returned();
        let mut state = self.lock();
        op.invoke_ns = state.tick(self.start);
        let index = state.ops.len();
        state.ops.push(op);
        Token {
            recorder: self.id,
            index,
        }
    }

    /// Records what the client learned: call it just after the answer arrives, or when the
    /// client gives up (`Outcome::Unknown`, which keeps the time it gave up).
    ///
    /// `read_value` is what a read returned (`None` for a key that held nothing), the sum an
    /// incr returned, or a cas's answer (1 swapped, 0 not); it is ignored for writes and msets,
    /// and for operations whose outcome is not `Ok`.
    pub fn complete(&self, token: Token, outcome: Outcome, read_value: Option<Value>) {
        self.finish(token, outcome, |op| {
            if matches!(op.kind, OpKind::Read | OpKind::Incr | OpKind::Cas) {
                op.value = read_value;
            }
        });
    }

    /// Like [`Recorder::complete`], for an mget: `values` are what it returned, one per key
    /// (`None` for a key that held nothing); ignored unless the outcome is `Ok`.
    pub fn complete_mget(&self, token: Token, outcome: Outcome, values: Vec<Option<Value>>) {
        self.finish(token, outcome, |op| {
            if op.kind == OpKind::MGet {
                op.values = values;
            }
        });
    }

    /// Records the return time and outcome of the operation `token` names, and, if it is ok,
    /// what it returned (by `set_result`).
    fn finish(&self, token: Token, outcome: Outcome, set_result: impl FnOnce(&mut Op)) {
        debug_assert_eq!(token.recorder, self.id, "token from another recorder");
        if token.recorder != self.id {
            return;
        }
        let mut state = self.lock();
        let return_ns = state.tick(self.start);
        let Some(op) = state.ops.get_mut(token.index) else {
            return;
        };
        op.return_ns = Some(return_ns);
        if outcome == Outcome::Ok {
            set_result(op);
        }
        *op = std::mem::take(op).with_outcome(outcome);
    }

    /// Records a read that returned `value` from the primary under its lease (an answer to
    /// `READ:linearizable`): the linearizability check takes it with the writes.
    pub fn complete_linearizable_read(&self, token: Token, value: Value) {
        let (index, ours) = (token.index, token.recorder == self.id);
        self.complete(token, Outcome::Ok, Some(value));
        if !ours {
            return;
        }
        let mut state = self.lock();
        if let Some(op) = state.ops.get_mut(index) {
            op.linearizable = op.kind == OpKind::Read;
        }
    }

    /// A snapshot of everything recorded so far, sorted by invocation time. Operations not yet
    /// completed appear as `unknown` with no return time.
    pub fn history(&self) -> History {
        let mut ops = self.lock().ops.clone();
        ops.sort_by_key(|op| op.invoke_ns);
        History::new(ops)
    }

    /// A poisoned lock only means another thread panicked between two plain field updates;
    /// the record is still consistent, so keep recording.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn recorder_and_token_cross_threads() {
        assert_send_sync::<Recorder>();
        assert_send_sync::<Token>();
    }

    #[test]
    fn records_outcomes_and_values() {
        let rec = Recorder::new();
        let w = rec.invoke(1, Some(7000), OpKind::Write, Some(5));
        let r = rec.invoke(2, Some(7001), OpKind::Read, Some(99));
        let f = rec.invoke(3, None, OpKind::Read, None);
        rec.complete(w, Outcome::Ok, Some(42));
        rec.complete(r, Outcome::Ok, Some(5));
        rec.complete(f, Outcome::Fail, Some(7));
        let _abandoned = rec.invoke(4, None, OpKind::Write, Some(6));
        let h = rec.history();
        assert_eq!(h.ops[0].value, Some(5), "a write keeps the value written");
        assert_eq!(h.ops[1].value, Some(5), "a read takes the value returned");
        assert_eq!(h.ops[2].value, None, "a failed read has no value");
        assert_eq!(h.ops[3].outcome, Outcome::Unknown);
        assert_eq!(h.ops[3].return_ns, None);
        h.validate().unwrap();
    }

    #[test]
    fn marks_reads_answered_under_the_primary_lease() {
        let rec = Recorder::new();
        let w = rec.invoke(1, Some(7000), OpKind::Write, Some(5));
        rec.complete(w, Outcome::Ok, None);
        let r = rec.invoke(1, Some(7000), OpKind::Read, None);
        rec.complete_linearizable_read(r, 5);
        let plain = rec.invoke(2, Some(7001), OpKind::Read, None);
        rec.complete(plain, Outcome::Ok, Some(5));
        let h = rec.history();
        assert!(h.ops[1].linearizable && h.ops[1].value == Some(5));
        assert!(!h.ops[0].linearizable && !h.ops[2].linearizable);
        let mut text = Vec::new();
        h.write_jsonl(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches("\"linearizable\":true").count(), 1, "{text}");
        assert!(!text.contains("\"linearizable\":false"), "{text}");
        let back = History::from_jsonl(text.as_bytes()).unwrap();
        assert_eq!(back.ops, h.ops);
    }

    #[test]
    fn times_are_unique_and_ordered_across_threads() {
        let rec = Arc::new(Recorder::new());
        let threads: Vec<_> = (0..4)
            .map(|client| {
                let rec = Arc::clone(&rec);
                thread::spawn(move || {
                    for i in 0..500 {
                        let value = Some(client as i64 * 1000 + i + 1);
                        let t = rec.invoke(client, None, OpKind::Write, value);
                        rec.complete(t, Outcome::Ok, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let h = rec.history();
        assert_eq!(h.len(), 2000);
        let mut times: Vec<u64> = h.ops.iter().map(|op| op.invoke_ns).collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "sorted by invocation"
        );
        times.extend(h.ops.iter().filter_map(|op| op.return_ns));
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), 4000, "every event has its own time");
        h.validate().unwrap();
    }
}
