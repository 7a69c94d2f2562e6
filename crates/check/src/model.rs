//! The sequential specification the searches hold a history to: registers that each hold a
//! value or nothing, and what every kind of operation does to them and returns.
//!
//! Operations are compiled once into [`Call`]s that name registers by their slot in the part
//! being checked, so that the searches never look at keys (strings) or fields again. A part of
//! one register keeps its state in an `Option<Value>`, a part of several in a boxed slice: the
//! common case of single-key parts copies eight bytes a step, not an allocation.

use std::hash::Hash;

use crate::history::{Key, Op, OpKind, Outcome, Value};

/// A register's position in the state of a part.
pub(crate) type Slot = u32;

/// What registers hold at one point of an order: a value, or `None` for nothing.
pub(crate) trait State: Clone + Eq + Hash {
    /// A state of `n` registers, with the given initial values.
    fn from_values(values: &[Option<Value>]) -> Self;
    /// What register `slot` holds.
    fn get(&self, slot: Slot) -> Option<Value>;
    /// Sets register `slot` to `value`.
    fn set(&mut self, slot: Slot, value: Value);
}

/// The state of a part of one register (slot 0).
impl State for Option<Value> {
    fn from_values(values: &[Option<Value>]) -> Self {
        values.first().copied().flatten()
    }

    fn get(&self, _slot: Slot) -> Option<Value> {
        *self
    }

    fn set(&mut self, _slot: Slot, value: Value) {
        *self = Some(value);
    }
}

/// The state of a part of several registers, linked by multi-key operations.
impl State for Box<[Option<Value>]> {
    fn from_values(values: &[Option<Value>]) -> Self {
        values.into()
    }

    fn get(&self, slot: Slot) -> Option<Value> {
        self[slot as usize]
    }

    fn set(&mut self, slot: Slot, value: Value) {
        self[slot as usize] = Some(value);
    }
}

/// One operation as the model applies it: its registers, its arguments and, where the client
/// learned it, what it returned (`None` where the outcome left that unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Returned `value`: fits only a state where the register holds it.
    Read { slot: Slot, value: Option<Value> },
    /// Sets the register.
    Write { slot: Slot, value: Value },
    /// Adds `by` (to 0 if the register holds nothing); fits if the sum is `sum`, when known.
    Incr {
        slot: Slot,
        by: Value,
        sum: Option<Value>,
    },
    /// Sets `new` if the register holds `expected`; fits if that agrees with `swapped`, when
    /// known.
    Cas {
        slot: Slot,
        expected: Option<Value>,
        new: Value,
        swapped: Option<bool>,
    },
    /// Sets every register of the pairs, in order.
    MSet { pairs: Box<[(Slot, Value)]> },
    /// Fits only a state where every register holds the value paired with it.
    MGet { reads: Box<[(Slot, Option<Value>)]> },
}

impl Call {
    /// Compiles `op` (which has passed [`History::validate_structure`]), naming its registers by
    /// `slot_of`. Results are taken only from `ok` operations.
    ///
    /// [`History::validate_structure`]: crate::History::validate_structure
    pub(crate) fn new(op: &Op, mut slot_of: impl FnMut(Option<&Key>) -> Slot) -> Self {
        let ok = op.outcome == Outcome::Ok;
        let slot = if op.kind.is_multi_key() {
            0
        } else {
            slot_of(op.key.as_ref())
        };
        match op.kind {
            OpKind::Read => Call::Read {
                slot,
                value: op.value,
            },
            OpKind::Write => Call::Write {
                slot,
                value: op.value.unwrap_or_default(),
            },
            OpKind::Incr => Call::Incr {
                slot,
                by: op.by.unwrap_or_default(),
                sum: op.value.filter(|_| ok),
            },
            OpKind::Cas => Call::Cas {
                slot,
                expected: op.expected,
                new: op.new.unwrap_or_default(),
                swapped: op.value.filter(|_| ok).map(|v| v == 1),
            },
            OpKind::MSet => Call::MSet {
                pairs: op
                    .keys
                    .iter()
                    .zip(&op.values)
                    .map(|(k, v)| (slot_of(Some(k)), v.unwrap_or_default()))
                    .collect(),
            },
            OpKind::MGet => Call::MGet {
                reads: op
                    .keys
                    .iter()
                    .zip(&op.values)
                    .map(|(k, &v)| (slot_of(Some(k)), v))
                    .collect(),
            },
        }
    }

    /// The state after the call, or `None` if what it returned cannot come from `state`.
    pub(crate) fn apply<S: State>(&self, state: &S) -> Option<S> {
        match *self {
            Call::Read { slot, value } => (state.get(slot) == value).then(|| state.clone()),
            Call::Write { slot, value } => {
                let mut next = state.clone();
                next.set(slot, value);
                Some(next)
            }
            Call::Incr { slot, by, sum } => match state.get(slot).unwrap_or(0).checked_add(by) {
                Some(total) if sum.is_none_or(|s| s == total) => {
                    let mut next = state.clone();
                    next.set(slot, total);
                    Some(next)
                }
                Some(_) => None,
                // Refused, as Redis refuses an overflow: only an incr that did not report a sum
                // can have met it, and it changed nothing.
                None => sum.is_none().then(|| state.clone()),
            },
            Call::Cas {
                slot,
                expected,
                new,
                swapped,
            } => {
                let swaps = state.get(slot) == expected;
                if swapped.is_some_and(|s| s != swaps) {
                    return None;
                }
                let mut next = state.clone();
                if swaps {
                    next.set(slot, new);
                }
                Some(next)
            }
            Call::MSet { ref pairs } => {
                let mut next = state.clone();
                for &(slot, value) in pairs.iter() {
                    next.set(slot, value);
                }
                Some(next)
            }
            Call::MGet { ref reads } => reads
                .iter()
                .all(|&(slot, value)| state.get(slot) == value)
                .then(|| state.clone()),
        }
    }

