//! The Wing–Gong search with Lowe's memoization, as in Porcupine, for the parts the zone check
//! cannot take: repeated values, incr and cas, several keys linked by mset and mget.
//!
//! Repeatedly pick an operation that may take effect next (one invoked before the earliest
//! pending return), apply it to the part's registers (the sequential model of
//! [`crate::model`]), and backtrack on a dead end, never exploring the same (set of operations
//! taken, registers' values) twice. An operation that only observes (a read, an mget, a cas
//! that reported no swap) and fits when it may take effect is taken at once without trying
//! alternatives (delaying it never helps), which removes most branching on real histories. The search keeps an explicit stack, so long
//! histories cannot overflow the thread's stack, and it gives up with [`Verdict::Exhausted`]
//! after a given number of states rather than running for ever.

use std::collections::{HashMap, HashSet};

use super::{Exhausted, Method, Stats, Stuck, Verdict, Violation, WhySearch};
use crate::history::{Held, History, IndexedOp, Outcome, Value};
use crate::model::{Call, Slot, State};
use crate::partition::Part;

/// Searches for a linearization of the operations of `part` (positions in `history`, in
/// invocation order).
pub(super) fn run(history: &History, part: &Part, max_states: usize, why: WhySearch) -> Verdict {
    if part.is_single_key() {
        Search::<Option<Value>>::new(history, part).run(max_states, why)
    } else {
        Search::<Box<[Option<Value>]>>::new(history, part).run(max_states, why)
    }
}

/// The search state. Operations are numbered `0..n` in invocation order; `n` is the sentinel
/// of two circular doubly-linked lists holding the operations not yet linearized, one in
/// invocation order (to enumerate candidates) and one in return order (whose head is the
/// earliest pending return). Taking an operation unlinks it from both; backtracking relinks it
/// in the reverse order, which restores the lists exactly (Knuth's dancing links).
struct Search<'h, S> {
    history: &'h History,
    part: &'h Part,
    /// History position of each operation.
    ops: &'h [usize],
    invoke: Vec<u64>,
    /// `u64::MAX` for an `unknown` operation.
    ret: Vec<u64>,
    /// What each operation does, and returned.
    calls: Vec<Call>,
    /// True for an `ok` operation that only observes: taken as soon as it fits.
    observer: Vec<bool>,
    /// The registers' values at the start.
    initial: S,
    /// The client's previous completed operation, which must be taken first.
    after: Vec<Option<usize>>,
    inv_next: Vec<usize>,
    inv_prev: Vec<usize>,
    ret_next: Vec<usize>,
    ret_prev: Vec<usize>,
    taken: Vec<u64>,
}

/// One linearized operation on the explicit stack, with what to restore when backtracking.
struct Frame<S> {
    op: usize,
    state_before: S,
    max_taken_before: Option<usize>,
    /// Taken as a fitting read, the only choice tried at its node.
    forced: bool,
}

/// A memoized state: all operations below `64 * start_word` taken, then the taken-bits from
/// there to the highest taken operation, and the registers' values. Only operations concurrent
/// with the earliest pending one are spelled out, which keeps keys short in long histories.
type Key<S> = (u32, S, Box<[u64]>);

/// The longest prefix found so far. `stable` is how much of the current stack still equals it,
/// so that growing it copies only what changed.
#[derive(Default)]
struct Longest {
    ops: Vec<usize>,
    stable: usize,
    stuck: Option<(Vec<usize>, usize)>,
}

impl<'h, S: State> Search<'h, S> {
    fn new(history: &'h History, part: &'h Part) -> Self {
        let ops = &part.ops;
        let n = ops.len();
        let op = |i: usize| &history.ops[ops[i]];
        let invoke: Vec<u64> = (0..n).map(|i| op(i).invoke_ns).collect();
        let ret: Vec<u64> = (0..n)
            .map(|i| match op(i).outcome {
                Outcome::Ok => op(i).return_ns.unwrap_or(u64::MAX),
                _ => u64::MAX,
            })
            .collect();
        let calls: Vec<Call> = ops.iter().map(|&i| part.call(history, i)).collect();
        let observer = (0..n)
            .map(|i| op(i).outcome == Outcome::Ok && calls[i].only_observes())
            .collect();
        let mut last_of_client = HashMap::new();
        let mut after = vec![None; n];
        for (i, slot) in after.iter_mut().enumerate() {
            *slot = last_of_client
                .insert(op(i).client, i)
                .filter(|&prev| ret[prev] != u64::MAX);
        }
        let mut by_return: Vec<usize> = (0..n).collect();
        by_return.sort_by_key(|&i| (ret[i], i));
        let by_invoke: Vec<usize> = (0..n).collect();
        let (inv_next, inv_prev) = circular_list(&by_invoke);
        let (ret_next, ret_prev) = circular_list(&by_return);
        Self {
            history,
            part,
            ops,
            invoke,
            ret,
            calls,
            observer,
            initial: S::from_values(&part.initial(history)),
            after,
            inv_next,
            inv_prev,
            ret_next,
            ret_prev,
            taken: vec![0; n.div_ceil(64)],
        }
    }

