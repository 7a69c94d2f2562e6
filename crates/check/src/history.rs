//! The record of what clients asked and what they were told, and its JSON-lines file format.
//!
//! A [`History`] is the only input of the checkers: it says, for every operation, which client
//! issued it, when it was invoked and when (if ever) it returned, and what the client learned.
//! It deliberately records *outcomes as the client saw them* (`ok`, `fail`, `unknown`), because a
//! timed-out write may still take effect and a checker that assumed otherwise would raise false
//! alarms.

mod recorder;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use recorder::{Recorder, Token};

/// Identifies one sequential client: it has at most one operation in flight at a time.
pub type ClientId = u64;

/// The value type of the register.
pub type Value = i64;

/// What an operation asked the register to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `READ`: returns the value of the replica the client talks to.
    Read,
    /// `WRITE:v`: sets the register to `v`.
    Write,
}

/// What the client learned about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The operation returned normally; for a read, `value` is what it returned.
    Ok,
    /// The operation was definitely not applied (e.g. the server refused it).
    Fail,
    /// The operation may or may not have been applied (timeout, lost connection, or never
    /// completed). Its effect, if any, may happen at any time after its invocation.
    Unknown,
}

/// One operation of one client, as one line of a history file.
///
/// ```json
/// {"client":3,"server":7001,"op":"write","value":5,"invoke_ns":120,"return_ns":480,"outcome":"ok"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// The sequential client that issued the operation.
    pub client: ClientId,
    /// The port of the server the client talked to. Informational, except that it is how a
    /// caller picks "the operations made at the primary" for the linearizability check.
    #[serde(default)]
    pub server: Option<u16>,
    /// Read or write.
    #[serde(rename = "op")]
    pub kind: OpKind,
    /// For a write, the value written (whatever the outcome); for a read, the value read, which
    /// is only meaningful when the outcome is `ok`.
    #[serde(default)]
    pub value: Option<Value>,
    /// When the client sent the request, in nanoseconds since the start of the run.
    pub invoke_ns: u64,
    /// When the client received the answer or gave up. `None` only for an `unknown` operation
    /// and then read as "never": its effect may land at any later time.
    #[serde(default)]
    pub return_ns: Option<u64>,
    /// What the client learned.
    pub outcome: Outcome,
    /// A read the primary answered under its lease (`READ:linearizable`): linearizable, so
    /// the linearizability check takes it with the writes. Absent (false) in older files.
    #[serde(default, skip_serializing_if = "is_false")]
    pub linearizable: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Op {
    /// A write of `value` by `client`, invoked and returned at the given times.
    pub fn write(client: ClientId, value: Value, invoke_ns: u64, return_ns: u64) -> Self {
        Self {
            client,
            server: None,
            kind: OpKind::Write,
            value: Some(value),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            linearizable: false,
        }
    }

    /// A read by `client` that returned `value`, invoked and returned at the given times.
    pub fn read(client: ClientId, value: Value, invoke_ns: u64, return_ns: u64) -> Self {
        Self {
            client,
            server: None,
            kind: OpKind::Read,
            value: Some(value),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            linearizable: false,
        }
    }

    /// The same operation with another outcome. An `unknown` operation keeps its return time
    /// (the moment the client gave up); use [`Op::never_returned`] to drop it. A read that did
    /// not return `ok` loses its value, as a client learns nothing from it.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        if outcome != Outcome::Ok && self.kind == OpKind::Read {
            self.value = None;
        }
        self
    }

    /// The same read, as one the primary answered under its lease.
    pub fn linearizable(mut self) -> Self {
        self.linearizable = true;
        self
    }

    /// The same operation, made through `server`.
    pub fn at(mut self, server: u16) -> Self {
        self.server = Some(server);
        self
    }

    /// The same operation as one whose answer never arrived: outcome `unknown`, no return time.
    pub fn never_returned(self) -> Self {
        let mut op = self.with_outcome(Outcome::Unknown);
        op.return_ns = None;
        op
    }

    /// True if the operation is a read that returned a value.
    pub fn is_ok_read(&self) -> bool {
        self.kind == OpKind::Read && self.outcome == Outcome::Ok
    }

    /// The latest time the operation is known to matter: its return, or its invocation if it
    /// never returned.
    pub fn end_ns(&self) -> u64 {
        self.return_ns.unwrap_or(self.invoke_ns)
    }
}

impl fmt::Display for Op {
    /// `client 3 write 5 (ok) at :7001 [0.120..0.480 ms]`: everything a person needs to find the
    /// operation in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        match (self.kind, self.value) {
            (OpKind::Write, Some(v)) => write!(f, "write {v}")?,
            (OpKind::Write, None) => write!(f, "write ?")?,
            (OpKind::Read, Some(v)) if self.outcome == Outcome::Ok => write!(f, "read {v}")?,
            (OpKind::Read, _) => write!(f, "read")?,
        }
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        };
        write!(f, " ({outcome})")?;
        if let Some(server) = self.server {
            write!(f, " at :{server}")?;
        }
        match self.return_ns {
            Some(r) => write!(f, " [{}..{} ms]", ms(self.invoke_ns), ms(r)),
            None => write!(f, " [from {} ms, never returned]", ms(self.invoke_ns)),
        }
    }
}

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

    /// Checks every rule the checkers rely on: [`History::validate_structure`], and written
    /// values that are unique and differ from the initial value, so that each read names the
    /// one write it saw. The sequential-consistency checker needs all of it.
    pub fn validate(&self) -> Result<(), InvalidHistory> {
        self.validate_structure()?;
        let mut writers: HashMap<Value, usize> = HashMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            let (OpKind::Write, Some(value)) = (op.kind, op.value) else {
                continue;
            };
            if value == self.initial {
                return Err(InvalidHistory::WriteOfInitialValue { index, value });
            }
            if let Some(&first) = writers.get(&value) {
                return Err(InvalidHistory::DuplicateWrite {
                    value,
                    first,
                    second: index,
                });
            }
            writers.insert(value, index);
        }
        Ok(())
    }

    /// Checks the rules without which a history means nothing: sane times, writes carry a
    /// value, ok reads carry a value, and each client has one completed operation in flight at
    /// a time (after an `unknown` one it may go on at once, as it gave up waiting). Values may
    /// repeat; the linearizability checker copes with that, more slowly.
    pub fn validate_structure(&self) -> Result<(), InvalidHistory> {
        for (index, op) in self.ops.iter().enumerate() {
            match op.return_ns {
                Some(return_ns) if return_ns < op.invoke_ns => {
                    return Err(InvalidHistory::ReturnBeforeInvoke {
                        index,
                        invoke_ns: op.invoke_ns,
                        return_ns,
                    });
                }
                None if op.outcome != Outcome::Unknown => {
                    return Err(InvalidHistory::MissingReturn {
                        index,
                        outcome: op.outcome,
                    });
                }
                _ => {}
            }
            match (op.kind, op.value) {
                (OpKind::Write, None) => return Err(InvalidHistory::WriteWithoutValue { index }),
                (OpKind::Read, None) if op.outcome == Outcome::Ok => {
                    return Err(InvalidHistory::ReadWithoutValue { index });
                }
                _ => {}
            }
        }
        for ops in self.by_client().values() {
            for pair in ops.windows(2) {
                let (first, second) = (&self.ops[pair[0]], &self.ops[pair[1]]);
                if first.outcome != Outcome::Unknown && first.end_ns() > second.invoke_ns {
                    return Err(InvalidHistory::ClientOverlap {
                        client: first.client,
                        first: pair[0],
                        second: pair[1],
                    });
                }
            }
        }
        Ok(())
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
    }
}
