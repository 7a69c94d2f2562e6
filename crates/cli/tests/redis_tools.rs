//! The real Redis tools against a ditto group: redis-cli (one-shot), redis-benchmark (with and
//! without pipelining, counting every INCR), and redis-py (plain, RESP3, pipelines and
//! transactions, and Sentinel discovery across a failover).
//!
//! They need `redis-cli`, `redis-benchmark` and python3 with redis-py; `.ci/run` installs them.
//! Where they are missing the tests skip loudly, unless `DITTO_REQUIRE_REDIS=1`, which makes a
//! skip fail.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Whether the tools are here; panics when they must be.
fn tools_present() -> bool {
    let has = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = has("redis-cli", &["--version"])
        && has("redis-benchmark", &["--version"])
        && has("python3", &["-c", "import redis"]);
    if !ok {
        if std::env::var("DITTO_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-cli, redis-benchmark or redis-py is missing and DITTO_REQUIRE_REDIS=1");
        }
        eprintln!(
            "SKIPPED: redis-cli, redis-benchmark or python3 with redis-py is missing \
             (apt-get install redis-tools; pip install redis)"
        );
    }
    ok
}

/// Runs a command to completion within `limit`; its stdout, or a panic with everything.
fn run(command: Command, limit: Duration) -> String {
    let what = format!("{command:?}");
    let out = run_command(command, b"", limit);
    assert!(out.status.success(), "{what} failed: {out:?}");
    out.stdout
}

fn cli(port: u16, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-p", &port.to_string()]).args(args);
    run(c, TIMEOUT).trim_end().to_owned()
}

#[test]
fn redis_cli_reads_and_writes_at_the_primary_and_a_backup() {
    if !tools_present() {
        return;
    }
    let cluster = start_cluster(2);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    assert_eq!(cli(p, &["SET", "user:1", "alice"]), "OK");
    assert_eq!(
        cli(b, &["GET", "user:1"]),
        "alice",
        "a read at a backup sees it"
    );
    assert_eq!(
        cli(b, &["INCR", "n"]),
        "1",
        "a write at a backup is forwarded"
    );
    assert_eq!(cli(p, &["INCRBY", "n", "41"]), "42");
    assert_eq!(cli(p, &["MGET", "user:1", "nope", "n"]), "alice\n\n42");
    assert_eq!(cli(p, &["APPEND", "user:1", "!"]), "6");
    assert_eq!(cli(p, &["CAS", "user:1", "alice!", "bob"]), "1");
    assert_eq!(cli(p, &["CAS", "user:1", "alice!", "carol"]), "0");
    assert_eq!(cli(b, &["GETDEL", "user:1"]), "bob");
    assert_eq!(cli(p, &["EXISTS", "user:1", "n"]), "1");
    assert_eq!(
        cli(p, &["INCR", "nope-not-int-yet"]),
        "1",
        "an absent key counts from 0"
    );
    assert_eq!(cli(p, &["SET", "s", "text"]), "OK");
    let err = cli(p, &["INCR", "s"]);
    assert!(err.contains("not an integer"), "{err}");
    assert_eq!(
        cli(p, &["GET", "s"]),
        "text",
        "the refused INCR changed nothing"
    );
    let unknown = cli(p, &["NOSUCH", "x"]);
    assert!(
        unknown.starts_with("ERR unknown command 'NOSUCH'"),
        "{unknown}"
    );
    assert!(cli(p, &["GET"]).contains("wrong number of arguments"));
    assert_eq!(cli(p, &["DBSIZE"]), "3");
    assert!(cli(p, &["INFO", "replication"]).contains("role:master"));
    assert!(cli(b, &["INFO", "replication"]).contains("role:slave"));
    assert_eq!(cli(p, &["WAIT", "2", "0"]), "2");
    assert_eq!(cli(p, &["ROLE"]).lines().next(), Some("master"));
    write(p, 7);
    assert_eq!(
        cli(b, &["GET", "ditto:seed"]),
        "7",
        "the seed's register is a key"
    );
}

