//! The wire protocol as seen from outside: real `ditto` processes on loopback ports, driven by a
//! blocking line client, and peers played by the tests where a seed-only implementation is needed.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;

// ---------------------------------------------------------------------------------------------
// Seed messages at each role
// ---------------------------------------------------------------------------------------------

#[test]
fn primary_answers_each_seed_message() {
    let primary = Server::primary(free_port());
    let p = primary.port;
    let mut c = Conn::connect(p);
    assert_eq!(c.request("READ"), "VALUE:0", "a fresh store holds 0");
    assert_eq!(c.request("WRITE:5"), "ACK");
    assert_eq!(c.request("READ"), "VALUE:5");
    assert_eq!(c.request("UPDATE:-7"), "ACK", "UPDATE acts like WRITE");
    assert_eq!(c.request("READ"), "VALUE:-7");
    assert_eq!(c.request(&format!("WRITE:{}", i64::MAX)), "ACK");
    assert_eq!(c.request("READ"), format!("VALUE:{}", i64::MAX));

    // Verbs in any case, CRLF terminators.
    c.send_raw(b"write:11\r\nRead\r\n");
    assert_eq!(c.recv(), "ACK");
    assert_eq!(c.recv(), "VALUE:11");

    // JOIN from a seed backup: acknowledged (in one line that also shows a ditto primary, which a
    // seed backup takes as any acknowledgement), then the backup is sent the current value.
    let (fake, fake_port) = listen();
    let ack = c.request(&format!("JOIN:{fake_port}"));
    assert!(ack.starts_with("ACK ditto=1 "), "{ack}");
    let mut push = accept(&fake);
    assert_eq!(
        push.recv(),
        "UPDATE:11",
        "a joined backup first gets the current value"
    );
    push.send("ACK");
    push.expect_closed();
    wait_until("the primary lists the seed backup", TIMEOUT, || {
        status(p).is_some_and(|s| {
            members(&s).iter().any(|(port, kind, state, _)| {
                *port == fake_port && kind == "seed" && state == "active"
            })
        })
    });

    // From now on every write reaches it.
    c.send("WRITE:12");
    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:12");
    push.send("ACK");
    assert_eq!(c.recv(), "ACK");
    assert_eq!(c.request("READ"), "VALUE:12");
}

#[test]
fn only_the_primary_answers_a_linearizable_read() {
    let cluster = start_cluster(2);
    let p = cluster.primary_port();
    write(p, 4);
    assert_eq!(request(p, "READ:linearizable"), "VALUE:4");
    for b in cluster.backup_ports() {
        let mut c = Conn::connect(b);
        assert_eq!(
            c.request("READ:linearizable"),
            format!("ERR:not the primary; the primary is 127.0.0.1:{p}"),
            "at the backup :{b}"
        );
        assert_eq!(
            c.request("READ"),
            "VALUE:4",
            "a plain READ is answered there"
        );
        assert_eq!(
            c.request("READ:x"),
            "ERR:READ takes no argument, or READ:linearizable"
        );
    }
}

#[test]
fn streaming_backup_answers_each_seed_message() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    let mut c = Conn::connect(b);
    assert_eq!(c.request("READ"), "VALUE:0");
    assert_eq!(c.request("WRITE:5"), "ACK");
    assert_eq!(c.request("READ"), "VALUE:5");
    assert_eq!(read(p), 5, "a write through a backup reaches the primary");

    // A backup that follows a stream takes no UPDATE pushes.
    let reply = c.request("UPDATE:9");
    assert!(
        reply.starts_with("ERR:"),
        "UPDATE at a streaming backup got {reply:?}"
    );
    assert_eq!(
        c.request("READ"),
        "VALUE:5",
        "a refused UPDATE changes nothing"
    );
    assert_eq!(read(p), 5);

    // Only the primary takes JOIN; SYNC is no verb of the protocol.
    let other = free_port();
    for line in [format!("JOIN:{other}"), format!("SYNC:{other}")] {
        let reply = c.request(&line);
        assert!(
            reply.starts_with("ERR:"),
            "{line} at a backup got {reply:?}"
        );
    }
    assert_eq!(c.request("READ"), "VALUE:5");
    let links = members(&status(p).expect("primary status"));
    assert_eq!(
        links.len(),
        2,
        "a JOIN sent to a backup registered nothing: {links:?}"
    );

    let st = c.request("STATUS");
    assert_eq!(field(&st, "role"), Some("backup"), "{st}");
    assert_eq!(field(&st, "status"), Some("normal"), "{st}");
    assert_eq!(
        field(&st, "primary"),
        Some(format!("127.0.0.1:{p}").as_str()),
        "{st}"
    );
    assert_eq!(field(&st, "value"), Some("5"), "{st}");
}

