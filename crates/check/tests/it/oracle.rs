//! The checkers agree with stateright's exhaustive testers on small random histories.
//!
//! stateright's testers try every interleaving, which is hopeless beyond a dozen operations but
//! obviously right; ours are polynomial (sequential consistency) or memoized (linearizability).
//! Agreement on thousands of small histories, valid and invalid, is the evidence that the
//! shortcuts lose nothing.

use std::collections::BTreeMap;

use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{
    ConsistencyTester, LinearizabilityTester, SequentialConsistencyTester,
};

/// Operations per generated history; stateright's testers are exponential in it.
const MAX_OPS: usize = 8;

/// One scheduling decision: which client moves, and a free choice that decides how.
type Step = (u8, u8);

/// What an operation in flight has done so far.
#[derive(Clone, Copy)]
struct InFlight {
    index: usize,
    applied: bool,
}

/// Interprets `steps` as a schedule of 2 or 3 clients, one event per step, at time = step.
///
/// With `correct`, the clients share one atomic register: each operation takes effect at some
/// step between its invocation and return (or not at all, for a failed one), so the history is
/// linearizable by construction. Without, reads return arbitrary values (including ones never
/// written) and outcomes are arbitrary. Either way some operations end `unknown`, returned or
/// not, after which their client carries on.
fn schedule(clients: u8, steps: &[Step], correct: bool) -> History {
    let mut ops: Vec<Op> = Vec::new();
    let mut in_flight: Vec<Option<InFlight>> = vec![None; clients as usize];
    let mut register = 0i64;
    let mut next_value = 1i64;
    for (time, &(who, choice)) in steps.iter().enumerate() {
        let time = time as u64;
        let c = (who % clients) as usize;
        match in_flight[c] {
            None if ops.len() < MAX_OPS => {
                let kind = if choice % 2 == 0 {
                    OpKind::Write
                } else {
                    OpKind::Read
                };
                let value = (kind == OpKind::Write).then(|| {
                    next_value += 1;
                    next_value - 1
                });
                in_flight[c] = Some(InFlight {
                    index: ops.len(),
                    applied: false,
                });
                ops.push(Op {
                    client: c as u64,
                    server: None,
                    kind,
                    value,
                    invoke_ns: time,
                    return_ns: None,
                    outcome: Outcome::Unknown,
                });
            }
            None => {}
            Some(f) if correct && !f.applied && choice % 4 != 0 => {
                // The operation takes effect now.
                let op = &mut ops[f.index];
                match op.kind {
                    OpKind::Write => register = op.value.unwrap_or_default(),
                    OpKind::Read => op.value = Some(register),
                }
                in_flight[c] = Some(InFlight { applied: true, ..f });
            }
            Some(f) => {
                let op = &mut ops[f.index];
                op.return_ns = Some(time);
                op.outcome = if correct {
                    // Here `choice % 4 == 0` unless the operation was applied.
                    match (f.applied, choice / 4 % 4) {
                        (true, 0) | (false, 0) => Outcome::Unknown,
                        (true, _) => Outcome::Ok,
                        (false, _) => Outcome::Fail,
                    }
                } else {
                    match choice % 6 {
                        0 => Outcome::Fail,
                        1 => Outcome::Unknown,
                        _ => Outcome::Ok,
                    }
                };
                if op.kind == OpKind::Read {
                    op.value = match (op.outcome, correct) {
                        (Outcome::Ok, true) => op.value,
                        (Outcome::Ok, false) => Some(i64::from(choice / 8) % (next_value + 1)),
                        _ => None,
                    };
                }
                in_flight[c] = None;
            }
        }
    }
    History::new(ops)
}

/// Feeds the history to a stateright tester in time order. A `fail` operation had no effect
/// and is left out; an `unknown` one is invoked and never returns, and its client continues
/// under a new thread id, as a thread with an operation in flight cannot invoke another.
fn replay<T: ConsistencyTester<(u64, u32), Register<i64>>>(history: &History, tester: &mut T) {
    let mut thread: BTreeMap<u64, u32> = BTreeMap::new();
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        if op.outcome == Outcome::Fail {
            continue;
        }
        events.push((op.invoke_ns, false, i));
        if op.outcome == Outcome::Ok {
            events.push((op.return_ns.expect("ok ops return"), true, i));
        }
    }
    events.sort_unstable();
    let mut tid_of = vec![(0, 0); history.len()];
    for (_, is_return, i) in events {
        let op = &history.ops[i];
        if is_return {
            let ret = match op.kind {
                OpKind::Write => RegisterRet::WriteOk,
                OpKind::Read => RegisterRet::ReadOk(op.value.expect("ok reads have a value")),
            };
            tester
                .on_return(tid_of[i], ret)
                .expect("well-formed history");
        } else {
            let segment = thread.entry(op.client).or_default();
            tid_of[i] = (op.client, *segment);
            if op.outcome == Outcome::Unknown {
                *segment += 1;
            }
            let call = match op.kind {
                OpKind::Write => RegisterOp::Write(op.value.expect("writes have a value")),
                OpKind::Read => RegisterOp::Read,
            };
            tester
                .on_invoke(tid_of[i], call)
                .expect("well-formed history");
        }
    }
}

