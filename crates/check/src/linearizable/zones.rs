//! The zone check of Gibbons and Korach for a register whose written values are unique; see the
//! parent module for why it is right.
//!
//! Times are first replaced by ranks: every invocation and return gets its own position in one
//! order of all events, so that "returned before invoked" is a strict comparison of ranks that
//! says exactly what the search's precedence rule says, ties included. Then each cluster (a
//! write and the reads of its value) is summed up by its earliest return `a` and its latest
//! invocation `b`, and two clusters conflict when `a(C) < b(D)` and `a(D) < b(C)`.

use std::collections::HashMap;

use super::{Method, Precedes, Stats, Verdict, Violation, WhySearch};
use crate::history::{ClientId, History, IndexedOp, Key, OpKind, Outcome, Value};

/// Rank of the virtual write of the initial value, invoked and returned before every event.
const NEG_INF: u64 = 0;
/// Return rank of an operation that may take effect at any later time (an unknown write).
const INF: u64 = u64::MAX;
/// Every finite rank is at most this: "everything that happened".
const ALL: u64 = u64::MAX - 1;
/// The cluster of the initial value.
const INITIAL: usize = 0;

/// Decides linearizability of `ops` (positions in `history`, in invocation order: reads and
/// writes of the one register `key`, which holds `initial` at the start), or says why it cannot
/// and the search must.
pub(super) fn check(
    history: &History,
    key: Option<&Key>,
    initial: Option<Value>,
    ops: &[usize],
) -> Result<Verdict, WhySearch> {
    let mut cluster_of_value: HashMap<Option<Value>, usize> = HashMap::new();
    cluster_of_value.insert(initial, INITIAL);
    let mut write_of: Vec<Option<usize>> = vec![None];
    for (k, &i) in ops.iter().enumerate() {
        let op = &history.ops[i];
        if op.kind == OpKind::Write {
            let value = op.value.unwrap_or_default();
            if cluster_of_value
                .insert(Some(value), write_of.len())
                .is_some()
            {
                return Err(WhySearch::RepeatedValue { value });
            }
            write_of.push(Some(k));
        }
    }
    let times = Times::new(history, ops)?;
    let cluster = ops
        .iter()
        .map(|&i| cluster_of_value.get(&history.ops[i].value))
        .map(|c| c.copied())
        .collect();
    let zones = Zones {
        history,
        key,
        initial,
        ops,
        times,
        cluster,
        write_of,
    };
    let bad_read = zones.first_bad_read();
    let conflict = zones.conflict_by(ALL).map(|_| zones.first_conflict_time());
    // Whichever shows first in time is reported.
    Ok(match (bad_read, conflict) {
        (None, None) => Verdict::Ok(Stats {
            ops: ops.len(),
            states: 0,
            method: Method::Zones,
            parts: 1,
            searched: 0,
        }),
        (Some(read), None) => Verdict::Violation(zones.bad_read(read)),
        (Some(read), Some(t)) if zones.times.ret[read] <= t => {
            Verdict::Violation(zones.bad_read(read))
        }
        (_, Some(t)) => Verdict::Violation(zones.explain_conflict(t)),
    })
}

/// Each operation's invocation and return as ranks in one order of all events.
struct Times {
    /// Rank of each operation's invocation (from 1).
    inv: Vec<u64>,
    /// Rank of each operation's return, [`INF`] for an unknown write.
    ret: Vec<u64>,
    /// The event at each rank (from 1): `2k` for the invocation of operation `k`, `2k + 1` for
    /// its return.
    events: Vec<u64>,
}

