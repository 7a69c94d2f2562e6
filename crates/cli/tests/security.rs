//! The cluster secret and the client password, on real processes: members that share the secret
//! replicate, a member without it or with another is refused and never holds a write, and a
//! stranger's hand-made stream is challenged and closed.

mod support;

use std::process::Command;

use support::*;

const SECRET: &str = "a secret the group's members share";

/// `ditto ROLE ARGS...` with `secret` in its environment (none: without one).
fn server(name: &str, port: u16, args: &[String], secret: Option<&str>) -> Server {
    let mut command = Command::new(bin());
    command.arg("--exit-on-stdin-eof").args(args);
    command
        .env_remove("DITTO_SECRET")
        .env_remove("DITTO_PASSWORD");
    if let Some(s) = secret {
        command.env("DITTO_SECRET", s);
    }
    let mut s = Server::spawn_command(name, port, command);
    s.wait_answering();
    s
}

fn primary(port: u16, secret: Option<&str>) -> Server {
    server(
        "primary",
        port,
        &["primary".into(), port.to_string()],
        secret,
    )
}

fn backup(port: u16, primary: u16, secret: Option<&str>) -> Server {
    let args = ["backup".into(), port.to_string(), primary.to_string()];
    server(&format!("backup :{port}"), port, &args, secret)
}

#[test]
fn members_with_the_secret_replicate_and_others_are_refused() {
    let base = free_ports(4);
    let (p, b, none, other) = (base, base + 1, base + 2, base + 3);
    let _primary = primary(p, Some(SECRET));
    let _member = backup(b, p, Some(SECRET));
    wait_until("the backup with the secret is active", TIMEOUT, || {
        backup_streaming(p, b)
    });
    let no_secret = backup(none, p, None);
    let wrong = backup(other, p, Some("another secret, long enough too"));
    write(b, 11);
    assert_eq!(
        read(p),
        11,
        "a write through the member reaches the primary"
    );
    wait_until("both strangers were refused", TIMEOUT, || {
        let refused = _primary
            .log()
            .matches("did not prove the cluster secret")
            .count();
        refused >= 2
    });
    let st = status(p).expect("the primary answers");
    let ports: Vec<u16> = members(&st).iter().map(|m| m.0).collect();
    assert!(
        !ports.contains(&none) && !ports.contains(&other),
        "neither stranger is a member: {st}"
    );
    for (port, who) in [(none, &no_secret), (other, &wrong)] {
        assert_ne!(
            request(port, "READ"),
            "VALUE:11",
            "the stranger on :{port} never got the write; its log:\n{}",
            who.log()
        );
    }
}

#[test]
fn a_hand_made_stream_is_challenged_and_closed_without_a_proof() {
    let p = free_port();
    let _primary = primary(p, Some(SECRET));
    write(p, 5);
    let mut c = Conn::connect(p);
    c.send(r#"PEER:{"group":0,"from":"127.0.0.1:9"}"#);
    let challenge = c.recv();
    let nonce = challenge
        .strip_prefix("CHALLENGE:")
        .unwrap_or_else(|| panic!("no challenge: {challenge}"));
    assert_eq!(nonce.len(), 32, "a 128-bit nonce in hex");
    // A proof of the wrong shape, then a message: refused, and nothing is read.
    c.send("PROOF:00");
    let answer = c.recv();
    assert!(answer.contains("cluster secret"), "{answer}");
    c.expect_closed();
    assert_eq!(read(p), 5, "nothing changed");
    // A second stream gets a new challenge.
    let mut d = Conn::connect(p);
    d.send(r#"PEER:{"group":0,"from":"127.0.0.1:9"}"#);
    assert_ne!(d.recv(), challenge, "challenges are never reused");
}

#[test]
fn a_short_secret_is_refused_at_start() {
    let port = free_port();
    let out = Command::new(bin())
        .args(["primary", &port.to_string()])
        .env("DITTO_SECRET", "short")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 bytes"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn the_password_guards_the_line_protocol() {
    let port = free_port();
    let mut command = Command::new(bin());
    command
        .args(["--exit-on-stdin-eof", "primary", &port.to_string()])
        .env("DITTO_PASSWORD", "open sesame");
    let mut s = Server::spawn_command("primary", port, command);
    wait_until("the primary answers", TIMEOUT, || {
        s.assert_running();
        is_listening(port)
    });
    let mut c = Conn::connect(port);
    let refused = c.request("WRITE:5");
    assert!(refused.starts_with("ERR:NOAUTH"), "{refused}");
    assert!(c.request("AUTH:wrong").starts_with("ERR:WRONGPASS"));
    assert_eq!(c.request("AUTH:open sesame"), "ACK");
    assert_eq!(
        c.request("READ"),
        "VALUE:0",
        "the refused write changed nothing"
    );
    assert_eq!(c.request("WRITE:6"), "ACK");
    let mut other = Conn::connect(port);
    assert!(
        other.request("READ").starts_with("ERR:NOAUTH"),
        "each connection gives the password"
    );
}