    fn run(mut self, max_states: usize, why: WhySearch) -> Verdict {
        let n = self.ops.len();
        let mut state: S = self.initial.clone();
        let mut max_taken: Option<usize> = None;
        let mut finite_left = self.ret.iter().filter(|&&r| r != u64::MAX).count();
        let mut stack: Vec<Frame<S>> = Vec::new();
        let mut seen: HashSet<Key<S>> = HashSet::new();
        let mut longest = Longest::default();
        // Where to resume at the current node: `None` on a first visit; after backtracking, the
        // candidate after the one just undone (`n` when no other candidate may be tried).
        let mut resume: Option<usize> = None;
        loop {
            // Unknown writes never have to be taken: once every completed operation is, the
            // rest may all be left out.
            if finite_left == 0 {
                return Verdict::Ok(Stats {
                    ops: n,
                    states: seen.len(),
                    method: Method::Search(why),
                    parts: 1,
                    searched: 1,
                });
            }
            let deadline = self.ret_next[n];
            let bound = self.ret[deadline];
            // A read that fits now may as well take effect now: any linearization that takes
            // it later stays valid with it moved here, as a read changes nothing and nothing
            // pending must precede it. So it is the only choice tried, which keeps the search
            // from branching on every read. The same holds for every operation that only
            // observes.
            let forced = if resume.is_none() {
                self.fitting_observer(bound, &state)
            } else {
                None
            };
            let mut c = resume.unwrap_or(self.inv_next[n]);
            let mut next = None;
            if let Some(read) = forced {
                c = read;
                next = self.try_take(read, &state, max_taken, &mut seen);
            } else {
                while c != n && self.invoke[c] <= bound {
                    next = self.try_take(c, &state, max_taken, &mut seen);
                    if next.is_some() {
                        break;
                    }
                    c = self.inv_next[c];
                }
            }
            if let Some((next_state, new_max)) = next {
                if seen.len() > max_states {
                    return Verdict::Exhausted(Exhausted {
                        ops: n,
                        states: seen.len(),
                        longest_prefix: longest.ops.len().max(stack.len()),
                        why,
                        keys: self.part.keys.clone(),
                    });
                }
                stack.push(Frame {
                    op: c,
                    state_before: state,
                    max_taken_before: max_taken,
                    forced: forced.is_some(),
                });
                self.unlink(c);
                state = next_state;
                max_taken = Some(new_max);
                if self.ret[c] != u64::MAX {
                    finite_left -= 1;
                }
                longest.grow(&stack);
                resume = None;
                continue;
            }
            if longest.stuck.is_none() && longest.stable == stack.len() {
                longest.stuck = Some((self.candidates(bound), deadline));
            }
            let Some(frame) = stack.pop() else {
                return Verdict::Violation(Violation::Stuck(self.violation(longest)));
            };
            self.relink(frame.op);
            self.set_taken(frame.op, false);
            state = frame.state_before;
            max_taken = frame.max_taken_before;
            if self.ret[frame.op] != u64::MAX {
                finite_left += 1;
            }
            resume = Some(if frame.forced {
                n
            } else {
                self.inv_next[frame.op]
            });
            longest.stable = longest.stable.min(stack.len());
        }
    }

    /// Marks `i` taken if it may take effect now, fits the registers, and leads to a state not
    /// seen before; returns the registers' new values and the highest taken operation.
    fn try_take(
        &mut self,
        i: usize,
        state: &S,
        max_taken: Option<usize>,
        seen: &mut HashSet<Key<S>>,
    ) -> Option<(S, usize)> {
        if !self.after[i].is_none_or(|p| self.is_taken(p)) {
            return None;
        }
        let next_state = self.calls[i].apply(state)?;
        let new_max = max_taken.map_or(i, |m| m.max(i));
        self.set_taken(i, true);
        if seen.insert(self.key(i, new_max, next_state.clone())) {
            Some((next_state, new_max))
        } else {
            self.set_taken(i, false);
            None
        }
    }

