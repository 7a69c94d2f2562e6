//! Hand-written histories with known sequential-consistency verdicts.

use ditto_check::history::InvalidHistory;
use ditto_check::seqcst::{self, Stats, Verdict, Violation};
use ditto_check::{History, Op, Outcome};

use crate::support::{r, sc, w};

fn violation(ops: Vec<Op>) -> Violation {
    match sc(ops) {
        Verdict::Violation(v) => v,
        ok => panic!("expected a violation, got {ok}"),
    }
}

#[test]
fn empty_and_single_client_histories_are_consistent() {
    assert!(sc(vec![]).is_ok());
    let verdict = sc(vec![
        r(1, 0, 0, 1),
        w(1, 5, 2, 3),
        r(1, 5, 4, 5),
        w(1, 6, 6, 7),
    ]);
    assert_eq!(
        verdict,
        Verdict::Ok(Stats {
            ops: 4,
            writes: 2,
            reads: 2,
            processes: 1,
            edges: 1,
            parts: 1,
        })
    );
    assert!(
        verdict
            .to_string()
            .starts_with("sequentially consistent: 4 ops")
    );
}

#[test]
fn the_classic_two_client_cycle_is_explained_in_words() {
    let v = violation(vec![
        w(1, 5, 0, 10),
        r(1, 3, 20, 30),
        w(2, 3, 1, 11),
        r(2, 5, 21, 31),
    ]);
    assert_eq!(v.ops(), vec![0, 1, 2, 3]);
    assert_eq!(
        v.to_string(),
        "client 1 wrote 5 then read 3, so write 3 follows write 5; \
         client 2 wrote 3 then read 5, so write 5 follows write 3: \
         no single order of writes satisfies both (ops #0, #1, #2, #3)"
    );
    let Violation::Cycle {
        constraints,
        through_initial: false,
    } = v
    else {
        panic!("expected a cycle");
    };
    assert_eq!(constraints.len(), 2);
}

#[test]
fn a_read_of_a_never_written_value_is_a_violation() {
    let v = violation(vec![w(1, 5, 0, 10), r(2, 7, 20, 30)]);
    assert!(matches!(&v, Violation::ReadOfUnwrittenValue { read } if read.index == 1));
    assert_eq!(v.ops(), vec![1]);
    assert_eq!(
        v.to_string(),
        "client 2 read 7, but no operation wrote 7 (op #1)"
    );
}

#[test]
fn a_read_of_a_failed_write_is_a_violation() {
    let v = violation(vec![
        w(1, 5, 0, 10).with_outcome(Outcome::Fail),
        r(2, 5, 20, 30),
    ]);
    assert!(
        matches!(&v, Violation::ReadOfFailedWrite { read, write } if read.index == 1 && write.index == 0)
    );
    assert!(
        v.to_string().contains("failed, so it was never applied"),
        "{v}"
    );
}

#[test]
fn a_stale_read_after_ones_own_write_is_a_violation() {
    // Client 1 writes 1 then 2, then reads 1 back.
    let v = violation(vec![w(1, 1, 0, 1), w(1, 2, 2, 3), r(1, 1, 4, 5)]);
    assert_eq!(v.ops(), vec![0, 1, 2]);
    assert!(
        v.to_string()
            .contains("client 1 wrote 1 then wrote 2, so write 2 follows write 1")
    );
    assert!(
        v.to_string()
            .contains("client 1 wrote 2 then read 1, so write 1 follows write 2")
    );
}

#[test]
fn reading_zero_after_ones_own_write_is_a_violation() {
    let v = violation(vec![w(1, 5, 0, 1), r(1, 0, 2, 3)]);
    assert!(matches!(
        &v,
        Violation::Cycle {
            through_initial: true,
            ..
        }
    ));
    assert_eq!(
        v.to_string(),
        "client 1 wrote 5 then read 0, so the initial value 0 follows write 5; \
         the initial value 0 precedes every write: no single order of writes satisfies both \
         (ops #0, #1)"
    );
}

#[test]
fn the_initial_value_is_the_historys() {
    // A check of a running cluster starts from whatever the register held.
    let from_7 = |ops: Vec<Op>| seqcst::check(&History::new(ops).with_initial(7)).unwrap();
    assert!(
        from_7(vec![
            r(1, 7, 0, 1),
            w(1, 5, 2, 3),
            r(2, 7, 0, 1),
            r(2, 5, 4, 5)
        ])
        .is_ok()
    );
    let v = from_7(vec![w(1, 5, 0, 1), r(1, 7, 2, 3)]);
    assert_eq!(
        v.to_string(),
        "not sequentially consistent: client 1 wrote 5 then read 7, so the initial value 7 \
         follows write 5; the initial value 7 precedes every write: no single order of writes \
         satisfies both (ops #0, #1)"
    );
    let v = from_7(vec![r(1, 0, 0, 1)]);
    assert!(v.to_string().contains("no operation wrote 0"), "{v}");
}

