//! The `ditto` command line: the client, argument errors, `ditto up` and `ditto bench`.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// Asserts a failed start-up reported one line on stderr and did not panic.
fn assert_one_line_error(out: &Outcome, what: &str) {
    assert!(
        !out.success(),
        "{what}: exited successfully; stdout: {}",
        out.stdout
    );
    let err = out.stderr.trim_end_matches('\n');
    assert!(!err.trim().is_empty(), "{what}: nothing on stderr");
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    assert!(
        !err.contains('\n'),
        "{what}: more than one line on stderr:\n{err}"
    );
}

fn ditto(args: &[&str]) -> Outcome {
    run(args, b"", TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// ditto client
// ---------------------------------------------------------------------------------------------

#[test]
fn one_shot_client_prints_the_reply_and_fails_on_errors() {
    let primary = Server::primary(free_port());
    let p = primary.port.to_string();

    let out = ditto(&["client", &p, "READ"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "VALUE:0\n");

    let out = ditto(&["client", &p, "write", "5"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "ACK\n");
    let out = ditto(&["client", &p, "read"]);
    assert_eq!(out.stdout, "VALUE:5\n", "{out:?}");
    let out = ditto(&["client", &p, "status"]);
    assert!(
        out.success() && out.stdout.starts_with("STATUS:role=primary"),
        "{out:?}"
    );

    let out = ditto(&["client", &p, "WRITE:x"]);
    assert!(!out.success(), "an ERR reply must fail: {out:?}");
    assert!(out.stderr.starts_with("ERR:"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(read(primary.port), 5, "the refused write changed nothing");
}

#[test]
fn client_takes_host_and_port_of_a_server_elsewhere() {
    // 127.0.0.2 is loopback too, but a server bound to it alone is not on 127.0.0.1: only an
    // address that names its host reaches it, as with a server on another machine.
    let port = free_port();
    let args: Vec<String> = ["primary", &port.to_string(), "--bind", "127.0.0.2"]
        .map(String::from)
        .to_vec();
    let _primary = Server::spawn("primary on 127.0.0.2", port, &args);
    let there = format!("127.0.0.2:{port}");
    wait_until("the primary answers on 127.0.0.2", TIMEOUT, || {
        ditto(&["client", &there, "STATUS"]).success()
    });

    let out = ditto(&["client", &there, "write", "7"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "ACK\n");
    let out = run(&["client", &there], b"read\nWRITE:8\nREAD\n", TIMEOUT);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "VALUE:7\nACK\nVALUE:8\n");

    // A bare port still means 127.0.0.1, where nothing listens on that port.
    let out = ditto(&["client", &port.to_string(), "READ", "--timeout", "2"]);
    assert_one_line_error(&out, "client of the port on 127.0.0.1");
    assert!(
        out.stderr.contains(&format!("port {port}")),
        "a local server is named by its port: {out:?}"
    );

    // `connect HOST:PORT` moves a session there; a failed one names the address and stays.
    let dead = format!("127.0.0.2:{}", free_port());
    let input = format!("connect {dead}\nconnect {there}\nread\n");
    let out = run(&["client", &port.to_string()], input.as_bytes(), TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the first connect failed: {out:?}"
    );
    assert_eq!(out.stdout, "VALUE:8\n", "{out:?}");
    assert!(
        out.stderr.contains(&dead)
            && out
                .stderr
                .contains(&format!("still talking to port {port}")),
        "{out:?}"
    );

    let out = ditto(&["client", "127.0.0.2:0", "READ"]);
    assert_one_line_error(&out, "client of port 0 elsewhere");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad address is a usage error: {out:?}"
    );
}

#[test]
fn one_shot_client_reports_an_unreachable_server_in_one_line() {
    let port = free_port();
    let out = ditto(&["client", &port.to_string(), "READ", "--timeout", "2"]);
    assert_one_line_error(&out, "client of a port nobody listens on");
    assert!(out.stderr.contains(&port.to_string()), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn one_shot_client_gives_up_on_a_silent_server() {
    // Bound but never accepting: the connection is made, no reply ever comes.
    let silent = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = std::time::Instant::now();
    let out = ditto(&["client", &port, "READ", "--timeout", "0.5"]);
    assert_one_line_error(&out, "client of a silent server");
    assert!(out.stderr.contains("no reply"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout was not honoured"
    );
}

#[test]
fn client_waits_out_the_longest_wait_of_a_server() {
    // A backup may take 10 s to answer a write it forwarded as a seed UPDATE; the client's
    // default must outlast that, or it reports a failure for a write that then commits.
    let (listener, port) = listen();
    let server = std::thread::spawn(move || {
        let mut conn = accept(&listener);
        let request = conn.recv();
        std::thread::sleep(Duration::from_secs(11));
        conn.send("ACK");
        request
    });
    let out = run(
        &["client", &port.to_string(), "WRITE:5"],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(server.join().unwrap(), "WRITE:5");
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "ACK\n");
}

#[test]
fn unreachable_server_error_states_its_cause_once() {
    let port = free_port();
    let out = ditto(&["client", &port.to_string(), "READ"]);
    assert!(!out.success());
    let err = out.stderr.trim();
    let cause = "os error";
    assert_eq!(err.matches(cause).count(), 1, "{err}");
}

#[test]
fn piped_client_answers_each_line_in_order() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    let input = format!("write 5\nread\nREAD\nhelp\nWRITE:x\n\nconnect {b}\nread\nstatus\n");
    let out = run(&["client", &p.to_string()], input.as_bytes(), TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "WRITE:x got ERR: {out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..3], ["ACK", "VALUE:5", "VALUE:5"], "{}", out.stdout);
    let help_end = lines
        .iter()
        .position(|l| l.starts_with("ERR:"))
        .unwrap_or_else(|| panic!("no ERR reply for WRITE:x:\n{}", out.stdout));
    let help = lines[3..help_end].join("\n");
    assert!(
        help.contains("write <n>") && help.contains("connect <port>"),
        "help text:\n{help}"
    );
    assert_eq!(
        lines[help_end + 1],
        "VALUE:5",
        "read after connecting to the backup"
    );
    assert!(
        lines[help_end + 2].starts_with("STATUS:role=backup"),
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), help_end + 3, "{}", out.stdout);
}

#[test]
fn prompt_help_does_not_offer_join() {
    let primary = Server::primary(free_port());
    let p = primary.port.to_string();
    let out = run(&["client", &p], b"help\njoin 7003\nwrite 1\n", TIMEOUT);
    assert!(
        !out.stdout.to_ascii_uppercase().contains("JOIN"),
        "the help offers JOIN:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("for backups"), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "ACK"), "{out:?}");
    assert_eq!(
        members(&primary.status()).len(),
        1,
        "`join` registered a backup"
    );
}

#[test]
fn piped_and_one_shot_clients_agree_on_the_exit_status() {
    let primary = Server::primary(free_port());
    let p = primary.port.to_string();
    let piped = |input: &str| run(&["client", &p], input.as_bytes(), TIMEOUT);
    let one_shot = |command: &str| run(&["client", &p, command], b"", TIMEOUT);

    let out = piped("write 1\nread\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(one_shot("read").status.code(), Some(0));

    // An ERR: answer fails the run, but the commands after it are still sent.
    let out = piped("WRITE:x\nwrite 2\nread\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ERR:"), "{out:?}");
    assert_eq!(lines[1..], ["ACK", "VALUE:2"], "{out:?}");
    assert_eq!(one_shot("WRITE:x").status.code(), Some(1));

    // So does a line that is not understood (nothing is sent for it).
    let out = piped("write 1 2\nread\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, "VALUE:2\n", "{out:?}");
    assert!(out.stderr.contains("usage: write"), "{out:?}");
    assert_eq!(one_shot("write 1 2").status.code(), Some(1));

    // And a server that cannot be reached.
    let dead = free_port().to_string();
    for out in [
        run(&["client", &dead], b"read\n", TIMEOUT),
        run(&["client", &dead, "read"], b"", TIMEOUT),
    ] {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_one_line_error(&out, "a client of a port nobody listens on");
        assert!(out.stderr.contains(&dead), "{out:?}");
    }

    let help = ditto(&["client", "--help"]);
    assert!(help.stdout.contains("Exit status:"), "{}", help.stdout);
    for code in ["0", "1", "2"] {
        assert!(
            help.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(code)),
            "exit status {code} is not described:\n{}",
            help.stdout
        );
    }
}

#[test]
fn connect_to_a_port_nobody_listens_on_fails_and_stays() {
    let primary = Server::primary(free_port());
    let p = primary.port.to_string();
    let dead = free_port();
    let input = format!("write 3\nconnect {dead}\nread\nconnect {dead}\n");
    let out = run(&["client", &p], input.as_bytes(), TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "the connects failed: {out:?}");
    assert_eq!(
        out.stdout, "ACK\nVALUE:3\n",
        "the read went to the old server: {out:?}"
    );
    let errors: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "one line per failed connect: {out:?}");
    for e in errors {
        assert!(
            e.contains(&format!("port {dead}"))
                && e.contains(&format!("still talking to port {p}")),
            "{e:?}"
        );
    }
}

#[test]
fn client_reconnects_after_an_overlong_line() {
    let primary = Server::primary(free_port());
    let p = primary.port.to_string();
    let input = format!("write 4\n{}\nread\n", "9".repeat(70_000));
    let out = run(&["client", &p], input.as_bytes(), TIMEOUT);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert_eq!(lines[0], "ACK");
    assert!(lines[1].starts_with("ERR:line too long"), "{out:?}");
    assert_eq!(
        lines[2], "VALUE:4",
        "the read after it was answered: {out:?}"
    );
    assert!(out.stderr.contains("reconnected"), "it says so: {out:?}");
    assert_eq!(out.status.code(), Some(1), "the overlong line failed");

    // A line so long that the server closes while it is still arriving may lose the answer
    // with the connection; the next command is answered all the same.
    let input = format!("{}\nread\n", "9".repeat(4_000_000));
    let out = run(&["client", &p], input.as_bytes(), TIMEOUT);
    assert_eq!(out.stdout.lines().last(), Some("VALUE:4"), "{out:?}");
    assert!(out.stderr.contains("reconnected"), "it says so: {out:?}");
    assert_eq!(out.status.code(), Some(1), "the overlong line failed");
}

#[test]
fn client_follows_the_group_when_its_server_dies() {
    let mut cluster = start_cluster(2);
    let p = cluster.primary_port();
    let mut client = Interactive::spawn(&["client", &p.to_string()]);
    let stdin = client.stdin.as_mut().expect("stdin");
    stdin.write_all(b"write 1\n").unwrap();
    client.wait_stdout("ACK");
    // The primary dies between two writes: the second goes to a live member, tagged as the
    // first was, and is acknowledged once the group has a new primary.
    cluster.primary.kill();
    client.finish_input(b"write 2\nread\n");
    let out = client.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "ACK\nACK\nVALUE:2\n", "{out:?}");
    let note = format!("server :{p} is gone; now talking to :");
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains(&note)).count(),
        1,
        "one line says where the client went: {out:?}"
    );
    let backups = cluster.backup_ports();
    let new_primary = wait_for("a backup took over", TIMEOUT, || {
        backups
            .iter()
            .copied()
            .find(|&b| status(b).is_some_and(|s| field(&s, "role") == Some("primary")))
    });
    assert_eq!(
        read(new_primary),
        2,
        "the second write went through the new primary"
    );
}

#[test]
fn a_retried_tagged_write_is_applied_once() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    // Were the retry of WRITE:10:77:1 applied again, the value would go back to 10.
    let input = "WRITE:10:77:1\nwrite 11\nWRITE:10:77:1\nread\n";
    let out = run(&["client", &p.to_string()], input.as_bytes(), TIMEOUT);
    assert_eq!(out.stdout, "ACK\nACK\nACK\nVALUE:11\n", "{out:?}");
    assert!(out.success(), "{out:?}");
    // The same through the backup, which forwards the retry to the primary.
    let input = "WRITE:20:78:5\nwrite 21\nWRITE:20:78:5\nread\n";
    let out = run(&["client", &b.to_string()], input.as_bytes(), TIMEOUT);
    assert_eq!(out.stdout, "ACK\nACK\nACK\nVALUE:21\n", "{out:?}");
    assert_eq!(read(p), 21);
}

/// A seed-only server: one thread per connection, `READ` and `WRITE:v` answered, any other
/// line answered by closing the connection. Returns the lines each connection carried.
fn seed_server() -> (u16, Arc<Mutex<Vec<Vec<String>>>>) {
    let (listener, port) = listen();
    let conns: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let value = Arc::new(Mutex::new(0i64));
    let record = conns.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (record, value) = (record.clone(), value.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::from_stream(stream);
                let slot = {
                    let mut all = record.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                while let Got::Line(line) = conn.next_within(TIMEOUT) {
                    record.lock().unwrap()[slot].push(line.clone());
                    if line == "READ" {
                        conn.send(&format!("VALUE:{}", value.lock().unwrap()));
                    } else if let Some(v) = line.strip_prefix("WRITE:").and_then(|v| v.parse().ok())
                    {
                        *value.lock().unwrap() = v;
                        conn.send("ACK");
                    } else {
                        return;
                    }
                }
            });
        }
    });
    (port, conns)
}

