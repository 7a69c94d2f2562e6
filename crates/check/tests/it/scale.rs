//! Recorded runs are long: the checkers must handle 100 000 operations without recursion
//! limits or quadratic blow-ups. Times are not asserted (they depend on the machine), but a
//! regression to exponential or quadratic behaviour would make these tests hang.

use std::time::Instant;

use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};

use crate::support::{Rng, r, w};

const OPS: usize = 100_000;
const CLIENTS: usize = 8;

/// Clients sharing one atomic register, interleaved at random: each operation is invoked,
/// takes effect, and returns at three separate steps, so operations overlap. About one in
/// fifty writes ends `unknown` (applied or not) and one in fifty operations fails unapplied.
fn atomic_register_run(seed: u64) -> History {
    let mut rng = Rng::new(seed);
    let mut ops: Vec<Op> = Vec::with_capacity(OPS);
    // Per client: the operation in flight and whether it took effect.
    let mut in_flight: Vec<Option<(usize, bool)>> = vec![None; CLIENTS];
    let mut register = 0i64;
    let mut next_value = 1i64;
    let mut time = 0u64;
    while ops.len() < OPS || in_flight.iter().any(Option::is_some) {
        time += 1;
        let c = rng.below(CLIENTS);
        match in_flight[c] {
            None if ops.len() < OPS => {
                let op = if rng.chance(1, 2) {
                    next_value += 1;
                    Op::write(c as u64, next_value - 1, time, time)
                } else {
                    Op::read(c as u64, 0, time, time)
                };
                in_flight[c] = Some((ops.len(), false));
                ops.push(op);
            }
            None => {}
            Some((i, false)) if !rng.chance(1, 50) => {
                match ops[i].kind {
                    OpKind::Write => register = ops[i].value.unwrap_or_default(),
                    OpKind::Read => ops[i].value = Some(register),
                }
                in_flight[c] = Some((i, true));
            }
            Some((i, applied)) => {
                let op = &mut ops[i];
                op.return_ns = Some(time);
                op.outcome = match (applied, op.kind) {
                    (_, OpKind::Write) if rng.chance(1, 50) => Outcome::Unknown,
                    (true, _) => Outcome::Ok,
                    (false, _) => Outcome::Fail,
                };
                if op.kind == OpKind::Read && op.outcome != Outcome::Ok {
                    op.value = None;
                }
                in_flight[c] = None;
            }
        }
    }
    History::new(ops)
}

#[test]
fn a_100k_operation_consistent_run_is_accepted() {
    let history = atomic_register_run(1);
    assert_eq!(history.len(), OPS);
    let started = Instant::now();
    let verdict = seqcst::check(&history).expect("valid history");
    println!("seqcst: {verdict} in {:?}", started.elapsed());
    let seqcst::Verdict::Ok(stats) = verdict else {
        panic!("{verdict}");
    };
    assert!(stats.writes > OPS / 3 && stats.edges > OPS / 2, "{stats}");
    assert!(
        stats.processes > CLIENTS * 10,
        "unknown writes split processes: {stats}"
    );

    let started = Instant::now();
    let verdict = linearizable::check(&history, |_| true, &linearizable::Config::default())
        .expect("valid history");
    println!("linearizable: {verdict} in {:?}", started.elapsed());
    assert!(verdict.is_ok(), "{verdict}");
}

#[test]
fn a_small_violation_is_found_in_a_100k_operation_run() {
    let mut history = atomic_register_run(2);
    let base = history.len();
    let end = history.ops.iter().map(Op::end_ns).max().unwrap_or(0);
    let fresh = 1 << 40;
    history.ops.extend([
        w(100, fresh, end + 1, end + 2),
        r(100, fresh + 1, end + 3, end + 4),
        w(101, fresh + 1, end + 1, end + 2),
        r(101, fresh, end + 3, end + 4),
    ]);
    let started = Instant::now();
    let verdict = seqcst::check(&history).expect("valid history");
    println!("seqcst: {verdict} in {:?}", started.elapsed());
    let violation = verdict
        .violation()
        .expect("the appended cycle is a violation");
    assert_eq!(violation.ops(), vec![base, base + 1, base + 2, base + 3]);
}
