//! One operation of a history: what a client asked, what it was told, and when.
//!
//! An operation either touches one register, named by [`Op::key`] (`None` for the single
//! register of histories without keys), or several keys at once ([`OpKind::MSet`],
//! [`OpKind::MGet`], which name theirs in [`Op::keys`]). The fields are flat, as in the file
//! format, and each kind uses the ones its documentation names; [`History::validate_structure`]
//! rejects an operation that lacks one it needs or carries one it does not use.
//!
//! [`History::validate_structure`]: super::History::validate_structure

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::{ClientId, Key, Value, ms};

/// What an operation asked the store to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `READ` (or `GET key`): returns the value of the replica the client talks to, in
    /// [`Op::value`]. A key that holds nothing reads as `None`.
    Read,
    /// `WRITE:v` (or `SET key v`): sets the register to [`Op::value`].
    Write,
    /// `INCRBY key by`: adds [`Op::by`] to the register, a key holding nothing counting as 0, and
    /// returns the sum in [`Op::value`]. A sum that would overflow an `i64` is refused (as Redis
    /// does) and changes nothing.
    Incr,
    /// Compare-and-set: if the register holds [`Op::expected`] (`None`: holds nothing), sets it
    /// to [`Op::new`]. Returns in [`Op::value`] whether it did: 1 if it swapped, 0 if not.
    Cas,
    /// `MSET k1 v1 k2 v2 ...`: sets every key of [`Op::keys`] to the value at the same place in
    /// [`Op::values`], all at once. A key named twice ends with its last value.
    MSet,
    /// `MGET k1 k2 ...`: reads every key of [`Op::keys`] at once, the values returned (`None`
    /// for a key holding nothing) in [`Op::values`], in the same order.
    MGet,
}

impl OpKind {
    /// True for the kinds that name several keys ([`Op::keys`]) rather than one ([`Op::key`]).
    pub fn is_multi_key(self) -> bool {
        matches!(self, OpKind::MSet | OpKind::MGet)
    }

    /// True for the kinds that may change what the store holds.
    pub fn mutates(self) -> bool {
        !matches!(self, OpKind::Read | OpKind::MGet)
    }

    /// The name used in the file format: `read`, `write`, `incr`, `cas`, `mset`, `mget`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Incr => "incr",
            OpKind::Cas => "cas",
            OpKind::MSet => "mset",
            OpKind::MGet => "mget",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
/// {"client":3,"server":7001,"op":"incr","key":"k1","by":2,"value":7,"invoke_ns":500,"return_ns":610,"outcome":"ok"}
/// ```
///
/// Build one with the constructors ([`Op::write`], [`Op::read`] for the single register;
/// [`Op::set`], [`Op::get`], [`Op::incr`], [`Op::cas`], [`Op::mset`], [`Op::mget`] for keys)
/// and adjust it with [`Op::with_outcome`], [`Op::at`], [`Op::never_returned`]; or fill in the
/// fields a kind uses and take the rest from [`Op::default`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// The sequential client that issued the operation.
    pub client: ClientId,
    /// The port of the server the client talked to. Informational, except that it is how a
    /// caller picks "the operations made at the primary" for the linearizability check.
    #[serde(default)]
    pub server: Option<u16>,
    /// What the operation asked.
    #[serde(rename = "op")]
    pub kind: OpKind,
    /// The key a single-key operation touches; `None` for the single register of histories
    /// without keys (every operation of older files). Always `None` for multi-key kinds.
    #[serde(default)]
    pub key: Option<Key>,
    /// The keys of an [`OpKind::MSet`] or [`OpKind::MGet`], in the order sent; empty for the
    /// other kinds.
    #[serde(default)]
    pub keys: Vec<Key>,
    /// For an [`OpKind::Incr`], the amount added.
    #[serde(default)]
    pub by: Option<Value>,
    /// For an [`OpKind::Cas`], the value the register must hold for the swap; `None` (absent or
    /// null in the file) means it must hold nothing.
    #[serde(default)]
    pub expected: Option<Value>,
    /// For an [`OpKind::Cas`], the value it sets when it swaps.
    #[serde(default)]
    pub new: Option<Value>,
    /// For a write, the value written (whatever the outcome). For a read, the value read; for an
    /// incr, the sum returned; for a cas, 1 if it swapped and 0 if not: each only meaningful
    /// when the outcome is `ok`. A read of a key that holds nothing returns `None`; the single
    /// register always holds a value. Unused by multi-key kinds.
    #[serde(default)]
    pub value: Option<Value>,
    /// For an [`OpKind::MSet`], the values written, one per key of [`Op::keys`]; for an
    /// [`OpKind::MGet`], the values read (`None` for a key holding nothing), one per key, when
    /// the outcome is `ok`, and empty otherwise.
    #[serde(default)]
    pub values: Vec<Option<Value>>,
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
    #[serde(default)]
    pub linearizable: bool,
}