#[test]
fn a_seed_server_gets_only_seed_lines_from_the_client() {
    let (port, conns) = seed_server();
    let out = run(
        &["client", &port.to_string()],
        b"write 5\nwrite 6\nread\n",
        TIMEOUT,
    );
    assert_eq!(out.stdout, "ACK\nACK\nVALUE:6\n", "{out:?}");
    assert!(out.success(), "{out:?}");
    let conns = conns.lock().unwrap().clone();
    let sessions: Vec<&Vec<String>> = conns
        .iter()
        .filter(|c| c.first().is_some_and(|l| l != "STATUS"))
        .collect();
    assert_eq!(
        sessions,
        [&vec!["WRITE:5".to_owned(), "WRITE:6".into(), "READ".into()]],
        "{conns:?}"
    );
    assert!(
        conns
            .iter()
            .filter(|c| c.first().is_some_and(|l| l == "STATUS"))
            .all(|c| c.len() == 1),
        "the probe is alone on its connection: {conns:?}"
    );
}

#[test]
fn client_takes_a_host_and_port() {
    let primary = Server::primary(free_port());
    let addr = format!("localhost:{}", primary.port);
    let out = ditto(&["client", &addr, "write", "7"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "ACK\n");
    let out = ditto(&["client", &format!("127.0.0.1:{}", primary.port), "read"]);
    assert_eq!(out.stdout, "VALUE:7\n", "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Argument errors and help
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_command_lines_fail_with_one_line() {
    let busy = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let busy = busy.local_addr().unwrap().port().to_string();
    // A port for the backup cases' primary: nobody needs to listen there, they fail before.
    let other = free_port().to_string();
    // A log directory that cannot be made: its parent is a file.
    let dir = TempDir::new("bad-log-dir");
    std::fs::write(dir.path().join("file"), "").unwrap();
    let under_a_file = dir.path().join("file").join("logs");
    let under_a_file = under_a_file.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["frob"],
        vec!["primary", "abc"],
        vec!["primary", "0"],
        vec!["primary", "70000"],
        vec!["primary", "-1"],
        vec!["primary"],
        vec!["backup", "1"],
        vec!["backup", "abc", "7000"],
        vec!["backup", &other, &other],
        vec!["client"],
        vec!["client", "0", "READ"],
        vec!["primary", "7000", "--frob"],
        vec!["primary", &busy],
        vec!["backup", &busy, &other],
        vec!["up", "--base-port", "65535", "--backups", "2"],
        vec!["up", "--base-port", &other, "--log-dir", under_a_file],
        // Numbers of seconds must be positive and finite, wherever they are taken.
        vec!["bench", "-p", &other, "-n", "1", "--timeout=-1"],
        vec!["bench", "-p", &other, "--duration", "nan"],
        // Keys, tests and values are RESP's; the line protocol has one register.
        vec!["bench", "-p", &other, "-n", "1", "--keys", "5"],
        vec!["bench", "-p", &other, "-n", "1", "-t", "set"],
        vec!["bench", "--resp", "-p", &other, "-n", "1", "--keys", "0"],
        vec!["bench", "--resp", "-p", &other, "-n", "1", "-t", "set,frob"],
        vec!["bench", "--resp", "-p", &other, "--dist", "zipf:0"],
        vec!["bench", "--resp", "-p", &other, "--dist", "pareto"],
        vec!["bench", "--resp", "-p", &other, "--host", "no host"],
        // Nobody listens there: the connection fails, in one line.
        vec!["bench", "--resp", "-p", &other, "-n", "1"],
        vec!["client", &other, "--timeout", "0", "READ"],
        vec!["check", "--duration", "inf"],
        vec!["check", "--op-timeout=-2"],
    ];
    for args in cases {
        let out = ditto(&args);
        assert_one_line_error(&out, &format!("ditto {}", args.join(" ")));
    }
}

#[test]
fn a_missing_argument_is_named() {
    let out = ditto(&["backup", "7001"]);
    assert_one_line_error(&out, "ditto backup 7001");
    assert!(out.stderr.contains("PRIMARY_PORT"), "{}", out.stderr);
}

#[test]
fn no_arguments_prints_usage_and_fails() {
    let out = ditto(&[]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("Usage:"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

/// The subcommands `ditto --help` lists (without `help` itself).
fn subcommands() -> Vec<String> {
    let out = ditto(&["--help"]);
    assert!(out.success(), "{out:?}");
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_succeeds_for_every_subcommand() {
    let subs = subcommands();
    for expected in ["primary", "backup", "client", "up", "bench"] {
        assert!(
            subs.iter().any(|s| s == expected),
            "{expected} missing from {subs:?}"
        );
    }
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["-h"],
        vec!["help"],
        vec!["--version"],
        vec!["help", "backup"],
    ];
    for sub in &subs {
        cases.push(vec![sub.as_str(), "--help"]);
    }
    for args in cases {
        let out = ditto(&args);
        assert!(out.success(), "ditto {}: {out:?}", args.join(" "));
        assert!(
            !out.stdout.trim().is_empty(),
            "ditto {}: no output",
            args.join(" ")
        );
        assert!(
            out.stderr.is_empty(),
            "ditto {}: {}",
            args.join(" "),
            out.stderr
        );
    }
    let out = ditto(&["backup", "--help"]);
    assert!(
        out.stdout.contains("BACKUP_PORT") && out.stdout.contains("PRIMARY_PORT"),
        "{}",
        out.stdout
    );
}

#[test]
fn help_subcommand_prints_what_help_flags_print() {
    let top = ditto(&["--help"]);
    assert!(top.success(), "{top:?}");
    for args in [
        vec!["help"],
        vec!["help", "--help"],
        vec!["help", "-h"],
        vec!["help", "help"],
    ] {
        let out = ditto(&args);
        assert!(out.success(), "ditto {}: {out:?}", args.join(" "));
        assert_eq!(out.stdout, top.stdout, "ditto {}", args.join(" "));
        assert!(out.stderr.is_empty(), "ditto {}: {out:?}", args.join(" "));
    }
    for sub in subcommands() {
        let direct = ditto(&[&sub, "--help"]);
        for args in [vec!["help", &sub], vec!["help", &sub, "--help"]] {
            let out = ditto(&args);
            assert!(out.success(), "ditto {}: {out:?}", args.join(" "));
            assert_eq!(out.stdout, direct.stdout, "ditto {}", args.join(" "));
        }
    }
    let out = ditto(&["help", "frob"]);
    assert_one_line_error(&out, "ditto help frob");
    assert!(out.stderr.contains("frob"), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// ditto up
// ---------------------------------------------------------------------------------------------

/// The pid `ditto up`'s banner gives for the server on `port`.
fn pid_in_banner(banner: &str, port: u16) -> i32 {
    let line = banner
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{port} ")))
        .unwrap_or_else(|| panic!("no line for port {port} in the banner:\n{banner}"));
    let mut words = line.split_whitespace();
    words.find(|w| *w == "pid");
    let pid = words.next().and_then(|w| w.parse().ok());
    pid.unwrap_or_else(|| panic!("no pid in {line:?}"))
}

#[test]
fn up_runs_a_cluster_behind_a_prompt_and_stops_it() {
    let logs = TempDir::new("up");
    let base = free_ports(3);
    let ports = [base, base + 1, base + 2];
    let mut up = Interactive::spawn(&[
        "up",
        "--base-port",
        &base.to_string(),
        "--backups",
        "2",
        "--log-dir",
        logs.arg(),
    ]);
    up.wait_stdout("Leave with");
    let banner = up.stdout.text();
    for (role, port) in [
        ("primary", base),
        ("backup", base + 1),
        ("backup", base + 2),
    ] {
        assert!(
            banner
                .lines()
                .any(|l| l.contains(role) && l.contains(&format!("127.0.0.1:{port}"))),
            "no {role} line for port {port} in the banner:\n{banner}"
        );
    }
    up.finish_input(format!("write 5\nread\nconnect {}\nread\n", base + 1).as_bytes());
    let out = up.wait(Duration::from_secs(20));
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "ACK"), "{}", out.stdout);
    assert_eq!(
        out.stdout.lines().filter(|l| *l == "VALUE:5").count(),
        2,
        "the primary and the backup both read 5:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with("ditto stopped."),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    for port in ports {
        assert!(
            !is_listening(port),
            "port {port} still open after `ditto up` stopped"
        );
    }
    assert!(
        out.stdout.contains(logs.arg()),
        "where the logs are: {out:?}"
    );
    assert!(
        logs.read(&format!("primary-{base}.log")).contains(" INFO "),
        "the servers log at info by default"
    );
    for port in &ports[1..] {
        assert!(!logs.read(&format!("backup-{port}.log")).is_empty());
    }
}

#[test]
fn up_keeps_the_servers_logs_off_the_prompt() {
    let logs = TempDir::new("up-quiet");
    let base = free_ports(3);
    let mut up = Interactive::spawn(&[
        "up",
        "--base-port",
        &base.to_string(),
        "--log-dir",
        logs.arg(),
        "--server-log-level",
        "warn",
    ]);
    up.wait_stdout("Leave with");
    let primary = pid_in_banner(&up.stdout.text(), base);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(primary),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the primary");
    // Its backups say so, and elect a new primary, in their own files.
    let backup_logs = [
        format!("backup-{}.log", base + 1),
        format!("backup-{}.log", base + 2),
    ];
    wait_until("a backup logs that its primary is silent", TIMEOUT, || {
        backup_logs
            .iter()
            .any(|log| logs.read(log).contains("has been silent"))
    });
    up.finish_input(b"");
    let out = up.wait(Duration::from_secs(20));
    assert!(out.success(), "{out:?}");
    assert!(!out.stdout.contains("WARN"), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(
        !logs.read(&format!("primary-{base}.log")).contains(" INFO "),
        "--server-log-level warn left out the info lines"
    );
}

#[test]
fn servers_started_by_up_die_with_it() {
    let logs = TempDir::new("up-die");
    let base = free_ports(3);
    let mut up = Interactive::spawn(&[
        "up",
        "--base-port",
        &base.to_string(),
        "--log-dir",
        logs.arg(),
    ]);
    up.wait_stdout("Leave with");
    for port in base..base + 3 {
        assert!(is_listening(port), "port {port} is not served");
    }
    // No chance to clean up: the servers notice that their standard input closed.
    up.kill();
    for port in base..base + 3 {
        wait_until(
            &format!("the server on port {port} is gone"),
            TIMEOUT,
            || !is_listening(port),
        );
    }
}

#[test]
fn up_on_a_busy_port_fails_clearly() {
    // The primary's port taken, then a backup's.
    for busy_offset in [0, 1] {
        let base = free_ports(2);
        let busy = base + busy_offset;
        let free = base + 1 - busy_offset;
        let _busy = TcpListener::bind(("127.0.0.1", busy)).unwrap();
        let logs = TempDir::new("up-busy");
        let out = run(
            &[
                "up",
                "--base-port",
                &base.to_string(),
                "--backups",
                "1",
                "--log-dir",
                logs.arg(),
            ],
            b"",
            Duration::from_secs(20),
        );
        assert!(!out.success(), "{out:?}");
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let last = out.stderr.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains(&busy.to_string()) && last.contains("in use"),
            "the final error names the port and the cause: {last:?}\n{}",
            out.stderr
        );
        assert!(!out.stdout.contains("ditto is up"), "{}", out.stdout);
        wait_until(
            &format!("no server is left running on port {free}"),
            TIMEOUT,
            || !is_listening(free),
        );
    }
}

#[test]
fn up_says_once_that_a_server_exited() {
    let logs = TempDir::new("up-exit");
    let base = free_ports(3);
    let mut up = Interactive::spawn(&[
        "up",
        "--base-port",
        &base.to_string(),
        "--log-dir",
        logs.arg(),
    ]);
    up.wait_stdout("Leave with");
    let banner = up.stdout.text();
    let kill = |port: u16, signal: nix::sys::signal::Signal| {
        let pid = nix::unistd::Pid::from_raw(pid_in_banner(&banner, port));
        nix::sys::signal::kill(pid, signal).expect("signal a server");
    };

    kill(base, nix::sys::signal::Signal::SIGKILL);
    let primary_exited = format!("The primary on port {base} exited (signal 9");
    up.wait_stdout(&primary_exited);
    // Long enough for the backups to have elected a new primary (and said so in their logs).
    let backup_logs = [
        format!("backup-{}.log", base + 1),
        format!("backup-{}.log", base + 2),
    ];
    wait_until("the backups elect a new primary", TIMEOUT, || {
        backup_logs
            .iter()
            .any(|log| logs.read(log).contains("primary of view 2"))
    });
    kill(base + 2, nix::sys::signal::Signal::SIGTERM);
    let backup_exited = format!("The backup on port {} exited (exit status 0)", base + 2);
    up.wait_stdout(&backup_exited);

    up.finish_input(format!("connect {}\nread\n", base + 1).as_bytes());
    let out = up.wait(Duration::from_secs(20));
    let said = |what: &str| out.stdout.lines().filter(|l| l.starts_with(what)).count();
    assert_eq!(said(&primary_exited), 1, "{}", out.stdout);
    assert_eq!(said(&backup_exited), 1, "{}", out.stdout);
    let primary_note = out.stdout.lines().find(|l| l.starts_with(&primary_exited));
    assert!(
        primary_note.is_some_and(|l| l.contains(&format!("primary-{base}.log"))),
        "the note says where the log is: {}",
        out.stdout
    );
    // One server of three is left: it has no quorum, so its lease lapses and it refuses reads
    // (how soon depends on the machine's load, so the read may come before).
    // Either way the prompt answers, and the exit status says which: piped commands fail the
    // run on an ERR: answer.
    let read_ok = out.stdout.lines().any(|l| l == "VALUE:0");
    let read_refused = out.stdout.lines().any(|l| l.starts_with("ERR:"));
    assert!(
        read_ok || read_refused,
        "the prompt went on: {}",
        out.stdout
    );
    assert_eq!(
        out.status.code(),
        Some(if read_ok { 0 } else { 1 }),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn up_refused_at_once_leaves_no_log_directory() {
    let parent = TempDir::new("up-refused");
    let logs = parent.path().join("logs");
    let out = ditto(&[
        "up",
        "--base-port",
        "65535",
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "ditto up on ports past 65535");
    assert!(!logs.exists(), "{} was made for nothing", logs.display());
}

#[test]
fn up_on_the_ports_of_a_running_cluster_fails_every_time() {
    // An older cluster answers on every port: only the new servers' own word that they are
    // listening tells `up` whether they are.
    let base = free_ports(3);
    let primary = Server::primary(base);
    let backups = vec![
        Server::backup(base + 1, base),
        Server::backup(base + 2, base),
    ];
    let mut old = Cluster { primary, backups };
    old.wait_synced();
    for attempt in 0..5 {
        let logs = TempDir::new("up-taken");
        let out = run(
            &[
                "up",
                "--base-port",
                &base.to_string(),
                "--log-dir",
                logs.arg(),
            ],
            b"",
            Duration::from_secs(20),
        );
        let what = format!("attempt {attempt}");
        assert_one_line_error(&out, &what);
        assert!(
            out.stderr.contains(&format!("port {base}")) && out.stderr.contains("in use"),
            "{what}: the error names the busy port: {out:?}"
        );
        assert!(!out.stdout.contains("ditto is up"), "{what}: {out:?}");
    }
    old.wait_synced();
}

// ---------------------------------------------------------------------------------------------
// ditto bench
// ---------------------------------------------------------------------------------------------

#[test]
fn bench_reports_json() {
    let cluster = start_cluster(1);
    let ports = format!("{},{}", cluster.primary_port(), cluster.backup_ports()[0]);
    let out = run(
        &["bench", "-p", &ports, "-c", "4", "-n", "200", "--json"],
        b"",
        Duration::from_secs(30),
    );
    assert!(out.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["connections"], 4, "{report}");
    let reads = report["reads"]["count"].as_u64().unwrap();
    let writes = report["writes"]["count"].as_u64().unwrap();
    assert_eq!(reads + writes, 200, "{report}");
    assert!(writes > 0 && reads > 0, "a 50% mix: {report}");
    // The writes really happened, and every replica agrees on the outcome.
    let p = cluster.primary_port();
    let last: u64 = field(&status(p).unwrap(), "last").unwrap().parse().unwrap();
    // Besides the writes, the log holds configurations: the view's first, and one per backup
    // admitted to the active set.
    let configs = 1 + cluster.backup_ports().len() as u64;
    assert_eq!(
        last,
        writes + configs,
        "one sequenced write per acknowledged write"
    );
    assert_eq!(read(p), read(cluster.backup_ports()[0]));
}
