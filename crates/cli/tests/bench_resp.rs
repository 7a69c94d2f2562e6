//! `ditto bench --resp` against a real Redis: the generator that measures ditto's RESP port must
//! also drive the server it is compared with, and what it claims to have done must be there
//! afterwards (the keys it wrote, every INCR counted once).
//!
//! The tests start `redis-server` themselves, on a free loopback port, without persistence, and
//! kill it by its process id when they end. Without `redis-server` they say loudly why and
//! pass, so that a developer's machine need not have Redis; with `DITTO_REQUIRE_REDIS=1` (which
//! `.ci/run` sets when it can install Redis) they fail instead, so that CI cannot skip them
//! unnoticed.

mod support;

use std::io::{self, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ditto_core::Addr;
use ditto_core::resp::Reply;
use ditto_server::RespClient;
use serde_json::Value;
use support::*;

/// How long a whole bench run may take (a debug build does some thousands of requests a second).
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A `redis-server` of the test's own. Dropping it stops the process and reaps it.
#[derive(Debug)]
struct Redis {
    port: u16,
    child: Child,
    dir: TempDir,
}

impl Redis {
    /// Starts a server on a free port and waits until it answers `PING`; `None` (after saying
    /// why) if there is no `redis-server` and that is allowed.
    fn start(test: &str) -> Option<Redis> {
        if let Err(why) = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            return skip(test, &format!("cannot run redis-server ({why})"));
        }
        // A port free when chosen may be taken before the server binds it: then it exits at
        // once, and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            let dir = TempDir::new("redis");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--dir", dir.arg(), "--logfile", "redis.log"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server ran a moment ago");
            let mut redis = Redis { port, child, dir };
            if redis.wait_answering() {
                return Some(redis);
            }
        }
        panic!("redis-server could not start on any of 5 free ports");
    }

    /// Waits until the server answers `PING`; false if it exited first.
    fn wait_answering(&mut self) -> bool {
        let what = format!("redis-server answers PING on port {}", self.port);
        let (child, port) = (&mut self.child, self.port);
        wait_for(&what, TIMEOUT, || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            let pong = try_command(port, &["PING"], Duration::from_millis(500));
            matches!(pong, Ok(Reply::Simple(s)) if s == "PONG").then_some(true)
        })
    }

    /// Sends one command and returns its reply; panics if there is none.
    fn command(&self, args: &[&str]) -> Reply {
        try_command(self.port, args, TIMEOUT)
            .unwrap_or_else(|e| panic!("{args:?} at redis-server :{}: {e}", self.port))
    }

    fn dbsize(&self) -> i64 {
        match self.command(&["DBSIZE"]) {
            Reply::Integer(n) => n,
            other => panic!("DBSIZE answered {other:?}"),
        }
    }

    /// Every key matching `pattern`.
    fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]) {
            Reply::Array(keys) => keys
                .into_iter()
                .map(|k| match k {
                    Reply::Bulk(k) => String::from_utf8(k).expect("a UTF-8 key"),
                    other => panic!("KEYS gave {other:?}"),
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    /// The value of `key`, if it has one.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.command(&["GET", key]) {
            Reply::Bulk(v) => Some(v),
            Reply::Null => None,
            other => panic!("GET {key} answered {other:?}"),
        }
    }

    fn log(&self) -> String {
        self.dir.read("redis.log")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGTERM first, so that it closes its clients cleanly; `wait_exit` kills it outright
        // if it has not gone in 5 s.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = wait_exit(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "----- log of redis-server :{} -----\n{}",
                self.port,
                self.log()
            );
        }
    }
}