// ---------------------------------------------------------------------------------------------
// Visibility and ordering
// ---------------------------------------------------------------------------------------------

#[test]
fn a_write_acknowledged_anywhere_is_readable_everywhere_at_once() {
    let cluster = start_cluster(3);
    let ports = cluster.ports();
    let mut conns: Vec<Conn> = ports.iter().map(|&p| Conn::connect(p)).collect();
    let mut v = 100;
    for _round in 0..5 {
        for writer in 0..ports.len() {
            v += 1;
            assert_eq!(conns[writer].request(&format!("WRITE:{v}")), "ACK");
            // No waiting: the acknowledgement itself promises every replica holds the write.
            for (reader, conn) in conns.iter_mut().enumerate() {
                assert_eq!(
                    conn.read_value(),
                    v,
                    "read at :{} right after WRITE:{v} was acknowledged by :{}",
                    ports[reader],
                    ports[writer]
                );
            }
        }
    }
}

#[test]
fn a_pipelined_read_behind_a_write_sees_it() {
    let cluster = start_cluster(2);
    for port in cluster.ports() {
        let mut c = Conn::connect(port);
        for i in 0..20 {
            let v = i64::from(port) * 1000 + i;
            c.send_raw(format!("WRITE:{v}\nREAD\n").as_bytes());
            assert_eq!(c.recv(), "ACK", "WRITE:{v} at :{port}");
            assert_eq!(
                c.recv(),
                format!("VALUE:{v}"),
                "READ behind WRITE:{v} at :{port}"
            );
        }
    }
}

#[test]
fn a_thousand_pipelined_requests_are_answered_in_order() {
    let cluster = start_cluster(1);
    for port in cluster.ports() {
        // Five kinds of request in turn, so that any reordering shows up as a reply of the wrong
        // kind; writes carry increasing values, so values read must never go down either.
        let kinds = ["ACK", "VALUE:", "ERR:", "STATUS:", "VALUE:"];
        let mut batch = String::new();
        for i in 0..1000i64 {
            match i % 5 {
                0 => batch.push_str(&format!("WRITE:{}\n", i64::from(port) * 10_000 + i)),
                1 => batch.push_str("READ\n"),
                2 => batch.push_str("FROB\n"),
                3 => batch.push_str("STATUS\r\n"),
                _ => batch.push_str("read\n"),
            }
        }
        let mut c = Conn::connect(port);
        c.send_raw(batch.as_bytes());
        let mut last_read = i64::MIN;
        for i in 0..1000i64 {
            let got = c.recv();
            let want = kinds[(i % 5) as usize];
            assert!(
                got.starts_with(want),
                "reply {i} at :{port}: expected {want:?}, got {got:?}"
            );
            if let Some(v) = parse_value(&got) {
                let own_write = i64::from(port) * 10_000 + i - i % 5;
                assert!(
                    v >= own_write && v >= last_read,
                    "reply {i} at :{port}: {got:?} after WRITE:{own_write} and VALUE:{last_read}"
                );
                last_read = v;
            }
        }
        // Exactly 1000 replies: the next one answers the next request.
        let last_write = i64::from(port) * 10_000 + 995;
        assert_eq!(c.request("READ"), format!("VALUE:{last_write}"));
    }
}

#[test]
fn a_pipelined_read_does_not_see_writes_sent_after_it() {
    let cluster = start_cluster(1);
    for port in cluster.ports() {
        let mut c = Conn::connect(port);
        for round in 0..10i64 {
            let (v1, v2) = (round * 10 + 1, round * 10 + 2);
            c.send_raw(format!("WRITE:{v1}\nREAD\nWRITE:{v2}\nREAD\n").as_bytes());
            let replies: Vec<String> = (0..4).map(|_| c.recv()).collect();
            assert_eq!(
                replies,
                [
                    "ACK".to_owned(),
                    format!("VALUE:{v1}"),
                    "ACK".into(),
                    format!("VALUE:{v2}")
                ],
                "at :{port}: the first READ was sent before WRITE:{v2}"
            );
        }
    }
}

