//! The checkers agree with stateright's exhaustive testers on small random histories of keys,
//! with every kind of operation: reads, writes, incr, cas, mset and mget.
//!
//! stateright's testers take any sequential specification; here it is a map of a few registers
//! written independently of the crate's own model, so that agreement says the part-by-part
//! checks, the zone check of single keys, the search and its model lose nothing. As
//! linearizability composes, ours is held to stateright's verdict on the whole history. Our
//! sequential-consistency check is per part, so it is held to stateright's verdict on each
//! part's projection (and, as a whole-history pass implies a pass of every part, never fails
//! a history stateright accepts whole).

use std::collections::BTreeMap;

use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use stateright::semantics::{
    ConsistencyTester, LinearizabilityTester, SequentialConsistencyTester, SequentialSpec,
};

/// The keys a generated history uses (the first `Gen::keys` of them).
const KEYS: [&str; 3] = ["a", "b", "c"];

/// A map of registers, each holding a value or nothing: stateright's reference object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Store([Option<i64>; 3]);

/// What an operation asks of the [`Store`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Read(usize),
    Write(usize, i64),
    Incr(usize, i64),
    Cas(usize, Option<i64>, i64),
    MSet(Vec<(usize, i64)>),
    MGet(Vec<usize>),
}

/// What the [`Store`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ret {
    Value(Option<i64>),
    Done,
    /// The sum, or `None` if it would overflow (and nothing changed).
    Sum(Option<i64>),
    Swapped(bool),
    Values(Vec<Option<i64>>),
}

impl SequentialSpec for Store {
    type Op = Call;
    type Ret = Ret;

    fn invoke(&mut self, call: &Call) -> Ret {
        let r = &mut self.0;
        match call {
            Call::Read(k) => Ret::Value(r[*k]),
            Call::Write(k, v) => {
                r[*k] = Some(*v);
                Ret::Done
            }
            Call::Incr(k, by) => {
                let sum = r[*k].unwrap_or(0).checked_add(*by);
                if sum.is_some() {
                    r[*k] = sum;
                }
                Ret::Sum(sum)
            }
            Call::Cas(k, expected, new) => {
                let swapped = r[*k] == *expected;
                if swapped {
                    r[*k] = Some(*new);
                }
                Ret::Swapped(swapped)
            }
            Call::MSet(pairs) => {
                for &(k, v) in pairs {
                    r[k] = Some(v);
                }
                Ret::Done
            }
            Call::MGet(keys) => Ret::Values(keys.iter().map(|&k| r[k]).collect()),
        }
    }
}

fn slot(key: &str) -> usize {
    KEYS.iter()
        .position(|k| *k == key)
        .expect("a generated key")
}

/// The call an operation makes and, if it returned, what it returned.
fn call_of(op: &Op) -> (Call, Ret) {
    let key = || slot(op.key.as_deref().expect("a keyed operation"));
    match op.kind {
        OpKind::Read => (Call::Read(key()), Ret::Value(op.value)),
        OpKind::Write => (Call::Write(key(), op.value.unwrap_or_default()), Ret::Done),
        OpKind::Incr => (
            Call::Incr(key(), op.by.unwrap_or_default()),
            Ret::Sum(op.value),
        ),
        OpKind::Cas => (
            Call::Cas(key(), op.expected, op.new.unwrap_or_default()),
            Ret::Swapped(op.value == Some(1)),
        ),
        OpKind::MSet => (
            Call::MSet(
                op.keys
                    .iter()
                    .zip(&op.values)
                    .map(|(k, v)| (slot(k), v.unwrap_or_default()))
                    .collect(),
            ),
            Ret::Done,
        ),
        OpKind::MGet => (
            Call::MGet(op.keys.iter().map(|k| slot(k)).collect()),
            Ret::Values(op.values.clone()),
        ),
    }
}

/// Feeds the operations `ops` of the history to a stateright tester in time order, as the
/// register oracle does: `fail` operations are left out, an `unknown` one is invoked and never
/// returns, and its client continues under a new thread id. Thread ids follow the whole
/// history, whichever operations are fed: a client's unknown operation on one key starts a new
/// thread for its operations on every key.
fn replay<T: ConsistencyTester<(u64, u32), Store>>(
    history: &History,
    ops: &[usize],
    tester: &mut T,
) {
    let mut by_client: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_client.entry(op.client).or_default().push(i);
    }
    let mut tid_of = vec![(0, 0); history.len()];
    for (client, mut mine) in by_client {
        mine.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
        let mut segment = 0;
        for i in mine {
            tid_of[i] = (client, segment);
            if history.ops[i].outcome == Outcome::Unknown {
                segment += 1;
            }
        }
    }
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for &i in ops {
        let op = &history.ops[i];
        if op.outcome == Outcome::Fail {
            continue;
        }
        events.push((op.invoke_ns, false, i));
        if op.outcome == Outcome::Ok {
            events.push((op.return_ns.expect("ok ops return"), true, i));
        }
    }
    events.sort_unstable();
    for (_, is_return, i) in events {
        let (call, ret) = call_of(&history.ops[i]);
        if is_return {
            tester
                .on_return(tid_of[i], ret)
                .expect("well-formed history");
        } else {
            tester
                .on_invoke(tid_of[i], call)
                .expect("well-formed history");
        }
    }
}

