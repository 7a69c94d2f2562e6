//! The record of what clients asked and what they were told, and its JSON-lines file format.
//!
//! A [`History`] is the only input of the checkers: it says, for every operation, which client
//! issued it, when it was invoked and when (if ever) it returned, and what the client learned.
//! It deliberately records *outcomes as the client saw them* (`ok`, `fail`, `unknown`), because a
//! timed-out write may still take effect and a checker that assumed otherwise would raise false
//! alarms.

mod op;
mod recorder;
mod validate;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub(crate) use op::shown;
pub use op::{Op, OpKind, Outcome};
pub use recorder::{Recorder, Token};

use crate::partition::Registers;

/// Identifies one sequential client: it has at most one operation in flight at a time.
pub type ClientId = u64;

/// The value type of the registers.
pub type Value = i64;

/// The name of a key of the store's keyspace. Each key is a register of its own, which holds
/// nothing until it is first written.
pub type Key = String;

/// Nanoseconds as milliseconds with microsecond precision, for messages and labels.
pub(crate) fn ms(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000, ns % 1_000_000)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// An operation together with its position in the [`History`], so that a verdict can both
/// describe it in words and point a timeline at it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexedOp {
    /// Position of the operation in [`History::ops`].
    pub index: usize,
    /// A copy of the operation.
    pub op: Op,
}

impl IndexedOp {
    pub(crate) fn new(history: &History, index: usize) -> Self {
        Self {
            index,
            op: history.ops[index].clone(),
        }
    }
}

impl fmt::Display for IndexedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.index, self.op)
    }
}

/// What one register held at some point of an order the checkers tried, and which operation
/// put it there: part of the explanation when no order fits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    /// The register: a key, or `None` for the single register.
    pub key: Option<Key>,
    /// Its value, or `None` if it held nothing.
    pub value: Option<Value>,
    /// The operation whose effect it was, or `None` if the register had not changed since the
    /// start (the single register's initial value, or a key never written).
    pub set_by: Option<IndexedOp>,
}

impl fmt::Display for Held {
    /// `the register holds 5 (set by #3 ...)`, `key k1 holds nothing (never written)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Registers(std::slice::from_ref(&self.key));
        write!(f, "{name} holds {}", shown(self.value))?;
        match (&self.set_by, &self.key) {
            (Some(op), _) => write!(f, " (set by {op})"),
            (None, None) => write!(f, " (the initial value)"),
            (None, Some(_)) => write!(f, " (never written)"),
        }
    }
}

