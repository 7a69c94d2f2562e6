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
//! Keys are kept in a `BTreeMap`, so `KEYS` and `SCAN` are ordered and snapshots and the model
//! checker's state hashes are the same on every run.
//!
//! Not yet in the log: see `docs/design/keyspace.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A key or a value: bytes, as Redis has them.
pub type Bytes = Vec<u8>;

/// What a stored key costs against `--maxmemory` beyond its key and value bytes: an estimate of
/// the map's bookkeeping, so that a million empty values still count.
pub const ENTRY_OVERHEAD: usize = 48;

/// When a `SET` applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetIf {
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    Absent,
    /// `XX`: only if it does.
    Present,
}

/// A write, as the log will carry it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyOp {
    /// `SET key value [NX|XX] [GET] [PX ms]`; `expire_at` is absolute (entry time plus `PX`).
    Set {
        key: Bytes,
        value: Bytes,
        when: SetIf,
        get: bool,
        expire_at: Option<u64>,
    },
    /// `DEL key...`: how many existed.
    Del(Vec<Bytes>),
    /// `INCRBY key by` (and `INCR`, `DECR`, `DECRBY`): the new value.
    IncrBy { key: Bytes, by: i64 },
    /// `APPEND key value`: the new length.
    Append { key: Bytes, value: Bytes },
    /// `MSET key value...`: all at once.
    MSet(Vec<(Bytes, Bytes)>),
    /// `GETDEL key`.
    GetDel(Bytes),
    /// `CAS key expected new` (ditto's own): set `new` if the value is `expected` (`None`: the
    /// key is absent); `1` if it swapped, `0` if not.
    Cas {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
    },
    /// `FLUSHALL`.
    FlushAll,
}

/// A read, answered from the state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    Get(Bytes),
    MGet(Vec<Bytes>),
    /// How many of the keys exist (a key named twice counts twice, as in Redis).
    Exists(Vec<Bytes>),
    StrLen(Bytes),
    /// `KEYS pattern` (Redis glob).
    Keys(Bytes),
    /// `SCAN cursor MATCH pattern COUNT n`: the cursor is the number of keys before the next
    /// one to return, in key order; 0 starts and ends a scan. Not yet Redis's guarantee: a key
    /// present throughout a scan is skipped if keys before it are deleted meanwhile (the cursor
    /// must become a position that deletions do not shift before `SCAN` is served).
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
    },
    DbSize,
    /// `PTTL key`: -2 if absent, -1 without a deadline, else milliseconds left.
    PTtl(Bytes),
}

/// Why an operation changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyError {
    /// The value is not a decimal 64-bit integer.
    NotAnInteger,
    /// The result would not fit 64 bits.
    Overflow,
}

/// What a write or read answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Output {
    Ok,
    Nil,
    Int(i64),
    Bulk(Bytes),
    Array(Vec<Output>),
    /// A `SCAN` step: the next cursor (0 when done) and the keys.
    Scan(u64, Vec<Bytes>),
    Err(KeyError),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Slot {
    value: Bytes,
    expire_at: Option<u64>,
}

/// Every key and its value. Equal keyspaces hold the same keys, values and deadlines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Keyspace {
    map: BTreeMap<Bytes, Slot>,
    /// Bytes counted against `--maxmemory`: keys, values and [`ENTRY_OVERHEAD`] each.
    used: usize,
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
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live value of `key` at `now`.
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
                expire_at,
            } => {
                self.purge(key, now);
                let old = self.map.get(key).map(|s| s.value.clone());
                let go = match when {
                    SetIf::Always => true,
                    SetIf::Absent => old.is_none(),
                    SetIf::Present => old.is_some(),
                };
                if go {
                    self.put(key.clone(), value.clone(), *expire_at);
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
                    .keys()
                    .filter(|k| self.live(k, now).is_some() && glob(pattern, k))
                    .map(|k| Output::Bulk(k.clone()))
                    .collect(),
            ),
            Query::Scan {
                cursor,
                pattern,
                count,
            } => {
                let start = usize::try_from(*cursor).unwrap_or(usize::MAX);
                let mut keys = Vec::new();
                let mut next = start;
                for k in self.map.keys().skip(start).take((*count).max(1)) {
                    next += 1;
                    if self.live(k, now).is_some() && pattern.as_ref().is_none_or(|p| glob(p, k)) {
                        keys.push(k.clone());
                    }
                }
                let done = next >= self.map.len();
                Output::Scan(if done { 0 } else { next as u64 }, keys)
            }
            Query::DbSize => Output::Int(
                self.map
                    .keys()
                    .filter(|k| self.live(k, now).is_some())
                    .count() as i64,
            ),
            Query::PTtl(key) => Output::Int(match self.live(key, now) {
                None => -2,
                Some(Slot {
                    expire_at: None, ..
                }) => -1,
                Some(Slot {
                    expire_at: Some(t), ..
                }) => (t - now) as i64,
            }),
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
            expire_at: None,
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
            expire_at: None,
        };
        assert_eq!(k.apply(&nx, 0), Output::Nil, "NX on a present key");
        let xx_get = KeyOp::Set {
            key: b("a"),
            value: b("3"),
            when: SetIf::Present,
            get: true,
            expire_at: None,
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
            expire_at: Some(1_000),
        };
        k.apply(&op, 0);
        assert_eq!(k.query(&Query::PTtl(b("t")), 400), Output::Int(600));
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
            expire_at: None,
        };
        assert_eq!(k.apply(&nx, 1_000), Output::Ok);
        assert_eq!(k.query(&Query::PTtl(b("t")), 2_000), Output::Int(-1));
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
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(k.query(&Query::DbSize, 0), Output::Int(26));
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
                    0 => KeyOp::Set { key, value, when: SetIf::Always, get: false, expire_at: (val == 0).then_some(now + 20) },
                    1 => KeyOp::Del(vec![key]),
                    2 => KeyOp::IncrBy { key, by: i64::from(val) - 1 },
                    3 => KeyOp::Append { key, value },
                    4 => KeyOp::Cas { key, expected: Some(value), new: b"1".to_vec() },
                    _ => KeyOp::GetDel(key),
                };
                proptest::prop_assert_eq!(a.apply(&op, now), c.apply(&op, now));
                let counted: usize = a.map.iter().map(|(k, s)| cost(k, &s.value)).sum();
                proptest::prop_assert_eq!(a.used(), counted);
            }
            proptest::prop_assert_eq!(a, c);
        }
    }
}