fn all(history: &History) -> Vec<usize> {
    (0..history.len()).collect()
}

fn stateright_lin(history: &History) -> bool {
    let mut tester = LinearizabilityTester::new(Store::default());
    replay(history, &all(history), &mut tester);
    tester.is_consistent()
}

fn stateright_sc(history: &History, ops: &[usize]) -> bool {
    let mut tester = SequentialConsistencyTester::new(Store::default());
    replay(history, ops, &mut tester);
    tester.is_consistent()
}

/// Sequential consistency of every part on its own, by stateright.
fn stateright_sc_per_part(history: &History) -> bool {
    history
        .parts()
        .iter()
        .all(|part| stateright_sc(history, &part.ops))
}

fn ours_lin(history: &History) -> linearizable::Verdict {
    let verdict = linearizable::check(history, |_| true, &linearizable::Config::default())
        .expect("generated histories are valid");
    assert!(!verdict.is_undecided(), "{verdict}");
    verdict
}

fn search_lin(history: &History) -> bool {
    let verdict = linearizable::search(history, |_| true, &linearizable::Config::default())
        .expect("generated histories are valid");
    assert!(!verdict.is_undecided(), "{verdict}");
    verdict.is_ok()
}

fn ours_sc(history: &History) -> seqcst::Verdict {
    let verdict = seqcst::check(history).expect("generated histories are valid");
    assert!(!verdict.is_undecided(), "{verdict}");
    verdict
}

/// How to turn a schedule into a history.
#[derive(Clone, Copy, Debug)]
struct Gen {
    /// Sequential clients (2 or more).
    clients: u8,
    /// Operations at most.
    max_ops: usize,
    /// Keys used (1 to 3).
    keys: usize,
    /// One atomic map (linearizable by construction), or arbitrary answers.
    correct: bool,
    /// Only reads and writes (of unique values), so that every key is a case for zones.
    reads_and_writes: bool,
}

/// One scheduling decision: which client moves, and two free choices that decide how.
type Step = (u8, u8, u8);

/// An operation in flight, and whether it has taken effect.
#[derive(Clone, Copy)]
struct InFlight {
    index: usize,
    applied: bool,
}

/// Interprets `steps` as a schedule of the clients, one event per step, as the register oracle
/// does: with `correct`, each operation takes effect on one atomic map at some step between its
/// invocation and return (or not at all, for a failed one); without, answers are arbitrary
/// (often right, as values are few). Some operations end `unknown`, returned or not.
fn schedule(g: Gen, steps: &[Step]) -> History {
    let mut ops: Vec<Op> = Vec::new();
    let mut in_flight: Vec<Option<InFlight>> = vec![None; g.clients as usize];
    let mut store = Store::default();
    let mut next_value = 1i64;
    for (time, &(who, choice, extra)) in steps.iter().enumerate() {
        let time = time as u64;
        let c = (who % g.clients) as usize;
        let client = c as u64;
        let small = i64::from(extra / 16 % 3) + 1;
        match in_flight[c] {
            None if ops.len() < g.max_ops => {
                let key = KEYS[usize::from(extra) % g.keys];
                let other = KEYS[usize::from(extra / 4) % g.keys];
                let kinds = if g.reads_and_writes { 2 } else { 6 };
                let unique = next_value;
                next_value += 1;
                // Unique values where only reads and writes are made, so that zones apply;
                // else few, so that they repeat and results are often right by chance.
                let value = if g.reads_and_writes { unique } else { small };
                let op = match choice % kinds {
                    0 => Op::get(client, key, None, time, time),
                    1 => Op::set(client, key, value, time, time),
                    2 => Op::incr(client, key, small - 2, 0, time, time),
                    3 => {
                        let expected = (extra % 2 == 0).then_some(small);
                        Op::cas(client, key, expected, value + 1, false, time, time)
                    }
                    4 => Op::mset(client, [(key, value), (other, value + 1)], time, time),
                    _ => Op::mget(client, [(key, None), (other, None)], time, time),
                };
                let mut op = op.never_returned();
                op.invoke_ns = time;
                in_flight[c] = Some(InFlight {
                    index: ops.len(),
                    applied: false,
                });
                ops.push(op);
            }
            None => {}
            Some(f) if g.correct && !f.applied && choice % 4 != 0 => {
                // The operation takes effect now, and the answer is the store's.
                let op = &mut ops[f.index];
                let (call, _) = call_of(op);
                match store.invoke(&call) {
                    Ret::Value(v) | Ret::Sum(v) => op.value = v,
                    Ret::Swapped(s) => op.value = Some(i64::from(s)),
                    Ret::Values(vs) => op.values = vs,
                    Ret::Done => {}
                }
                in_flight[c] = Some(InFlight { applied: true, ..f });
            }
            Some(f) => {
                let op = &mut ops[f.index];
                op.return_ns = Some(time);
                let outcome = if g.correct {
                    match (f.applied, choice / 4 % 4) {
                        (_, 0) => Outcome::Unknown,
                        (true, _) => Outcome::Ok,
                        (false, _) => Outcome::Fail,
                    }
                } else {
                    let arbitrary = |n: u8| match n % 4 {
                        0 => None,
                        v => Some(i64::from(v)),
                    };
                    match op.kind {
                        OpKind::Read => op.value = arbitrary(extra),
                        OpKind::Incr => op.value = Some(i64::from(extra % 5) - 1),
                        OpKind::Cas => op.value = Some(i64::from(extra % 2)),
                        OpKind::MGet => op.values = vec![arbitrary(extra), arbitrary(extra / 4)],
                        OpKind::Write | OpKind::MSet => {}
                    }
                    match choice % 6 {
                        0 => Outcome::Fail,
                        1 => Outcome::Unknown,
                        _ => Outcome::Ok,
                    }
                };
                *op = std::mem::take(op).with_outcome(outcome);
                in_flight[c] = None;
            }
        }
    }
    History::new(ops)
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..max)
}

