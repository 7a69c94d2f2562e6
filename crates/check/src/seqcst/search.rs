//! A memoized search for one order of a part's operations that keeps every process's program
//! order and in which every operation returns what the sequential model says: for the parts
//! the write-order graph cannot take (incr, cas, mset, mget, repeated values).
//!
//! Sequential consistency puts no real-time order between processes, so the operations that
//! may come next are exactly the next one of each process. The search takes one, applies it to
//! the part's registers, and backtracks on a dead end, never exploring the same (position in
//! every process, registers' values) twice. An operation that only observes (a read, an mget,
//! a cas that reported no swap) and fits is taken at once without trying the others: moving it
//! earlier in any order that works keeps the order working. It is exponential in the number of
//! processes at worst, so it gives up after a budget of states with an undecided verdict.

use std::collections::HashSet;

use super::processes::Processes;
use super::{Stats, Stuck, Undecided, Verdict, Violation};
use crate::history::{Held, History, IndexedOp, Outcome, Value};
use crate::model::{Call, Slot, State};
use crate::partition::Part;

/// Searches for an order of the operations of `part`, in the given processes, within
/// `max_states` states.
pub(super) fn run(
    history: &History,
    part: &Part,
    processes: &Processes,
    max_states: usize,
) -> Verdict {
    if part.is_single_key() {
        Search::<Option<Value>>::new(history, part, processes).run(max_states)
    } else {
        Search::<Box<[Option<Value>]>>::new(history, part, processes).run(max_states)
    }
}

/// The processes of a part, their operations compiled for the model.
struct Search<'h, S> {
    history: &'h History,
    part: &'h Part,
    /// Each process's operations (indices into `calls`), in program order. Only operations that
    /// count take part: failed ones and reads that did not return changed nothing and showed
    /// nothing.
    processes: Vec<Vec<usize>>,
    /// History position of each operation.
    index: Vec<usize>,
    calls: Vec<Call>,
    /// True for an `ok` operation that only observes.
    observer: Vec<bool>,
    /// True for an `unknown` operation, which may also never take effect. It is always the
    /// last of its process.
    optional: Vec<bool>,
    initial: S,
}

/// A memoized state: how far each process got, and the registers' values.
type Key<S> = (Box<[u32]>, S);

/// One operation taken, on the explicit stack.
struct Frame<S> {
    process: usize,
    /// The operation it took.
    op: usize,
    state_before: S,
    /// Taken as a fitting observer, the only choice tried at its node.
    forced: bool,
}

/// The longest order found so far; `stable` is how much of the current stack still equals it.
#[derive(Default)]
struct Longest {
    ops: Vec<usize>,
    stable: usize,
    /// The next operation of every unfinished process where it got stuck.
    stuck: Option<Vec<usize>>,
}

impl<'h, S: State> Search<'h, S> {
    fn new(history: &'h History, part: &'h Part, processes: &Processes) -> Self {
        let mut search = Self {
            history,
            part,
            processes: Vec::new(),
            index: Vec::new(),
            calls: Vec::new(),
            observer: Vec::new(),
            optional: Vec::new(),
            initial: S::from_values(&part.initial(history)),
        };
        for ops in processes.split(history, &part.ops) {
            let mut current: Vec<usize> = Vec::new();
            for i in ops {
                let op = &history.ops[i];
                let counts = match op.outcome {
                    Outcome::Ok => true,
                    Outcome::Unknown => op.kind.mutates(),
                    Outcome::Fail => false,
                };
                if counts {
                    let call = part.call(history, i);
                    current.push(search.calls.len());
                    search.index.push(i);
                    search
                        .observer
                        .push(op.outcome == Outcome::Ok && call.only_observes());
                    search.optional.push(op.outcome == Outcome::Unknown);
                    search.calls.push(call);
                }
            }
            if !current.is_empty() {
                search.processes.push(current);
            }
        }
        search
    }

