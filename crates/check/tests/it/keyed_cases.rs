//! Hand-written histories of keys, with incr, cas, mset and mget, whose verdicts are known: each
//! is checked for linearizability (part by part, by zones where a key has only reads and writes,
//! by the search otherwise) and for sequential consistency (part by part).

use ditto_check::linearizable::{self, Config, Method, Verdict, Violation, WhySearch};
use ditto_check::{History, Op, Outcome, seqcst};

fn lin_of(history: &History) -> Verdict {
    linearizable::check(history, |_| true, &Config::default()).expect("valid history")
}

fn lin(ops: Vec<Op>) -> Verdict {
    lin_of(&History::new(ops))
}

fn sc(ops: Vec<Op>) -> seqcst::Verdict {
    seqcst::check(&History::new(ops)).expect("valid history")
}

fn violation(ops: Vec<Op>) -> Violation {
    match lin(ops) {
        Verdict::Violation(v) => v,
        other => panic!("expected a violation, got {other}"),
    }
}

#[test]
fn keys_start_with_nothing_and_each_is_checked_by_zones() {
    let ops = vec![
        Op::get(1, "a", None, 0, 10),
        Op::set(1, "a", 1, 20, 30),
        Op::get(2, "a", Some(1), 40, 50),
        Op::get(2, "b", None, 60, 70),
        Op::set(3, "b", 1, 60, 70),
        Op::get(3, "b", Some(1), 80, 90),
    ];
    let verdict = lin(ops.clone());
    let Verdict::Ok(stats) = &verdict else {
        panic!("{verdict}")
    };
    assert_eq!((stats.ops, stats.parts, stats.searched), (6, 2, 0));
    assert_eq!(stats.method, Method::Zones);
    assert_eq!(
        verdict.to_string(),
        "linearizable: 6 ops in 2 parts, 2 by zones"
    );
    let sc = sc(ops);
    assert!(sc.is_ok(), "{sc}");
    assert!(
        sc.to_string().ends_with("each of 2 parts on its own"),
        "{sc}"
    );
}

#[test]
fn two_keys_fine_on_their_own_pass_though_one_register_would_not() {
    let keyed = vec![
        Op::set(1, "a", 1, 0, 10),
        Op::set(2, "b", 2, 20, 30),
        Op::get(3, "a", Some(1), 40, 50),
        Op::get(4, "b", Some(2), 40, 50),
    ];
    assert!(lin(keyed.clone()).is_ok());
    assert!(sc(keyed).is_ok());
    // The same operations on the single register: 1 is read after 2 overwrote it.
    let one = vec![
        Op::write(1, 1, 0, 10),
        Op::write(2, 2, 20, 30),
        Op::read(3, 1, 40, 50),
        Op::read(4, 2, 40, 50),
    ];
    assert!(!lin(one).is_ok());
}

#[test]
fn a_stale_read_of_a_key_names_the_key() {
    let ops = vec![Op::set(1, "k1", 5, 0, 10), Op::get(2, "k1", None, 20, 30)];
    let v = violation(ops.clone());
    assert_eq!(v.ops(), vec![0, 1]);
    assert_eq!(
        v.to_string(),
        "key k1 held 5 before nothing, as #0 client 1 write k1 5 (ok) [0..0.00001 ms] returned \
         before #1 client 2 read k1 nothing (ok) [0.00002..0.00003 ms] was invoked; and it held \
         nothing before 5, as a key holds nothing until it is written: as each value is \
         written once, no order of the operations explains both (ops #0, #1)"
    );
    // Sequentially consistent: client 2 may simply not have seen the write yet.
    assert!(sc(ops).is_ok());
    // A read of a value no operation wrote to that key, though another key holds it.
    let v = violation(vec![
        Op::set(1, "a", 7, 0, 10),
        Op::get(2, "b", Some(7), 20, 30),
    ]);
    assert_eq!(v.ops(), vec![1]);
    assert!(
        v.to_string()
            .ends_with("returned 7, but no operation wrote 7 to key b (op #1)"),
        "{v}"
    );
}