fn stateright_sc(history: &History) -> bool {
    let mut tester = SequentialConsistencyTester::new(Register(0i64));
    replay(history, &mut tester);
    tester.is_consistent()
}

fn stateright_lin(history: &History) -> bool {
    let mut tester = LinearizabilityTester::new(Register(0i64));
    replay(history, &mut tester);
    tester.is_consistent()
}

fn ours_sc(history: &History) -> bool {
    seqcst::check(history)
        .expect("generated histories are valid")
        .is_ok()
}

fn ours_lin(history: &History) -> bool {
    let verdict = linearizable::check(history, |_| true, &linearizable::Config::default())
        .expect("generated histories are valid");
    assert!(
        !matches!(verdict, linearizable::Verdict::Exhausted(_)),
        "{verdict}"
    );
    verdict.is_ok()
}

fn histories(correct: bool) -> impl Strategy<Value = History> {
    (
        2u8..=3,
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..32),
    )
        .prop_map(move |(clients, steps)| schedule(clients, &steps, correct))
}

fn dump(history: &History) -> String {
    let mut buf = Vec::new();
    history.write_jsonl(&mut buf).expect("writing to memory");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn an_atomic_register_is_always_accepted(history in histories(true)) {
        prop_assert!(stateright_lin(&history), "the simulation is wrong:\n{}", dump(&history));
        prop_assert!(ours_sc(&history), "{}\n{}", seqcst::check(&history).unwrap(), dump(&history));
        prop_assert!(ours_lin(&history), "{}", dump(&history));
    }

    #[test]
    fn seqcst_agrees_with_stateright(history in histories(false)) {
        let theirs = stateright_sc(&history);
        let ours = seqcst::check(&history).unwrap();
        prop_assert_eq!(ours.is_ok(), theirs, "ours: {}\n{}", ours, dump(&history));
        if let seqcst::Verdict::Violation(v) = ours {
            // The explanation alone must already be unexplainable.
            let core: History = v.ops().iter().map(|&i| history.ops[i].clone()).collect();
            prop_assert!(!stateright_sc(&core), "{}\n{}", v, dump(&history));
        }
    }

    #[test]
    fn linearizable_agrees_with_stateright(history in histories(false)) {
        let theirs = stateright_lin(&history);
        prop_assert_eq!(ours_lin(&history), theirs, "{}", dump(&history));
    }
}

#[test]
fn the_generators_produce_both_verdicts() {
    // Guards against a generator that makes every history trivially consistent (or not).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = histories(false);
    let (mut sc_ok, mut sc_bad, mut cycles, mut lin_bad, mut unknowns, mut ops) =
        (0, 0, 0, 0, 0, 0);
    for _ in 0..300 {
        let history = strategy.new_tree(&mut runner).unwrap().current();
        ops += history.len();
        match seqcst::check(&history).expect("generated histories are valid") {
            seqcst::Verdict::Ok(_) => sc_ok += 1,
            seqcst::Verdict::Violation(seqcst::Violation::Cycle { .. }) => {
                sc_bad += 1;
                cycles += 1;
            }
            seqcst::Verdict::Violation(_) => sc_bad += 1,
        }
        if !ours_lin(&history) {
            lin_bad += 1;
        }
        unknowns += history
            .ops
            .iter()
            .filter(|op| op.outcome == Outcome::Unknown)
            .count();
    }
    let summary = format!(
        "{ops} ops: sc ok {sc_ok}, sc bad {sc_bad} ({cycles} cycles), lin bad {lin_bad}, \
         unknown ops {unknowns}"
    );
    println!("{summary}");
    assert!(ops > 300 * 5, "{summary}");
    assert!(
        sc_ok > 30 && sc_bad > 30 && lin_bad > sc_bad && unknowns > 30,
        "{summary}"
    );
}
