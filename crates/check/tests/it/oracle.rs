//! The checkers agree with stateright's exhaustive testers on small random histories.
//!
//! stateright's testers try every interleaving, which is hopeless beyond a dozen operations but
//! obviously right; ours are polynomial (sequential consistency, and linearizability by zones)
//! or memoized (the linearizability search, for repeated values). Agreement on thousands of
//! small histories, valid and invalid, is the evidence that the shortcuts lose nothing. Beyond
//! stateright's reach, the zone check is held to the search's verdicts, equal timestamps
//! included.

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

/// How to turn a schedule into a history.
#[derive(Clone, Copy, Debug)]
struct Gen {
    /// Sequential clients (2 or more).
    clients: u8,
    /// Operations at most.
    max_ops: usize,
    /// One atomic register (linearizable by construction), or arbitrary answers.
    correct: bool,
    /// The register's initial value.
    initial: i64,
    /// Steps per time unit: above 1, events of one unit share a timestamp.
    steps_per_ns: u64,
    /// Written values drawn from a few (so they repeat) rather than unique.
    repeat: bool,
    /// With `correct`, now and then a read returns the value before the latest write instead:
    /// a stale read, the kind of violation a lagging replica makes.
    stale: bool,
}

impl Gen {
    fn small(clients: u8, correct: bool) -> Self {
        Gen {
            clients,
            max_ops: MAX_OPS,
            correct,
            initial: 0,
            steps_per_ns: 1,
            repeat: false,
            stale: false,
        }
    }
}

/// Interprets `steps` as a schedule of the clients, one event per step.
///
/// With `correct`, the clients share one atomic register: each operation takes effect at some
/// step between its invocation and return (or not at all, for a failed one), so the history is
/// linearizable by construction. Without, reads return arbitrary values (including ones never
/// written) and outcomes are arbitrary. Either way some operations end `unknown`, returned or
/// not, after which their client carries on.
fn schedule(g: Gen, steps: &[Step]) -> History {
    let mut ops: Vec<Op> = Vec::new();
    let mut in_flight: Vec<Option<InFlight>> = vec![None; g.clients as usize];
    let mut register = g.initial;
    let mut previous = g.initial;
    let mut next_value = 1i64;
    for (step, &(who, choice)) in steps.iter().enumerate() {
        let time = step as u64 / g.steps_per_ns;
        let c = (who % g.clients) as usize;
        match in_flight[c] {
            None if ops.len() < g.max_ops => {
                let kind = if choice % 2 == 0 {
                    OpKind::Write
                } else {
                    OpKind::Read
                };
                let value = (kind == OpKind::Write).then(|| {
                    next_value += 1;
                    if g.repeat {
                        // 1, 2, 3 or the initial value.
                        match choice / 2 % 4 {
                            0 => g.initial,
                            v => i64::from(v),
                        }
                    } else {
                        next_value - 1
                    }
                });
                in_flight[c] = Some(InFlight {
                    index: ops.len(),
                    applied: false,
                });
                ops.push(Op {
                    client: c as u64,
                    kind,
                    value,
                    invoke_ns: time,
                    ..Op::default()
                });
            }
            None => {}
            Some(f) if g.correct && !f.applied && choice % 4 != 0 => {
                // The operation takes effect now.
                let op = &mut ops[f.index];
                match op.kind {
                    OpKind::Write => {
                        previous = register;
                        register = op.value.unwrap_or_default();
                    }
                    OpKind::Read if g.stale && choice % 8 == 1 => op.value = Some(previous),
                    OpKind::Read => op.value = Some(register),
                    kind => unreachable!("the schedule makes no {kind}"),
                }
                in_flight[c] = Some(InFlight { applied: true, ..f });
            }
            Some(f) => {
                let op = &mut ops[f.index];
                op.return_ns = Some(time);
                op.outcome = if g.correct {
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
                    op.value = match (op.outcome, g.correct) {
                        (Outcome::Ok, true) => op.value,
                        // The initial value, or any value up to one never written.
                        (Outcome::Ok, false) => match i64::from(choice / 8) % (next_value + 1) {
                            0 => Some(g.initial),
                            v => Some(v),
                        },
                        _ => None,
                    };
                }
                in_flight[c] = None;
            }
        }
    }
    History::new(ops).with_initial(g.initial)
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
                kind => unreachable!("a register has no {kind}"),
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
                kind => unreachable!("a register has no {kind}"),
            };
            tester
                .on_invoke(tid_of[i], call)
                .expect("well-formed history");
        }
    }
}

fn stateright_sc(history: &History) -> bool {
    let mut tester = SequentialConsistencyTester::new(Register(history.initial));
    replay(history, &mut tester);
    tester.is_consistent()
}

fn stateright_lin(history: &History) -> bool {
    let mut tester = LinearizabilityTester::new(Register(history.initial));
    replay(history, &mut tester);
    tester.is_consistent()
}

fn ours_sc(history: &History) -> bool {
    seqcst::check(history)
        .expect("generated histories are valid")
        .is_ok()
}

fn lin_verdict(history: &History) -> linearizable::Verdict {
    let verdict = linearizable::check(history, |_| true, &linearizable::Config::default())
        .expect("generated histories are valid");
    assert!(!verdict.is_undecided(), "{verdict}");
    verdict
}

fn ours_lin(history: &History) -> bool {
    lin_verdict(history).is_ok()
}

fn search_lin(history: &History) -> bool {
    let verdict = linearizable::search(history, |_| true, &linearizable::Config::default())
        .expect("generated histories are valid");
    assert!(!verdict.is_undecided(), "{verdict}");
    verdict.is_ok()
}

fn histories(correct: bool) -> impl Strategy<Value = History> {
    (
        2u8..=3,
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..32),
    )
        .prop_map(move |(clients, steps)| schedule(Gen::small(clients, correct), &steps))
}