impl Default for Op {
    /// A read of the single register by client 0 at time 0 whose outcome is unknown: nothing in
    /// particular, the base for struct-update syntax (`Op { kind, value, ..Op::default() }`) so
    /// that code building operations field by field names only the fields it uses.
    fn default() -> Self {
        Self {
            client: 0,
            server: None,
            kind: OpKind::Read,
            key: None,
            keys: Vec::new(),
            by: None,
            expected: None,
            new: None,
            value: None,
            values: Vec::new(),
            invoke_ns: 0,
            return_ns: None,
            outcome: Outcome::Unknown,
            linearizable: false,
        }
    }
}

/// Writes the fields the kind uses and leaves out the others, so that an operation of the single
/// register is written exactly as before keys existed (`value` always, `linearizable` only when
/// true) and a line says no more than it means. A cas always writes `expected`, null meaning
/// "holds nothing", rather than leave the reader to guess.
impl Serialize for Op {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let multi = self.kind.is_multi_key();
        let mut s = serializer.serialize_struct("Op", 14)?;
        s.serialize_field("client", &self.client)?;
        s.serialize_field("server", &self.server)?;
        s.serialize_field("op", &self.kind)?;
        if self.key.is_some() {
            s.serialize_field("key", &self.key)?;
        }
        if !self.keys.is_empty() {
            s.serialize_field("keys", &self.keys)?;
        }
        if self.by.is_some() {
            s.serialize_field("by", &self.by)?;
        }
        if self.expected.is_some() || self.kind == OpKind::Cas {
            s.serialize_field("expected", &self.expected)?;
        }
        if self.new.is_some() {
            s.serialize_field("new", &self.new)?;
        }
        if !multi || self.value.is_some() {
            s.serialize_field("value", &self.value)?;
        }
        if !self.values.is_empty() {
            s.serialize_field("values", &self.values)?;
        }
        s.serialize_field("invoke_ns", &self.invoke_ns)?;
        s.serialize_field("return_ns", &self.return_ns)?;
        s.serialize_field("outcome", &self.outcome)?;
        if self.linearizable {
            s.serialize_field("linearizable", &self.linearizable)?;
        }
        s.end()
    }
}