#[test]
fn increments_that_add_up_pass() {
    // Two concurrent increments may land in either order; a third after both sees their sum.
    let ops = vec![
        Op::incr(1, "n", 1, 2, 0, 10),
        Op::incr(2, "n", 1, 1, 0, 10),
        Op::incr(3, "n", 5, 7, 20, 30),
        Op::get(1, "n", Some(7), 40, 50),
    ];
    let verdict = lin(ops.clone());
    let Verdict::Ok(stats) = verdict else {
        panic!("{verdict}")
    };
    assert_eq!(
        stats.method,
        Method::Search(WhySearch::NotReadWrite {
            kind: ditto_check::OpKind::Incr
        })
    );
    assert!(sc(ops).is_ok());
    // An incr whose outcome is unknown may have happened: it explains a sum of 2.
    let maybe = vec![
        Op::incr(1, "n", 1, 0, 0, 10).with_outcome(Outcome::Unknown),
        Op::incr(2, "n", 1, 2, 20, 30),
    ];
    assert!(lin(maybe.clone()).is_ok());
    assert!(sc(maybe).is_ok());
    // A failed one did not.
    let failed = vec![
        Op::incr(1, "n", 1, 0, 0, 10).with_outcome(Outcome::Fail),
        Op::incr(2, "n", 1, 2, 20, 30),
    ];
    assert!(!lin(failed.clone()).is_ok());
    assert!(!sc(failed).is_ok());
}

#[test]
fn an_impossible_increment_result_is_a_violation() {
    // One after the other, two increments by 1 of a fresh key cannot both return 1.
    let ops = vec![
        Op::incr(1, "hits", 1, 1, 0, 10),
        Op::incr(2, "hits", 1, 1, 20, 30),
    ];
    let v = violation(ops.clone());
    let Violation::Stuck(stuck) = &v else {
        panic!("{v}")
    };
    assert_eq!(stuck.prefix, vec![0]);
    assert_eq!(v.ops(), vec![0, 1]);
    assert_eq!(
        v.to_string(),
        "only 1 of the 2 operations on key hits can be linearized; after them key hits holds 1 \
         (set by #0 client 1 incr hits by 1 -> 1 (ok) [0..0.00001 ms]), and no operation that \
         could take effect next fits: #1 client 2 incr hits by 1 -> 1 (ok) [0.00002..0.00003 \
         ms]. One of them had to take effect before #1 returned at 0.00003 ms"
    );
    // Concurrent, they still cannot: one of them comes second and sees the other.
    let concurrent = vec![
        Op::incr(1, "hits", 1, 1, 0, 30),
        Op::incr(2, "hits", 1, 1, 10, 20),
    ];
    assert!(!lin(concurrent.clone()).is_ok());
    let sc = sc(concurrent);
    let Some(seqcst::Violation::Stuck(stuck)) = sc.violation() else {
        panic!("{sc}")
    };
    assert_eq!(stuck.prefix.len(), 1);
    assert!(
        sc.to_string()
            .contains("on key hits, only 1 of the 2 operations fit"),
        "{sc}"
    );
}

#[test]
fn a_swap_that_could_not_have_happened_is_a_violation() {
    // The key holds 1; a cas from 2 reports a swap.
    let ops = vec![
        Op::set(1, "k", 1, 0, 10),
        Op::cas(2, "k", Some(2), 3, true, 20, 30),
    ];
    let v = violation(ops.clone());
    assert_eq!(v.ops(), vec![0, 1]);
    assert!(
        v.to_string()
            .contains("after them key k holds 1 (set by #0 client 1 write k 1 (ok)"),
        "{v}"
    );
    assert!(v.to_string().contains("cas k 2 -> 3, swapped"), "{v}");
    assert!(
        !sc(ops).is_ok(),
        "no order puts the swap where the key held 2"
    );
    // And one that reports no swap where it must have swapped.
    let refused = vec![
        Op::set(1, "k", 2, 0, 10),
        Op::cas(1, "k", Some(2), 3, false, 20, 30),
    ];
    assert!(!lin(refused.clone()).is_ok());
    assert!(!sc(refused).is_ok());
}

#[test]
fn swaps_that_fit_pass() {
    // Two concurrent cas from nothing: exactly one may win, and a later read sees the winner.
    let ops = vec![
        Op::cas(1, "lock", None, 1, true, 0, 10),
        Op::cas(2, "lock", None, 2, false, 0, 10),
        Op::get(3, "lock", Some(1), 20, 30),
        Op::cas(3, "lock", Some(1), 5, true, 40, 50),
        Op::incr(1, "lock", 1, 6, 60, 70),
    ];
    assert!(lin(ops.clone()).is_ok(), "{}", lin(ops.clone()));
    assert!(sc(ops).is_ok());
    // Both cannot win.
    let both = vec![
        Op::cas(1, "lock", None, 1, true, 0, 10),
        Op::cas(2, "lock", None, 2, true, 0, 10),
    ];
    assert!(!lin(both.clone()).is_ok());
    assert!(!sc(both).is_ok());
}

