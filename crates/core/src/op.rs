//! The replicated state machine: operations and the state they act on.
//!
//! The log carries [`Op`]s rather than bare integers so that new operations (and, later, keys) are
//! a matter of adding a variant here, not of changing the replication protocol.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Position of an entry in the primary's log. Entry 1 is the first write; 0 is the initial state.
pub type Seq = u64;

/// One operation on the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Replace the value: the seed's `WRITE:v` / `UPDATE:v`.
    Set(i64),
}

impl Op {
    /// Parses the text form produced by [`Op`]'s `Display` (e.g. `SET 5`).
    pub fn parse(text: &str) -> Option<Op> {
        let (verb, arg) = text.split_once(' ')?;
        match verb {
            "SET" => arg.parse().ok().map(Op::Set),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Set(v) => write!(f, "SET {v}"),
        }
    }
}

/// The state every replica holds: one integer, initially 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Register {
    value: i64,
}

impl Register {
    /// A register holding `value`, as installed from a snapshot.
    pub fn new(value: i64) -> Register {
        Register { value }
    }

    /// The value a `READ` returns.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Applies `op`. Every replica applies the same ops in the same order and so holds the same
    /// value after the same sequence number.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Set(v) => self.value = *v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_text_round_trips() {
        for v in [0, -1, 7, i64::MIN, i64::MAX] {
            let op = Op::Set(v);
            assert_eq!(Op::parse(&op.to_string()), Some(op));
        }
        assert_eq!(Op::parse("SET x"), None);
        assert_eq!(Op::parse("ADD 1"), None);
        assert_eq!(Op::parse("SET"), None);
    }

    #[test]
    fn register_applies_sets_in_order() {
        let mut r = Register::default();
        assert_eq!(r.value(), 0);
        r.apply(&Op::Set(3));
        r.apply(&Op::Set(-4));
        assert_eq!(r.value(), -4);
    }
}