/// A history that breaks the rules the checkers rely on; no verdict can be given for it.
///
/// Operations are named by their position in [`History::ops`] (`#0` is the first line of a
/// history file).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InvalidHistory {
    /// `return_ns` is earlier than `invoke_ns`.
    #[error("op #{index} returns at {return_ns} ns, before it was invoked at {invoke_ns} ns")]
    ReturnBeforeInvoke {
        /// The operation.
        index: usize,
        /// Its invocation time.
        invoke_ns: u64,
        /// Its return time.
        return_ns: u64,
    },
    /// An `ok` or `fail` operation has no return time; only `unknown` ones may lack it.
    #[error("op #{index} has outcome {outcome:?} but no return_ns; only unknown ops may lack one")]
    MissingReturn {
        /// The operation.
        index: usize,
        /// Its outcome.
        outcome: Outcome,
    },
    /// A write does not say which value it wrote.
    #[error("op #{index} is a write without a value")]
    WriteWithoutValue {
        /// The operation.
        index: usize,
    },
    /// A write of the initial value: a read of it could not say which write it saw.
    #[error("op #{index} writes {value}, the initial value; written values must differ from it")]
    WriteOfInitialValue {
        /// The operation.
        index: usize,
        /// The initial value ([`History::initial`]).
        value: Value,
    },
    /// A read returned `ok` without a value.
    #[error("op #{index} is an ok read without a value")]
    ReadWithoutValue {
        /// The operation.
        index: usize,
    },
    /// Two writes of the same value: the checkers identify a write by its value.
    #[error("ops #{first} and #{second} both write {value}; written values must be unique")]
    DuplicateWrite {
        /// The value written twice.
        value: Value,
        /// The earlier operation (by position).
        first: usize,
        /// The later operation.
        second: usize,
    },
    /// An operation lacks a field its kind needs (an incr without `by`, an ok cas without its
    /// answer in `value`, an mset or mget without `keys`...).
    #[error("op #{index} is {} {kind} without `{field}`", article(*kind))]
    MissingField {
        /// The operation.
        index: usize,
        /// Its kind.
        kind: OpKind,
        /// The field it lacks, as named in the file format.
        field: &'static str,
    },
    /// An operation carries a field its kind does not use (`keys` on a read, `key` on an mset,
    /// `by` on a write...): most likely a mistake in whatever wrote the history.
    #[error("op #{index} is {} {kind}, which has no `{field}`", article(*kind))]
    FieldNotUsed {
        /// The operation.
        index: usize,
        /// Its kind.
        kind: OpKind,
        /// The field, as named in the file format.
        field: &'static str,
    },
    /// An mset, or an ok mget, whose `values` do not pair up with its `keys`: a different count,
    /// or (for an mset) a null.
    #[error(
        "op #{index} is {} {kind} of {keys} keys with {values} values, {nulls} of them null",
        article(*kind)
    )]
    ValuesDoNotMatchKeys {
        /// The operation.
        index: usize,
        /// Its kind.
        kind: OpKind,
        /// How many keys it names.
        keys: usize,
        /// How many values it has.
        values: usize,
        /// How many of those are null (only an mget may read nothing).
        nulls: usize,
    },
    /// An ok cas whose answer is neither 1 (swapped) nor 0 (did not).
    #[error("op #{index} is a cas that answered {value}; a cas answers 1 (swapped) or 0 (not)")]
    CasAnswer {
        /// The operation.
        index: usize,
        /// What it answered.
        value: Value,
    },
    /// A client invoked an operation before its previous completed one returned.
    #[error(
        "client {client} invoked op #{second} before its op #{first} returned; \
         a client has one operation in flight at a time"
    )]
    ClientOverlap {
        /// The client.
        client: ClientId,
        /// The operation still in flight.
        first: usize,
        /// The operation invoked too early.
        second: usize,
    },
}

/// "a" or "an", for messages naming a kind.
fn article(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Incr | OpKind::MSet | OpKind::MGet => "an",
        OpKind::Read | OpKind::Write | OpKind::Cas => "a",
    }
}

/// Why a history file could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The underlying reader failed.
    #[error("line {line}: {source}")]
    Io {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is not a valid operation object (or, first, a valid header).
    #[error("line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What serde found wrong with it.
        source: serde_json::Error,
    },
}

/// All operations of a run, in no particular order (the checkers order them themselves).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The operations; their positions are how verdicts name them.
    pub ops: Vec<Op>,
    /// The register's value before the first operation: 0 for a fresh cluster, or the value a
    /// check of a running cluster read before its workload started. The checkers treat it as
    /// written by a virtual write that completed before anything else, so a read of it needs
    /// no operation that wrote it.
    pub initial: Value,
}

/// The optional first line of a history file, saying what the register held at the start.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    initial: Value,
}

impl History {
    /// A history of the given operations, kept in the given order, starting from 0.
    pub fn new(ops: Vec<Op>) -> Self {
        Self { ops, initial: 0 }
    }