#[test]
fn an_mset_seen_half_applied_by_an_mget_is_a_violation() {
    // The mget runs alongside the mset and sees one of its keys set and not the other: no
    // moment ever had that.
    let ops = vec![
        Op::mset(1, [("a", 1), ("b", 1)], 0, 30),
        Op::mget(2, [("a", Some(1)), ("b", None)], 10, 20),
    ];
    let v = violation(ops.clone());
    let Violation::Stuck(stuck) = &v else {
        panic!("{v}")
    };
    assert_eq!(stuck.part, vec![Some("a".to_owned()), Some("b".to_owned())]);
    assert_eq!(v.ops(), vec![0, 1]);
    // The mset may come first, and then the mget does not fit.
    assert_eq!(stuck.prefix, vec![0]);
    assert_eq!(
        v.to_string(),
        "only 1 of the 2 operations on keys a, b can be linearized; after them key a holds 1 \
         (set by #0 client 1 mset a=1 b=1 (ok) [0..0.00003 ms]), key b holds 1 (set by #0 client \
         1 mset a=1 b=1 (ok) [0..0.00003 ms]), and no operation that could take effect next \
         fits: #1 client 2 mget a b -> 1 nothing (ok) [0.00001..0.00002 ms]. One of them had to \
         take effect before #1 returned at 0.00002 ms"
    );
    let sc = sc(ops);
    assert!(sc.violation().is_some(), "{sc}");
    assert!(sc.to_string().contains("on keys a, b"), "{sc}");
}

#[test]
fn an_mset_seen_whole_passes() {
    let ops = vec![
        Op::mset(1, [("a", 1), ("b", 1)], 0, 30),
        Op::mget(2, [("a", None), ("b", None)], 5, 25),
        Op::mget(3, [("b", Some(1)), ("a", Some(1))], 10, 20),
        Op::set(1, "a", 2, 40, 50),
        Op::get(2, "a", Some(2), 60, 70),
        Op::mget(2, [("a", Some(2)), ("b", Some(1))], 80, 90),
    ];
    let verdict = lin(ops.clone());
    let Verdict::Ok(stats) = verdict else {
        panic!("{verdict}")
    };
    assert_eq!(
        stats.method,
        Method::Search(WhySearch::MultiKey { keys: 2 })
    );
    assert!(sc(ops).is_ok());
    // Once the mget has seen the mset, a later read of either key cannot go back.
    let back = vec![
        Op::mset(1, [("a", 1), ("b", 1)], 0, 30),
        Op::mget(2, [("a", Some(1)), ("b", Some(1))], 10, 20),
        Op::get(3, "b", None, 25, 35),
    ];
    assert!(!lin(back).is_ok());
}

#[test]
fn an_unknown_mset_may_land_later_and_a_failed_one_never() {
    let seen_late = vec![
        Op::mset(1, [("a", 1), ("b", 2)], 0, 10).with_outcome(Outcome::Unknown),
        Op::mget(2, [("a", None), ("b", None)], 20, 30),
        Op::mget(2, [("a", Some(1)), ("b", Some(2))], 40, 50),
    ];
    assert!(lin(seen_late.clone()).is_ok());
    assert!(sc(seen_late).is_ok());
    let failed = vec![
        Op::mset(1, [("a", 1), ("b", 2)], 0, 10).with_outcome(Outcome::Fail),
        Op::get(2, "a", Some(1), 20, 30),
    ];
    assert!(!lin(failed.clone()).is_ok());
    assert!(!sc(failed).is_ok());
    // A failed mset links nothing: each key stays a part of its own, checked by zones.
    let history = History::new(vec![
        Op::mset(1, [("a", 1), ("b", 2)], 0, 10).with_outcome(Outcome::Fail),
        Op::set(1, "a", 3, 20, 30),
        Op::set(3, "b", 4, 20, 30).with_outcome(Outcome::Fail),
        Op::set(2, "b", 5, 40, 50),
    ]);
    assert_eq!(history.parts().len(), 2);
    let verdict = lin_of(&history);
    assert!(
        matches!(verdict, Verdict::Ok(s) if s.method == Method::Zones),
        "{verdict}"
    );
}

#[test]
fn the_single_register_and_keys_are_checked_side_by_side() {
    let history = History::new(vec![
        Op::write(1, 5, 0, 10),
        Op::read(2, 5, 20, 30),
        Op::incr(3, "n", 2, 2, 0, 10),
        Op::get(3, "n", Some(2), 20, 30),
        // Stale: the single register held 5 by then.
        Op::read(4, 0, 40, 50),
    ])
    .with_initial(0);
    let verdict = lin_of(&history);
    let v = verdict
        .violation()
        .expect("the single register's stale read");
    assert_eq!(v.ops(), vec![0, 1, 4]);
    assert!(
        v.to_string().starts_with("the register held 5 before 0"),
        "{v}"
    );
    let parts = history.parts();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].keys, vec![None]);
    assert_eq!(parts[1].keys, vec![Some("n".to_owned())]);
}

