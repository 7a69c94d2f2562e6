//! The keyspace: keys to byte-string values, with the Redis string commands ditto will serve,
//! each atomic, and expiry that every replica agrees on.
//!
//! A write is a [`KeyOp`], applied in log order by [`Keyspace::apply`] and answered with an
//! [`Output`] (an error too is an output: `INCR` of a non-integer changes nothing and says so,
//! identically at every replica). A read is a [`Query`], answered from the state by
//! [`Keyspace::query`] and never logged. Time enters only as an argument, in milliseconds: for a
//! write, the time the primary stamped on its log entry; for a read, the reader's bound on the
//! primary's clock. So expiry is deterministic: a key with a deadline is absent from the first
//! entry stamped at or after it, at every replica.
//!
//! Keys are kept in `BTreeMap`s ordered by a fixed hash of the key (see `Buckets`), so `KEYS`
//! and `SCAN` go in an order that deletions do not disturb, and snapshots and the model
//! checker's state hashes are the same on every run.
//!
//! The log carries [`KeyOp`]s; see `docs/design/keyspace.md` for how the rest fits around it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A key or a value: bytes, as Redis has them.
pub type Bytes = Vec<u8>;

/// The key the seed's register lives in: `READ`, `WRITE:v` and `UPDATE:v` act on it, so a
/// Redis client sees the seed's integer as `GET ditto:seed`. It holds a decimal integer or
/// nothing (read as 0): a write that would leave anything else there is refused
/// ([`KeyError::SeedNotInteger`]), so a seed client never reads what it cannot parse.
pub const SEED_KEY: &[u8] = b"ditto:seed";

/// What a stored key costs against `--maxmemory` beyond its key and value bytes: an estimate of
/// the map's bookkeeping, so that a million empty values still count.
pub const ENTRY_OVERHEAD: usize = 48;

/// When a `SET` applies.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum SetIf {
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    Absent,
    /// `XX`: only if it does.
    Present,
}

