//! Scenario tests: the real primary and backup state machines wired through an in-memory network.

mod sim;

use sim::{Net, Rng};

const P: u16 = 7000;

fn cluster(backups: &[u16]) -> Net {
    let mut net = Net::default();
    net.add_primary(P);
    for &b in backups {
        net.add_backup(b, P);
    }
    net.run_in_order();
    net
}

#[test]
fn backups_join_and_follow_a_stream() {
    let net = cluster(&[7001, 7002]);
    for b in [7001, 7002] {
        assert!(net.backup(b).is_streaming(), "{:?}", net.logs);
    }
    let backups = net.primary(P).backups();
    assert_eq!(backups, vec![(7001, Some(0)), (7002, Some(0))]);
}

#[test]
fn a_write_is_acknowledged_only_after_every_backup_applied_it() {
    let mut net = cluster(&[7001, 7002]);
    let c = net.client(P);
    net.send(c, "WRITE:5");
    // Deliver only the client's line: the primary applies and streams, but must not answer yet.
    net.deliver_client(c);
    assert_eq!(net.primary(P).value(), 5);
    assert!(
        net.replies(c).is_empty(),
        "acknowledged before the backups applied the write"
    );
    net.run_in_order();
    assert_eq!(net.replies(c), ["ACK"]);
    assert_eq!(net.backup(7001).value(), 5);
    assert_eq!(net.backup(7002).value(), 5);
}

#[test]
fn a_write_through_a_backup_is_read_back_through_it() {
    let mut net = cluster(&[7001, 7002]);
    let c = net.client(7001);
    net.send(c, "WRITE:9");
    net.send(c, "READ");
    net.run(&mut Rng::new(3));
    assert_eq!(net.replies(c), ["ACK", "VALUE:9"]);
    assert_eq!(net.primary(P).value(), 9);
    assert_eq!(net.backup(7002).value(), 9);
}

#[test]
fn the_seed_messages_have_their_seed_meaning() {
    let mut net = cluster(&[7001]);
    let c = net.client(P);
    for line in ["READ", "UPDATE:4", "READ", "JOIN:7009"] {
        net.send(c, line);
    }
    net.run_in_order();
    assert_eq!(net.replies(c), ["VALUE:0", "ACK", "VALUE:4", "ACK"]);
    let b = net.client(7001);
    net.send(b, "READ");
    net.send(b, "JOIN:7003");
    net.run_in_order();
    assert_eq!(net.replies(b)[0], "VALUE:4");
    assert!(
        net.replies(b)[1].starts_with("ERR:"),
        "{:?}",
        net.replies(b)
    );
}

#[test]
fn bad_input_gets_an_error_and_changes_nothing() {
    let mut net = cluster(&[7001]);
    for port in [P, 7001] {
        let c = net.client(port);
        for line in [
            "WRITE:abc",
            "WRITE:",
            "FROB",
            "",
            "JOIN:0",
            "READ:1",
            "WRITE:1e3",
            "ACKED:3",
        ] {
            net.send(c, line);
        }
        net.send(c, "READ");
        net.run_in_order();
        let replies = net.replies(c);
        assert_eq!(replies.len(), 9);
        assert!(
            replies[..8].iter().all(|r| r.starts_with("ERR:")),
            "{replies:?}"
        );
        assert_eq!(replies[8], "VALUE:0");
    }
    assert_eq!(net.primary(P).last_seq(), 0);
}

#[test]
fn a_late_backup_starts_from_the_current_state() {
    let mut net = cluster(&[7001]);
    let c = net.client(P);
    net.send(c, "WRITE:42");
    net.run_in_order();
    net.add_backup(7002, P);
    net.run_in_order();
    assert_eq!(net.backup(7002).value(), 42);
    net.send(c, "WRITE:43");
    net.run_in_order();
    assert_eq!(net.backup(7002).value(), 43);
}

#[test]
fn a_backup_joining_while_writes_are_in_flight_misses_none() {
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut net = cluster(&[7001]);
        let c = net.client(P);
        let d = net.client(7001);
        net.send(c, "WRITE:1");
        net.send(d, "WRITE:2");
        net.add_backup(7002, P);
        net.send(c, "WRITE:3");
        net.run(&mut rng);
        let p = net.primary(P).value();
        assert_eq!(net.backup(7001).value(), p, "seed {seed}");
        assert_eq!(net.backup(7002).value(), p, "seed {seed}");
    }
}