    /// The same history, starting from `initial` instead.
    pub fn with_initial(mut self, initial: Value) -> Self {
        self.initial = initial;
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The clients that appear, in increasing order.
    pub fn clients(&self) -> BTreeSet<ClientId> {
        self.ops.iter().map(|op| op.client).collect()
    }

    /// The servers that appear, in increasing order.
    pub fn servers(&self) -> BTreeSet<u16> {
        self.ops.iter().filter_map(|op| op.server).collect()
    }

    /// Reads a history from JSON lines: one [`Op`] object per line, blank lines ignored. The
    /// first line may instead be a header `{"initial":5}` giving [`History::initial`]; without
    /// one the register starts at 0. Errors name the 1-based line.
    pub fn from_jsonl(reader: impl BufRead) -> Result<Self, ReadError> {
        let mut history = Self::default();
        let mut first = true;
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let line = line.map_err(|source| ReadError::Io {
                line: line_no,
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            if std::mem::take(&mut first)
                && let Ok(header) = serde_json::from_str::<Header>(&line)
            {
                history.initial = header.initial;
                continue;
            }
            let op = serde_json::from_str(&line).map_err(|source| ReadError::Parse {
                line: line_no,
                source,
            })?;
            history.ops.push(op);
        }
        Ok(history)
    }

    /// Writes the history as JSON lines, one operation per line, in the current order, after a
    /// header line if the initial value is not 0.
    pub fn write_jsonl(&self, mut writer: impl Write) -> io::Result<()> {
        if self.initial != 0 {
            serde_json::to_writer(
                &mut writer,
                &Header {
                    initial: self.initial,
                },
            )?;
            writer.write_all(b"\n")?;
        }
        for op in &self.ops {
            serde_json::to_writer(&mut writer, op)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    }

    /// Each client's operations in program order: by invocation time, ties by position.
    pub(crate) fn by_client(&self) -> HashMap<ClientId, Vec<usize>> {
        let mut by_client: HashMap<ClientId, Vec<usize>> = HashMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            by_client.entry(op.client).or_default().push(index);
        }
        for ops in by_client.values_mut() {
            ops.sort_by_key(|&i| (self.ops[i].invoke_ns, i));
        }
        by_client
    }
}

impl From<Vec<Op>> for History {
    fn from(ops: Vec<Op>) -> Self {
        Self::new(ops)
    }
}

impl FromIterator<Op> for History {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trips_every_field() {
        let history = History::new(vec![
            Op::write(3, 5, 10, 20).at(7001),
            Op::read(4, 5, 30, 40),
            Op::read(4, 0, 50, 60).with_outcome(Outcome::Fail),
            Op::write(3, 6, 70, 80).never_returned(),
        ]);
        let mut buf = Vec::new();
        history.write_jsonl(&mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"client":3,"server":7001,"op":"write","value":5,"invoke_ns":10,"return_ns":20,"outcome":"ok"}"#
        );
        assert!(text.lines().nth(3).unwrap().contains(r#""return_ns":null"#));
        assert_eq!(History::from_jsonl(&buf[..]).unwrap(), history);
    }

    #[test]
    fn jsonl_round_trips_the_initial_value_in_a_header() {
        let history = History::new(vec![Op::read(1, 7, 10, 20)]).with_initial(7);
        let mut buf = Vec::new();
        history.write_jsonl(&mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().next().unwrap(), r#"{"initial":7}"#);
        assert_eq!(History::from_jsonl(&buf[..]).unwrap(), history);
        // Only the first line may be a header.
        let late = format!("{}\n{}\n", text.lines().nth(1).unwrap(), r#"{"initial":7}"#);
        let err = History::from_jsonl(late.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::Parse { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn jsonl_accepts_missing_optional_fields_and_blank_lines() {
        let text = "\n{\"client\":1,\"op\":\"read\",\"invoke_ns\":1,\"outcome\":\"unknown\"}\n\n";
        let history = History::from_jsonl(text.as_bytes()).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history.ops[0].server, None);
        assert_eq!(history.ops[0].return_ns, None);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let text = concat!(
            r#"{"client":1,"server":1,"op":"read","value":0,"invoke_ns":1,"return_ns":2,"outcome":"ok"}"#,
            "\n",
            r#"{"client":1,"server":1,"op":"read","value":0,"invoke_ns":1,"return_ns":2,"outcome":"maybe"}"#,
            "\n"
        );
        let err = History::from_jsonl(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::Parse { line: 2, .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("line 2: unknown variant `maybe`"),
            "{err}"
        );

        let err = History::from_jsonl(
            r#"{"client":1,"op":"read","invoke_ns":1,"outcome":"ok","valeu":3}"#.as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `valeu`"), "{err}");
    }

    #[test]
    fn validate_rejects_what_the_checkers_cannot_interpret() {
        let bad = |ops: Vec<Op>| History::new(ops).validate().unwrap_err();
        assert!(matches!(
            bad(vec![Op::write(1, 5, 10, 5)]),
            InvalidHistory::ReturnBeforeInvoke { index: 0, .. }
        ));
        let mut no_return = Op::read(1, 0, 1, 2);
        no_return.return_ns = None;
        assert!(matches!(
            bad(vec![no_return]),
            InvalidHistory::MissingReturn { .. }
        ));
        assert!(matches!(
            bad(vec![Op::write(1, 0, 1, 2)]),
            InvalidHistory::WriteOfInitialValue { index: 0, value: 0 }
        ));
        let from_7 = History::new(vec![Op::write(1, 0, 1, 2), Op::write(1, 7, 3, 4)]);
        assert!(matches!(
            from_7.clone().with_initial(7).validate().unwrap_err(),
            InvalidHistory::WriteOfInitialValue { index: 1, value: 7 }
        ));
        from_7.with_initial(5).validate().unwrap();
        assert!(matches!(
            bad(vec![
                Op::write(1, 5, 1, 2),
                Op::write(2, 5, 1, 2).with_outcome(Outcome::Fail)
            ]),
            InvalidHistory::DuplicateWrite {
                value: 5,
                first: 0,
                second: 1
            }
        ));
        let mut no_value = Op::read(1, 0, 1, 2);
        no_value.value = None;
        assert!(matches!(
            bad(vec![no_value]),
            InvalidHistory::ReadWithoutValue { index: 0 }
        ));
        assert!(matches!(
            bad(vec![Op::read(1, 0, 1, 10), Op::read(1, 0, 5, 20)]),
            InvalidHistory::ClientOverlap {
                client: 1,
                first: 0,
                second: 1
            }
        ));
        // After giving up on an operation a client may go on before that operation "returns".
        History::new(vec![
            Op::write(1, 4, 1, 100).with_outcome(Outcome::Unknown),
            Op::read(1, 0, 5, 20),
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn op_display_names_everything() {
        assert_eq!(
            Op::write(3, 5, 120_000, 1_480_000).at(7001).to_string(),
            "client 3 write 5 (ok) at :7001 [0.12..1.48 ms]"
        );
        assert_eq!(
            Op::read(2, 7, 0, 1).never_returned().to_string(),
            "client 2 read (unknown) [from 0 ms, never returned]"
        );
        assert_eq!(
            Op::get(1, "k1", None, 0, 1).to_string(),
            "client 1 read k1 nothing (ok) [0..0.000001 ms]"
        );
        assert_eq!(
            Op::cas(1, "k1", None, 4, false, 0, 1).to_string(),
            "client 1 cas k1 nothing -> 4, not swapped (ok) [0..0.000001 ms]"
        );
        assert_eq!(
            Op::mget(1, [("a", Some(1)), ("b", None)], 0, 1)
                .with_outcome(Outcome::Fail)
                .to_string(),
            "client 1 mget a b (fail) [0..0.000001 ms]"
        );
    }

    /// One line of each new kind, as the file format documentation shows them.
    const KEYED_LINES: [&str; 6] = [
        r#"{"client":1,"server":7001,"op":"write","key":"k1","value":5,"invoke_ns":10,"return_ns":20,"outcome":"ok"}"#,
        r#"{"client":2,"server":7002,"op":"read","key":"k1","value":null,"invoke_ns":5,"return_ns":8,"outcome":"ok"}"#,
        r#"{"client":1,"server":7001,"op":"incr","key":"n","by":2,"value":7,"invoke_ns":30,"return_ns":40,"outcome":"ok"}"#,
        r#"{"client":2,"server":7002,"op":"cas","key":"k1","expected":5,"new":6,"value":1,"invoke_ns":30,"return_ns":40,"outcome":"ok"}"#,
        r#"{"client":1,"server":7001,"op":"mset","keys":["a","b"],"values":[1,2],"invoke_ns":50,"return_ns":60,"outcome":"ok"}"#,
        r#"{"client":2,"server":7002,"op":"mget","keys":["a","b"],"values":[1,null],"invoke_ns":50,"return_ns":60,"outcome":"ok"}"#,
    ];

    #[test]
    fn jsonl_round_trips_every_kind_of_keyed_operation() {
        let text = KEYED_LINES.join("\n") + "\n";
        let history = History::from_jsonl(text.as_bytes()).unwrap();
        history.validate().unwrap();
        let expected = History::new(vec![
            Op::set(1, "k1", 5, 10, 20).at(7001),
            Op::get(2, "k1", None, 5, 8).at(7002),
            Op::incr(1, "n", 2, 7, 30, 40).at(7001),
            Op::cas(2, "k1", Some(5), 6, true, 30, 40).at(7002),
            Op::mset(1, [("a", 1), ("b", 2)], 50, 60).at(7001),
            Op::mget(2, [("a", Some(1)), ("b", None)], 50, 60).at(7002),
        ]);
        assert_eq!(history, expected);
        let mut buf = Vec::new();
        history.write_jsonl(&mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), text);
        // A cas on a key that must hold nothing writes `expected` as null; leaving it out
        // means the same.
        let cas = Op::cas(1, "k", None, 1, true, 0, 1);
        let line = serde_json::to_string(&cas).unwrap();
        assert!(line.contains(r#""expected":null,"new":1"#), "{line}");
        let without = line.replace(r#""expected":null,"#, "");
        assert_eq!(serde_json::from_str::<Op>(&without).unwrap(), cas);
    }

    #[test]
    fn validate_rejects_keyed_operations_missing_what_their_kind_needs() {
        let bad = |op: Op| History::new(vec![op]).validate_structure().unwrap_err();
        let mut incr = Op::incr(1, "n", 1, 1, 0, 1);
        incr.by = None;
        assert_eq!(bad(incr).to_string(), "op #0 is an incr without `by`");
        let mut sum = Op::incr(1, "n", 1, 1, 0, 1);
        sum.value = None;
        assert!(matches!(
            bad(sum),
            InvalidHistory::MissingField { field: "value", .. }
        ));
        let mut cas = Op::cas(1, "k", None, 1, true, 0, 1);
        cas.value = Some(2);
        assert_eq!(
            bad(cas).to_string(),
            "op #0 is a cas that answered 2; a cas answers 1 (swapped) or 0 (not)"
        );
        let mut mset = Op::mset(1, [("a", 1), ("b", 2)], 0, 1);
        mset.values[1] = None;
        assert_eq!(
            bad(mset).to_string(),
            "op #0 is an mset of 2 keys with 2 values, 1 of them null"
        );
        let mut mget = Op::mget(1, [("a", Some(1))], 0, 1);
        mget.values.clear();
        assert!(matches!(
            bad(mget),
            InvalidHistory::ValuesDoNotMatchKeys {
                keys: 1,
                values: 0,
                ..
            }
        ));
        let empty = Op::mget(1, Vec::<(Key, Option<Value>)>::new(), 0, 1);
        assert!(matches!(
            bad(empty),
            InvalidHistory::MissingField { field: "keys", .. }
        ));
        let keyed_mset = Op::mset(1, [("a", 1)], 0, 1).on("a");
        assert_eq!(
            bad(keyed_mset).to_string(),
            "op #0 is an mset, which has no `key`"
        );
        let mut write_by = Op::set(1, "a", 1, 0, 1);
        write_by.by = Some(1);
        assert!(matches!(
            bad(write_by),
            InvalidHistory::FieldNotUsed { field: "by", .. }
        ));
        // A key may hold nothing; a read of it returning nothing is fine, and so is an mget
        // that did not return anything because it failed.
        History::new(vec![
            Op::get(1, "a", None, 0, 1),
            Op::mget(1, [("a", None)], 2, 3).with_outcome(Outcome::Fail),
        ])
        .validate()
        .unwrap();
        // Values written to keys may repeat (the checkers search then); the single register's
        // may not.
        History::new(vec![Op::set(1, "a", 1, 0, 1), Op::set(1, "a", 1, 2, 3)])
            .validate()
            .unwrap();
    }
}
