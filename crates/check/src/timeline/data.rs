//! The operations as the page's script reads them: a compact text encoding, since a long run
//! has a million operations and spelling each out as JSON would make a page of a hundred
//! megabytes.
//!
//! Operations go in invocation order. Each is a few unsigned numbers, each number written as
//! base64url digits of five bits, least significant first, every digit but the last with its
//! sixth bit set:
//!
//! 1. the lane (index into the page's lanes);
//! 2. microseconds since the previous operation's invocation;
//! 3. one plus the microseconds from invocation to return, or 0 if it never returned;
//! 4. `kind * 3 + outcome + 6 * mode` (kind: 0 read, 1 write; outcome: 0 ok, 1 fail, 2
//!    unknown), where the mode says what follows about the value: 0 nothing; 1 the difference
//!    from the previous write's value in the lane (zigzag); 2 an index into the page's literal
//!    values; 3 (a read) how many operations back is the write whose value it returned;
//! 5. the value as the mode says;
//! 6. only if the history is not in invocation order: the operation's position in it;
//! 7. only if some client used more than one server: the index of the server.
//!
//! Values are spelled in full (as decimal strings, since they may exceed what a script's numbers
//! hold exactly) only in the literal table; writes in a lane usually differ by little, and reads
//! name a recent write, so most operations take six or seven characters.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::history::{History, OpKind, Outcome, Value};

/// The digit alphabet: base64url, safe anywhere in HTML.
pub(super) const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Largest difference between consecutive writes of a lane sent as a difference; beyond it the
/// value goes to the literal table.
const MAX_DELTA: i128 = 1 << 40;
/// Largest sum of differences since a lane's last literal, so that the script's sum stays an
/// exact integer (below 2^53).
const MAX_OFFSET: i128 = 1 << 50;

/// Appends `v` in the variable-length digit encoding.
pub(super) fn put(out: &mut String, mut v: u64) {
    loop {
        let digit = (v & 31) as usize;
        v >>= 5;
        if v == 0 {
            out.push(ALPHABET[digit] as char);
            return;
        }
        out.push(ALPHABET[digit | 32] as char);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Microseconds, the page's unit of time.
pub(super) fn us(ns: u64) -> u64 {
    ns / 1000
}

/// The encoded operations and what the page needs to decode them.
pub(super) struct Encoded {
    /// History positions in invocation order: `order[p]` is the operation encoded `p`th.
    pub order: Vec<usize>,
    /// Each lane's client and the servers it used.
    pub lanes: Vec<(u64, Vec<u16>)>,
    /// Values spelled out.
    pub literals: Vec<String>,
    /// Servers, when some client used several (then each operation names its own).
    pub servers: Option<Vec<u16>>,
    /// True if `order` is not the identity (then each operation names its position).
    pub permuted: bool,
    /// The operations.
    pub text: String,
}

pub(super) fn encode(history: &History) -> Encoded {
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    let permuted = order.iter().enumerate().any(|(p, &i)| p != i);

    let mut clients: Vec<u64> = history.clients().into_iter().collect();
    clients.sort_unstable();
    let lane_of: HashMap<u64, usize> = clients.iter().enumerate().map(|(l, &c)| (c, l)).collect();
    let mut lanes: Vec<(u64, Vec<u16>)> = clients.iter().map(|&c| (c, Vec::new())).collect();
    for op in &history.ops {
        if let Some(s) = op.server {
            let servers = &mut lanes[lane_of[&op.client]].1;
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
    }
    for (_, servers) in &mut lanes {
        servers.sort_unstable();
    }
    let servers = lanes.iter().any(|(_, s)| s.len() > 1).then(|| {
        let mut all: Vec<u16> = history.servers().into_iter().collect();
        all.sort_unstable();
        all
    });

    let mut literals: Vec<String> = Vec::new();
    let mut literal_of: HashMap<Value, usize> = HashMap::new();
    let mut literal = |v: Value, literals: &mut Vec<String>| {
        *literal_of.entry(v).or_insert_with(|| {
            literals.push(v.to_string());
            literals.len() - 1
        })
    };
    // Per lane: the previous write's value and the sum of differences since the last literal.
    let mut last_write: Vec<Option<(Value, i128)>> = vec![None; lanes.len()];
    // The latest write of each value, by position.
    let mut writer: HashMap<Value, usize> = HashMap::new();
    let mut text = String::with_capacity(history.len() * 8);
    let mut prev_invoke = 0;
    for (p, &i) in order.iter().enumerate() {
        let op = &history.ops[i];
        let lane = lane_of[&op.client];
        put(&mut text, lane as u64);
        let invoke = us(op.invoke_ns);
        put(&mut text, invoke - prev_invoke.min(invoke));
        prev_invoke = invoke;
        put(
            &mut text,
            op.return_ns.map_or(0, |r| us(r).saturating_sub(invoke) + 1),
        );
        let kind = u64::from(op.kind == OpKind::Write);
        let outcome = match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Unknown => 2,
        };
        let code = kind * 3 + outcome;
        match (op.kind, op.value) {
            (OpKind::Write, Some(v)) => {
                let delta = last_write[lane].and_then(|(prev, offset)| {
                    let delta = i128::from(v) - i128::from(prev);
                    (delta.abs() < MAX_DELTA && (offset + delta).abs() < MAX_OFFSET)
                        .then_some((delta, offset + delta))
                });
                match delta {
                    Some((delta, offset)) => {
                        put(&mut text, code + 6);
                        put(&mut text, zigzag(delta as i64));
                        last_write[lane] = Some((v, offset));
                    }
                    None => {
                        put(&mut text, code + 12);
                        put(&mut text, literal(v, &mut literals) as u64);
                        last_write[lane] = Some((v, 0));
                    }
                }
                writer.insert(v, p);
            }
            (OpKind::Read, Some(v)) if op.outcome == Outcome::Ok => match writer.get(&v) {
                Some(&w) => {
                    put(&mut text, code + 18);
                    put(&mut text, (p - w) as u64);
                }
                None => {
                    put(&mut text, code + 12);
                    put(&mut text, literal(v, &mut literals) as u64);
                }
            },
            _ => put(&mut text, code),
        }
        if permuted {
            put(&mut text, i as u64);
        }
        if let Some(all) = &servers {
            let s = op
                .server
                .and_then(|s| all.iter().position(|&x| x == s))
                .map_or(0, |k| k as u64 + 1);
            put(&mut text, s);
        }
    }
    Encoded {
        order,
        lanes,
        literals,
        servers,
        permuted,
        text,
    }
}

/// The lanes as the page's JSON: `[{"client":1,"servers":[7001]},...]`.
pub(super) fn lanes_json(lanes: &[(u64, Vec<u16>)]) -> String {
    let mut out = String::from("[");
    for (k, (client, servers)) in lanes.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let servers: Vec<String> = servers.iter().map(u16::to_string).collect();
        let _ = write!(
            out,
            "{{\"client\":{client},\"servers\":[{}]}}",
            servers.join(",")
        );
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(v: u64) -> String {
        let mut s = String::new();
        put(&mut s, v);
        s
    }

    #[test]
    fn numbers_take_five_bits_a_digit() {
        assert_eq!(digits(0), "A");
        assert_eq!(digits(31), "f");
        assert_eq!(digits(32), "gB");
        assert_eq!(digits(u64::MAX).len(), 13);
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