#[test]
fn another_clients_stale_read_is_fine_without_real_time() {
    // Sequential consistency has no real-time order: client 2 may still see 0 long after
    // client 1's write returned, as long as it never goes back once it has seen 5.
    assert!(sc(vec![w(1, 5, 0, 1), r(2, 0, 100, 101), r(2, 5, 102, 103)]).is_ok());
    assert!(!sc(vec![w(1, 5, 0, 1), r(2, 5, 100, 101), r(2, 0, 102, 103)]).is_ok());
}

#[test]
fn concurrent_clients_whose_reads_disagree_on_order_are_a_violation() {
    let v = violation(vec![
        w(1, 1, 0, 10),
        w(2, 2, 0, 10),
        r(3, 1, 20, 21),
        r(3, 2, 22, 23),
        r(4, 2, 20, 21),
        r(4, 1, 22, 23),
    ]);
    assert_eq!(
        v.ops(),
        vec![0, 1, 2, 3, 4, 5],
        "the four reads and the writes they saw: {v}"
    );
    assert!(
        v.to_string()
            .contains("client 3 read 1 then read 2, so write 2 follows write 1")
    );
    assert!(
        v.to_string()
            .contains("client 4 read 2 then read 1, so write 1 follows write 2")
    );
}

#[test]
fn reading_a_value_before_writing_it_oneself_is_a_violation() {
    let v = violation(vec![r(1, 5, 0, 1), w(1, 5, 2, 3)]);
    assert!(matches!(v, Violation::ReadBeforeOwnWrite { .. }));
    assert_eq!(v.ops(), vec![0, 1]);
}

#[test]
fn an_unknown_write_counts_only_when_observed() {
    let lost = w(1, 5, 2, 10).with_outcome(Outcome::Unknown);
    // Observed: it happened, and its client had written 3 before, so 3 precedes 5.
    assert!(
        sc(vec![
            w(1, 3, 0, 1),
            lost.clone(),
            r(2, 5, 20, 21),
            r(2, 3, 22, 23)
        ])
        .violation()
        .is_some()
    );
    // Not observed: it is dropped, and nothing else constrains the order.
    let verdict = sc(vec![w(1, 3, 0, 1), lost.clone(), r(2, 3, 20, 21)]);
    let Verdict::Ok(stats) = verdict else {
        panic!("{verdict}");
    };
    assert_eq!(stats.writes, 1, "the unobserved unknown write is dropped");
    // An observed unknown write that was never returned counts as well.
    assert!(sc(vec![w(1, 5, 0, 10).never_returned(), r(2, 5, 20, 21)]).is_ok());
}

#[test]
fn an_unknown_write_in_a_cycle_says_so() {
    let v = violation(vec![
        w(2, 3, 0, 1),
        w(2, 2, 2, 3).with_outcome(Outcome::Unknown),
        r(1, 2, 4, 5),
        r(1, 3, 6, 7),
    ]);
    assert!(
        v.to_string()
            .contains("client 2 wrote 3 then wrote 2 (outcome unknown)"),
        "{v}"
    );
}

#[test]
fn after_an_unknown_operation_a_client_is_a_new_process() {
    // Had the write of 5 returned ok, reading 0 next would be a violation.
    assert!(!sc(vec![w(1, 5, 0, 1), r(1, 0, 2, 3)]).is_ok());
    // It timed out: it may land later, and the client goes on as a new process.
    let verdict = sc(vec![
        w(1, 5, 0, 1).with_outcome(Outcome::Unknown),
        r(1, 0, 2, 3),
        r(2, 5, 4, 5),
    ]);
    assert!(
        matches!(verdict, Verdict::Ok(Stats { processes: 3, .. })),
        "{verdict}"
    );
}

#[test]
fn failed_operations_and_reads_without_a_value_impose_nothing() {
    assert!(
        sc(vec![
            w(1, 1, 0, 1),
            w(1, 2, 2, 3).with_outcome(Outcome::Fail),
            r(1, 1, 4, 5),
            r(1, 9, 6, 7).with_outcome(Outcome::Fail),
            r(1, 1, 8, 9),
        ])
        .is_ok()
    );
}

#[test]
fn the_shortest_cycle_is_reported() {
    // A four-client cycle 1 < 2 < 3 < 4 < 1 and, later, a two-client cycle 5 < 6 < 5.
    let mut ops = Vec::new();
    for (client, (a, b)) in [(1, 2), (2, 3), (3, 4), (4, 1)].into_iter().enumerate() {
        ops.push(w(client as u64 + 1, a, 0, 1));
        ops.push(r(client as u64 + 1, b, 2, 3));
    }
    let long = violation(ops.clone());
    assert_eq!(long.ops().len(), 8);
    ops.extend([
        w(10, 5, 10, 11),
        r(10, 6, 12, 13),
        w(11, 6, 10, 11),
        r(11, 5, 12, 13),
    ]);
    assert_eq!(violation(ops).ops(), vec![8, 9, 10, 11]);
}

#[test]
fn histories_that_break_the_rules_are_rejected_not_judged() {
    let duplicate = History::new(vec![w(1, 5, 0, 1), w(2, 5, 0, 1)]);
    assert!(matches!(
        seqcst::check(&duplicate),
        Err(InvalidHistory::DuplicateWrite { value: 5, .. })
    ));
}
