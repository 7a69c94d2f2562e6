//! Scenario tests of the view-based replica over an in-memory network: replicas exchange typed
//! messages in order per pair, the test crashes, restarts and cuts them off, and time moves in
//! 5 ms steps. Each test names the rule of `docs/replication.md` it shows.

#[path = "replica/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use cluster::*;
use ditto_core::keyspace::Output;
use ditto_core::replica::log::Tag;
use ditto_core::replica::msg::Msg;
use ditto_core::{Addr, Effect, JoinAnswer, Millis, Replica, ReplicaConfig, Status, WriteOutcome};

/// How a seed write (`SET ditto:seed v`) ends when it succeeds.
const DONE: WriteOutcome = WriteOutcome::Done(Output::Ok);

#[test]
fn a_group_forms_and_every_replica_applies_each_write() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 5, 1_000), Some(DONE));
    assert_eq!(c.write_and_wait(7001, 6, 1_000), Some(DONE), "forwarded");
    c.run(300);
    for port in [7000, 7001, 7002] {
        assert_eq!(c.node(port).value(), 6, "{}", c.dump());
        assert_eq!(c.node(port).read_seed(), Ok(6));
    }
    assert!(
        c.log.iter().any(|l| l.contains("founding group")),
        "founding a group is announced"
    );
}

#[test]
fn backup_loss_stops_holding_writes_within_two_seconds() {
    let mut c = three();
    c.crash(7002);
    let token = c.write(7000, 9, None);
    let took = c.run_until(3_000, |c| c.done.contains_key(&token));
    let took = took.expect("the write never completed");
    assert!(
        took <= 2_000,
        "writes resumed after {took} ms:\n{}",
        c.dump()
    );
    assert_eq!(c.done[&token], DONE);
    assert!(
        !c.node(7000)
            .config()
            .active()
            .any(|(_, m)| m.addr.port() == 7002)
    );
    assert_eq!(c.node(7001).value(), 9);
}

#[test]
fn primary_loss_installs_a_new_primary_holding_every_acknowledged_write() {
    let mut c = three();
    for v in 1..=20 {
        assert_eq!(
            c.write_and_wait(7000 + (v as u16 % 3), v, 1_000),
            Some(DONE)
        );
    }
    c.crash(7000);
    let took = c.run_until(3_000, |c| !c.primaries().is_empty());
    let took = took.unwrap_or_else(|| panic!("no new primary:\n{}", c.dump()));
    assert!(took <= 3_000);
    let p = c.primaries()[0];
    assert_ne!(p, 7000);
    assert_eq!(c.node(p).value(), 20, "{}", c.dump());
    // A write sent to the other live server is forwarded to the new primary.
    let other = if p == 7001 { 7002 } else { 7001 };
    assert_eq!(
        c.write_and_wait(other, 21, 3_000),
        Some(DONE),
        "{}",
        c.dump()
    );
    c.run(300);
    assert_eq!(c.node(p).value(), 21);
    assert_eq!(c.node(other).value(), 21);
}

#[test]
fn an_isolated_primary_acknowledges_nothing_and_rejoins_as_a_backup() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 1, 1_000), Some(DONE));
    c.isolate(7000);
    let lost = c.write(7000, 2, None);
    c.run(3_000);
    assert_ne!(
        c.done.get(&lost),
        Some(&DONE),
        "a primary cut off from its majority acknowledged a write:\n{}",
        c.dump()
    );
    assert!(c.node(7000).read_seed().is_err(), "its lease has lapsed");
    let primaries = c.primaries();
    assert_eq!(primaries.len(), 1, "exactly one primary:\n{}", c.dump());
    let p = primaries[0];
    assert_ne!(p, 7000);
    assert_eq!(c.write_and_wait(p, 3, 1_000), Some(DONE));
    c.heal();
    let back = c.run_until(3_000, |c| {
        c.node(7000).status() == Status::Normal
            && !c.node(7000).is_primary()
            && c.node(7000).value() == 3
    });
    assert!(
        back.is_some(),
        "the old primary did not rejoin:\n{}",
        c.dump()
    );
    assert_eq!(c.primaries(), vec![p]);
}