/// `None`, after saying loudly that `test` is skipped and why; a failure instead when
/// `DITTO_REQUIRE_REDIS=1`, where the machine is meant to run these tests.
fn skip(test: &str, why: &str) -> Option<Redis> {
    if std::env::var("DITTO_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("{test}: {why}, and DITTO_REQUIRE_REDIS=1");
    }
    // Straight to the terminal, not through the test harness, which would swallow it.
    let _ = writeln!(
        io::stderr(),
        "\n*** SKIPPED {test}: {why}. It needs redis-server (Debian's redis-server package); \
         DITTO_REQUIRE_REDIS=1 makes this a failure. ***\n"
    );
    None
}

/// One command on a connection of its own, every wait bounded by `timeout`.
fn try_command(port: u16, args: &[&str], timeout: Duration) -> Result<Reply, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = RespClient::connect(&Addr::local(port), timeout)
            .await
            .map_err(|e| e.to_string())?;
        client.request(args).await.map_err(|e| e.to_string())
    })
}

/// Runs `ditto bench --resp --json ARGS...` and returns its report; panics unless it exits
/// as `success` says it should.
fn bench(args: &[&str], success: bool) -> Value {
    let mut all = vec!["bench", "--resp", "--json"];
    all.extend_from_slice(args);
    let out = run(&all, b"", BENCH_TIMEOUT);
    assert_eq!(out.success(), success, "ditto {}: {out:?}", all.join(" "));
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

/// The number `n` of a key named `prefix<n>`.
fn key_number(key: &str, prefix: &str) -> u64 {
    key.strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key:?} is not {prefix}<n>"))
}

