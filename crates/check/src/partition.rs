//! Splitting a history into parts that are checked one at a time, as Knossos and Porcupine do.
//!
//! Every key is a register of its own, and an operation on one key says nothing about another;
//! so the operations of each key can be checked on their own, in time (and state) that grows
//! with that key's operations only. Multi-key operations (mset, mget) tie their keys together:
//! the keys an operation touches at once, and all the keys linked to those, transitively, form
//! one part (a union–find over keys), checked as one map of registers. The single register of
//! histories without keys is a part of its own (no multi-key operation can name it).
//!
//! Linearizability composes: a history is linearizable exactly when each part is (Herlihy and
//! Wing's locality), so checking part by part decides the whole. Sequential consistency does
//! not compose; see [`seqcst`](crate::seqcst) for what checking it part by part means.

use std::collections::HashMap;
use std::fmt;

use crate::history::{History, Key, OpKind, Outcome, Value};
use crate::model::{Call, Slot};

/// Registers that no operation links to others outside, and the operations that touch them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The registers: keys, or `None` for the single register of histories without keys; sorted
    /// (the single register first).
    pub keys: Vec<Option<Key>>,
    /// Positions in the history of the operations that touch them, in increasing order.
    pub ops: Vec<usize>,
}

impl Part {
    /// True if the part is one register, which the fast checks may take.
    pub fn is_single_key(&self) -> bool {
        self.keys.len() == 1
    }

    /// The position of `key` in the part's state (0 for a key not in the part, which no
    /// operation of the part names).
    pub(crate) fn slot(&self, key: Option<&Key>) -> Slot {
        self.keys
            .binary_search_by(|k| k.as_ref().cmp(&key))
            .map_or(0, |s| s as Slot)
    }

    /// What each register holds before the first operation: the history's initial value for
    /// the single register, nothing for a key.
    pub(crate) fn initial(&self, history: &History) -> Vec<Option<Value>> {
        self.keys
            .iter()
            .map(|k| k.is_none().then_some(history.initial))
            .collect()
    }

    /// Operation `i` of the history as the model applies it to this part's state.
    pub(crate) fn call(&self, history: &History, i: usize) -> Call {
        Call::new(&history.ops[i], |key| self.slot(key))
    }
}

/// How many keys of a part to list in words; the rest are counted.
const LISTED: usize = 6;

/// Names registers in words: `the register`, `key k1`, `keys a, b and c`.
pub(crate) struct Registers<'a>(pub(crate) &'a [Option<Key>]);