#[test]
fn a_restarted_member_recovers_from_the_group_and_never_rolls_it_back() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 4, 1_000), Some(DONE));
    c.crash(7001);
    c.run(200);
    c.restart(7001);
    let ok = c.run_until(3_000, |c| {
        c.node(7001).status() == Status::Normal && c.node(7001).value() == 4
    });
    assert!(ok.is_some(), "{}", c.dump());
    assert_eq!(c.node(7000).value(), 4);
    // The restarted primary does not found a group of its own: the group claims it.
    c.crash(7000);
    c.run_until(3_000, |c| !c.primaries().is_empty())
        .expect("failover");
    c.restart(7000);
    let rejoined = c.run_until(3_000, |c| {
        c.node(7000).status() == Status::Normal && !c.node(7000).is_primary()
    });
    assert!(rejoined.is_some(), "{}", c.dump());
    assert_eq!(c.node(7000).value(), 4);
    assert_eq!(c.primaries().len(), 1);
}

#[test]
fn two_members_do_not_fail_over_but_hand_over_on_request() {
    let mut c = Cluster::new();
    c.start(7000, None);
    c.start(7001, Some(7000));
    c.run_until(5_000, |c| c.node(7000).config().active().count() == 2)
        .expect("formed");
    assert_eq!(c.write_and_wait(7001, 8, 1_000), Some(DONE));
    let to = c
        .node_mut(7000)
        .failover(None)
        .expect("a switchover starts");
    assert_eq!(to, addr(7001));
    c.run_until(2_000, |c| c.node(7001).is_primary())
        .expect("handed over");
    assert_eq!(c.node(7001).value(), 8);
    assert_eq!(c.write_and_wait(7000, 9, 1_000), Some(DONE));
    // Now the primary dies: with two members, nobody takes over on their own.
    c.crash(7001);
    c.run(4_000);
    assert!(c.primaries().is_empty());
    assert!(
        c.log.iter().any(|l| l.contains("no automatic failover")),
        "{}",
        c.dump()
    );
}

#[test]
fn a_retried_write_is_applied_once_across_a_failover() {
    let mut c = three();
    let tag = Some(Tag {
        client: 42,
        number: 1,
    });
    let first = c.write(7000, 10, tag);
    c.run_until(1_000, |c| c.done.contains_key(&first)).unwrap();
    assert_eq!(c.write_and_wait(7001, 11, 1_000), Some(DONE));
    c.crash(7000);
    c.run_until(3_000, |c| !c.primaries().is_empty()).unwrap();
    let p = c.primaries()[0];
    let retry = c.write(p, 10, tag);
    c.run_until(1_000, |c| c.done.contains_key(&retry)).unwrap();
    assert_eq!(c.done[&retry], DONE);
    assert_eq!(c.node(p).value(), 11, "the retry was not applied again");
}

#[test]
fn a_duplicate_forwarded_by_a_backup_gets_the_original_answer_and_changes_nothing() {
    let mut c = three();
    let tag = Some(Tag {
        client: 7,
        number: 3,
    });
    let first = c.write(7001, 20, tag);
    c.run_until(1_000, |c| c.done.contains_key(&first)).unwrap();
    assert_eq!(c.done[&first], DONE);
    assert_eq!(c.write_and_wait(7000, 21, 1_000), Some(DONE));
    // The same request again, through the other backup and at the primary: acknowledged as
    // the first was, and 21 stays.
    for at in [7002, 7000] {
        let dup = c.write(at, 20, tag);
        c.run_until(1_000, |c| c.done.contains_key(&dup)).unwrap();
        assert_eq!(c.done[&dup], DONE, "{}", c.dump());
    }
    c.run(300);
    for port in [7000, 7001, 7002] {
        assert_eq!(c.node(port).value(), 21, "at :{port}: {}", c.dump());
    }
}

#[test]
fn messages_of_an_older_view_or_from_strangers_are_refused() {
    let mut c = three();
    let view = c.node(7001).view();
    let now = c.now;
    let stale = Msg::Entries {
        view: view - 1,
        first: 1,
        entries: vec![],
        commit: 0,
        lease: true,
        sent: now,
    };
    let r = c.node_mut(7001).on_msg(now, addr(7000), stale);
    assert!(r.unwrap_err().contains("stale view"));
    let stranger = Msg::Entries {
        view,
        first: 1,
        entries: vec![],
        commit: 0,
        lease: true,
        sent: now,
    };
    let r = c.node_mut(7001).on_msg(now, addr(9999), stranger);
    assert!(r.unwrap_err().contains("not a member"));
    assert_eq!(c.node(7001).primary(), Some(&addr(7000)));
}