fn histories(correct: bool) -> impl Strategy<Value = History> {
    (2u8..=3, 1usize..=3, steps(28)).prop_map(move |(clients, keys, steps)| {
        let g = Gen {
            clients,
            max_ops: 7,
            keys,
            correct,
            reads_and_writes: false,
        };
        schedule(g, &steps)
    })
}

/// Longer histories of reads and writes of unique values on a few keys: every part is a case
/// for zones, checked against the search.
fn read_write_histories() -> impl Strategy<Value = History> {
    (2u8..=4, 1usize..=3, steps(120), any::<bool>()).prop_map(|(clients, keys, steps, correct)| {
        let g = Gen {
            clients,
            max_ops: 30,
            keys,
            correct,
            reads_and_writes: true,
        };
        schedule(g, &steps)
    })
}

fn dump(history: &History) -> String {
    let mut buf = Vec::new();
    history.write_jsonl(&mut buf).expect("writing to memory");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn an_atomic_map_is_always_accepted(history in histories(true)) {
        prop_assert!(stateright_lin(&history), "the simulation is wrong:\n{}", dump(&history));
        let lin = ours_lin(&history);
        prop_assert!(lin.is_ok(), "{}\n{}", lin, dump(&history));
        let sc = ours_sc(&history);
        prop_assert!(sc.is_ok(), "{}\n{}", sc, dump(&history));
    }

    #[test]
    fn keyed_linearizability_agrees_with_stateright(history in histories(false)) {
        let theirs = stateright_lin(&history);
        let verdict = ours_lin(&history);
        prop_assert_eq!(verdict.is_ok(), theirs, "{}\n{}", verdict, dump(&history));
        prop_assert_eq!(search_lin(&history), theirs, "search\n{}", dump(&history));
    }

    #[test]
    fn keyed_seqcst_agrees_with_stateright_part_by_part(history in histories(false)) {
        let theirs = stateright_sc_per_part(&history);
        let verdict = ours_sc(&history);
        prop_assert_eq!(verdict.is_ok(), theirs, "{}\n{}", verdict, dump(&history));
        if theirs {
            return Ok(());
        }
        // Failing some part, the history fails as a whole too.
        prop_assert!(!stateright_sc(&history, &all(&history)), "{}", dump(&history));
    }

    #[test]
    fn zones_agree_with_the_search_key_by_key(history in read_write_histories()) {
        let verdict = ours_lin(&history);
        prop_assert_eq!(verdict.is_ok(), search_lin(&history), "{}\n{}", verdict, dump(&history));
    }
}

#[test]
fn the_keyed_generators_exercise_every_path() {
    // Guards against generators whose histories are all consistent, or never link keys, or
    // never reach the zone check or the search.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = histories(false);
    let (mut lin_ok, mut lin_bad, mut sc_bad, mut multi, mut zones, mut stuck_sc) =
        (0, 0, 0, 0, 0, 0);
    for _ in 0..300 {
        let history = strategy.new_tree(&mut runner).unwrap().current();
        multi += usize::from(history.parts().iter().any(|p| p.keys.len() > 1));
        match ours_lin(&history) {
            linearizable::Verdict::Ok(s) => {
                lin_ok += 1;
                zones += usize::from(s.searched < s.parts);
            }
            _ => lin_bad += 1,
        }
        if let seqcst::Verdict::Violation(v) = ours_sc(&history) {
            sc_bad += 1;
            stuck_sc += usize::from(matches!(v, seqcst::Violation::Stuck(_)));
        }
    }
    let summary = format!(
        "lin ok {lin_ok}, lin bad {lin_bad}, sc bad {sc_bad} ({stuck_sc} by search), \
         with linked keys {multi}, some part by zones {zones}"
    );
    println!("{summary}");
    assert!(
        lin_ok > 30 && lin_bad > 30 && sc_bad > 30 && stuck_sc > 10 && multi > 50 && zones > 10,
        "{summary}"
    );
}