impl Times {
    /// Ranks the events by time. At one instant the search's rule is: operations of different
    /// clients are concurrent (invocations go before returns), but a client's operation that
    /// returned then is before its next one invoked then (a *handoff*). So an instant's events
    /// go in three groups: invocations that are no handoff's, then the handoff chain in the
    /// client's order, then the other returns. With two chains at one instant no order works
    /// (each chain's return must come before its own invocation and after the other's), and
    /// the search has to decide.
    fn new(history: &History, ops: &[usize]) -> Result<Self, WhySearch> {
        let n = ops.len();
        let op = |k: usize| &history.ops[ops[k]];
        let ret_ns = |k: usize| match op(k).outcome {
            Outcome::Ok => op(k).return_ns,
            _ => None,
        };
        let mut handoff_in = vec![false; n];
        let mut handoff_out = vec![false; n];
        let mut last: HashMap<ClientId, usize> = HashMap::new();
        for (k, handed) in handoff_in.iter_mut().enumerate() {
            if let Some(p) = last.insert(op(k).client, k)
                && ret_ns(p) == Some(op(k).invoke_ns)
            {
                *handed = true;
                handoff_out[p] = true;
            }
        }
        // A chain starts at a handoff's return that is not itself inside a chain of the same
        // instant (a zero-length operation handed to and handing on).
        let mut heads: Vec<u64> = (0..n)
            .filter(|&k| handoff_out[k] && !(handoff_in[k] && ret_ns(k) == Some(op(k).invoke_ns)))
            .filter_map(ret_ns)
            .collect();
        heads.sort_unstable();
        if let Some(pair) = heads.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(WhySearch::SimultaneousHandoffs { at_ns: pair[0] });
        }
        let key = |time: u64, group: u128, event: usize| {
            (u128::from(time) << 64) | (group << 62) | event as u128
        };
        let mut keys: Vec<u128> = Vec::with_capacity(2 * n);
        for k in 0..n {
            keys.push(key(op(k).invoke_ns, u128::from(handoff_in[k]), 2 * k));
            if let Some(r) = ret_ns(k) {
                keys.push(key(r, if handoff_out[k] { 1 } else { 2 }, 2 * k + 1));
            }
        }
        keys.sort_unstable();
        let mut times = Times {
            inv: vec![0; n],
            ret: vec![INF; n],
            events: Vec::with_capacity(keys.len() + 1),
        };
        times.events.push(u64::MAX);
        for (i, key) in keys.iter().enumerate() {
            let event = (key & ((1 << 62) - 1)) as u64;
            let (k, is_return) = ((event / 2) as usize, event % 2 == 1);
            let rank = i as u64 + 1;
            if is_return {
                times.ret[k] = rank;
            } else {
                times.inv[k] = rank;
            }
            times.events.push(event);
        }
        Ok(times)
    }
}

/// The clusters of a history with unique values.
struct Zones<'h> {
    history: &'h History,
    /// The register.
    key: Option<&'h Key>,
    /// What it holds at the start.
    initial: Option<Value>,
    /// History positions of the operations, in invocation order.
    ops: &'h [usize],
    times: Times,
    /// Cluster of each operation: that of the value written or read; `None` for a read of a
    /// value no checked write wrote.
    cluster: Vec<Option<usize>>,
    /// The write of each cluster (an operation), `None` for the initial value's.
    write_of: Vec<Option<usize>>,
}

