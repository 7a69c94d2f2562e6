//! Hand-written histories with known linearizability verdicts. Each is checked by the zone
//! check (`lin`) and, where the verdict is the point, by the search too (`lin_search`), so the
//! two algorithms are held to the same answers.

use ditto_check::linearizable::{self, Config, Method, Verdict, Violation, WhySearch};
use ditto_check::{History, Op, OpKind, Outcome};

use crate::support::{lin, lin_search, r, sc, w};

fn violation(ops: Vec<Op>) -> Violation {
    match lin(ops) {
        Verdict::Violation(v) => v,
        other => panic!("expected a violation, got {other}"),
    }
}

/// Both algorithms agree on `ops`, and the zone check used zones; returns the verdict.
fn both(ops: Vec<Op>) -> bool {
    let zones = lin(ops.clone());
    let search = lin_search(ops);
    assert!(
        matches!(zones, Verdict::Ok(s) if s.method == Method::Zones) || zones.violation().is_some(),
        "{zones}"
    );
    assert_eq!(
        zones.is_ok(),
        search.is_ok(),
        "zones: {zones}\nsearch: {search}"
    );
    zones.is_ok()
}

#[test]
fn sequential_and_overlapping_histories_are_linearizable() {
    assert!(both(vec![]));
    assert!(both(vec![
        w(1, 1, 0, 10),
        r(2, 1, 20, 30),
        w(2, 2, 40, 50),
        r(1, 2, 60, 70)
    ]));
    // A read overlapping a write may see either value.
    assert!(both(vec![w(1, 1, 0, 10), r(2, 0, 5, 15), r(3, 1, 5, 15)]));
    let verdict = lin(vec![w(1, 1, 0, 10), r(2, 1, 20, 30)]);
    assert_eq!(verdict.to_string(), "linearizable: 2 ops, by zones");
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation_though_sequentially_consistent() {
    let ops = vec![w(1, 5, 0, 10), r(2, 0, 20, 30)];
    assert!(sc(ops.clone()).is_ok());
    assert!(!both(ops.clone()));
    let v = violation(ops);
    assert_eq!(v.ops(), vec![0, 1]);
    assert_eq!(
        v.to_string(),
        "the register held 5 before 0, as #0 client 1 write 5 (ok) [0..0.00001 ms] returned \
         before #1 client 2 read 0 (ok) [0.00002..0.00003 ms] was invoked; and it held 0 before \
         5, as 0 is the initial value: as each value is written once, no order of the \
         operations explains both (ops #0, #1)"
    );
    let Violation::Cycle { first, second } = v else {
        panic!("a cycle of two values")
    };
    assert_eq!((first.earlier, first.later), (Some(5), Some(0)));
    assert_eq!((second.earlier, second.later), (Some(0), Some(5)));
    assert!(second.because.is_none() && second.earlier_write.is_none());
}

#[test]
fn once_a_new_value_is_seen_an_old_one_cannot_come_back() {
    let ops = vec![w(1, 1, 0, 100), r(2, 1, 10, 20), r(3, 0, 30, 40)];
    assert!(!both(ops.clone()));
    let v = violation(ops);
    // The read of 1 returned before the read of 0 began; the write of 1 is its value's write.
    assert_eq!(v.ops(), vec![0, 1, 2]);
    assert!(
        v.to_string().starts_with(
            "the register held 1 before 0, as #1 client 2 read 1 (ok) [0.00001..0.00002 ms] \
             returned before #2 client 3 read 0 (ok)"
        ),
        "{v}"
    );
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    let ops = vec![w(1, 1, 0, 10), r(2, 7, 20, 30)];
    assert!(!both(ops.clone()));
    let v = violation(ops);
    assert_eq!(v.ops(), vec![1]);
    assert_eq!(
        v.to_string(),
        "#1 client 2 read 7 (ok) [0.00002..0.00003 ms] returned 7, but no operation wrote 7 \
         (op #1)"
    );
}

#[test]
fn a_read_that_ends_before_its_write_starts_is_a_violation() {
    let ops = vec![r(2, 1, 0, 10), w(1, 1, 20, 30)];
    assert!(!both(ops.clone()));
    let v = violation(ops);
    assert!(matches!(v, Violation::ReadBeforeWrite { .. }), "{v}");
    assert_eq!(v.ops(), vec![0, 1]);
    assert!(
        v.to_string()
            .starts_with("#0 client 2 read 1 (ok) [0..0.00001 ms] returned 1 before the only write of 1 was invoked: #1"),
        "{v}"
    );
    // Overlapping, the read may see the write.
    assert!(both(vec![r(2, 1, 0, 25), w(1, 1, 20, 30)]));
}

/// A primary that loses its state: acknowledged writes, then reads of the initial value again,
/// as after a restart, and a new write the restarted primary accepts.
#[test]
fn a_lost_acknowledged_write_is_a_violation_named_by_the_last_write_before_it() {
    let ops = vec![
        w(1, 1, 0, 10),
        r(2, 1, 20, 30),
        w(1, 2, 40, 50),
        r(2, 2, 60, 70),
        // The primary restarts: its register is back at 0.
        r(3, 0, 100, 110),
        w(1, 3, 120, 130),
        r(3, 3, 140, 150),
    ];
    assert!(sc(ops.clone()).is_ok(), "each client alone saw nothing odd");
    assert!(!both(ops.clone()));
    let v = violation(ops);
    assert_eq!(v.ops(), vec![2, 3, 4], "{v}");
    assert!(
        v.to_string().starts_with(
            "the register held 2 before 0, as #3 client 2 read 2 (ok) [0.00006..0.00007 ms] \
             returned before #4 client 3 read 0 (ok) [0.0001..0.00011 ms] was invoked; \
             and it held 0 before 2, as 0 is the initial value"
        ),
        "{v}"
    );
}

#[test]
fn two_writes_read_in_opposite_orders_are_a_violation() {
    // Write 1 then write 2, strictly; a later read of 1 puts 1 after 2.
    let ops = vec![w(1, 1, 0, 10), w(2, 2, 20, 30), r(3, 1, 40, 50)];
    assert!(!both(ops.clone()));
    let v = violation(ops);
    assert_eq!(v.ops(), vec![0, 1, 2]);
    assert_eq!(
        v.to_string(),
        "the register held 2 before 1, as #1 client 2 write 2 (ok) [0.00002..0.00003 ms] \
         returned before #2 client 3 read 1 (ok) [0.00004..0.00005 ms] was invoked; and it \
         held 1 before 2, as #0 client 1 write 1 (ok) [0..0.00001 ms] returned before #1 \
         client 2 write 2 (ok) [0.00002..0.00003 ms] was invoked: as each value is written \
         once, no order of the operations explains both (ops #0, #1, #2)"
    );
}

#[test]
fn the_earliest_violation_is_reported() {
    let mut ops = vec![w(1, 1, 0, 10)];
    // A thousand good rounds, then a stale read, then more good rounds and a second one.
    for i in 0..1000u64 {
        let t = 100 + i * 100;
        ops.push(w(1, i as i64 + 2, t, t + 10));
        ops.push(r(2, i as i64 + 2, t + 20, t + 30));
    }
    let stale = ops.len();
    ops.push(r(3, 500, 100_000, 100_010));
    ops.push(r(3, 900, 200_000, 200_010));
    let v = violation(ops);
    assert!(v.ops().contains(&stale), "{v}");
    assert!(!v.ops().contains(&(stale + 1)), "{v}");
}

#[test]
fn an_unknown_write_may_land_late_or_never() {
    let lost = w(1, 1, 0, 10).never_returned();
    assert!(both(vec![lost.clone(), r(2, 0, 20, 30), r(2, 1, 40, 50)]));
    assert!(
        both(vec![lost.clone(), r(2, 0, 20, 30)]),
        "it may never land"
    );
    assert!(!both(vec![lost.clone(), r(2, 1, 20, 30), r(2, 0, 40, 50)]));
    // Giving up at 10 does not stop the write from landing at 40.
    let timed_out = w(1, 1, 0, 10).with_outcome(Outcome::Unknown);
    assert!(both(vec![timed_out, r(2, 0, 20, 30), r(2, 1, 40, 50)]));
    // An unknown write nobody read is left out, even if its value is odd.
    let unread = w(1, 0, 0, 10).never_returned();
    assert!(lin(vec![unread, r(2, 0, 20, 30)]).is_ok());
}

#[test]
fn failed_writes_and_reads_never_count() {
    let failed = w(1, 1, 0, 10).with_outcome(Outcome::Fail);
    assert!(both(vec![failed.clone(), r(2, 0, 20, 30)]));
    assert!(!both(vec![failed.clone(), r(2, 1, 5, 30)]));
    let v = violation(vec![failed, r(2, 1, 5, 30)]);
    assert!(
        v.to_string()
            .contains("but the only write of 1 failed, so it was never applied: #0"),
        "{v}"
    );
    assert_eq!(v.ops(), vec![0, 1]);
    let failed_read = r(2, 9, 20, 30).with_outcome(Outcome::Fail);
    assert!(both(vec![w(1, 1, 0, 10), failed_read]));
}

#[test]
fn a_clients_own_operations_stay_in_order_even_with_equal_timestamps() {
    // Different clients: an operation returning at 10 and one invoked at 10 are concurrent.
    assert!(both(vec![w(1, 1, 0, 10), r(2, 0, 10, 20)]));
    // One client: its read follows its own write.
    assert!(!both(vec![w(1, 1, 0, 10), r(1, 0, 10, 20)]));
    // Both at once, at one instant, and a zero-length operation in the chain.
    assert!(both(vec![
        w(1, 1, 0, 10),
        r(1, 1, 10, 10),
        r(1, 1, 10, 20),
        r(2, 0, 10, 20),
        w(3, 2, 5, 10),
        r(4, 2, 10, 30),
    ]));
    assert!(!both(vec![
        w(1, 1, 0, 10),
        r(1, 1, 10, 10),
        r(1, 0, 10, 20)
    ]));
}

#[test]
fn two_simultaneous_handoffs_are_left_to_the_search() {
    // Clients 1 and 2 each return and invoke at 10: no intervals say "1's ops are ordered,
    // 2's are ordered, and each client's return is concurrent with the other's invocation".
    let ops = vec![
        w(1, 1, 0, 10),
        r(1, 2, 10, 20),
        w(2, 2, 0, 10),
        r(2, 2, 10, 20),
    ];
    let mut each_saw_the_other = ops.clone();
    each_saw_the_other[3] = r(2, 1, 10, 20);
    assert!(matches!(
        lin(each_saw_the_other).violation(),
        Some(Violation::Stuck(_))
    ));
    let verdict = lin(ops.clone());
    assert!(verdict.is_ok(), "{verdict}");
    assert!(
        matches!(
            verdict,
            Verdict::Ok(s) if s.method == Method::Search(WhySearch::SimultaneousHandoffs { at_ns: 10 })
        ),
        "{verdict}"
    );
}

#[test]
fn the_initial_value_need_not_be_zero() {
    let from = |initial: i64, ops: Vec<Op>| {
        let history = History::new(ops).with_initial(initial);
        let zones = linearizable::check(&history, |_| true, &Config::default()).unwrap();
        let search = linearizable::search(&history, |_| true, &Config::default()).unwrap();
        assert_eq!(zones.is_ok(), search.is_ok(), "{zones}\n{search}");
        zones
    };
    assert!(from(5, vec![r(1, 5, 0, 10), w(2, 6, 20, 30), r(1, 6, 40, 50)]).is_ok());
    let stale = from(5, vec![w(2, 6, 0, 10), r(1, 5, 20, 30)]);
    assert!(
        stale.to_string().contains("as 5 is the initial value"),
        "{stale}"
    );
    let v = from(5, vec![r(1, 0, 0, 10)]);
    assert!(v.to_string().contains("no operation wrote 0"), "{v}");
}

#[test]
fn repeated_values_are_left_to_the_search() {
    // The initial value written again: a read of 0 may see either.
    let ops = vec![w(1, 1, 0, 10), w(1, 0, 20, 30), r(2, 0, 40, 50)];
    let verdict = lin(ops);
    assert!(
        matches!(verdict, Verdict::Ok(s) if s.method == Method::Search(WhySearch::RepeatedValue { value: 0 })),
        "{verdict}"
    );
    assert!(
        verdict.to_string().contains("0 is written more than once"),
        "{verdict}"
    );
    let ops = vec![
        w(1, 1, 0, 10),
        w(2, 2, 20, 30),
        w(1, 1, 40, 50),
        r(2, 2, 60, 70),
    ];
    let verdict = lin(ops);
    assert!(
        matches!(verdict.violation(), Some(Violation::Stuck(_))),
        "{verdict}"
    );
}

#[test]
fn only_the_selected_operations_are_checked() {
    let ops = vec![
        w(1, 1, 0, 10).at(7000),
        r(2, 0, 20, 30).at(7001), // stale, but made at a backup
        r(3, 1, 40, 50).at(7000),
        w(2, 2, 60, 70).at(7001), // a write through a backup, read at the primary
        r(3, 2, 80, 90).at(7000),
    ];
    let history = History::new(ops);
    let at_primary = |op: &Op| op.server == Some(7000) || op.kind == OpKind::Write;
    let config = Config::default();
    let verdict = linearizable::check(&history, at_primary, &config).unwrap();
    assert!(
        matches!(verdict, Verdict::Ok(stats) if stats.ops == 4),
        "{verdict}"
    );
    assert!(
        !linearizable::check(&history, |_| true, &config)
            .unwrap()
            .is_ok()
    );
    // Leaving out the write that a selected read saw leaves that read nothing to read.
    let primary_port_only = |op: &Op| op.server == Some(7000);
    let verdict = linearizable::check(&history, primary_port_only, &config).unwrap();
    assert!(
        verdict
            .to_string()
            .contains("the only write of 2 is not among those checked"),
        "{verdict}"
    );
}

#[test]
fn the_state_budget_turns_a_long_search_into_exhausted() {
    // Many concurrent writes and a final read of a value nobody wrote: the search must try
    // every order of the writes before concluding; the zone check sees it at once.
    let mut ops: Vec<Op> = (1..=12).map(|v| w(v as u64, v, 0, 100)).collect();
    ops.push(r(99, 42, 200, 300));
    let history = History::new(ops);
    let tight = Config { max_states: 50 };
    let verdict = linearizable::search(&history, |_| true, &tight).unwrap();
    assert!(
        matches!(&verdict, Verdict::Exhausted(e) if e.states > 50),
        "{verdict}"
    );
    assert!(verdict.is_undecided() && !verdict.is_ok());
    assert!(verdict.to_string().starts_with("undecided: "), "{verdict}");
    let verdict = linearizable::search(&history, |_| true, &Config::default()).unwrap();
    assert!(verdict.violation().is_some(), "{verdict}");
    let verdict = linearizable::check(&history, |_| true, &tight).unwrap();
    assert!(
        matches!(
            verdict.violation(),
            Some(Violation::ReadOfUnwrittenValue { .. })
        ),
        "{verdict}"
    );
}

#[test]
fn a_long_sequential_history_does_not_overflow_the_stack() {
    let mut ops = Vec::new();
    for i in 0..50_000u64 {
        let t = i * 4;
        ops.push(w(i % 3, i as i64 + 1, t, t + 1));
        ops.push(r(3, i as i64 + 1, t + 2, t + 3));
    }
    assert!(lin(ops.clone()).is_ok());
    assert!(lin_search(ops.clone()).is_ok());
    // And a stale read at the very end is found, by both.
    ops.push(r(4, 1, 1_000_000, 1_000_001));
    let v = violation(ops.clone());
    assert_eq!(v.ops(), vec![0, 1, 99_998, 99_999, 100_000], "{v}");
    let Some(Violation::Stuck(stuck)) = lin_search(ops).violation().cloned() else {
        panic!("the search finds it too");
    };
    assert_eq!(stuck.prefix.len(), 100_000);
    assert_eq!(stuck.ops(), vec![99_998, 100_000]);
}