/// A write, as the log will carry it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyOp {
    /// `SET key value [NX|XX] [GET] [PX ms]`; `px` is relative: the key expires `px` ms after the
    /// time stamped on the entry, so a write forwarded by a backup means the same everywhere.
    Set {
        #[serde(with = "crate::blob")]
        key: Bytes,
        #[serde(with = "crate::blob")]
        value: Bytes,
        when: SetIf,
        get: bool,
        px: Option<u64>,
    },
    /// `DEL key...`: how many existed.
    Del(#[serde(with = "crate::blob::vec")] Vec<Bytes>),
    /// `INCRBY key by` (and `INCR`, `DECR`, `DECRBY`): the new value.
    IncrBy {
        #[serde(with = "crate::blob")]
        key: Bytes,
        by: i64,
    },
    /// `APPEND key value`: the new length.
    Append {
        #[serde(with = "crate::blob")]
        key: Bytes,
        #[serde(with = "crate::blob")]
        value: Bytes,
    },
    /// `MSET key value...`: all at once.
    MSet(#[serde(with = "crate::blob::pairs")] Vec<(Bytes, Bytes)>),
    /// `GETDEL key`.
    GetDel(#[serde(with = "crate::blob")] Bytes),
    /// `CAS key expected new` (ditto's own): set `new` if the value is `expected` (`None`: the
    /// key is absent); `1` if it swapped, `0` if not.
    Cas {
        #[serde(with = "crate::blob")]
        key: Bytes,
        #[serde(with = "crate::blob::option")]
        expected: Option<Bytes>,
        #[serde(with = "crate::blob")]
        new: Bytes,
    },
    /// `FLUSHALL`.
    FlushAll,
    /// `MULTI` ... `EXEC`: the steps, applied one after the other as one entry, so no other
    /// write comes between them; reads among them see the steps before. Answers the array
    /// of the steps' answers. Steps are never transactions themselves.
    Exec(Vec<Step>),
}

/// One command of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    Write(KeyOp),
    Read(Query),
}

/// A read, answered from the state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Query {
    Get(#[serde(with = "crate::blob")] Bytes),
    MGet(#[serde(with = "crate::blob::vec")] Vec<Bytes>),
    /// How many of the keys exist (a key named twice counts twice, as in Redis).
    Exists(#[serde(with = "crate::blob::vec")] Vec<Bytes>),
    StrLen(#[serde(with = "crate::blob")] Bytes),
    /// `KEYS pattern` (Redis glob).
    Keys(#[serde(with = "crate::blob")] Bytes),
    /// `SCAN cursor MATCH pattern COUNT n`: 0 starts and ends a scan. As Redis promises, a key
    /// present from the start of a scan to its end is returned (at least once), whatever is
    /// added or deleted meanwhile; keys come in a fixed hash order, not sorted.
    Scan {
        cursor: u64,
        #[serde(with = "crate::blob::option")]
        pattern: Option<Bytes>,
        count: usize,
    },
    DbSize,
    /// `PTTL key`: -2 if absent, -1 without a deadline, else milliseconds left.
    PTtl(#[serde(with = "crate::blob")] Bytes),
    /// `TTL key`: as [`Query::PTtl`], but in seconds, rounded to the nearest as Redis rounds
    /// them (1.5 s left reads 2).
    Ttl(#[serde(with = "crate::blob")] Bytes),
}

/// Why an operation changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyError {
    /// The value is not a decimal 64-bit integer.
    NotAnInteger,
    /// The result would not fit 64 bits.
    Overflow,
    /// The write would leave [`SEED_KEY`] holding something other than an integer.
    SeedNotInteger,
    /// A transaction inside a transaction (`MULTI` does not nest).
    NestedExec,
    /// A retry of a request applied long ago, whose reply the client table no longer keeps
    /// (it keeps each client's latest only). The request was applied once, not again.
    ReplyForgotten,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::NotAnInteger => "ERR value is not an integer or out of range",
            KeyError::Overflow => "ERR increment or decrement would overflow",
            KeyError::SeedNotInteger => {
                "ERR the key ditto:seed holds the seed protocol's integer; it takes only integers"
            }
            KeyError::NestedExec => "ERR MULTI calls can not be nested",
            KeyError::ReplyForgotten => {
                "ERR this request was applied earlier; its reply is no longer kept"
            }
        })
    }
}

impl KeyOp {
    /// Whether applying this may change `key`.
    pub fn touches(&self, key: &[u8]) -> bool {
        match self {
            KeyOp::Set { key: k, .. }
            | KeyOp::IncrBy { key: k, .. }
            | KeyOp::Append { key: k, .. }
            | KeyOp::GetDel(k)
            | KeyOp::Cas { key: k, .. } => k == key,
            KeyOp::Del(keys) => keys.iter().any(|k| k == key),
            KeyOp::MSet(pairs) => pairs.iter().any(|(k, _)| k == key),
            KeyOp::FlushAll => true,
            KeyOp::Exec(steps) => steps
                .iter()
                .any(|s| matches!(s, Step::Write(op) if op.touches(key))),
        }
    }

    /// How many bytes of keys and values this carries.
    pub fn size(&self) -> usize {
        match self {
            KeyOp::Set { key, value, .. } | KeyOp::Append { key, value } => key.len() + value.len(),
            KeyOp::Cas { key, expected, new } => {
                key.len() + new.len() + expected.as_ref().map_or(0, Vec::len)
            }
            KeyOp::IncrBy { key, .. } | KeyOp::GetDel(key) => key.len(),
            KeyOp::Del(keys) => keys.iter().map(Vec::len).sum(),
            KeyOp::MSet(pairs) => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            KeyOp::FlushAll => 0,
            KeyOp::Exec(steps) => steps
                .iter()
                .map(|s| match s {
                    Step::Write(op) => op.size(),
                    Step::Read(_) => 16,
                })
                .sum(),
        }
    }

    /// The seed's `WRITE:v`.
    pub fn seed_write(value: i64) -> KeyOp {
        KeyOp::Set {
            key: SEED_KEY.to_vec(),
            value: value.to_string().into_bytes(),
            when: SetIf::Always,
            get: false,
            px: None,
        }
    }
}

/// What a write or read answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Output {
    Ok,
    Nil,
    Int(i64),
    Bulk(#[serde(with = "crate::blob")] Bytes),
    Array(Vec<Output>),
    /// A `SCAN` step: the next cursor (0 when done) and the keys.
    Scan(u64, #[serde(with = "crate::blob::vec")] Vec<Bytes>),
    Err(KeyError),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    value: Bytes,
    expire_at: Option<u64>,
}

/// Where a key sits in the scan order: a fixed hash of its bytes (FNV-1a, the same in every
/// process and on every run), halved so that a cursor `position + 1` is never 0 and never
/// overflows.
fn position(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h >> 1
}

/// The keys, grouped by [`position`] and ordered by it: a `SCAN` cursor names a position, which
/// keys added or deleted elsewhere do not move, so a key present throughout a scan is returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Buckets {
    by_position: BTreeMap<u64, BTreeMap<Bytes, Slot>>,
    len: usize,
}

impl Buckets {
    fn get(&self, key: &[u8]) -> Option<&Slot> {
        self.by_position.get(&position(key))?.get(key)
    }

    fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    fn insert(&mut self, key: Bytes, slot: Slot) {
        let bucket = self.by_position.entry(position(&key)).or_default();
        if bucket.insert(key, slot).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let at = position(key);
        let bucket = self.by_position.get_mut(&at)?;
        let slot = bucket.remove(key)?;
        if bucket.is_empty() {
            self.by_position.remove(&at);
        }
        self.len -= 1;
        Some(slot)
    }

    fn clear(&mut self) {
        self.by_position.clear();
        self.len = 0;
    }

    /// Every key with its slot, in scan order.
    fn iter(&self) -> impl Iterator<Item = (&Bytes, &Slot)> {
        self.by_position.values().flatten()
    }
}

/// Every key and its value. Equal keyspaces hold the same keys, values and deadlines.
///
/// It travels in snapshots as a list of records, key order by position (see `Buckets`), from
/// which the maps and the memory count are rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<Record>", from = "Vec<Record>")]
pub struct Keyspace {
    map: Buckets,
    /// Bytes counted against `--maxmemory`: keys, values and [`ENTRY_OVERHEAD`] each.
    used: usize,
}

/// One key of a keyspace in a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    #[serde(with = "crate::blob")]
    k: Bytes,
    #[serde(with = "crate::blob")]
    v: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u64>,
}

impl From<Keyspace> for Vec<Record> {
    fn from(k: Keyspace) -> Vec<Record> {
        k.map
            .by_position
            .into_values()
            .flatten()
            .map(|(k, s)| Record {
                k,
                v: s.value,
                x: s.expire_at,
            })
            .collect()
    }
}

impl From<Vec<Record>> for Keyspace {
    fn from(records: Vec<Record>) -> Keyspace {
        let mut keys = Keyspace::default();
        for r in records {
            keys.put(r.k, r.v, r.x);
        }
        keys
    }
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl Keyspace {
    /// Bytes counted against `--maxmemory`.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The number of keys, expired ones not yet removed included (see [`Query::DbSize`] for
    /// what clients are told).
    pub fn len(&self) -> usize {
        self.map.len
    }

    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    /// The live value of `key` at `now`.
    pub fn value(&self, key: &[u8], now: u64) -> Option<&[u8]> {
        self.live(key, now).map(|s| s.value.as_slice())
    }

    /// The seed register's value at `now`: [`SEED_KEY`] as an integer, 0 when absent.
    pub fn seed_value(&self, now: u64) -> i64 {
        self.value(SEED_KEY, now).and_then(parse_int).unwrap_or(0)
    }

    /// A keyspace holding only `key` (as it is here): what a trial of one key's fate needs.
    pub fn only(&self, key: &[u8]) -> Keyspace {
        let mut one = Keyspace::default();
        if let Some(slot) = self.map.get(key) {
            one.put(key.to_vec(), slot.value.clone(), slot.expire_at);
        }
        one
    }

    /// Applies `op` unless it would leave [`SEED_KEY`] holding a non-integer; the guard every
    /// replica applies, so all refuse the same writes.
    pub fn apply_guarded(&mut self, op: &KeyOp, now: u64) -> Output {
        if op.touches(SEED_KEY) {
            let mut trial = self.only(SEED_KEY);
            trial.apply(op, now);
            if trial
                .value(SEED_KEY, now)
                .is_some_and(|v| parse_int(v).is_none())
            {
                return Output::Err(KeyError::SeedNotInteger);
            }
        }
        self.apply(op, now)
    }

    fn live(&self, key: &[u8], now: u64) -> Option<&Slot> {
        self.map
            .get(key)
            .filter(|s| s.expire_at.is_none_or(|t| now < t))
    }

    fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.used -= cost(key, &slot.value);
        Some(slot)
    }

    fn put(&mut self, key: Bytes, value: Bytes, expire_at: Option<u64>) {
        self.remove(&key);
        self.used += cost(&key, &value);
        self.map.insert(key, Slot { value, expire_at });
    }

    /// Removes `key` if it expired by `now`, so that a write sees only live keys.
    fn purge(&mut self, key: &[u8], now: u64) {
        if self.map.contains_key(key) && self.live(key, now).is_none() {
            self.remove(key);
        }
    }

    /// How many bytes `op` would add (an upper bound), for the `--maxmemory` check the primary
    /// makes before it appends a write: a write refused there is never in the log.
    pub fn growth(&self, op: &KeyOp) -> usize {
        match op {
            KeyOp::Set { key, value, .. } => cost(key, value),
            KeyOp::IncrBy { key, .. } => cost(key, b"-9223372036854775808"),
            KeyOp::Append { key, value } => {
                cost(key, value) + self.map.get(key).map_or(0, |s| s.value.len())
            }
            KeyOp::MSet(pairs) => pairs.iter().map(|(k, v)| cost(k, v)).sum(),
            KeyOp::Cas { key, new, .. } => cost(key, new),
            KeyOp::Del(_) | KeyOp::GetDel(_) | KeyOp::FlushAll => 0,
            KeyOp::Exec(steps) => steps
                .iter()
                .map(|s| match s {
                    Step::Write(op) => self.growth(op),
                    Step::Read(_) => 0,
                })
                .sum(),
        }
    }

    /// Applies a write stamped `now` (milliseconds). Every replica applies the same writes with
    /// the same stamps in the same order, and so holds the same keyspace and gives the same
    /// answers.
    pub fn apply(&mut self, op: &KeyOp, now: u64) -> Output {
        match op {
            KeyOp::Set {
                key,
                value,
                when,
                get,
                px,
            } => {
                self.purge(key, now);
                let old = self.map.get(key).map(|s| s.value.clone());
                let go = match when {
                    SetIf::Always => true,
                    SetIf::Absent => old.is_none(),
                    SetIf::Present => old.is_some(),
                };
                if go {
                    self.put(
                        key.clone(),
                        value.clone(),
                        px.map(|ms| now.saturating_add(ms)),
                    );
                }
                match (get, go) {
                    (true, _) => old.map_or(Output::Nil, Output::Bulk),
                    (false, true) => Output::Ok,
                    (false, false) => Output::Nil,
                }
            }
            KeyOp::Del(keys) => {
                let mut n = 0;
                for key in keys {
                    self.purge(key, now);
                    n += i64::from(self.remove(key).is_some());
                }
                Output::Int(n)
            }
            KeyOp::IncrBy { key, by } => {
                self.purge(key, now);
                let (current, expire_at) = match self.map.get(key) {
                    None => (0, None),
                    Some(slot) => match parse_int(&slot.value) {
                        Some(n) => (n, slot.expire_at),
                        None => return Output::Err(KeyError::NotAnInteger),
                    },
                };
                let Some(next) = current.checked_add(*by) else {
                    return Output::Err(KeyError::Overflow);
                };
                // INCR keeps a key's deadline, as in Redis.
                self.put(key.clone(), next.to_string().into_bytes(), expire_at);
                Output::Int(next)
            }
            KeyOp::Append { key, value } => {
                self.purge(key, now);
                let (mut joined, expire_at) = match self.remove(key) {
                    Some(slot) => (slot.value, slot.expire_at),
                    None => (Vec::new(), None),
                };
                joined.extend_from_slice(value);
                let len = joined.len() as i64;
                self.put(key.clone(), joined, expire_at);
                Output::Int(len)
            }
            KeyOp::MSet(pairs) => {
                for (key, value) in pairs {
                    self.put(key.clone(), value.clone(), None);
                }
                Output::Ok
            }
            KeyOp::GetDel(key) => {
                self.purge(key, now);
                self.remove(key)
                    .map_or(Output::Nil, |s| Output::Bulk(s.value))
            }
            KeyOp::Cas { key, expected, new } => {
                self.purge(key, now);
                let current = self.map.get(key).map(|s| &s.value);
                if current == expected.as_ref() {
                    let expire_at = self.map.get(key).and_then(|s| s.expire_at);
                    self.put(key.clone(), new.clone(), expire_at);
                    Output::Int(1)
                } else {
                    Output::Int(0)
                }
            }
            KeyOp::FlushAll => {
                self.map.clear();
                self.used = 0;
                Output::Ok
            }
            KeyOp::Exec(steps) => Output::Array(
                steps
                    .iter()
                    .map(|s| match s {
                        Step::Write(KeyOp::Exec(_)) => Output::Err(KeyError::NestedExec),
                        Step::Write(op) => self.apply_guarded(op, now),
                        Step::Read(q) => self.query(q, now),
                    })
                    .collect(),
            ),
        }
    }

    /// Answers a read at `now` (milliseconds, the reader's bound on the primary's clock).
    pub fn query(&self, q: &Query, now: u64) -> Output {
        let bulk = |key: &[u8]| {
            self.live(key, now)
                .map_or(Output::Nil, |s| Output::Bulk(s.value.clone()))
        };
        match q {
            Query::Get(key) => bulk(key),
            Query::MGet(keys) => Output::Array(keys.iter().map(|k| bulk(k)).collect()),
            Query::Exists(keys) => {
                Output::Int(keys.iter().filter(|k| self.live(k, now).is_some()).count() as i64)
            }
            Query::StrLen(key) => {
                Output::Int(self.live(key, now).map_or(0, |s| s.value.len() as i64))
            }
            Query::Keys(pattern) => Output::Array(
                self.map
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| self.live(k, now).is_some() && glob(pattern, k))
                    .map(|k| Output::Bulk(k.clone()))
                    .collect(),
            ),
            Query::Scan {
                cursor,
                pattern,
                count,
            } => {
                // Whole buckets from the cursor's position on, until `count` keys were looked
                // at; the next cursor is the position after them, plus one (0 ends the scan).
                let from = cursor.saturating_sub(1);
                let mut keys = Vec::new();
                let mut looked = 0;
                let mut next = 0;
                for (&at, bucket) in self.map.by_position.range(from..) {
                    if looked >= (*count).max(1) {
                        next = at + 1;
                        break;
                    }
                    for k in bucket.keys() {
                        looked += 1;
                        if self.live(k, now).is_some()
                            && pattern.as_ref().is_none_or(|p| glob(p, k))
                        {
                            keys.push(k.clone());
                        }
                    }
                }
                Output::Scan(next, keys)
            }
            Query::DbSize => Output::Int(
                self.map
                    .iter()
                    .filter(|(k, _)| self.live(k, now).is_some())
                    .count() as i64,
            ),
            Query::PTtl(key) => Output::Int(self.pttl(key, now)),
            Query::Ttl(key) => Output::Int(match self.pttl(key, now) {
                ms if ms < 0 => ms,
                ms => (ms + 500) / 1000,
            }),
        }
    }
}

impl Keyspace {
    /// Milliseconds `key` has left at `now`: -2 if absent, -1 without a deadline.
    fn pttl(&self, key: &[u8], now: u64) -> i64 {
        match self.live(key, now) {
            None => -2,
            Some(Slot {
                expire_at: None, ..
            }) => -1,
            Some(Slot {
                expire_at: Some(t), ..
            }) => (t - now) as i64,
        }
    }
}

/// A value as Redis's `INCR` reads it: a decimal 64-bit integer, no blanks, no `+`, no leading
/// zeros.
fn parse_int(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Redis's glob: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and `\` to take the next byte literally.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, tail)) = text.split_first() else {
                return false;
            };
            let (negate, mut p) = match rest.split_first() {
                Some((b'^', r)) => (true, r),
                _ => (false, rest),
            };
            let mut matched = false;
            loop {
                match p {
                    [] => return false, // an unclosed class matches nothing
                    [b']', after @ ..] => {
                        p = after;
                        break;
                    }
                    [b'\\', x, after @ ..] => {
                        matched |= *x == c;
                        p = after;
                    }
                    [lo, b'-', hi, after @ ..] if *hi != b']' => {
                        let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                        matched |= (lo..=hi).contains(&c);
                        p = after;
                    }
                    [x, after @ ..] => {
                        matched |= *x == c;
                        p = after;
                    }
                }
            }
            matched != negate && glob(p, tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob(&rest[1..], &text[1..])
        }
        Some((&c, rest)) => text.first() == Some(&c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        s.as_bytes().to_vec()
    }

    fn set(key: &str, value: &str) -> KeyOp {
        KeyOp::Set {
            key: b(key),
            value: b(value),
            when: SetIf::Always,
            get: false,
            px: None,
        }
    }

    #[test]
    fn set_get_del_and_the_set_options() {
        let mut k = Keyspace::default();
        assert_eq!(k.apply(&set("a", "1"), 0), Output::Ok);
        assert_eq!(k.query(&Query::Get(b("a")), 0), Output::Bulk(b("1")));
        let nx = KeyOp::Set {
            key: b("a"),
            value: b("2"),
            when: SetIf::Absent,
            get: false,
            px: None,
        };
        assert_eq!(k.apply(&nx, 0), Output::Nil, "NX on a present key");
        let xx_get = KeyOp::Set {
            key: b("a"),
            value: b("3"),
            when: SetIf::Present,
            get: true,
            px: None,
        };
        assert_eq!(
            k.apply(&xx_get, 0),
            Output::Bulk(b("1")),
            "GET gives the old"
        );
        assert_eq!(k.query(&Query::Get(b("a")), 0), Output::Bulk(b("3")));
        assert_eq!(
            k.apply(&KeyOp::Del(vec![b("a"), b("a"), b("z")]), 0),
            Output::Int(1)
        );
        assert_eq!(k.query(&Query::Get(b("a")), 0), Output::Nil);
        assert_eq!(k.used(), 0, "nothing left is counted");
    }

    #[test]
    fn incr_is_exact_and_refuses_what_is_not_an_integer() {
        let mut k = Keyspace::default();
        let incr = |by| KeyOp::IncrBy { key: b("n"), by };
        assert_eq!(k.apply(&incr(1), 0), Output::Int(1));
        assert_eq!(k.apply(&incr(-5), 0), Output::Int(-4));
        k.apply(&set("n", &i64::MAX.to_string()), 0);
        assert_eq!(k.apply(&incr(1), 0), Output::Err(KeyError::Overflow));
        assert_eq!(
            k.query(&Query::Get(b("n")), 0),
            Output::Bulk(b(&i64::MAX.to_string())),
            "an overflow changes nothing"
        );
        for bad in ["x", " 1", "+1", "01", "1.5", ""] {
            k.apply(&set("n", bad), 0);
            assert_eq!(
                k.apply(&incr(1), 0),
                Output::Err(KeyError::NotAnInteger),
                "{bad:?}"
            );
            assert_eq!(k.query(&Query::Get(b("n")), 0), Output::Bulk(b(bad)));
        }
    }

    #[test]
    fn append_mset_getdel_and_cas() {
        let mut k = Keyspace::default();
        let append = |v: &str| KeyOp::Append {
            key: b("s"),
            value: b(v),
        };
        assert_eq!(k.apply(&append("ab"), 0), Output::Int(2));
        assert_eq!(k.apply(&append("c"), 0), Output::Int(3));
        assert_eq!(k.query(&Query::StrLen(b("s")), 0), Output::Int(3));
        k.apply(&KeyOp::MSet(vec![(b("x"), b("1")), (b("y"), b("2"))]), 0);
        assert_eq!(
            k.query(&Query::MGet(vec![b("x"), b("nope"), b("y")]), 0),
            Output::Array(vec![
                Output::Bulk(b("1")),
                Output::Nil,
                Output::Bulk(b("2"))
            ])
        );
        assert_eq!(k.apply(&KeyOp::GetDel(b("x")), 0), Output::Bulk(b("1")));
        assert_eq!(k.apply(&KeyOp::GetDel(b("x")), 0), Output::Nil);
        let cas = |expected: Option<&str>, new: &str| KeyOp::Cas {
            key: b("c"),
            expected: expected.map(b),
            new: b(new),
        };
        assert_eq!(k.apply(&cas(Some("0"), "1"), 0), Output::Int(0), "absent");
        assert_eq!(k.apply(&cas(None, "1"), 0), Output::Int(1));
        assert_eq!(k.apply(&cas(Some("0"), "2"), 0), Output::Int(0));
        assert_eq!(k.apply(&cas(Some("1"), "2"), 0), Output::Int(1));
        assert_eq!(k.query(&Query::Get(b("c")), 0), Output::Bulk(b("2")));
        assert_eq!(k.apply(&KeyOp::FlushAll, 0), Output::Ok);
        assert_eq!(k.query(&Query::DbSize, 0), Output::Int(0));
        assert_eq!(k.used(), 0);
    }

    #[test]
    fn expiry_follows_the_stamps_not_a_clock() {
        let mut k = Keyspace::default();
        let op = KeyOp::Set {
            key: b("t"),
            value: b("v"),
            when: SetIf::Always,
            get: false,
            px: Some(1_000),
        };
        k.apply(&op, 0);
        assert_eq!(k.query(&Query::PTtl(b("t")), 400), Output::Int(600));
        assert_eq!(
            k.query(&Query::Ttl(b("t")), 400),
            Output::Int(1),
            "TTL is in seconds"
        );
        assert_eq!(k.query(&Query::Get(b("t")), 999), Output::Bulk(b("v")));
        assert_eq!(k.query(&Query::Get(b("t")), 1_000), Output::Nil);
        assert_eq!(k.query(&Query::PTtl(b("t")), 1_000), Output::Int(-2));
        assert_eq!(k.query(&Query::Exists(vec![b("t")]), 1_000), Output::Int(0));
        // A write stamped after the deadline sees the key gone: NX succeeds.
        let nx = KeyOp::Set {
            key: b("t"),
            value: b("w"),
            when: SetIf::Absent,
            get: false,
            px: None,
        };
        assert_eq!(k.apply(&nx, 1_000), Output::Ok);
        assert_eq!(k.query(&Query::PTtl(b("t")), 2_000), Output::Int(-1));
        assert_eq!(k.query(&Query::Ttl(b("t")), 2_000), Output::Int(-1));
        assert_eq!(k.query(&Query::Ttl(b("nope")), 2_000), Output::Int(-2));
        // Two replicas applying the same stamped writes agree, whatever their own clocks.
        let mut a = Keyspace::default();
        let mut c = Keyspace::default();
        for (op, at) in [
            (op.clone(), 0),
            (KeyOp::IncrBy { key: b("t"), by: 1 }, 1_500),
        ] {
            assert_eq!(a.apply(&op, at), c.apply(&op, at));
        }
        assert_eq!(a, c);
        assert_eq!(a.query(&Query::Get(b("t")), 1_500), Output::Bulk(b("1")));
    }

    /// `TTL` answers seconds, rounded to the nearest as Redis does; `PTTL` milliseconds.
    #[test]
    fn ttl_is_in_seconds_and_pttl_in_milliseconds() {
        let mut k = Keyspace::default();
        let op = KeyOp::Set {
            key: b("t"),
            value: b("v"),
            when: SetIf::Always,
            get: false,
            px: Some(100_000),
        };
        k.apply(&op, 0);
        for (at, secs, ms) in [
            (0, 100, 100_000),
            (400, 100, 99_600),
            (600, 99, 99_400),
            (99_499, 1, 501),
            (99_600, 0, 400),
        ] {
            assert_eq!(
                k.query(&Query::Ttl(b("t")), at),
                Output::Int(secs),
                "TTL at {at}"
            );
            assert_eq!(
                k.query(&Query::PTtl(b("t")), at),
                Output::Int(ms),
                "PTTL at {at}"
            );
        }
        assert_eq!(k.query(&Query::Ttl(b("t")), 100_000), Output::Int(-2));
        k.apply(&set("p", "v"), 0);
        assert_eq!(k.query(&Query::Ttl(b("p")), 0), Output::Int(-1));
    }

    #[test]
    fn keys_and_scan_walk_the_keys_in_order() {
        let mut k = Keyspace::default();
        for i in 0..25 {
            k.apply(&set(&format!("user:{i:02}"), "x"), 0);
        }
        k.apply(&set("other", "x"), 0);
        let Output::Array(found) = k.query(&Query::Keys(b("user:1?")), 0) else {
            panic!()
        };
        assert_eq!(found.len(), 10);
        let mut cursor = 0;
        let mut seen = Vec::new();
        loop {
            let Output::Scan(next, keys) = k.query(
                &Query::Scan {
                    cursor,
                    pattern: Some(b("user:*")),
                    count: 7,
                },
                0,
            ) else {
                panic!()
            };
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 25);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25, "each key once");
        assert_eq!(k.query(&Query::DbSize, 0), Output::Int(26));
    }

    /// Keys deleted and added during a scan do not make it skip a key present throughout.
    #[test]
    fn a_scan_returns_every_key_present_throughout_whatever_changes_meanwhile() {
        let mut k = Keyspace::default();
        let name = |i: usize| b(&format!("k{i}"));
        for i in 0..200 {
            k.apply(&set(&format!("k{i}"), "x"), 0);
        }
        let mut cursor = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut step = 0;
        loop {
            let Output::Scan(next, keys) = k.query(
                &Query::Scan {
                    cursor,
                    pattern: None,
                    count: 5,
                },
                0,
            ) else {
                panic!()
            };
            seen.extend(keys);
            // Between steps: delete some of the keys 100..200 and add new ones.
            step += 1;
            k.apply(&KeyOp::Del(vec![name(100 + step), name(199 - step)]), 0);
            k.apply(&set(&format!("new{step}"), "y"), 0);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for i in 0..100 {
            assert!(seen.contains(&name(i)), "k{i} was skipped");
        }
    }

    #[test]
    fn globs_as_redis_reads_them() {
        for (p, t, want) in [
            ("*", "", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("a[", "ab", false),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn memory_is_counted_and_growth_bounds_it() {
        let mut k = Keyspace::default();
        let op = set("key", "value");
        let before = k.used();
        let bound = k.growth(&op);
        k.apply(&op, 0);
        assert_eq!(k.used() - before, cost(b"key", b"value"));
        assert!(k.used() - before <= bound);
        k.apply(&set("key", "v"), 0);
        assert_eq!(
            k.used(),
            cost(b"key", b"v"),
            "a replaced value is counted once"
        );
    }

    proptest::proptest! {
        /// Any sequence of writes leaves `used` equal to what the keys and values cost, and two
        /// keyspaces fed the same stamped writes equal.
        #[test]
        fn accounting_and_determinism_hold_for_any_writes(
            ops in proptest::collection::vec((0u8..6, 0u8..4, 0u8..4, 0u64..50), 0..60)
        ) {
            let mut a = Keyspace::default();
            let mut c = Keyspace::default();
            let mut now = 0;
            for (kind, key, val, dt) in ops {
                now += dt;
                let key = vec![b'k', key];
                let value = vec![b'0' + val];
                let op = match kind {
                    0 => KeyOp::Set { key, value, when: SetIf::Always, get: false, px: (val == 0).then_some(20) },
                    1 => KeyOp::Del(vec![key]),
                    2 => KeyOp::IncrBy { key, by: i64::from(val) - 1 },
                    3 => KeyOp::Append { key, value },
                    4 => KeyOp::Cas { key, expected: Some(value), new: b"1".to_vec() },
                    _ => KeyOp::GetDel(key),
                };
                proptest::prop_assert_eq!(a.apply(&op, now), c.apply(&op, now));
                let counted: usize = a.map.iter().map(|(k, s)| cost(k, &s.value)).sum();
                proptest::prop_assert_eq!(a.map.len, a.map.iter().count());
                proptest::prop_assert_eq!(a.used(), counted);
            }
            proptest::prop_assert_eq!(a, c);
        }
    }
}