#[test]
fn a_primary_restarted_during_the_failover_is_claimed_by_its_group() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 3, 1_000), Some(DONE));
    c.crash(7000);
    c.run(50);
    c.restart(7000);
    c.run(4_000);
    assert!(
        !c.log
            .iter()
            .skip_while(|l| !l.contains("asking for votes"))
            .any(|l| l.contains("founding")),
        "the restarted primary founded a group of its own:\n{}",
        c.dump()
    );
    assert_eq!(c.primaries().len(), 1, "{}", c.dump());
    for port in [7000, 7001, 7002] {
        assert_eq!(c.node(port).value(), 3, "{}", c.dump());
    }
}

/// A primary killed and restarted before the others noticed joins through a backup that still
/// names it as the primary: it must recover from the group, not wait on itself.
#[test]
fn a_primary_restarted_at_once_recovers_through_a_backup_that_still_follows_it() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 1, 1_000), Some(DONE));
    // Move the primary role to a member whose contact is 7000, and bring 7000 back as its
    // backup.
    c.crash(7000);
    c.run_until(3_000, |c| !c.primaries().is_empty())
        .expect("failover");
    let p = c.primaries()[0];
    c.restart(7000);
    c.run_until(3_000, |c| {
        c.node(7000).status() == Status::Normal && c.node(7000).value() == 1
    })
    .unwrap_or_else(|| panic!("7000 did not rejoin:\n{}", c.dump()));
    assert_eq!(c.write_and_wait(p, 2, 1_000), Some(DONE));
    c.crash(p);
    c.run(50);
    c.restart(p);
    let back = c.run_until(5_000, |c| {
        c.node(p).status() == Status::Normal
            && !c.node(p).is_primary()
            && c.node(p).value() == 2
            && c.primaries().len() == 1
    });
    assert!(
        back.is_some(),
        "the restarted member did not recover:\n{}",
        c.dump()
    );
}

/// A replica whose every `JOIN` fails retries after 100 ms, then twice as long each time up to
/// 2 s, as the protocol's docs say: one failure advances the backoff once.
#[test]
fn a_failing_join_backs_off_by_doubling() {
    let cfg = ReplicaConfig::new(addr(7001), Some(addr(7000)), 1);
    let mut r = Replica::new(cfg, Millis(0));
    let mut joins = Vec::new();
    for now in (0..10_000).step_by(5) {
        r.tick(Millis(now));
        while let Some(effect) = r.poll() {
            if let Effect::Join { to } = effect {
                joins.push(now);
                r.on_join_answer(&to, JoinAnswer::Failed("refused".to_owned()));
            }
        }
    }
    let gaps: Vec<u64> = joins.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps[..7],
        [100, 200, 400, 800, 1600, 2000, 2000],
        "joins at {joins:?}"
    );
}