#[test]
fn a_half_closed_connection_still_gets_its_replies() {
    let cluster = start_cluster(1);
    for (i, port) in cluster.ports().into_iter().enumerate() {
        let v = 70 + i as i64;
        let mut c = Conn::connect(port);
        c.send_raw(format!("WRITE:{v}\nREAD").as_bytes());
        c.shutdown_write();
        assert_eq!(c.recv(), "ACK", "at :{port}");
        assert_eq!(
            c.recv(),
            format!("VALUE:{v}"),
            "unterminated READ at :{port}"
        );
        c.expect_closed();

        let mut c = Conn::connect(port);
        c.send_raw(b"READ");
        c.shutdown_write();
        assert_eq!(
            c.recv(),
            format!("VALUE:{v}"),
            "lone unterminated READ at :{port}"
        );
        c.expect_closed();
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

const BAD_LINES: &[&[u8]] = &[
    b"WRITE:abc",
    b"WRITE:1.5",
    b"WRITE:",
    b"WRITE",
    b"write:9223372036854775808",
    b"WRITE:5:6",
    b"UPDATE:x",
    b"UPDATE",
    b"FROB",
    b"FROB:1",
    b"",
    b"   ",
    b"READ:1",
    b"READ:",
    b"JOIN:0",
    b"JOIN:70000",
    b"JOIN:-1",
    b"JOIN:abc",
    b"JOIN:",
    b"WRITE:\xff",
    b"\xff\xfe\xfd",
    b"\0",
];

#[test]
fn malformed_requests_get_err_and_change_nothing() {
    let cluster = start_cluster(1);
    let p = cluster.primary_port();
    write(p, 31);
    let last_before = field(&status(p).unwrap(), "last").unwrap().to_owned();
    for port in cluster.ports() {
        let mut c = Conn::connect(port);
        for bad in BAD_LINES {
            let mut line = bad.to_vec();
            line.push(b'\n');
            c.send_raw(&line);
            let reply = c.recv();
            let shown = String::from_utf8_lossy(bad);
            assert!(
                reply.starts_with("ERR:") && reply.len() > 4,
                "{shown:?} at :{port} got {reply:?}"
            );
            assert_eq!(
                c.request("READ"),
                "VALUE:31",
                "after {shown:?} at :{port}, on the same connection"
            );
        }
    }
    for port in cluster.ports() {
        assert_eq!(read(port), 31);
    }
    let after = status(p).unwrap();
    assert_eq!(
        field(&after, "last"),
        Some(last_before.as_str()),
        "no malformed request became a write: {after}"
    );
}

#[test]
fn an_overlong_line_gets_err_and_the_connection_is_closed() {
    let cluster = start_cluster(1);
    write(cluster.primary_port(), 17);
    for port in cluster.ports() {
        let mut bystander = Conn::connect(port);
        let mut c = Conn::connect(port);
        let mut line = b"WRITE:".to_vec();
        line.resize(100 * 1024, b'1');
        line.push(b'\n');
        c.send_raw(&line);
        let reply = c.recv();
        assert!(
            reply.starts_with("ERR:line too long"),
            "100 KiB line at :{port} got {reply:?}"
        );
        c.expect_closed();
        assert_eq!(bystander.read_value(), 17, "another client of :{port}");
        assert_eq!(read(port), 17, "a new client of :{port}");
    }
}

/// A `WRITE` line of exactly `len` bytes that sets the value to 5.
fn padded_write(len: usize) -> Vec<u8> {
    let mut line = b"WRITE:".to_vec();
    line.resize(len - 1, b'0');
    line.push(b'5');
    line
}

#[test]
fn a_line_of_exactly_64_kib_is_accepted() {
    let primary = Server::primary(free_port());
    let mut c = Conn::connect(primary.port);
    let mut line = padded_write(64 * 1024);
    line.push(b'\n');
    c.send_raw(&line);
    assert_eq!(c.recv(), "ACK", "a 64 KiB line is within the limit");
    assert_eq!(c.request("READ"), "VALUE:5");

    let mut c = Conn::connect(primary.port);
    let mut line = padded_write(64 * 1024 + 1);
    line.push(b'\n');
    c.send_raw(&line);
    let reply = c.recv();
    assert!(
        reply.starts_with("ERR:line too long"),
        "64 KiB + 1 got {reply:?}"
    );
    c.expect_closed();
}

#[test]
fn a_64_kib_line_ending_in_crlf_is_accepted() {
    let primary = Server::primary(free_port());
    let mut c = Conn::connect(primary.port);
    let mut line = padded_write(64 * 1024);
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    assert_eq!(c.recv(), "ACK", "the terminator is not part of the line");
    assert_eq!(c.request("READ"), "VALUE:5");
}

// ---------------------------------------------------------------------------------------------
// Interoperation with seed-only peers
// ---------------------------------------------------------------------------------------------

/// Plays a seed backup: listens, sends `JOIN:port` to the primary and acknowledges the first
/// push (of `expect_first`) in its own words.
fn join_foreign_backup(primary: u16, expect_first: i64) -> (std::net::TcpListener, u16) {
    let (fake, port) = listen();
    let reply = request(primary, &format!("JOIN:{port}"));
    assert!(!reply.starts_with("ERR"), "JOIN:{port} got {reply:?}");
    let mut push = accept(&fake);
    assert_eq!(push.recv(), format!("UPDATE:{expect_first}"));
    push.send("OK");
    push.expect_closed();
    // Having acknowledged its state transfer, it enters the active set: writes wait for it.
    wait_until("the seed backup is active", TIMEOUT, || {
        status(primary).is_some_and(|s| {
            members(&s)
                .iter()
                .any(|(p, kind, state, _)| *p == port && kind == "seed" && state == "active")
        })
    });
    (fake, port)
}

#[test]
fn a_foreign_seed_backup_gets_every_write_before_the_client_is_acknowledged() {
    let primary = Server::primary(free_port());
    let p = primary.port;
    let (fake, _) = join_foreign_backup(p, 0);

    let mut client = Conn::connect(p);
    client.send("WRITE:7");
    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:7");
    // Hold the acknowledgement back (less than the 500 ms a push may take): the client must
    // not be answered meanwhile.
    assert_eq!(
        client.recv_within(Duration::from_millis(300)),
        None,
        "the client was acknowledged before the backup acknowledged"
    );
    push.send("COMPLETE_UPDATE");
    assert_eq!(client.recv(), "ACK");
    push.expect_closed();

    // Two writes: in order, one connection each, the second only after the first is answered.
    client.send("WRITE:8");
    client.send("WRITE:9");
    let mut first = accept(&fake);
    assert_eq!(first.recv(), "UPDATE:8");
    assert!(
        accept_within(&fake, Duration::from_millis(200)).is_none(),
        "a second push started before the first was acknowledged"
    );
    first.send("OK");
    first.expect_closed();
    let mut second = accept(&fake);
    assert_eq!(second.recv(), "UPDATE:9");
    second.send("OK");
    second.expect_closed();
    assert_eq!(client.recv(), "ACK");
    assert_eq!(client.recv(), "ACK");
    assert_eq!(client.request("READ"), "VALUE:9");
}

#[test]
fn a_late_foreign_backup_first_gets_the_current_value() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    write(p, 42);
    let (fake, fake_port) = join_foreign_backup(p, 42);

    // The primary now serves a ditto backup and a seed backup side by side.
    let seed_active = |st: &str| {
        members(st)
            .iter()
            .any(|(port, kind, state, _)| *port == fake_port && kind == "seed" && state == "active")
    };
    wait_until("the seed backup is active", TIMEOUT, || {
        status(p).is_some_and(|s| seed_active(&s))
    });
    let st = status(p).unwrap();
    assert!(
        members(&st)
            .iter()
            .any(|(port, kind, state, _)| *port == b && kind == "ditto" && state == "active"),
        "{st}"
    );
    let mut client = Conn::connect(b);
    client.send("WRITE:43");
    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:43");
    push.send("OK");
    assert_eq!(client.recv(), "ACK");
    assert_eq!(read(p), 43);
    assert_eq!(read(b), 43);
}

#[test]
fn a_failed_push_to_a_foreign_backup_is_retried_before_the_client_is_acknowledged() {
    let primary = Server::primary(free_port());
    let (fake, _) = join_foreign_backup(primary.port, 0);
    let mut client = Conn::connect(primary.port);
    client.send("WRITE:6");

    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:6");
    push.send("ERR:not now");
    push.expect_closed();
    // Retried on a new connection; this time the backup hangs up without a word.
    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:6", "the refused update is sent again");
    drop(push);
    let mut push = accept(&fake);
    assert_eq!(
        push.recv(),
        "UPDATE:6",
        "the unanswered update is sent again"
    );
    assert_eq!(
        client.recv_within(Duration::from_millis(100)),
        None,
        "the client was acknowledged before the backup acknowledged"
    );
    push.send("DONE");
    assert_eq!(client.recv(), "ACK");
}

#[test]
fn a_vanished_foreign_backup_stalls_writes_only_briefly() {
    let primary = Server::primary(free_port());
    let p = primary.port;
    // Joined: it acknowledged its state transfer and is in the active set.
    let (fake, fake_port) = join_foreign_backup(p, 0);
    drop(fake);
    let mut client = Conn::connect(p);
    client.send("WRITE:2");
    // The push fails (refused), the seed backup leaves the active set, and the write commits.
    match client.next_within(Duration::from_secs(5)) {
        Got::Line(line) => assert_eq!(line, "ACK"),
        other => panic!("the write was not acknowledged within 5 s: {other:?}"),
    }
    let st = status(p).unwrap();
    assert!(
        members(&st)
            .iter()
            .all(|(port, _, state, _)| *port != fake_port || state == "inactive"),
        "{st}"
    );
    primary.wait_log("writes stop waiting for it");
    write(p, 3);
}

#[test]
fn a_silent_foreign_backup_is_bounded_and_readmitted_when_it_answers_again() {
    let primary = Server::primary(free_port());
    let p = primary.port;
    // Joined: it acknowledged its state transfer and is in the active set.
    let (fake, fake_port) = join_foreign_backup(p, 0);
    // A seed backup that holds its lock while its own forwarded write waits for the primary
    // never answers the push: the primary must not hold every write for it.
    let mut client = Conn::connect(p);
    client.send("WRITE:5");
    let mut silent = accept(&fake);
    assert_eq!(silent.recv(), "UPDATE:5");
    let started = std::time::Instant::now();
    assert_eq!(
        client.recv(),
        "ACK",
        "the write commits without the silent backup"
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the stall lasted {waited:?}"
    );
    drop(silent);
    // Once it answers again it gets the current value and rejoins the active set.
    let mut push = accept(&fake);
    assert_eq!(
        push.recv(),
        "UPDATE:5",
        "re-admitted with the current value"
    );
    push.send("OK");
    wait_until("the seed backup is active again", TIMEOUT, || {
        status(p).is_some_and(|s| {
            members(&s)
                .iter()
                .any(|(port, _, state, _)| *port == fake_port && state == "active")
        })
    });
    client.send("WRITE:6");
    let mut push = accept(&fake);
    assert_eq!(push.recv(), "UPDATE:6");
    push.send("OK");
    assert_eq!(client.recv(), "ACK");
}

#[test]
fn a_primary_does_not_wedge_on_a_join_naming_itself() {
    let primary = Server::primary(free_port());
    let p = primary.port;
    let _ = request(p, &format!("JOIN:{p}"));
    assert_eq!(request(p, "WRITE:1"), "ACK");
    assert_eq!(read(p), 1);
}

/// Plays the start of a seed primary for a backup on `backup`: answers its `JOIN` in its own
/// words, then answers the `READ` with which the backup fetches the current value.
fn answer_join(fake: &std::net::TcpListener, backup: u16, value: &str) {
    let mut join = accept(fake);
    assert_eq!(join.recv(), format!("JOIN:{backup}"));
    join.send("OK");
    join.expect_closed();
    let mut read = accept(fake);
    assert_eq!(
        read.recv(),
        "READ",
        "the backup asks only what the seed allows"
    );
    read.send(value);
}

fn role(port: u16) -> Option<String> {
    status(port).and_then(|s| field(&s, "role").map(str::to_owned))
}

#[test]
fn a_backup_works_under_a_foreign_seed_only_primary() {
    let (fake, pp) = listen();
    let b = free_port();
    let _backup = Server::backup(b, pp);
    // A refused JOIN is tried again on a new connection.
    let mut join = accept(&fake);
    assert_eq!(join.recv(), format!("JOIN:{b}"));
    join.send("ERR:not yet");
    join.expect_closed();
    // A late joiner learns the current value from the answer to READ (any reply ending in an
    // integer), rather than serving 0 until the next write.
    answer_join(&fake, b, "current value 4");
    wait_until("the backup follows the seed primary", TIMEOUT, || {
        role(b).as_deref() == Some("seed-backup")
    });
    assert_eq!(read(b), 4);

    // The primary pushes an update on a connection of its own.
    let mut push = Conn::connect(b);
    let reply = push.request("UPDATE:5");
    assert!(!reply.starts_with("ERR"), "UPDATE:5 got {reply:?}");
    assert_eq!(read(b), 5);

    // A client's write is forwarded as UPDATE on a fresh connection.
    let mut client = Conn::connect(b);
    client.send("WRITE:8");
    let mut fwd = accept(&fake);
    assert_eq!(fwd.recv(), "UPDATE:8");
    assert_eq!(
        client.recv_within(Duration::from_millis(300)),
        None,
        "the client was acknowledged before the primary acknowledged"
    );
    // Like a seed primary: update every backup, then acknowledge.
    assert_eq!(request(b, "UPDATE:8"), "ACK");
    fwd.send("OK");
    assert_eq!(client.recv(), "ACK");
    fwd.expect_closed();
    assert_eq!(client.request("READ"), "VALUE:8");

    // A primary that answers before its push arrives (on another connection): the backup
    // waits a bounded grace for the push instead of calling the outcome unknown.
    client.send("WRITE:10");
    let mut fwd = accept(&fake);
    assert_eq!(fwd.recv(), "UPDATE:10");
    fwd.send("OK");
    assert_eq!(client.recv_within(Duration::from_millis(200)), None);
    assert_eq!(request(b, "UPDATE:10"), "ACK");
    assert_eq!(client.recv(), "ACK");

    // A refusal from the primary reaches the client and changes nothing.
    client.send("WRITE:9");
    let mut fwd = accept(&fake);
    assert_eq!(fwd.recv(), "UPDATE:9");
    fwd.send("ERR:busy");
    let reply = client.recv();
    assert!(reply.starts_with("ERR"), "a refused write got {reply:?}");
    assert_eq!(client.request("READ"), "VALUE:10");

    let st = status(b).unwrap();
    assert_eq!(field(&st, "role"), Some("seed-backup"), "{st}");
    assert_eq!(field(&st, "value"), Some("10"), "{st}");
}

/// A seed-only primary played by a thread that exits at the first verb the seed does not
/// have (as some implementations do), answering JOIN with `JOINED` and READ with a bare number.
struct SeedPrimary {
    port: u16,
    foreign: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SeedPrimary {
    fn start(value: i64) -> SeedPrimary {
        let (listener, port) = listen();
        let foreign = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (foreign.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Some(mut conn) = accept_within(&listener, Duration::from_millis(20)) else {
                    continue;
                };
                let Got::Line(line) = conn.next_within(TIMEOUT) else {
                    continue;
                };
                if line.starts_with("JOIN:") {
                    conn.send("JOINED");
                } else if line == "READ" {
                    conn.send(&value.to_string());
                } else if !line.starts_with("UPDATE:") && !line.starts_with("WRITE:") {
                    f.fetch_add(1, Ordering::Relaxed);
                    return; // "exits on any unknown verb"
                }
            }
        });
        SeedPrimary {
            port,
            foreign,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SeedPrimary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_backup_sends_a_seed_primary_nothing_beyond_the_seed() {
    let primary = SeedPrimary::start(12);
    let b = free_port();
    let mut backup = Server::backup(b, primary.port);
    wait_until(
        &format!("backup :{b} serves the seed primary's value"),
        TIMEOUT,
        || {
            backup.assert_running();
            status(b).is_some_and(|s| {
                field(&s, "role") == Some("seed-backup") && field(&s, "status") == Some("normal")
            })
        },
    );
    assert_eq!(request(b, "READ"), "VALUE:12");
    assert_eq!(role(b).as_deref(), Some("seed-backup"));
    assert_eq!(
        primary.foreign.load(Ordering::Relaxed),
        0,
        "the backup sent a verb the seed does not have"
    );
    assert_eq!(request(b, "UPDATE:3"), "ACK");
    assert_eq!(read(b), 3);
}

#[test]
fn a_backup_started_before_its_primary_joins_once_it_appears() {
    let (pp, b) = (free_port(), free_port());
    let mut backup = Server::backup(b, pp);
    backup.wait_log("cannot join through");
    assert_eq!(
        status(b)
            .and_then(|s| field(&s, "status").map(str::to_owned))
            .as_deref(),
        Some("joining")
    );
    let primary = Server::primary(pp);
    wait_until("the late primary streams to the backup", TIMEOUT, || {
        backup.assert_running();
        backup_streaming(pp, b) && role(b).as_deref() == Some("backup")
    });
    write(primary.port, 3);
    assert_eq!(read(b), 3);
}

// ---------------------------------------------------------------------------------------------
// State transfer
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_backup_starts_from_the_current_value() {
    let mut cluster = start_cluster(1);
    let p = cluster.primary_port();
    write(p, 41);
    write(cluster.backup_ports()[0], 42);
    cluster.backups.push(Server::backup(free_port(), p));
    cluster.wait_synced();
    let newcomer = cluster.backups[1].port;
    assert_eq!(read(newcomer), 42);
    wait_until("the newcomer applied every entry", TIMEOUT, || {
        let last = status(p).and_then(|s| field(&s, "last").map(str::to_owned));
        let applied = status(newcomer).and_then(|s| field(&s, "applied").map(str::to_owned));
        last.is_some() && last == applied
    });
}

#[test]
fn a_restarted_backup_catches_up_and_writes_go_on_without_it() {
    let mut cluster = start_cluster(2);
    let p = cluster.primary_port();
    let (b1, b2) = (cluster.backups[0].port, cluster.backups[1].port);
    write(p, 1);
    cluster.backups[0].kill();

    // Writes during the outage are acknowledged: the dead backup leaves the active set.
    write(p, 2);
    write(b2, 3);
    let st = status(p).unwrap();
    assert!(
        members(&st)
            .iter()
            .all(|(port, _, state, _)| *port != b1 || state == "inactive"),
        "the dead backup is still active: {st}"
    );
    cluster.primary.wait_log("writes stop waiting for it");

    cluster.backups[0] = Server::backup(b1, p);
    cluster.wait_synced();
    assert_eq!(read(b1), 3, "the restarted backup has the writes it missed");
    write(b1, 4);
    for port in cluster.ports() {
        assert_eq!(read(port), 4, "at :{port}");
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

const WRITERS: i64 = 8;
const WRITES: i64 = 200;
const STRIDE: i64 = 1_000_000;

#[test]
fn concurrent_clients_converge_and_read_their_own_writes() {
    let cluster = start_cluster(3);
    let ports = cluster.ports();
    let threads: Vec<_> = (0..WRITERS)
        .map(|t| {
            let port = ports[t as usize % ports.len()];
            std::thread::spawn(move || {
                let me = t + 1;
                let mut c = Conn::connect(port);
                // The highest write index seen so far from each writer.
                let mut seen: HashMap<i64, i64> = HashMap::new();
                for i in 1..=WRITES {
                    let v = me * STRIDE + i;
                    assert_eq!(
                        c.request(&format!("WRITE:{v}")),
                        "ACK",
                        "WRITE:{v} at :{port}"
                    );
                    let r = c.read_value();
                    let (who, idx) = (r / STRIDE, r % STRIDE);
                    assert!(
                        (1..=WRITERS).contains(&who) && (1..=WRITES).contains(&idx),
                        "read {r} after WRITE:{v} at :{port}: never written"
                    );
                    if who == me {
                        assert_eq!(
                            idx, i,
                            "read own older write {r} after WRITE:{v} at :{port}"
                        );
                    }
                    let prev = seen.insert(who, idx).unwrap_or(0);
                    assert!(
                        idx >= prev,
                        "reads at :{port} went backwards: writer {who} index {prev} then {idx}"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }

    let primary = status(cluster.primary_port()).unwrap();
    let last = field(&primary, "last").unwrap().to_owned();
    let last_n: i64 = last.parse().unwrap();
    assert!(last_n >= WRITERS * WRITES, "{primary}");
    assert_eq!(field(&primary, "commit"), Some(last.as_str()), "{primary}");
    let value = field(&primary, "value").unwrap().to_owned();
    let v: i64 = value.parse().unwrap();
    assert_eq!(
        v % STRIDE,
        WRITES,
        "the last write of the order is some writer's last"
    );
    for b in cluster.backup_ports() {
        // Every backup holds every entry; it applies them once it hears they are committed.
        wait_until(&format!("backup :{b} applied every entry"), TIMEOUT, || {
            status(b).is_some_and(|st| {
                field(&st, "applied") == Some(last.as_str())
                    && field(&st, "value") == Some(value.as_str())
            })
        });
        assert_eq!(read(b), v);
    }
}

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

/// The port of the server that says it is the primary, among `ports`.
fn current_primary(ports: &[u16]) -> Option<u16> {
    ports
        .iter()
        .copied()
        .find(|&p| status(p).is_some_and(|s| field(&s, "role") == Some("primary")))
}

/// Writes `v` through `port`, retrying until it is acknowledged (a write sent while there is no
/// primary is refused or its outcome unknown; the same value again is harmless here).
fn write_until_acked(port: u16, v: i64) -> Duration {
    let started = std::time::Instant::now();
    wait_until(
        &format!("WRITE:{v} through :{port} is acknowledged"),
        3 * TIMEOUT,
        || Conn::try_connect(port).is_ok_and(|mut c| c.request(&format!("WRITE:{v}")) == "ACK"),
    );
    started.elapsed()
}

#[test]
fn a_killed_primary_is_replaced_and_nothing_acknowledged_is_lost() {
    let mut cluster = start_cluster(2);
    let p = cluster.primary_port();
    let backups = cluster.backup_ports();
    for v in 1..=30 {
        write(backups[(v % 2) as usize], v);
    }
    cluster.primary.kill();
    let killed = std::time::Instant::now();
    // A write sent to a live server keeps working: the backup forwards it to the new primary.
    write_until_acked(backups[0], 31);
    let took = killed.elapsed();
    let new = current_primary(&backups).expect("a backup took over");
    assert!(
        took < Duration::from_secs(3) + Duration::from_millis(500),
        "took {took:?}"
    );
    for &b in &backups {
        wait_until(&format!(":{b} reads 31"), TIMEOUT, || {
            Conn::try_connect(b).is_ok_and(|mut c| c.request("READ") == "VALUE:31")
        });
    }
    // The old primary, restarted on its port, rejoins as a backup: it never rolls the group back.
    let mut old = Server::primary_unchecked(p);
    wait_until("the old primary rejoins as a backup", TIMEOUT, || {
        old.assert_running();
        status(p).is_some_and(|s| {
            field(&s, "role") == Some("backup") && field(&s, "value") == Some("31")
        })
    });
    assert_eq!(current_primary(&[p, backups[0], backups[1]]), Some(new));
    assert!(!old.log().contains("founding"), "{}", old.log());
    write(p, 32);
    for port in [p, backups[0], backups[1]] {
        wait_until(&format!(":{port} reads 32"), TIMEOUT, || read(port) == 32);
    }
}

#[test]
fn a_frozen_primary_is_replaced_and_steps_down_when_it_wakes() {
    let cluster = start_cluster(2);
    let p = cluster.primary_port();
    let backups = cluster.backup_ports();
    write(p, 7);
    cluster.primary.signal(nix::sys::signal::Signal::SIGSTOP);
    write_until_acked(backups[1], 8);
    let new = current_primary(&backups).expect("a backup took over");
    cluster.primary.signal(nix::sys::signal::Signal::SIGCONT);
    // Woken, the old primary learns of the newer view and follows it; it acknowledged nothing
    // while frozen, and now serves the new value.
    wait_until("the old primary follows the new one", TIMEOUT, || {
        status(p).is_some_and(|s| {
            field(&s, "role") == Some("backup")
                && field(&s, "primary").is_some_and(|x| x.ends_with(&format!(":{new}")))
        })
    });
    wait_until(":p reads 8", TIMEOUT, || read(p) == 8);
}

#[test]
fn status_and_failover_commands() {
    let cluster = start_cluster(2);
    let p = cluster.primary_port();
    write(p, 5);
    let out = run(&["status", &p.to_string()], b"", TIMEOUT);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("primary  view 1"), "{}", out.stdout);
    assert_eq!(
        out.stdout.matches(":ditto").count() + out.stdout.matches(" ditto ").count(),
        3,
        "{}",
        out.stdout
    );
    let out = run(
        &["status", &format!("127.0.0.1:{p}"), "--json"],
        b"",
        TIMEOUT,
    );
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    assert_eq!(json["role"], "primary", "{json}");
    assert_eq!(json["value"], 5, "{json}");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(
        json["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["lag"] == 0),
        "{json}"
    );

    // A switchover through a backup's address: its primary hands over; nothing is lost.
    let to = cluster.backup_ports()[1];
    let out = run(
        &[
            "failover",
            &cluster.backup_ports()[0].to_string(),
            "--to",
            &to.to_string(),
        ],
        b"",
        3 * TIMEOUT,
    );
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!(":{to} is the primary of view 2")),
        "{}",
        out.stdout
    );
    assert_eq!(read(to), 5);
    write(p, 6);
    assert_eq!(read(to), 6);

    let out = run(&["status", "9"], b"", TIMEOUT);
    assert!(!out.success() && out.stderr.lines().count() == 1, "{out:?}");
    let out = run(&["failover", "127.0.0.1:0"], b"", TIMEOUT);
    assert!(!out.success(), "{out:?}");
}