#[test]
fn concurrent_writes_reach_every_replica_in_one_order() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut net = cluster(&[7001, 7002]);
        let clients: Vec<_> = [P, 7001, 7002, 7001]
            .iter()
            .map(|&p| net.client(p))
            .collect();
        for (i, &c) in clients.iter().enumerate() {
            for k in 0..3 {
                net.send(c, &format!("WRITE:{}", i * 10 + k));
            }
            net.send(c, "READ");
        }
        net.run(&mut rng);
        let p = net.primary(P);
        assert_eq!(p.last_seq(), 12, "seed {seed}");
        assert_eq!(p.commit_seq(), 12, "seed {seed}");
        for b in [7001, 7002] {
            assert_eq!(net.backup(b).value(), p.value(), "seed {seed}");
            assert_eq!(net.backup(b).applied().1, 12, "seed {seed}");
        }
        for (i, &c) in clients.iter().enumerate() {
            let r = net.replies(c);
            assert_eq!(r[..3], ["ACK", "ACK", "ACK"], "seed {seed}");
            // The read follows the client's own last write, so it sees it or a later write.
            assert!(r[3].starts_with("VALUE:"), "seed {seed}: {r:?}");
            let _ = i;
        }
    }
}

#[test]
fn a_dead_backup_is_dropped_and_writes_go_on() {
    let mut net = cluster(&[7001, 7002]);
    net.crash(7002);
    let c = net.client(P);
    net.send(c, "WRITE:8");
    net.run_in_order();
    assert_eq!(net.replies(c), ["ACK"]);
    assert_eq!(net.primary(P).backups(), vec![(7001, Some(1))]);
    // It comes back on the same port and catches up from a snapshot.
    net.add_backup(7002, P);
    net.run_in_order();
    assert_eq!(net.backup(7002).value(), 8);
}

#[test]
fn a_backup_rejoins_after_losing_its_primary() {
    let mut net = cluster(&[7001]);
    let c = net.client(P);
    net.send(c, "WRITE:5");
    net.run_in_order();
    net.crash(P);
    // The backup keeps serving reads while it retries the join.
    let r = net.client(7001);
    net.send(r, "READ");
    for _ in 0..20 {
        net.deliver_all_once();
        net.fire_timer();
    }
    assert_eq!(net.replies(r), ["VALUE:5"]);
    assert!(
        net.logs.iter().any(|l| l.contains("joining again")),
        "{:?}",
        net.logs
    );
    net.add_primary(P);
    net.run_in_order();
    assert!(net.backup(7001).is_streaming());
    // The new primary's state wins: without durability a restarted primary starts from 0.
    assert_eq!(net.backup(7001).value(), 0);
}

#[test]
fn a_backup_refuses_reads_until_it_has_joined() {
    let mut net = Net::default();
    net.add_backup(7001, P);
    let c = net.client(7001);
    net.send(c, "READ");
    net.deliver_client(c);
    net.deliver_all_once();
    assert_eq!(net.replies(c).len(), 1);
    assert!(
        net.replies(c)[0].starts_with("ERR:not joined"),
        "{:?}",
        net.replies(c)
    );
    net.add_primary(P);
    let w = net.client(P);
    net.send(w, "WRITE:3");
    net.run_in_order();
    net.send(c, "READ");
    net.run_in_order();
    assert_eq!(net.replies(c)[1], "VALUE:3");
}

/// Found by `ditto check --nemesis partition`: a backup whose stream was cut forwarded a client's
/// write as a plain `UPDATE` while rejoining; the primary acknowledged it without waiting for this
/// backup, so the client's next read at the backup did not see its own write.
#[test]
fn a_write_during_a_rejoin_is_acknowledged_only_once_the_backup_holds_it() {
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut net = cluster(&[7001, 7002]);
        net.sever(7001, P);
        let c = net.client(7001);
        net.send(c, "WRITE:77");
        net.send(c, "READ");
        net.run(&mut rng);
        assert_eq!(
            net.replies(c),
            ["ACK", "VALUE:77"],
            "seed {seed}: {:?}",
            net.logs
        );
        assert!(net.backup(7001).is_streaming(), "seed {seed}");
    }
}

#[test]
fn a_closed_sync_is_retried_before_settling_for_the_seed_protocol() {
    let mut net = cluster(&[]);
    net.add_backup(7001, P);
    // Deliver the JOIN and its answer, then break the SYNC connection once.
    for _ in 0..6 {
        net.deliver_all_once();
    }
    net.sever(7001, P);
    net.run_in_order();
    assert!(net.backup(7001).is_streaming(), "{:?}", net.logs);
}

#[test]
fn a_held_write_fails_unsent_when_the_primary_stays_away() {
    let mut net = cluster(&[7001]);
    net.crash(P);
    let c = net.client(7001);
    net.send(c, "WRITE:5");
    for _ in 0..50 {
        net.deliver_all_once();
        if !net.replies(c).is_empty() {
            break;
        }
        net.fire_timer();
    }
    assert_eq!(net.replies(c).len(), 1);
    assert!(
        net.replies(c)[0].contains("not applied"),
        "{:?}",
        net.replies(c)
    );
}

