//! Hand-written histories with known linearizability verdicts.

use ditto_check::linearizable::{self, Config, Verdict, Violation};
use ditto_check::{History, Op, OpKind, Outcome};

use crate::support::{lin, r, sc, w};

fn violation(ops: Vec<Op>) -> Violation {
    match lin(ops) {
        Verdict::Violation(v) => v,
        other => panic!("expected a violation, got {other}"),
    }
}

#[test]
fn sequential_and_overlapping_histories_are_linearizable() {
    assert!(lin(vec![]).is_ok());
    assert!(
        lin(vec![
            w(1, 1, 0, 10),
            r(2, 1, 20, 30),
            w(2, 2, 40, 50),
            r(1, 2, 60, 70)
        ])
        .is_ok()
    );
    // A read overlapping a write may see either value.
    assert!(lin(vec![w(1, 1, 0, 10), r(2, 0, 5, 15), r(3, 1, 5, 15)]).is_ok());
}

#[test]
fn a_stale_read_in_real_time_is_a_violation_though_sequentially_consistent() {
    let ops = vec![w(1, 5, 0, 10), r(2, 0, 20, 30)];
    assert!(sc(ops.clone()).is_ok());
    let v = violation(ops);
    assert_eq!(v.prefix, vec![0], "the write linearizes, then nothing fits");
    assert_eq!(v.register, 5);
    assert_eq!(v.ops(), vec![0, 1]);
    assert_eq!(v.deadline.index, 1);
    let text = v.to_string();
    assert!(text.starts_with("only 1 of the 2 operations can be linearized; after them the register holds 5 (set by #0 client 1 write 5"), "{text}");
    assert!(
        text.contains("#1 client 2 read 0 (ok) [0.00002..0.00003 ms]"),
        "{text}"
    );
}

#[test]
fn once_a_new_value_is_seen_an_old_one_cannot_come_back() {
    let v = violation(vec![w(1, 1, 0, 100), r(2, 1, 10, 20), r(3, 0, 30, 40)]);
    assert_eq!(v.ops(), vec![0, 2]);
    assert!(v.stuck.iter().any(|op| op.index == 2));
}

#[test]
fn an_unknown_write_may_land_late_or_never() {
    let lost = w(1, 1, 0, 10).never_returned();
    assert!(lin(vec![lost.clone(), r(2, 0, 20, 30), r(2, 1, 40, 50)]).is_ok());
    assert!(
        lin(vec![lost.clone(), r(2, 0, 20, 30)]).is_ok(),
        "it may never land"
    );
    assert!(!lin(vec![lost.clone(), r(2, 1, 20, 30), r(2, 0, 40, 50)]).is_ok());
    // Giving up at 10 does not stop the write from landing at 40.
    let timed_out = w(1, 1, 0, 10).with_outcome(Outcome::Unknown);
    assert!(lin(vec![timed_out, r(2, 0, 20, 30), r(2, 1, 40, 50)]).is_ok());
}

#[test]
fn failed_writes_never_land() {
    let failed = w(1, 1, 0, 10).with_outcome(Outcome::Fail);
    assert!(lin(vec![failed.clone(), r(2, 0, 20, 30)]).is_ok());
    assert!(!lin(vec![failed, r(2, 1, 5, 30)]).is_ok());
}

#[test]
fn a_clients_own_operations_stay_in_order_even_with_equal_timestamps() {
    // Different clients: an operation returning at 10 and one invoked at 10 are concurrent.
    assert!(lin(vec![w(1, 1, 0, 10), r(2, 0, 10, 20)]).is_ok());
    // One client: its read follows its own write.
    assert!(!lin(vec![w(1, 1, 0, 10), r(1, 0, 10, 20)]).is_ok());
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
    assert!(
        !linearizable::check(&history, primary_port_only, &config)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn the_state_budget_turns_a_long_search_into_exhausted() {
    // Many concurrent writes and a final read of a value nobody wrote: the search must try
    // every order of the writes before concluding.
    let mut ops: Vec<Op> = (1..=12).map(|v| w(v as u64, v, 0, 100)).collect();
    ops.push(r(99, 42, 200, 300));
    let history = History::new(ops);
    let tight = Config { max_states: 50 };
    let verdict = linearizable::check(&history, |_| true, &tight).unwrap();
    assert!(
        matches!(verdict, Verdict::Exhausted(e) if e.states > 50),
        "{verdict}"
    );
    let verdict = linearizable::check(&history, |_| true, &Config::default()).unwrap();
    assert!(verdict.violation().is_some(), "{verdict}");
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
    // And a stale read at the very end is found.
    ops.push(r(4, 1, 1_000_000, 1_000_001));
    let v = violation(ops);
    assert_eq!(v.prefix.len(), 100_000);
    assert_eq!(v.ops(), vec![99_998, 100_000]);
}
