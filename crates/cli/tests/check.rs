//! `ditto check`: the workload, the nemesis, the history files and the verdicts, end to end.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::*;

/// A fresh directory under the system's temp dir for one test's reports.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ditto-check-test-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The text of a gzip-compressed history as `ditto check` writes it.
fn history_text(path: &std::path::Path) -> String {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("a gzip-compressed history");
    text
}

fn check(args: &[&str], limit: Duration) -> Outcome {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    run(&all, b"", limit)
}

/// Runs `ditto check ARGS --out DIR` in a fresh scratch directory named after `name`, and
/// requires that it passed: exit 0 and the OK verdict. Returns the outcome and the directory.
fn passing_check(name: &str, args: &[&str], limit: Duration) -> (Outcome, PathBuf) {
    let out_dir = scratch(name);
    let mut all = args.to_vec();
    all.extend(["--out", out_dir.to_str().unwrap()]);
    let out = check(&all, limit);
    assert!(
        out.success() && out.stdout.contains("verdict     OK"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    (out, out_dir)
}

/// The number after `label` in the summary line that holds it.
fn count(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"));
    let before = line.split(label).next().unwrap_or_default();
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{label}` in `{line}`"))
}

#[test]
fn a_healthy_cluster_passes_and_leaves_a_history_and_a_timeline() {
    let (out, out_dir) = passing_check(
        "healthy",
        &["--duration", "2", "--ops", "1500"],
        Duration::from_secs(60),
    );
    assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("sequentially consistent"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("convergence: every replica holds"),
        "{}",
        out.stdout
    );
    assert_eq!(count(&out.stdout, "ok,"), 1500, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("reads answered under the primary's lease"),
        "{}",
        out.stdout
    );
    let file = out_dir.join("history.jsonl.gz");
    let text = history_text(&file);
    assert_eq!(text.lines().count(), 1500);
    assert!(
        text.contains(r#""linearizable":true"#),
        "the primary's clients read at the primary under its lease"
    );
    let html = std::fs::read_to_string(out_dir.join("timeline.html")).unwrap();
    assert!(html.contains("<svg"), "the timeline draws the history");
    // The compressed history can be checked again, and its timeline goes beside it.
    let again = check(&["--history", file.to_str().unwrap()], TIMEOUT);
    assert!(again.success(), "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("verdict     OK"), "{}", again.stdout);
    assert!(out_dir.join("history.html").exists());
}

/// The README's tour leaves the register at 5; a check of that cluster must start from 5 rather
/// than take every read of it for a read of a value nobody wrote. A second check then starts
/// from the first one's last write, and must not write that value again.
#[test]
fn a_running_cluster_can_be_checked_by_its_ports_from_the_value_it_holds() {
    let cluster = start_cluster(2);
    assert_eq!(
        Conn::connect(cluster.primary.port).request("WRITE:5"),
        "ACK"
    );
    let backups: Vec<String> = cluster.backup_ports().iter().map(u16::to_string).collect();
    let primary = cluster.primary.port.to_string();
    for round in ["first", "second"] {
        let out_dir = scratch("ports");
        let out = check(
            &[
                "--primary",
                &primary,
                "--backups",
                &backups.join(","),
                "--duration",
                "1",
                "--ops",
                "600",
                "--out",
                out_dir.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert!(
            out.success(),
            "{round} check\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
        assert_eq!(count(&out.stdout, "ok,"), 600, "{}", out.stdout);
        let history = history_text(&out_dir.join("history.jsonl.gz"));
        let header = history.lines().next().unwrap_or_default();
        if round == "first" {
            assert_eq!(header, r#"{"initial":5}"#);
            assert!(
                out.stdout.contains("the register held 5 at the start"),
                "{}",
                out.stdout
            );
        } else {
            assert!(header.starts_with(r#"{"initial":"#), "{header}");
            assert_ne!(header, r#"{"initial":5}"#, "the first check wrote since");
        }
    }
}

/// A server that answers the first READ with a value and refuses everything after: every
/// operation of the workload fails, which proves nothing.
#[test]
fn a_run_in_which_nothing_succeeds_is_not_a_pass() {
    let (listener, port) = listen();
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let answer_value = std::mem::take(&mut first);
            std::thread::spawn(move || {
                let mut conn = Conn::from_stream(stream);
                while let Got::Line(_) = conn.next_within(TIMEOUT) {
                    if answer_value {
                        conn.send("VALUE:0");
                    } else {
                        conn.send("ERR:refused");
                    }
                }
            });
        }
    });
    let out_dir = scratch("nothing");
    let out = check(
        &[
            "--primary",
            &port.to_string(),
            "--duration",
            "0.5",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(count(&out.stdout, "ok,"), 0, "{}", out.stdout);
    assert!(count(&out.stdout, "failed,") > 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("verdict     UNDECIDED: no operation succeeded, so nothing was tested"),
        "{}",
        out.stdout
    );
}

/// With no server at all, not even the starting value can be read: the check cannot run.
#[test]
fn a_check_of_ports_with_no_server_cannot_run() {
    let port = free_port().to_string();
    let out = check(&["--primary", &port, "--duration", "0.5"], TIMEOUT);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot read the starting value from the primary :{port}"
        )),
        "{}",
        out.stderr
    );
}

/// The nemesis kills, pauses and partitions while the workload runs; the history must still be
/// sequentially consistent and the replicas must converge once the faults are healed.
#[test]
fn faults_do_not_break_consistency() {
    let (out, out_dir) = passing_check(
        "nemesis",
        &[
            "--duration",
            "6",
            "--ops",
            "100000",
            "--nemesis",
            "all",
            "--nemesis-interval",
            "0.4",
            "--fault-duration",
            "0.4",
            "--seed",
            "2",
        ],
        Duration::from_secs(120),
    );
    let injected = count(&out.stdout, "injected");
    assert!(injected >= 3, "{}", out.stdout);
    assert!(count(&out.stdout, "ok,") > 100, "{}", out.stdout);
    assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
    // The timeline shades every fault on both plots, and has them for the lanes.
    let html = std::fs::read_to_string(out_dir.join("timeline.html")).unwrap();
    assert_eq!(
        html.matches("<rect class=\"fault\"").count() as u64,
        2 * injected
    );
    assert_eq!(html.matches("\"kind\":\"").count() as u64, injected);
}

#[test]
fn the_clients_follow_a_new_primary_and_the_replicas_converge_on_it() {
    let out_dir = scratch("kill-primary");
    let out = check(
        &[
            "--duration",
            "4",
            "--nemesis",
            "kill-primary",
            "--nemesis-interval",
            "1",
            "--fault-duration",
            "1.5",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.stdout.contains("kill -9 primary"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("convergence: every replica holds"),
        "stdout:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
    assert!(out.success(), "{}", out.stdout);
}

/// Isolating the primary from the other members moves the primary role: the next fault finds
/// another server primary. The old primary, which its clients still reach, acknowledges nothing
/// that the new one does not hold, so the history stays linearizable.
#[test]
fn isolating_the_primary_moves_it_and_loses_nothing() {
    let (out, _) = passing_check(
        "isolate",
        &[
            "--duration",
            "9",
            "--ops",
            "100000",
            "--nemesis",
            "isolate-primary",
            "--nemesis-interval",
            "0.5",
            "--fault-duration",
            "1.6",
            "--seed",
            "3",
        ],
        Duration::from_secs(120),
    );
    let isolated: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("isolate primary ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(isolated.len() >= 2, "{}", out.stdout);
    assert!(
        isolated.windows(2).all(|w| w[0] != w[1]),
        "each isolation must have moved the primary: {isolated:?}\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
}

const BAD: &str = r#"{"client":1,"server":7001,"op":"write","value":5,"invoke_ns":0,"return_ns":10,"outcome":"ok"}
{"client":1,"server":7001,"op":"read","value":3,"invoke_ns":20,"return_ns":30,"outcome":"ok"}
{"client":2,"server":7002,"op":"write","value":3,"invoke_ns":0,"return_ns":10,"outcome":"ok"}
{"client":2,"server":7002,"op":"read","value":5,"invoke_ns":20,"return_ns":30,"outcome":"ok"}
"#;

/// Client 2 reads 5 after the write of 6 returned: sequentially consistent, not linearizable.
const STALE: &str = r#"{"client":1,"server":7000,"op":"write","value":5,"invoke_ns":0,"return_ns":10,"outcome":"ok"}
{"client":1,"server":7000,"op":"write","value":6,"invoke_ns":20,"return_ns":30,"outcome":"ok"}
{"client":2,"server":7001,"op":"read","value":5,"invoke_ns":40,"return_ns":50,"outcome":"ok"MARK}
"#;

#[test]
fn marked_reads_and_reads_at_the_primary_port_are_checked_for_linearizability() {
    let dir = scratch("marked");
    let file = dir.join("stale.jsonl");
    let path = file.to_str().unwrap();
    let verdict = |text: &str, args: &[&str]| {
        std::fs::write(&file, text).unwrap();
        let mut all = vec!["--history", path];
        all.extend_from_slice(args);
        let out = check(&all, TIMEOUT);
        (out.status.code(), out.stdout)
    };
    // A stale read the primary answered under its lease would be a bug.
    let (code, stdout) = verdict(&STALE.replace("MARK", r#","linearizable":true"#), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("not linearizable"), "{stdout}");
    assert!(
        stdout.contains("1 reads answered under the primary's lease"),
        "{stdout}"
    );
    // Unmarked, at a backup, it is allowed.
    let (code, stdout) = verdict(&STALE.replace("MARK", ""), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout) = verdict(&STALE.replace("MARK", ""), &["--primary", "7000"]);
    assert_eq!(code, Some(0), "{stdout}");
    // A file recorded before reads were marked: the reads at the port named the primary count.
    let (code, stdout) = verdict(&STALE.replace("MARK", ""), &["--primary", "7001"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("reads at the primary :7001"), "{stdout}");
}

#[test]
fn a_recorded_violation_is_explained_and_highlighted() {
    let dir = scratch("bad");
    let file = dir.join("bad.jsonl");
    std::fs::write(&file, BAD).unwrap();
    let out = check(&["--history", file.to_str().unwrap()], TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stdout.contains("not sequentially consistent"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("verdict     VIOLATION"),
        "{}",
        out.stdout
    );
    let html = std::fs::read_to_string(dir.join("bad.html")).unwrap();
    assert!(
        html.contains("not sequentially consistent"),
        "the page states the violation"
    );
}

#[test]
fn a_recorded_consistent_history_passes() {
    let dir = scratch("good");
    let file = dir.join("good.jsonl");
    // The same four operations, but client 2 read what it wrote last: write 5, then write 3.
    std::fs::write(
        &file,
        BAD.replace(r#""read","value":5"#, r#""read","value":3"#),
    )
    .unwrap();
    let out = check(&["--history", file.to_str().unwrap()], TIMEOUT);
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("verdict     OK"), "{}", out.stdout);
}

#[test]
fn a_malformed_history_is_an_error_naming_the_line() {
    let dir = scratch("malformed");
    let file = dir.join("broken.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}{{\"client\":1,\n",
            BAD.lines().next().unwrap().to_owned() + "\n"
        ),
    )
    .unwrap();
    let out = check(&["--history", file.to_str().unwrap()], TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(4),
        "an error, not a verdict: {}",
        out.stderr
    );
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// A history the search cannot finish: twenty concurrent writes, a read of one of them at the
/// primary and a later one of another. Two clients hand over from a write to a read at one
/// instant, which only the search can take; it gives up, and so must the verdict.
fn undecidable_history() -> String {
    let line = |client: u64, op: &str, value: i64, invoke: u64, ret: u64| {
        format!(
            "{{\"client\":{client},\"server\":7000,\"op\":\"{op}\",\"value\":{value},\
             \"invoke_ns\":{invoke},\"return_ns\":{ret},\"outcome\":\"ok\"}}\n"
        )
    };
    let mut text = String::new();
    for c in 1..=20 {
        text += &line(c, "write", c as i64, 0, 100);
    }
    text += &line(1, "read", 5, 100, 150);
    text += &line(2, "read", 5, 100, 150);
    text += &line(99, "read", 5, 101, 150);
    text += &line(100, "read", 6, 400, 500);
    text
}

#[test]
fn an_undecided_check_is_not_a_pass() {
    let dir = scratch("undecided");
    let file = dir.join("hard.jsonl");
    std::fs::write(&file, undecidable_history()).unwrap();
    let out = check(
        &["--history", file.to_str().unwrap(), "--primary", "7000"],
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("sequentially consistent"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("): undecided: "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("verdict     UNDECIDED: linearizability undecided"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_nemesis_needs_a_cluster_of_its_own() {
    let out = check(&["--primary", "7000", "--nemesis", "kill"], TIMEOUT);
    assert!(!out.success());
    assert!(out.stderr.contains("--nemesis"), "{}", out.stderr);
    let out = check(&["--nemesis", "explode"], TIMEOUT);
    assert!(!out.success());
    assert!(out.stderr.contains("unknown fault"), "{}", out.stderr);
}