/// A read pipelined between two writes of the same connection sees the first write and not
/// the second, at the primary and at a backup, whatever the order of delivery.
#[test]
fn a_pipelined_read_sees_earlier_writes_of_its_connection_and_no_later_ones() {
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut net = cluster(&[7001, 7002]);
        let clients = [net.client(P), net.client(7001)];
        for c in clients {
            for line in ["WRITE:1", "READ", "WRITE:2", "READ", "WRITE:3"] {
                net.send(c, line);
            }
            net.run(&mut rng);
            assert_eq!(
                net.replies(c),
                ["ACK", "VALUE:1", "ACK", "VALUE:2", "ACK"],
                "seed {seed}"
            );
        }
    }
}

#[test]
fn a_join_naming_the_primary_itself_is_refused() {
    let mut net = cluster(&[7001]);
    let c = net.client(P);
    net.send(c, &format!("JOIN:{P}"));
    net.send(c, "WRITE:4");
    net.run_in_order();
    assert!(
        net.replies(c)[0].starts_with("ERR:"),
        "{:?}",
        net.replies(c)
    );
    assert_eq!(net.replies(c)[1], "ACK");
    // The same for a SYNC naming the primary: it would make this client connection a "backup".
    let s = net.client(P);
    net.send(s, &format!("SYNC:{P}"));
    net.send(s, "WRITE:5");
    net.run_in_order();
    assert!(
        net.replies(s)[0].starts_with("ERR:"),
        "{:?}",
        net.replies(s)
    );
    assert_eq!(net.replies(s)[1], "ACK");
    assert_eq!(net.primary(P).backups(), vec![(7001, Some(2))]);
}

/// Found by the model checker: a backup whose stream the primary closed, with the close lost,
/// followed a dead stream forever. Streams now carry heartbeats and time out.
#[test]
fn a_half_open_stream_is_noticed_and_the_backup_rejoins() {
    let mut net = cluster(&[7001]);
    // The primary's side closes (and the primary drops the backup); the backup never hears.
    net.half_open(P, 7001);
    let c = net.client(P);
    net.send(c, "WRITE:6");
    let converged = net.run_until(100, |n| {
        n.backup(7001).is_streaming() && n.backup(7001).value() == 6
    });
    assert!(converged, "{:?}", net.logs);
    assert!(
        net.logs
            .iter()
            .any(|l| l.contains("sent nothing on the stream")),
        "{:?}",
        net.logs
    );
    assert!(net.now.0 >= 3_000, "noticed only after the stream timeout");
}

/// A hung backup (its process stopped, its connections open) used to block every write
/// forever, as in the seed protocol. The primary now drops a backup it has not heard from for
/// `backup_timeout_ms`, and writes go on without it.
#[test]
fn a_hung_backup_is_dropped_and_writes_go_on() {
    let mut net = cluster(&[7001, 7002]);
    net.frozen.insert(7002);
    let c = net.client(P);
    net.send(c, "WRITE:9");
    net.deliver_client(c);
    assert!(net.replies(c).is_empty());
    let acked = net.run_until(100, |n| !n.replies(c).is_empty());
    assert!(acked, "{:?}", net.logs);
    assert_eq!(net.replies(c), ["ACK"]);
    assert!(
        net.now.0 >= 3_000,
        "the write waited for the backup timeout"
    );
    assert_eq!(net.primary(P).backups(), vec![(7001, Some(1))]);
    // The hung backup resumes, finds its stream gone, and catches up.
    net.frozen.clear();
    let caught_up = net.run_until(100, |n| {
        n.backup(7002).is_streaming() && n.backup(7002).value() == 9
    });
    assert!(caught_up, "{:?}", net.logs);
}

/// A write forwarded to a primary that hangs (its connections open, nothing answered) is not
/// waited for forever: once the stream has been silent for the stream timeout, the backup gives
/// up on its proposals and tells the client the outcome is unknown.
#[test]
fn a_write_forwarded_to_a_hung_primary_ends_with_an_unknown_outcome() {
    let mut net = cluster(&[7001]);
    net.frozen.insert(P);
    let c = net.client(7001);
    net.send(c, "WRITE:5");
    let answered = net.run_until(100, |n| !n.replies(c).is_empty());
    assert!(answered, "{:?}", net.logs);
    assert!(
        net.replies(c)[0].contains("outcome unknown"),
        "{:?}",
        net.replies(c)
    );
    assert!(net.now.0 >= 3_000, "given up only after the stream timeout");
}