#[test]
fn redis_benchmark_runs_pipelined_and_loses_no_increment() {
    if !tools_present() {
        return;
    }
    let cluster = start_cluster(2);
    let p = cluster.primary_port();
    for pipeline in ["1", "16"] {
        let mut c = Command::new("redis-benchmark");
        c.args(["-p", &p.to_string(), "-t", "set,get,incr", "-n", "2000"])
            .args(["-c", "20", "-P", pipeline, "-q"]);
        let out = run(c, Duration::from_secs(60));
        for test in ["SET", "GET", "INCR"] {
            assert!(
                out.contains(&format!("{test}: ")),
                "-P {pipeline}: no {test} figure in {out}"
            );
        }
    }
    // Without -r, every INCR of redis-benchmark hits the one key `counter:__rand_int__`.
    assert_eq!(
        cli(p, &["GET", "counter:__rand_int__"]),
        "4000",
        "every increment applied once"
    );
    let b = cluster.backup_ports()[0];
    assert_eq!(cli(b, &["GET", "counter:__rand_int__"]), "4000");
}

#[test]
fn redis_py_pipelines_transactions_and_sentinel_across_a_failover() {
    if !tools_present() {
        return;
    }
    let mut cluster = start_cluster(2);
    let p = cluster.primary_port();
    let backups = cluster.backup_ports();
    let dir = TempDir::new("redis-py");
    let script = dir.path().join("check.py");
    std::fs::write(&script, PY_BEFORE).expect("writes the script");
    let mut c = Command::new("python3");
    c.arg(&script)
        .arg(p.to_string())
        .arg(backups[0].to_string());
    let out = run(c, Duration::from_secs(60));
    assert!(out.contains("before: ok"), "{out}");

    cluster.primary.kill();
    let script = dir.path().join("after.py");
    std::fs::write(&script, PY_AFTER).expect("writes the script");
    let mut c = Command::new("python3");
    c.arg(&script)
        .arg(p.to_string())
        .arg(backups[0].to_string())
        .arg(backups[1].to_string());
    let out = run(c, Duration::from_secs(60));
    assert!(out.contains("after: ok"), "{out}");
}

const PY_BEFORE: &str = r#"
import sys, redis
from redis.sentinel import Sentinel
p, b = int(sys.argv[1]), int(sys.argv[2])
r = redis.Redis(port=p)
assert r.set("a", "1") and r.get("a") == b"1"
r3 = redis.Redis(port=b, protocol=3)
assert r3.get("a") == b"1", "RESP3 at the backup"
blob = bytes(range(256))
assert r.set("blob", blob) and redis.Redis(port=b).get("blob") == blob, "binary-safe"
pipe = r.pipeline(transaction=True)
for _ in range(3):
    pipe.incr("x")
assert pipe.execute() == [1, 2, 3], "MULTI/EXEC"
pipe = r.pipeline(transaction=False)
for _ in range(100):
    pipe.incr("y")
assert pipe.execute()[-1] == 100
s = Sentinel([("127.0.0.1", b)])
assert s.discover_master("ditto") == ("127.0.0.1", p), s.discover_master("ditto")
m = s.master_for("ditto")
for i in range(50):
    m.set(f"k{i}", i)
print("before: ok")
"#;

const PY_AFTER: &str = r#"
import sys, time, redis
from redis.sentinel import Sentinel, MasterNotFoundError
old, b1, b2 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = Sentinel([("127.0.0.1", b1), ("127.0.0.1", b2)], socket_timeout=1)
deadline = time.time() + 20
while True:
    try:
        host, port = s.discover_master("ditto")
        if port != old:
            m = s.master_for("ditto", socket_timeout=1)
            m.set("after", "yes")
            break
    except (MasterNotFoundError, redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        pass
    assert time.time() < deadline, "no new primary found"
    time.sleep(0.1)
assert port in (b1, b2), port
m = s.master_for("ditto", socket_timeout=1)
for i in range(50):
    assert m.get(f"k{i}") == str(i).encode(), f"k{i} lost"
assert m.get("after") == b"yes"
print("after: ok")
"#;
