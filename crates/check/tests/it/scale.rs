//! Recorded runs are long: the checkers must handle 100 000 operations without recursion
//! limits or quadratic blow-ups, and the zone check a million. Times are printed, not asserted
//! (they depend on the machine), but a regression to exponential or quadratic behaviour would
//! make these tests hang.
//!
//! `cargo test -p ditto-check --release --test it scale -- --nocapture` runs the zone check on
//! a million operations and prints how long it takes.

use std::time::Instant;

use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};

use crate::support::{Rng, r, w};

const OPS: usize = 100_000;
const CLIENTS: usize = 8;

/// Operations of the big zone-check runs: a million in a release build, a tenth of that in a
/// debug build so that `cargo test` stays quick.
const BIG: usize = if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

/// Clients sharing one atomic register, interleaved at random: each operation is invoked,
/// takes effect, and returns at three separate steps, so operations overlap. About one in
/// fifty writes ends `unknown` (applied or not) and one in fifty operations fails unapplied.
fn atomic_register_run(seed: u64) -> History {
    register_run(seed, OPS, &[])
}

/// Like [`atomic_register_run`], `n` operations, except that the register forgets its value
/// (is back at the initial 0) when the `resets` operations have been invoked, as a primary
/// that restarts without its state does, and a client of its own reads the 0 at once.
fn register_run(seed: u64, n: usize, resets: &[usize]) -> History {
    let mut rng = Rng::new(seed);
    let mut ops: Vec<Op> = Vec::with_capacity(n);
    // Per client: the operation in flight and whether it took effect.
    let mut in_flight: Vec<Option<(usize, bool)>> = vec![None; CLIENTS];
    let mut register = 0i64;
    let mut next_value = 1i64;
    let mut time = 0u64;
    let mut resets = resets.iter().peekable();
    while ops.len() < n || in_flight.iter().any(Option::is_some) {
        time += 1;
        if resets.next_if(|&&at| ops.len() >= at).is_some() {
            register = 0;
            ops.push(r(100 + time, 0, time + 1, time + 2));
            time += 3;
        }
        let c = rng.below(CLIENTS);
        match in_flight[c] {
            None if ops.len() < n => {
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
                    kind => unreachable!("the run makes no {kind}"),
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

    // The search, for histories with repeated values, copes with this one too.
    let started = Instant::now();
    let verdict = linearizable::search(&history, |_| true, &linearizable::Config::default())
        .expect("valid history");
    println!(
        "linearizable by search: {verdict} in {:?}",
        started.elapsed()
    );
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

#[test]
fn a_million_operation_consistent_run_is_decided_by_zones() {
    let history = register_run(3, BIG, &[]);
    let started = Instant::now();
    let verdict = linearizable::check(&history, |_| true, &linearizable::Config::default())
        .expect("valid history");
    println!(
        "linearizable, {} ops: {verdict} in {:?}",
        history.len(),
        started.elapsed()
    );
    assert!(
        matches!(verdict, linearizable::Verdict::Ok(s) if s.method == linearizable::Method::Zones),
        "{verdict}"
    );
}

/// The history that used to exhaust the search: long, and a register that twice forgets
/// acknowledged writes, as a restarted primary does. The zone check decides it and names the
/// first loss.
#[test]
fn a_million_operation_run_that_loses_writes_twice_is_decided() {
    let first = BIG / 3;
    let history = register_run(4, BIG, &[first, 2 * BIG / 3]);
    let started = Instant::now();
    let verdict = linearizable::check(&history, |_| true, &linearizable::Config::default())
        .expect("valid history");
    println!(
        "linearizable, {} ops with two resets: {verdict} in {:?}",
        history.len(),
        started.elapsed()
    );
    let v = verdict.violation().expect("lost writes are a violation");
    assert!(v.to_string().contains("0 is the initial value"), "{v}");
    // The explanation is about the first reset: its operations are from around then.
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| history.ops[i].invoke_ns);
    let rank = |i: usize| order.iter().position(|&j| j == i).unwrap_or(usize::MAX);
    for i in v.ops() {
        let r = rank(i);
        assert!(
            r.abs_diff(first) < 100,
            "op #{i} is the {r}th, far from {first}: {v}"
        );
    }
}