#[test]
fn the_smallest_violation_of_all_parts_is_reported() {
    let ops = vec![
        // Key a: a violation in three operations.
        Op::set(1, "a", 1, 0, 10),
        Op::set(1, "a", 2, 20, 30),
        Op::get(2, "a", Some(1), 40, 50),
        // Key b, later: a violation in one.
        Op::get(3, "b", Some(9), 60, 70),
    ];
    let v = violation(ops);
    assert_eq!(v.ops(), vec![3]);
}

#[test]
fn repeated_values_of_a_key_go_to_the_search() {
    let ops = vec![
        Op::set(1, "k", 1, 0, 10),
        Op::set(2, "k", 2, 20, 30),
        Op::set(1, "k", 1, 40, 50),
        Op::get(2, "k", Some(1), 60, 70),
    ];
    let verdict = lin(ops.clone());
    assert!(
        matches!(verdict, Verdict::Ok(s) if s.method == Method::Search(WhySearch::RepeatedValue { value: 1 })),
        "{verdict}"
    );
    let sc = sc(ops);
    assert!(sc.is_ok(), "{sc}");
    let stale = vec![
        Op::set(1, "k", 1, 0, 10),
        Op::set(2, "k", 2, 20, 30),
        Op::set(1, "k", 1, 40, 50),
        Op::get(2, "k", Some(2), 60, 70),
    ];
    assert!(!lin(stale.clone()).is_ok());
    // Client 2 wrote 2 and then read its own write back: fine without real time.
    assert!(seqcst::check(&History::new(stale)).unwrap().is_ok());
}

/// The weakness the module documentation admits: each key has an order, the whole does not.
#[test]
fn sequential_consistency_part_by_part_misses_what_only_the_whole_shows() {
    let ops = vec![
        Op::set(1, "x", 1, 0, 10),
        Op::get(1, "y", None, 20, 30),
        Op::set(2, "y", 1, 0, 10),
        Op::get(2, "x", None, 20, 30),
    ];
    assert!(
        sc(ops.clone()).is_ok(),
        "per key, each read may precede the other write"
    );
    // Linearizability composes, so the same history fails it: both reads began after both
    // writes had returned.
    assert!(!lin(ops).is_ok());
}

#[test]
fn an_undecided_search_names_the_part() {
    // Many increments whose outcome is unknown, then a read of a sum none of their subsets
    // gives: the search tries every subset in every order, more states than its budget.
    let mut ops: Vec<Op> = (0..12)
        .map(|c| Op::incr(c, "n", 1 << c, 0, 0, 100).with_outcome(Outcome::Unknown))
        .collect();
    ops.push(Op::get(20, "n", Some(-1), 200, 300));
    let history = History::new(ops);
    let verdict = linearizable::check(&history, |_| true, &Config { max_states: 50 }).unwrap();
    assert!(verdict.is_undecided(), "{verdict}");
    assert!(
        verdict.to_string().starts_with("undecided on key n: "),
        "{verdict}"
    );
    let sc = seqcst::check_with(&history, &seqcst::Config { max_states: 50 }).unwrap();
    assert!(sc.is_undecided(), "{sc}");
    assert!(
        sc.to_string()
            .starts_with("undecided: the search of key n gave up"),
        "{sc}"
    );
    // With room enough, both decide: no order of the increments sums to -1.
    assert!(lin_of(&history).violation().is_some());
    assert!(seqcst::check(&history).unwrap().violation().is_some());
}

/// After an unknown operation its client is a new process, whichever key that operation
/// touched: each part is checked with the whole history's processes, so that a part never
/// fails where the whole history would pass.
#[test]
fn an_unknown_operation_on_one_key_starts_a_new_process_for_every_key() {
    for later in [Op::set(1, "c", 2, 40, 50), Op::incr(1, "c", 2, 2, 40, 50)] {
        let ops = vec![
            Op::get(1, "c", Some(2), 0, 10),
            Op::get(1, "a", None, 20, 30).with_outcome(Outcome::Unknown),
            later.clone(),
        ];
        let verdict = sc(ops);
        assert!(verdict.is_ok(), "{later}: {verdict}");
        // Without the unknown operation in between, the client read what it only wrote later.
        let verdict = sc(vec![Op::get(1, "c", Some(2), 0, 10), later.clone()]);
        assert!(verdict.violation().is_some(), "{later}: {verdict}");
    }
}