    /// An operation that only observes, may take effect now (invoked no later than `bound`,
    /// its client's previous operation taken) and fits `state`.
    fn fitting_observer(&self, bound: u64, state: &S) -> Option<usize> {
        let n = self.ops.len();
        let mut c = self.inv_next[n];
        while c != n && self.invoke[c] <= bound {
            if self.observer[c]
                && self.after[c].is_none_or(|p| self.is_taken(p))
                && self.calls[c].apply(state).is_some()
            {
                return Some(c);
            }
            c = self.inv_next[c];
        }
        None
    }

    /// The memo key after taking `i` (already marked taken).
    fn key(&self, i: usize, max_taken: usize, state: S) -> Key<S> {
        let n = self.ops.len();
        let first = self.inv_next[n];
        let first_pending = if first == i { self.inv_next[i] } else { first };
        let start_word = first_pending / 64;
        let end_word = max_taken / 64 + 1;
        let words = self.taken[start_word.min(end_word)..end_word].into();
        (start_word as u32, state, words)
    }

    /// Operations that could be taken now: invoked no later than `bound`.
    fn candidates(&self, bound: u64) -> Vec<usize> {
        let n = self.ops.len();
        let mut out = Vec::new();
        let mut c = self.inv_next[n];
        while c != n && self.invoke[c] <= bound {
            out.push(c);
            c = self.inv_next[c];
        }
        out
    }

    /// Where the longest prefix got stuck: what the registers the stuck operations touch held
    /// after it, and which operations of the prefix put it there.
    fn violation(&self, longest: Longest) -> Stuck {
        let indexed = |i: usize| IndexedOp::new(self.history, self.ops[i]);
        let (stuck, deadline) = longest.stuck.unwrap_or_default();
        let mut touched: Vec<Slot> = stuck
            .iter()
            .chain([&deadline])
            .flat_map(|&i| self.calls[i].slots())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let mut set_by: Vec<Option<usize>> = vec![None; self.part.keys.len()];
        let mut state = self.initial.clone();
        for &i in &longest.ops {
            for slot in self.calls[i].sets(&state) {
                set_by[slot as usize] = Some(i);
            }
            state = self.calls[i].apply(&state).unwrap_or(state);
        }
        Stuck {
            checked: self.ops.len(),
            prefix: longest.ops.iter().map(|&i| self.ops[i]).collect(),
            registers: touched
                .into_iter()
                .map(|slot| Held {
                    key: self.part.keys[slot as usize].clone(),
                    value: state.get(slot),
                    set_by: set_by[slot as usize].map(indexed),
                })
                .collect(),
            part: self.part.keys.clone(),
            stuck: stuck.into_iter().map(indexed).collect(),
            deadline: indexed(deadline),
        }
    }

    fn is_taken(&self, i: usize) -> bool {
        self.taken[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_taken(&mut self, i: usize, taken: bool) {
        if taken {
            self.taken[i / 64] |= 1 << (i % 64);
        } else {
            self.taken[i / 64] &= !(1 << (i % 64));
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, q) = (self.inv_prev[i], self.inv_next[i]);
        self.inv_next[p] = q;
        self.inv_prev[q] = p;
        let (p, q) = (self.ret_prev[i], self.ret_next[i]);
        self.ret_next[p] = q;
        self.ret_prev[q] = p;
    }

    fn relink(&mut self, i: usize) {
        let (p, q) = (self.inv_prev[i], self.inv_next[i]);
        self.inv_next[p] = i;
        self.inv_prev[q] = i;
        let (p, q) = (self.ret_prev[i], self.ret_next[i]);
        self.ret_next[p] = i;
        self.ret_prev[q] = i;
    }
}

impl Longest {
    fn grow<S>(&mut self, stack: &[Frame<S>]) {
        if stack.len() > self.ops.len() {
            self.ops.truncate(self.stable);
            self.ops.extend(stack[self.stable..].iter().map(|f| f.op));
            self.stable = stack.len();
            self.stuck = None;
        }
    }
}

/// `next` and `prev` arrays of a circular list of `order` with sentinel `order.len()`.
fn circular_list(order: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let n = order.len();
    let mut next = vec![n; n + 1];
    let mut prev = vec![n; n + 1];
    let mut last = n;
    for &i in order {
        next[last] = i;
        prev[i] = last;
        last = i;
    }
    next[last] = n;
    prev[n] = last;
    (next, prev)
}