impl fmt::Display for Registers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |k: &Option<Key>| k.as_deref().unwrap_or("(the single register)").to_owned();
        match self.0 {
            [] => write!(f, "no register"),
            [None] => write!(f, "the register"),
            [Some(key)] => write!(f, "key {key}"),
            keys => {
                let listed: Vec<String> = keys.iter().take(LISTED).map(name).collect();
                write!(f, "keys {}", listed.join(", "))?;
                if keys.len() > LISTED {
                    write!(f, " and {} more", keys.len() - LISTED)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Part {
    /// `key k1 (12 ops)`, `keys a, b (30 ops)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} ops)", Registers(&self.keys), self.ops.len())
    }
}

impl History {
    /// The parts the checkers take one at a time, in the order of their first operations.
    ///
    /// Keys are linked by the multi-key operations that may have taken effect or told the
    /// client something: those that are `ok`, and msets whose outcome is unknown. A failed
    /// operation, or an mget that did not return, links nothing (it changed nothing, and
    /// showed nothing), but is listed in the part of every key it names, as the history of
    /// that part includes it.
    pub fn parts(&self) -> Vec<Part> {
        let (linking, attached): (Vec<usize>, Vec<usize>) =
            (0..self.len()).partition(|&i| counts(self, i));
        split(self, &linking, &attached)
    }
}

/// True if operation `i` may have taken effect or told its client something.
pub(crate) fn counts(history: &History, i: usize) -> bool {
    let op = &history.ops[i];
    match op.outcome {
        Outcome::Ok => true,
        Outcome::Unknown => op.kind.mutates(),
        Outcome::Fail => false,
    }
}

/// The parts of the registers the `linking` operations touch, each operation in the part of its
/// registers; each `attached` operation is added to every part of a register it names, and
/// links nothing (one naming only registers no linking operation touches is in no part).
pub(crate) fn split(history: &History, linking: &[usize], attached: &[usize]) -> Vec<Part> {
    let mut sets = KeySets::default();
    let mut linking = linking.to_vec();
    linking.sort_unstable();
    let mut first_register = Vec::with_capacity(linking.len());
    for &i in &linking {
        let mut registers = history.ops[i].registers();
        let first = registers.next().map(|k| sets.intern(k));
        for key in registers {
            let id = sets.intern(key);
            sets.union(first.unwrap_or(id), id);
        }
        first_register.push(first);
    }
    let mut part_of_root: HashMap<usize, usize> = HashMap::new();
    let mut parts: Vec<Part> = Vec::new();
    for (&i, first) in linking.iter().zip(first_register) {
        let Some(first) = first else { continue };
        let root = sets.find(first);
        let p = *part_of_root.entry(root).or_insert_with(|| {
            parts.push(Part {
                keys: Vec::new(),
                ops: Vec::new(),
            });
            parts.len() - 1
        });
        parts[p].ops.push(i);
    }
    let mut extra = false;
    for &i in attached {
        let ids: Vec<usize> = history.ops[i]
            .registers()
            .filter_map(|k| sets.id(k))
            .collect();
        let mut named: Vec<usize> = ids
            .into_iter()
            .filter_map(|id| part_of_root.get(&sets.find(id)).copied())
            .collect();
        named.sort_unstable();
        named.dedup();
        for p in named {
            parts[p].ops.push(i);
            extra = true;
        }
    }
    for id in 0..sets.names.len() {
        let root = sets.find(id);
        if let Some(&p) = part_of_root.get(&root) {
            parts[p].keys.push(sets.names[id].cloned());
        }
    }
    for part in &mut parts {
        part.keys.sort_unstable();
        if extra {
            part.ops.sort_unstable();
        }
    }
    parts
}

/// Registers by name, as a union–find forest (by size, with path halving).
#[derive(Default)]
struct KeySets<'h> {
    ids: HashMap<Option<&'h str>, usize>,
    names: Vec<Option<&'h Key>>,
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl<'h> KeySets<'h> {
    fn intern(&mut self, key: Option<&'h Key>) -> usize {
        let next = self.names.len();
        let id = *self.ids.entry(key.map(String::as_str)).or_insert(next);
        if id == next {
            self.names.push(key);
            self.parent.push(id);
            self.size.push(1);
        }
        id
    }

    fn id(&self, key: Option<&Key>) -> Option<usize> {
        self.ids.get(&key.map(String::as_str)).copied()
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        let (big, small) = if self.size[a] >= self.size[b] {
            (a, b)
        } else {
            (b, a)
        };
        self.parent[small] = big;
        self.size[big] += self.size[small];
    }
}

/// True if every operation of the history reads or writes the single register: a history of
/// the kind recorded before keys existed, which the checkers take exactly as they always did.
pub(crate) fn single_register(history: &History) -> bool {
    history
        .ops
        .iter()
        .all(|op| op.key.is_none() && matches!(op.kind, OpKind::Read | OpKind::Write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    fn keys(part: &Part) -> Vec<&str> {
        part.keys
            .iter()
            .map(|k| k.as_deref().unwrap_or("-"))
            .collect()
    }

    #[test]
    fn keys_linked_by_multi_key_operations_share_a_part() {
        let history = History::new(vec![
            Op::set(1, "a", 1, 0, 1),
            Op::set(1, "b", 2, 2, 3),
            Op::set(1, "c", 3, 4, 5),
            Op::mget(2, [("c", Some(3)), ("d", None)], 6, 7),
            Op::write(3, 9, 0, 1),
            Op::mset(2, [("a", 5), ("e", 6)], 8, 9),
            Op::mget(2, [("e", None), ("d", None)], 10, 11).with_outcome(Outcome::Fail),
        ]);
        let parts = history.parts();
        let named: Vec<Vec<&str>> = parts.iter().map(keys).collect();
        assert_eq!(
            named,
            vec![vec!["a", "e"], vec!["b"], vec!["c", "d"], vec!["-"]]
        );
        assert_eq!(
            parts[0].ops,
            vec![0, 5, 6],
            "the failed mget is in both parts"
        );
        assert_eq!(parts[2].ops, vec![2, 3, 6]);
        assert_eq!(parts[3].ops, vec![4]);
        assert_eq!(parts[0].to_string(), "keys a, e (3 ops)");
        assert_eq!(parts[3].to_string(), "the register (1 ops)");
    }

    #[test]
    fn a_chain_of_links_makes_one_part() {
        let ops: Vec<Op> = (0..10)
            .map(|i| {
                Op::mset(
                    1,
                    [(format!("k{i}"), i), (format!("k{}", i + 1), i)],
                    i as u64,
                    i as u64,
                )
            })
            .collect();
        let parts = History::new(ops).parts();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].keys.len(), 11);
        assert!(
            parts[0]
                .to_string()
                .starts_with("keys k0, k1, k10, k2, k3, k4 and 5 more")
        );
    }
}