/// A tiny deterministic generator (splitmix64), so runs depend only on their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One seeded run: three or five replicas, clients writing unique values at random servers and
/// reading at whichever replica is primary, while replicas crash, restart and are cut off.
/// Checked throughout: at most one primary per view, and every replica's applied state at an
/// index equals every other's. Checked at the end: the history of writes and of reads at
/// primaries is linearizable, and once everything heals a write succeeds.
fn random_run(seed: u64, servers: u16) -> Result<usize, String> {
    use ditto_check::{History, Op as HOp, Outcome, linearizable};
    let mut rng = Rng(seed);
    let mut c = Cluster::new();
    c.start(7000, None);
    for i in 1..servers {
        c.start(7000 + i, Some(7000));
    }
    c.run_until(8_000, |c| {
        c.node(7000).config().active().count() == servers as usize
    })
    .ok_or("the group did not form")?;
    let mut history: Vec<HOp> = Vec::new();
    let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
    let mut primary_of_view: BTreeMap<(u64, u64), u16> = BTreeMap::new();
    let mut applied_at: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    let mut down: BTreeSet<u16> = BTreeSet::new();
    // A node crashed to be restarted at once, and when.
    let mut bounce: Option<(u16, u64)> = None;
    let mut tick = 0u64;
    let ns = |c: &Cluster, tick: u64| c.now.0 * 1_000_000 + tick;
    for step in 0..4_000u64 {
        tick += 1;
        // Faults, about one every 400 ms; at most `servers / 2` nodes down or cut off at once,
        // and no crash while a restarted node is still recovering: state lost by more than a
        // minority at once cannot be recovered without durable votes (docs/replication.md).
        let settled = c
            .nodes
            .values()
            .flatten()
            .all(|r| matches!(r.status(), Status::Normal | Status::ViewChange));
        if rng.below(80) == 0 && settled {
            let port = 7000 + rng.below(servers as u64) as u16;
            match rng.below(5) {
                0 if down.len() < (servers / 2) as usize
                    && !down.contains(&port)
                    && bounce.is_none() =>
                {
                    c.log.push(format!("{:?}: crash {port}", c.now));
                    c.crash(port);
                    down.insert(port);
                }
                1 if down.contains(&port) => {
                    c.log.push(format!("{:?}: restart {port}", c.now));
                    c.restart(port);
                    down.remove(&port);
                }
                2 if down.is_empty() => {
                    c.log.push(format!("{:?}: isolate {port}", c.now));
                    c.isolate(port)
                }
                3 if down.is_empty() && bounce.is_none() => {
                    // Killed and started again at once, before the others notice.
                    let back = c.now.0 + 50 + rng.below(350);
                    c.log
                        .push(format!("{:?}: crash {port}, restart at {back}", c.now));
                    c.crash(port);
                    bounce = Some((port, back));
                }
                _ => c.heal(),
            }
        }
        if let Some((port, back)) = bounce
            && c.now.0 >= back
        {
            c.restart(port);
            bounce = None;
        }
        // A client operation, about every 20 ms.
        if rng.below(4) == 0 {
            let port = 7000 + rng.below(servers as u64) as u16;
            if let Some(Some(r)) = c.nodes.get(&addr(port)) {
                // Every operation is a client of its own: they overlap freely.
                let client = history.len() as u64;
                if rng.below(2) == 0 {
                    let v = step as i64 + 1;
                    let token = c.write(port, v, None);
                    history.push(HOp::write(client, v, ns(&c, tick), 0).never_returned());
                    pending.insert(token, history.len() - 1);
                } else if r.is_primary()
                    && let Ok(v) = r.read_seed()
                {
                    let t = ns(&c, tick);
                    history.push(HOp::read(client, v, t, t + 1).at(port));
                }
            }
        }
        c.run(STEP);
        tick += 1;
        for (token, outcome) in std::mem::take(&mut c.done) {
            if let Some(i) = pending.remove(&token) {
                let op = &mut history[i];
                op.return_ns = Some(ns(&c, tick));
                op.outcome = match outcome {
                    WriteOutcome::Done(_) => Outcome::Ok,
                    WriteOutcome::Refused(_) => Outcome::Fail,
                    WriteOutcome::Unknown(_) => Outcome::Unknown,
                };
            }
        }
        for (a, r) in &c.nodes {
            let Some(r) = r else { continue };
            if r.is_primary()
                && let Some(other) = primary_of_view.insert((r.group(), r.view()), a.port())
                && other != a.port()
            {
                return Err(format!(
                    "two primaries in view {}: {other} and {a}\n{}",
                    r.view(),
                    c.dump()
                ));
            }
            let at = r.applied().index;
            if at > 0 {
                let v = r.value();
                if let Some(seen) = applied_at.insert((r.group(), at), v)
                    && seen != v
                {
                    return Err(format!(
                        "{a} applied {v} at {at}, another replica {seen}\n{}",
                        c.dump()
                    ));
                }
            }
        }
    }
    // Heal everything; the group must serve again.
    c.heal();
    for port in std::mem::take(&mut down)
        .into_iter()
        .chain(bounce.map(|(p, _)| p))
    {
        c.restart(port);
    }
    let p = c
        .run_until(10_000, |c| c.primaries().len() == 1)
        .map(|_| c.primaries()[0])
        .ok_or_else(|| format!("no primary after healing\n{}", c.dump()))?;
    match c.write_and_wait(p, -1, 5_000) {
        Some(DONE) => {}
        other => {
            return Err(format!(
                "a write after healing ended {other:?}\n{}",
                c.dump()
            ));
        }
    }
    // And every member recovers and follows it.
    c.run_until(10_000, |c| {
        let mut up = c.nodes.values().flatten();
        let first = up.next().map(|r| r.applied());
        c.nodes
            .values()
            .flatten()
            .all(|r| r.status() == Status::Normal && Some(r.applied()) == first)
    })
    .ok_or_else(|| format!("not every member recovered after healing\n{}", c.dump()))?;
    let t = ns(&c, tick + 1);
    history.push(HOp::write(history.len() as u64, -1, t, t + 1));
    let history = History::new(history);
    let verdict = linearizable::check(&history, |_| true, &linearizable::Config::default())
        .map_err(|e| format!("invalid history: {e}"))?;
    if !verdict.is_ok() {
        return Err(format!("not linearizable: {verdict:?}"));
    }
    Ok(history.len())
}