/// Histories starting from a value other than 0, with unique values or repeated ones.
fn varied_histories(correct: bool) -> impl Strategy<Value = History> {
    (
        2u8..=3,
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..32),
        prop_oneof![Just(0i64), Just(100), Just(-7)],
        any::<bool>(),
    )
        .prop_map(move |(clients, steps, initial, repeat)| {
            let g = Gen {
                initial,
                repeat,
                ..Gen::small(clients, correct)
            };
            schedule(g, &steps)
        })
}

/// Longer histories of more clients, with many equal timestamps when `coarse`: arbitrary ones,
/// or (`correct`) those of an atomic register, or of one that now and then reads a stale value.
fn long_histories(correct: bool, coarse: bool) -> impl Strategy<Value = History> {
    (
        2u8..=5,
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..160),
        any::<bool>(),
    )
        .prop_map(move |(clients, steps, stale)| {
            let g = Gen {
                max_ops: 40,
                steps_per_ns: if coarse { 4 } else { 1 },
                stale: correct && stale,
                ..Gen::small(clients, true)
            };
            let g = if correct {
                g
            } else {
                Gen {
                    correct: false,
                    ..g
                }
            };
            schedule(g, &steps)
        })
}

/// The operations a zone-check violation names must be a violation on their own: the
/// explanation leaves out nothing it needs. (The search's explanation is where it got stuck,
/// which does not stand alone.)
fn core_is_a_violation(history: &History, verdict: &linearizable::Verdict) -> bool {
    let Some(v) = verdict.violation() else {
        return true;
    };
    if matches!(v, linearizable::Violation::Stuck(_)) {
        return true;
    }
    let core: History = v.ops().iter().map(|&i| history.ops[i].clone()).collect();
    !stateright_lin(&core.with_initial(history.initial))
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
        let verdict = lin_verdict(&history);
        prop_assert_eq!(verdict.is_ok(), theirs, "{}\n{}", verdict, dump(&history));
        prop_assert_eq!(search_lin(&history), theirs, "search\n{}", dump(&history));
        prop_assert!(core_is_a_violation(&history, &verdict), "{}\n{}", verdict, dump(&history));
    }

    #[test]
    fn linearizable_agrees_with_stateright_from_any_initial_value(
        history in varied_histories(false),
    ) {
        let theirs = stateright_lin(&history);
        let verdict = lin_verdict(&history);
        prop_assert_eq!(verdict.is_ok(), theirs, "{}\n{}", verdict, dump(&history));
        prop_assert!(core_is_a_violation(&history, &verdict), "{}\n{}", verdict, dump(&history));
    }

    #[test]
    fn an_atomic_register_from_any_initial_value_is_accepted(history in varied_histories(true)) {
        prop_assert!(stateright_lin(&history), "the simulation is wrong:\n{}", dump(&history));
        prop_assert!(ours_lin(&history), "{}", dump(&history));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn zones_agree_with_the_search_on_longer_histories(
        history in long_histories(false, false),
    ) {
        let verdict = lin_verdict(&history);
        prop_assert_eq!(verdict.is_ok(), search_lin(&history), "{}\n{}", verdict, dump(&history));
    }

    #[test]
    fn zones_agree_with_the_search_at_equal_timestamps(history in long_histories(false, true)) {
        let verdict = lin_verdict(&history);
        prop_assert_eq!(verdict.is_ok(), search_lin(&history), "{}\n{}", verdict, dump(&history));
    }

    #[test]
    fn zones_agree_with_the_search_on_nearly_atomic_registers(
        history in long_histories(true, true),
    ) {
        let verdict = lin_verdict(&history);
        prop_assert_eq!(verdict.is_ok(), search_lin(&history), "{}\n{}", verdict, dump(&history));
    }

    #[test]
    fn a_longer_atomic_register_run_is_accepted(
        (clients, steps) in (2u8..=5, prop::collection::vec((any::<u8>(), any::<u8>()), 0..160)),
    ) {
        let g = Gen { max_ops: 40, steps_per_ns: 4, ..Gen::small(clients, true) };
        let history = schedule(g, &steps);
        prop_assert!(ours_lin(&history), "{}", dump(&history));
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
            seqcst::Verdict::Undecided(u) => panic!("{u}"),
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

#[test]
fn the_long_generators_exercise_zones_ties_and_violations() {
    // Guards against generators whose histories the zone check never sees (all left to the
    // search), or that are all consistent.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut zones, mut handoffs, mut bad, mut ties) = (0, 0, 0, 0);
    let strategy = long_histories(true, true);
    for _ in 0..300 {
        let history = strategy.new_tree(&mut runner).unwrap().current();
        let mut ends: Vec<u64> = history.ops.iter().filter_map(|op| op.return_ns).collect();
        ends.retain(|t| history.ops.iter().any(|op| op.invoke_ns == *t));
        ties += usize::from(!ends.is_empty());
        match lin_verdict(&history) {
            linearizable::Verdict::Ok(s) => match s.method {
                linearizable::Method::Zones => zones += 1,
                _ => handoffs += 1,
            },
            linearizable::Verdict::Violation(v) => {
                bad += 1;
                if !matches!(v, linearizable::Violation::Stuck(_)) {
                    zones += 1;
                } else {
                    handoffs += 1;
                }
            }
            linearizable::Verdict::Exhausted(e) => panic!("{e:?}"),
        }
    }
    let summary =
        format!("by zones {zones}, by search {handoffs}, violations {bad}, with ties {ties}");
    println!("{summary}");
    assert!(
        zones > 150 && handoffs > 5 && bad > 20 && ties > 150,
        "{summary}"
    );
}