#[test]
fn bench_over_resp_counts_every_request_and_writes_the_keys_it_says() {
    let Some(redis) =
        Redis::start("bench_over_resp_counts_every_request_and_writes_the_keys_it_says")
    else {
        return;
    };
    let port = redis.port.to_string();
    let report = bench(&["-p", &port, "-n", "2000", "--keys", "100"], true);
    assert_eq!(report["protocol"], "resp", "{report}");
    assert_eq!(report["ok"], 2000, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let tests = report["tests"].as_array().expect("a list of tests");
    assert_eq!(tests.len(), 1, "the mix test alone by default: {report}");
    let mix = &tests[0];
    assert_eq!(mix["test"], "mix", "{report}");
    assert_eq!(mix["ok"], 2000, "{report}");
    assert_eq!(mix["all"]["count"], 2000, "{report}");
    let reads = mix["reads"]["count"].as_u64().unwrap();
    let writes = mix["writes"]["count"].as_u64().unwrap();
    assert_eq!(reads + writes, 2000, "{report}");
    assert!(reads > 500 && writes > 500, "a 50% mix: {report}");
    assert!(mix["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");

    // About a thousand SETs over 100 keys: (nearly) every key was written, and no other.
    let size = redis.dbsize();
    assert!((2..=100).contains(&size), "DBSIZE {size}");
    let keys = redis.keys("*");
    assert_eq!(keys.len() as i64, size);
    for key in &keys {
        assert!(key_number(key, "key:") < 100, "{key} beyond --keys 100");
        assert_eq!(redis.get(key).as_deref(), Some(b"xxx".as_slice()), "{key}");
    }
}

#[test]
fn each_test_runs_in_turn_and_every_pipelined_incr_is_counted_once() {
    let Some(redis) =
        Redis::start("each_test_runs_in_turn_and_every_pipelined_incr_is_counted_once")
    else {
        return;
    };
    let port = redis.port.to_string();
    let report = bench(
        &[
            "-p",
            &port,
            "-t",
            "set,get,incr",
            "-n",
            "3000",
            "-c",
            "8",
            "-P",
            "16",
            "--keys",
            "50",
            "--dist",
            "zipf",
            "--value-size",
            "10",
        ],
        true,
    );
    assert_eq!(report["dist"], "zipf:0.99", "{report}");
    let names: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["test"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["set", "get", "incr"], "{report}");
    for t in report["tests"].as_array().unwrap() {
        assert_eq!(t["ok"], 3000, "{t}");
        assert_eq!(t["errors"], 0, "{t}");
    }
    assert_eq!(report["tests"][1]["reads"]["count"], 3000, "{report}");

    for key in redis.keys("key:*") {
        assert!(key_number(&key, "key:") < 50, "{key}");
        assert_eq!(redis.get(&key).map(|v| v.len()), Some(10), "{key}");
    }
    // Every INCR the bench counted is in the counters, once: replies were matched to requests.
    let mut total = 0;
    let mut counts = Vec::new();
    for key in redis.keys("counter:*") {
        let n = key_number(&key, "counter:");
        assert!(n < 50, "{key}");
        let value = redis.get(&key).expect("a counter");
        let value: u64 = String::from_utf8(value).unwrap().parse().unwrap();
        total += value;
        counts.push((value, n));
    }
    assert_eq!(total, 3000, "{counts:?}");
    // Under Zipf, counter:0 is the hottest (it takes about a fifth of 50 keys' draws).
    let hottest = counts.iter().max().unwrap();
    assert_eq!(hottest.1, 0, "{counts:?}");
    assert!(hottest.0 > 400, "{counts:?}");
}

#[test]
fn the_text_report_has_a_line_per_test() {
    let Some(redis) = Redis::start("the_text_report_has_a_line_per_test") else {
        return;
    };
    let port = redis.port.to_string();
    let out = run(
        &[
            "bench", "--resp", "-p", &port, "-n", "500", "-c", "5", "-t", "get,set",
        ],
        b"",
        BENCH_TIMEOUT,
    );
    assert!(out.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a heading and two tests: {}", out.stdout);
    assert!(
        lines[0].starts_with("ditto bench --resp: 127.0.0.1 ports "),
        "{}",
        out.stdout
    );
    assert!(lines[0].contains("5 connections x 1 in flight, 1 keys uniform, 3-byte values"));
    for (line, name) in lines[1..].iter().zip(["GET", "SET"]) {
        assert!(
            line.trim_start().starts_with(&format!("{name} ")),
            "{name}: {line}"
        );
        assert!(line.contains("500 ok, 0 errors"), "{line}");
        assert!(line.contains("ops/s") && line.contains("p99.9"), "{line}");
    }
}

#[test]
fn error_replies_are_counted_and_fail_the_run() {
    let Some(redis) = Redis::start("error_replies_are_counted_and_fail_the_run") else {
        return;
    };
    // INCR of a value that is not a number is refused by Redis, every time.
    assert_eq!(redis.command(&["SET", "counter:0", "abc"]), Reply::ok());
    let port = redis.port.to_string();
    let report = bench(&["-p", &port, "-t", "incr", "-n", "100", "-c", "2"], false);
    let incr = &report["tests"][0];
    assert_eq!(incr["errors"], 100, "{report}");
    assert_eq!(incr["ok"], 0, "{report}");
    assert!(
        incr["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("not an integer")),
        "{report}"
    );
    assert_eq!(redis.get("counter:0").as_deref(), Some(b"abc".as_slice()));
}

#[test]
fn connections_go_round_robin_over_the_ports() {
    let Some(a) = Redis::start("connections_go_round_robin_over_the_ports") else {
        return;
    };
    let Some(b) = Redis::start("connections_go_round_robin_over_the_ports") else {
        return;
    };
    let ports = format!("{},{}", a.port, b.port);
    let report = bench(
        &[
            "-p",
            &ports,
            "-c",
            "2",
            "-t",
            "set",
            "-n",
            "2000",
            "--keys",
            "1000000000000",
        ],
        true,
    );
    assert_eq!(report["ok"], 2000, "{report}");
    // Each server had one of the two connections. Over 10^12 keys a key drawn twice is all but
    // impossible, so the two key counts add up to the writes.
    let (na, nb) = (a.dbsize(), b.dbsize());
    assert_eq!(na + nb, 2000, "{na} + {nb} keys");
    assert!(
        na > 0 && nb > 0,
        "{na} and {nb} keys: a server had no connection"
    );
}