#[test]
fn random_faults_never_break_safety() {
    let seeds: u64 = std::env::var("DITTO_REPLICA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut ops = 0;
    let only: Option<u64> = std::env::var("DITTO_REPLICA_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for seed in (0..seeds).filter(|s| only.is_none_or(|o| o == *s)) {
        for servers in [3, 5] {
            match random_run(seed, servers) {
                Ok(n) => ops += n,
                Err(e) => panic!("seed {seed}, {servers} servers: {e}"),
            }
        }
    }
    assert!(ops > 0);
}

#[test]
fn a_read_waiting_for_the_commit_point_ends_when_the_primary_goes_silent() {
    use ditto_core::keyspace::KeyOp;
    use ditto_core::replica::log::{Entry, Payload};
    let mut c = three();
    let (view, last, commit) = {
        let b = c.node(7001);
        (b.view(), b.last().index, b.commit())
    };
    // The primary sent one more entry but crashed before anyone heard it was committed.
    let now = c.now;
    let entry = Entry {
        view,
        time: 0,
        payload: Payload::Write {
            op: KeyOp::seed_write(9),
            tag: None,
        },
    };
    let msg = Msg::Entries {
        view,
        first: last + 1,
        entries: vec![entry],
        commit,
        lease: true,
        sent: now,
    };
    c.node_mut(7001).on_msg(now, addr(7000), msg).unwrap();
    c.crash(7000);
    let barrier = c
        .node(7001)
        .read_barrier()
        .expect("the backup holds an uncommitted entry");
    assert!(!c.node(7001).barrier_passed(barrier));
    // Within its lease the read waits; once the lease lapses it goes ahead, and is refused.
    c.run_until(1_000, |c| c.node(7001).barrier_passed(barrier))
        .expect("the read was held past the backup's lease");
    assert!(c.node(7001).read_seed().is_err());
}

/// A switchover asked for just after the group formed, in a group of three, hands the primary
/// role to the backup named and to no other.
#[test]
fn a_switchover_right_after_forming_goes_to_the_backup_named() {
    for wait in [0, 5, 10, 20, 50, 100, 150, 200, 300] {
        for to in [7001, 7002] {
            let mut c = three();
            assert_eq!(c.write_and_wait(7000, 5, 1_000), Some(DONE));
            c.run(wait);
            c.node_mut(7000).failover(Some(addr(to))).expect("starts");
            let took = c.run_until(500, |c| c.node(to).is_primary());
            assert!(
                took.is_some(),
                "after {wait} ms, {to} did not take over:\n{}",
                c.dump()
            );
        }
    }
}

/// The primary's `Handover` and another member's messages of the next view reach the backup
/// named on different connections, in either order: a message of the next view from the other
/// backup may arrive first. The named backup must take over all the same (it used to drop the
/// `Handover` as stale, and the group elected someone else a second later).
#[test]
fn a_handover_overtaken_by_the_next_view_still_goes_to_the_backup_named() {
    let mut c = three();
    assert_eq!(c.write_and_wait(7000, 5, 1_000), Some(DONE));
    let to = addr(7002);
    c.node_mut(7000).failover(Some(to.clone())).expect("starts");
    c.drain(&addr(7000));
    let is_handover = |(from, dest, msg): &(Addr, Addr, Msg)| {
        *from == addr(7000) && *dest == to && matches!(msg, Msg::Handover { .. })
    };
    let i = c
        .queue
        .iter()
        .position(is_handover)
        .expect("a handover to the backup named");
    let held = c.queue.remove(i).unwrap();
    // Everything else moves first: 7001 learns of the handover and tells 7002 of the new view.
    let mut rest: Vec<_> = c.queue.drain(..).collect();
    while !rest.is_empty() {
        for (from, dest, msg) in rest.drain(..) {
            if let Some(Some(r)) = c.nodes.get_mut(&dest) {
                let _ = r.on_msg(c.now, from, msg);
            }
        }
        let now = Millis(c.now.0 + 1);
        for port in [7000, 7001, 7002] {
            c.node_mut(port).tick(now);
            c.drain(&addr(port));
        }
        rest = c.queue.drain(..).filter(|m| !is_handover(m)).collect();
    }
    c.queue.push_back(held);
    let took = c.run_until(300, |c| c.node(7002).is_primary());
    assert!(took.is_some(), "7002 did not take over:\n{}", c.dump());
    assert_eq!(c.node(7002).value(), 5);
}