impl Op {
    /// A write of `value` to the single register by `client`, invoked and returned at the given
    /// times.
    pub fn write(client: ClientId, value: Value, invoke_ns: u64, return_ns: u64) -> Self {
        Self {
            client,
            kind: OpKind::Write,
            value: Some(value),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// A read of the single register by `client` that returned `value`, invoked and returned at
    /// the given times.
    pub fn read(client: ClientId, value: Value, invoke_ns: u64, return_ns: u64) -> Self {
        Self {
            client,
            kind: OpKind::Read,
            value: Some(value),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// `SET key value` by `client`: a write of a key.
    pub fn set(
        client: ClientId,
        key: impl Into<Key>,
        value: Value,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        Self::write(client, value, invoke_ns, return_ns).on(key)
    }

    /// `GET key` by `client` that returned `value` (`None`: the key held nothing).
    pub fn get(
        client: ClientId,
        key: impl Into<Key>,
        value: Option<Value>,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        Self {
            value,
            ..Self::read(client, 0, invoke_ns, return_ns).on(key)
        }
    }

    /// `INCRBY key by` by `client` that returned `sum`.
    pub fn incr(
        client: ClientId,
        key: impl Into<Key>,
        by: Value,
        sum: Value,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        Self {
            client,
            kind: OpKind::Incr,
            key: Some(key.into()),
            by: Some(by),
            value: Some(sum),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// A compare-and-set of `key` from `expected` (`None`: holding nothing) to `new` by
    /// `client`, which reported that it `swapped` or not.
    pub fn cas(
        client: ClientId,
        key: impl Into<Key>,
        expected: Option<Value>,
        new: Value,
        swapped: bool,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        Self {
            client,
            kind: OpKind::Cas,
            key: Some(key.into()),
            expected,
            new: Some(new),
            value: Some(Value::from(swapped)),
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// `MSET` of the given keys and values, in that order, by `client`.
    pub fn mset<K: Into<Key>>(
        client: ClientId,
        pairs: impl IntoIterator<Item = (K, Value)>,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        let (keys, values) = pairs.into_iter().map(|(k, v)| (k.into(), Some(v))).unzip();
        Self {
            client,
            kind: OpKind::MSet,
            keys,
            values,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// `MGET` of the given keys by `client`, which returned the values paired with them (`None`:
    /// the key held nothing).
    pub fn mget<K: Into<Key>>(
        client: ClientId,
        reads: impl IntoIterator<Item = (K, Option<Value>)>,
        invoke_ns: u64,
        return_ns: u64,
    ) -> Self {
        let (keys, values) = reads.into_iter().map(|(k, v)| (k.into(), v)).unzip();
        Self {
            client,
            kind: OpKind::MGet,
            keys,
            values,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok,
            ..Self::default()
        }
    }

    /// The same single-key operation, on `key` instead.
    pub fn on(mut self, key: impl Into<Key>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same operation with another outcome. An `unknown` operation keeps its return time
    /// (the moment the client gave up); use [`Op::never_returned`] to drop it. An operation that
    /// did not return `ok` loses what it returned (a read's or an mget's values, an incr's sum, a
    /// cas's answer), as a client learns nothing from it; what it asked for stays.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        if outcome != Outcome::Ok {
            match self.kind {
                OpKind::Read | OpKind::Incr | OpKind::Cas => self.value = None,
                OpKind::MGet => self.values.clear(),
                OpKind::Write | OpKind::MSet => {}
            }
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

    /// The registers the operation touches: its key (`None` for the single register), or the
    /// keys of a multi-key operation, in the order given (a key named twice appears twice).
    pub fn registers(&self) -> impl Iterator<Item = Option<&Key>> {
        let multi = self.kind.is_multi_key();
        let single = (!multi).then_some(self.key.as_ref());
        let keys = self.keys.iter().filter(move |_| multi).map(Some);
        single.into_iter().chain(keys)
    }

    /// True if the operation is a write or an mset that writes `value` to `register`.
    pub(crate) fn writes_value(&self, register: Option<&Key>, value: Option<Value>) -> bool {
        match self.kind {
            OpKind::Write => self.key.as_ref() == register && self.value == value,
            OpKind::MSet => self
                .keys
                .iter()
                .zip(&self.values)
                .any(|(k, v)| Some(k) == register && *v == value),
            _ => false,
        }
    }
}

/// A register's value in words: the number, or `nothing` for a key that holds none.
pub(crate) fn shown(value: Option<Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
}

impl fmt::Display for Op {
    /// `client 3 write 5 (ok) at :7001 [0.120..0.480 ms]`, `client 3 incr k1 by 2 -> 7 (ok)
    /// [...]`: everything a person needs to find the operation in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {}", self.client, self.kind)?;
        if let Some(key) = &self.key {
            write!(f, " {key}")?;
        }
        let ok = self.outcome == Outcome::Ok;
        let unknown = "?".to_owned();
        let value = self
            .value
            .map_or_else(|| unknown.clone(), |v| v.to_string());
        match self.kind {
            OpKind::Write => write!(f, " {value}")?,
            OpKind::Read if ok && self.key.is_some() => write!(f, " {}", shown(self.value))?,
            OpKind::Read if ok && self.value.is_some() => write!(f, " {value}")?,
            OpKind::Read => {}
            OpKind::Incr => {
                write!(f, " by {}", self.by.map_or(unknown, |v| v.to_string()))?;
                if ok {
                    write!(f, " -> {value}")?;
                }
            }
            OpKind::Cas => {
                let new = self.new.map_or(unknown, |v| v.to_string());
                write!(f, " {} -> {new}", shown(self.expected))?;
                match self.value {
                    Some(1) if ok => write!(f, ", swapped")?,
                    Some(0) if ok => write!(f, ", not swapped")?,
                    Some(v) if ok => write!(f, ", answered {v}")?,
                    _ => {}
                }
            }
            OpKind::MSet => {
                for (i, key) in self.keys.iter().enumerate() {
                    let v = self.values.get(i).copied().flatten();
                    write!(f, " {key}={}", v.map_or(unknown.clone(), |v| v.to_string()))?;
                }
            }
            OpKind::MGet => {
                for key in &self.keys {
                    write!(f, " {key}")?;
                }
                if ok {
                    let values: Vec<String> = self.values.iter().map(|&v| shown(v)).collect();
                    write!(f, " -> {}", values.join(" "))?;
                }
            }
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