    /// True if the call leaves every state it fits unchanged: a read, an mget, a cas that
    /// reported no swap (or one that swapped a value for itself). Such a call may be taken the
    /// moment it fits without trying other orders, which is what keeps the searches from
    /// branching on every read.
    pub(crate) fn only_observes(&self) -> bool {
        match *self {
            Call::Read { .. } | Call::MGet { .. } => true,
            Call::Cas {
                expected,
                new,
                swapped,
                ..
            } => swapped == Some(false) || (swapped == Some(true) && expected == Some(new)),
            Call::Write { .. } | Call::Incr { .. } | Call::MSet { .. } => false,
        }
    }

    /// The registers the call sets when applied to `state` (which it fits): the ones whose
    /// value afterwards is the call's doing.
    pub(crate) fn sets<S: State>(&self, state: &S) -> Vec<Slot> {
        match *self {
            Call::Write { slot, .. } => vec![slot],
            Call::Incr { slot, by, .. } => {
                let total = state.get(slot).unwrap_or(0).checked_add(by);
                total.map(|_| slot).into_iter().collect()
            }
            Call::Cas { slot, expected, .. } => (state.get(slot) == expected)
                .then_some(slot)
                .into_iter()
                .collect(),
            Call::MSet { ref pairs } => pairs.iter().map(|&(slot, _)| slot).collect(),
            Call::Read { .. } | Call::MGet { .. } => Vec::new(),
        }
    }

    /// The registers the call touches.
    pub(crate) fn slots(&self) -> Vec<Slot> {
        match *self {
            Call::Read { slot, .. }
            | Call::Write { slot, .. }
            | Call::Incr { slot, .. }
            | Call::Cas { slot, .. } => vec![slot],
            Call::MSet { ref pairs } => pairs.iter().map(|&(slot, _)| slot).collect(),
            Call::MGet { ref reads } => reads.iter().map(|&(slot, _)| slot).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Op) -> Call {
        Call::new(&op, |key| match key.map(String::as_str) {
            None | Some("a") => 0,
            Some(_) => 1,
        })
    }

    #[test]
    fn incr_counts_from_zero_and_refuses_overflow() {
        let incr = call(Op::incr(1, "a", 5, 5, 0, 1));
        assert_eq!(incr.apply(&None), Some(Some(5)));
        assert_eq!(incr.apply(&Some(1)), None, "1 + 5 is not 5");
        let unknown = call(Op::incr(1, "a", 1, 0, 0, 1).never_returned());
        assert_eq!(unknown.apply(&Some(Value::MAX)), Some(Some(Value::MAX)));
        assert_eq!(
            call(Op::incr(1, "a", 1, 0, 0, 1)).apply(&Some(Value::MAX)),
            None
        );
    }

    #[test]
    fn cas_swaps_exactly_when_the_register_holds_the_expected_value() {
        let from_nothing = call(Op::cas(1, "a", None, 3, true, 0, 1));
        assert_eq!(from_nothing.apply(&None), Some(Some(3)));
        assert_eq!(from_nothing.apply(&Some(3)), None, "it held something");
        let refused = call(Op::cas(1, "a", Some(2), 3, false, 0, 1));
        assert_eq!(refused.apply(&Some(1)), Some(Some(1)));
        assert_eq!(
            refused.apply(&Some(2)),
            None,
            "it held 2, so it would have swapped"
        );
        assert!(refused.only_observes() && !from_nothing.only_observes());
        let unknown = call(Op::cas(1, "a", Some(2), 3, true, 0, 1).never_returned());
        assert_eq!(unknown.apply(&Some(2)), Some(Some(3)));
        assert_eq!(unknown.apply(&Some(1)), Some(Some(1)));
    }

    #[test]
    fn mset_and_mget_see_every_key_at_once() {
        let state: Box<[Option<Value>]> = Box::new([None, None]);
        let mset = call(Op::mset(1, [("a", 1), ("b", 2)], 0, 1));
        let after = mset.apply(&state).unwrap();
        assert_eq!(&*after, &[Some(1), Some(2)]);
        let both = call(Op::mget(1, [("a", Some(1)), ("b", Some(2))], 0, 1));
        let half = call(Op::mget(1, [("a", Some(1)), ("b", None)], 0, 1));
        assert!(both.apply(&after).is_some() && both.apply(&state).is_none());
        assert!(half.apply(&after).is_none() && half.apply(&state).is_none());
        assert_eq!(mset.sets(&state), vec![0, 1]);
    }
}