    fn run(self, max_states: usize) -> Verdict {
        let n = self.processes.len();
        let mut pos: Vec<u32> = vec![0; n];
        let mut state = self.initial.clone();
        let mut required_left = self.optional.iter().filter(|&&o| !o).count();
        let mut stack: Vec<Frame<S>> = Vec::new();
        let mut seen: HashSet<Key<S>> = HashSet::new();
        let mut longest = Longest::default();
        // Where to resume at the current node: `None` on a first visit; after backtracking, the
        // process after the one just undone (`n` when no other may be tried).
        let mut resume: Option<usize> = None;
        loop {
            // Unknown operations need not take effect: once every other one has, the rest
            // may all be left out.
            if required_left == 0 {
                return Verdict::Ok(self.stats());
            }
            let forced = if resume.is_none() {
                (0..n).find(|&p| {
                    self.next(&pos, p)
                        .is_some_and(|k| self.observer[k] && self.calls[k].apply(&state).is_some())
                })
            } else {
                None
            };
            let mut p = forced.or(resume).unwrap_or(0);
            let mut next = None;
            while p < n {
                next = self.try_take(p, &mut pos, &state, &mut seen);
                if next.is_some() || forced.is_some() {
                    break;
                }
                p += 1;
            }
            if let Some(next_state) = next {
                if seen.len() > max_states {
                    return Verdict::Undecided(Undecided {
                        ops: self.calls.len(),
                        states: seen.len(),
                        longest_prefix: longest.ops.len().max(stack.len()),
                        keys: self.part.keys.clone(),
                    });
                }
                let k = self.processes[p][pos[p] as usize];
                if !self.optional[k] {
                    required_left -= 1;
                }
                pos[p] += 1;
                stack.push(Frame {
                    process: p,
                    op: k,
                    state_before: std::mem::replace(&mut state, next_state),
                    forced: forced.is_some(),
                });
                longest.grow(&stack);
                resume = None;
                continue;
            }
            if longest.stuck.is_none() && longest.stable == stack.len() {
                longest.stuck = Some((0..n).filter_map(|p| self.next(&pos, p)).collect());
            }
            let Some(frame) = stack.pop() else {
                return Verdict::Violation(Violation::Stuck(self.violation(longest)));
            };
            pos[frame.process] -= 1;
            if !self.optional[frame.op] {
                required_left += 1;
            }
            state = frame.state_before;
            resume = Some(if frame.forced { n } else { frame.process + 1 });
            longest.stable = longest.stable.min(stack.len());
        }
    }

    /// The next operation of process `p`, if it has one left.
    fn next(&self, pos: &[u32], p: usize) -> Option<usize> {
        self.processes[p].get(pos[p] as usize).copied()
    }

    /// The registers after the next operation of process `p`, if it has one that fits `state`
    /// and leads to a state not seen before.
    fn try_take(
        &self,
        p: usize,
        pos: &mut [u32],
        state: &S,
        seen: &mut HashSet<Key<S>>,
    ) -> Option<S> {
        let k = self.next(pos, p)?;
        let next_state = self.calls[k].apply(state)?;
        pos[p] += 1;
        let new = seen.insert((pos.into(), next_state.clone()));
        pos[p] -= 1;
        new.then_some(next_state)
    }

    fn stats(&self) -> Stats {
        let ops = || self.index.iter().map(|&i| &self.history.ops[i]);
        Stats {
            ops: self.part.ops.len(),
            writes: ops().filter(|op| op.kind.mutates()).count(),
            reads: ops().filter(|op| !op.kind.mutates()).count(),
            processes: self.processes.len(),
            edges: 0,
            parts: 1,
        }
    }

    /// Where the longest order got stuck: what the registers the stuck operations touch held
    /// after it, and which operations of it put it there.
    fn violation(&self, longest: Longest) -> Stuck {
        let indexed = |k: usize| IndexedOp::new(self.history, self.index[k]);
        let next = longest.stuck.unwrap_or_default();
        let mut touched: Vec<Slot> = next.iter().flat_map(|&k| self.calls[k].slots()).collect();
        touched.sort_unstable();
        touched.dedup();
        let mut set_by: Vec<Option<usize>> = vec![None; self.part.keys.len()];
        let mut state = self.initial.clone();
        for &k in &longest.ops {
            for slot in self.calls[k].sets(&state) {
                set_by[slot as usize] = Some(k);
            }
            state = self.calls[k].apply(&state).unwrap_or(state);
        }
        Stuck {
            checked: self.calls.len(),
            prefix: longest.ops.iter().map(|&k| self.index[k]).collect(),
            registers: touched
                .into_iter()
                .map(|slot| Held {
                    key: self.part.keys[slot as usize].clone(),
                    value: state.get(slot),
                    set_by: set_by[slot as usize].map(indexed),
                })
                .collect(),
            part: self.part.keys.clone(),
            next: next.into_iter().map(indexed).collect(),
        }
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