impl Zones<'_> {
    fn indexed(&self, k: usize) -> IndexedOp {
        IndexedOp::new(self.history, self.ops[k])
    }

    fn is_read(&self, k: usize) -> bool {
        self.history.ops[self.ops[k]].kind == OpKind::Read
    }

    fn value_of(&self, c: usize) -> Option<Value> {
        match self.write_of[c] {
            Some(w) => self.history.ops[self.ops[w]].value,
            None => self.initial,
        }
    }

    /// The read that returned first among those with no write of their value invoked before
    /// they returned.
    fn first_bad_read(&self) -> Option<usize> {
        (0..self.ops.len())
            .filter(|&k| self.is_read(k))
            .filter(|&k| match self.cluster[k] {
                None => true,
                Some(c) => self.write_of[c].is_some_and(|w| self.times.ret[k] < self.times.inv[w]),
            })
            .min_by_key(|&k| self.times.ret[k])
    }

    fn bad_read(&self, k: usize) -> Violation {
        let read = self.indexed(k);
        match self.cluster[k].and_then(|c| self.write_of[c]) {
            Some(w) => Violation::ReadBeforeWrite {
                read,
                write: self.indexed(w),
            },
            None => {
                let value = read.op.value;
                let unchecked_write = self
                    .history
                    .ops
                    .iter()
                    .position(|op| op.writes_value(self.key, value))
                    .map(|i| IndexedOp::new(self.history, i));
                Violation::ReadOfUnwrittenValue {
                    read,
                    unchecked_write,
                }
            }
        }
    }

    /// Each cluster's earliest return `a` and latest invocation `b` among the events up to rank
    /// `t`; a cluster none of whose operations has returned has `a = INF`.
    fn extents(&self, t: u64) -> (Vec<u64>, Vec<u64>) {
        let clusters = self.write_of.len();
        let mut a = vec![INF; clusters];
        let mut b = vec![NEG_INF; clusters];
        a[INITIAL] = NEG_INF;
        for (k, c) in self.cluster.iter().enumerate() {
            let Some(c) = *c else { continue };
            if self.times.inv[k] <= t {
                b[c] = b[c].max(self.times.inv[k]);
                if self.times.ret[k] <= t {
                    a[c] = a[c].min(self.times.ret[k]);
                }
            }
        }
        (a, b)
    }

    /// Two clusters each of which must come before the other, judging by the events up to rank
    /// `t`: two overlapping forward zones, or a backward zone inside a forward one.
    fn conflict_by(&self, t: u64) -> Option<(usize, usize)> {
        let (a, b) = self.extents(t);
        let mut forward: Vec<usize> = (0..a.len()).filter(|&c| a[c] < b[c]).collect();
        forward.sort_unstable_by_key(|&c| a[c]);
        // The forward zone reaching furthest right so far overlaps the next one if any does.
        let mut widest: Option<usize> = None;
        for &c in &forward {
            if let Some(w) = widest {
                if a[c] < b[w] {
                    return Some((w, c));
                }
                if b[c] > b[w] {
                    widest = Some(c);
                }
            } else {
                widest = Some(c);
            }
        }
        // The forward zones are now disjoint, so only the last one starting left of a backward
        // zone can hold it.
        for d in 0..a.len() {
            if !(b[d] < a[d] && a[d] < INF) {
                continue;
            }
            let left = forward.partition_point(|&c| a[c] < b[d]);
            if let Some(&c) = left.checked_sub(1).map(|i| &forward[i])
                && a[d] < b[c]
            {
                return Some((c, d));
            }
        }
        None
    }

    /// The earliest rank by which the events already contain a conflict (there is one by the
    /// end). Conflicts only ever appear, never go away, as events are added, so a binary
    /// search finds it.
    fn first_conflict_time(&self) -> u64 {
        let (mut lo, mut hi) = (1, self.times.events.len() as u64 - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.conflict_by(mid).is_some() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// Explains the conflict that appears at rank `t`. Only an invocation adds orders (an
    /// operation `y` of cluster `D` invoked after something of another cluster `C` returned
    /// puts `C` before `D`), so the new cycle is `C → D → C` for some `C`; the one chosen has
    /// the operation that returned last before `y`, to keep the story close to where it
    /// happened.
    fn explain_conflict(&self, t: u64) -> Violation {
        let event = self.times.events[t as usize];
        let y = (event / 2) as usize;
        let (a, b) = self.extents(t);
        let chosen = match (event.is_multiple_of(2), self.cluster[y]) {
            (true, Some(d)) => {
                // (return rank of the witness, its cluster, the witness)
                let mut best: Option<(u64, usize, Option<usize>)> = None;
                if d != INITIAL && a[d] < b[INITIAL] {
                    best = Some((NEG_INF, INITIAL, None));
                }
                for k in 0..self.ops.len() {
                    let r = self.times.ret[k];
                    if r >= t || best.is_some_and(|(best_r, ..)| best_r >= r) {
                        continue;
                    }
                    if let Some(c) = self.cluster[k]
                        && c != d
                        && a[d] < b[c]
                    {
                        best = Some((r, c, Some(k)));
                    }
                }
                best.map(|(_, c, x)| (c, d, x.map(|x| (x, y))))
            }
            _ => None,
        };
        let (c, d, first_because) = chosen
            .or_else(|| self.conflict_by(t).map(|(c, d)| (c, d, None)))
            .expect("a conflict exists at the time found");
        let first = self.precedes(c, d, first_because, t);
        let second = self.precedes(d, c, None, t);
        Violation::Cycle {
            first: Box::new(first),
            second: Box::new(second),
        }
    }

    /// Why cluster `c` comes before cluster `d` by rank `t`: `because` if given, else the
    /// latest invocation of `d` and the latest return of `c` before it.
    fn precedes(&self, c: usize, d: usize, because: Option<(usize, usize)>, t: u64) -> Precedes {
        let because = if c == INITIAL {
            None
        } else {
            because.or_else(|| {
                let in_d = |k: &usize| self.cluster[*k] == Some(d) && self.times.inv[*k] <= t;
                let y = (0..self.ops.len())
                    .filter(in_d)
                    .max_by_key(|&k| self.times.inv[k])?;
                let x = (0..self.ops.len())
                    .filter(|&k| {
                        self.cluster[k] == Some(c) && self.times.ret[k] < self.times.inv[y]
                    })
                    .max_by_key(|&k| self.times.ret[k])?;
                Some((x, y))
            })
        };
        Precedes {
            key: self.key.cloned(),
            earlier: self.value_of(c),
            earlier_write: self.write_of[c].map(|w| self.indexed(w)),
            later: self.value_of(d),
            because: because.map(|(x, y)| (self.indexed(x), self.indexed(y))),
        }
    }
}
