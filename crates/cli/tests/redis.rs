//! The Redis tools against real `ditto` processes: `redis-cli` one-shot and through a
//! pseudo-terminal, `redis-benchmark`, and redis-py (plain, RESP3, pipelines, transactions,
//! binary values, Sentinel discovery across a failover), with a client password, with
//! `--maxmemory`, and with malformed RESP.
//!
//! The tools are not part of the Rust toolchain. A test whose tool is missing says so loudly and
//! passes, so that a developer's machine need not have them; with `DITTO_REQUIRE_REDIS=1` (set
//! where they are installed on purpose) it fails instead, so that CI cannot skip it unnoticed.

mod support;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::*;

// ---------------------------------------------------------------------------------------------
// The tools, and skipping without them
// ---------------------------------------------------------------------------------------------

/// An outside program a test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    RedisCli,
    RedisBenchmark,
    /// `python3`, for its `pty` module.
    Python,
    /// `python3` with the `redis` package (redis-py).
    RedisPy,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::RedisCli => "redis-cli",
            Tool::RedisBenchmark => "redis-benchmark",
            Tool::Python => "python3",
            Tool::RedisPy => "python3 with redis-py (import redis)",
        }
    }

    /// Whether it runs here: its version query (or the import) succeeds within the timeout.
    fn present(self) -> bool {
        let (program, args): (&str, &[&str]) = match self {
            Tool::RedisCli => ("redis-cli", &["--version"]),
            Tool::RedisBenchmark => ("redis-benchmark", &["--version"]),
            Tool::Python => ("python3", &["-c", "import pty"]),
            Tool::RedisPy => ("python3", &["-c", "import redis"]),
        };
        let Ok(mut child) = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        wait_exit(&mut child, TIMEOUT).is_some_and(|st| st.success())
    }
}

/// Whether every tool `test` needs is here. When one is missing: a failure with
/// `DITTO_REQUIRE_REDIS=1`, else a loud message and `false` (the test then passes, skipped).
fn have(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.name())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    if std::env::var("DITTO_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("{test}: {missing} not found, and DITTO_REQUIRE_REDIS=1");
    }
    // Straight to the terminal, not through the test harness, which would swallow it.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {missing} not found. Install redis-tools and redis-py to run it; \
         DITTO_REQUIRE_REDIS=1 makes this a failure. ***\n"
    );
    false
}

/// `redis-cli -p PORT ARGS...` to completion.
fn redis_cli(port: u16, args: &[&str]) -> Outcome {
    let mut command = Command::new("redis-cli");
    command.arg("-p").arg(port.to_string()).args(args);
    run_command(command, b"", TIMEOUT)
}

/// What `redis-cli -p PORT ARGS...` printed (without the final line end), asserting it exited
/// successfully. Its output is not a terminal, so it prints raw: a string as it is, an integer
/// as digits, a nil as an empty line, an error as its text, an array one element a line.
fn cli(port: u16, args: &[&str]) -> String {
    let out = redis_cli(port, args);
    assert!(out.success(), "redis-cli -p {port} {args:?}: {out:?}");
    out.stdout.trim_end_matches('\n').to_owned()
}

/// Writes `source` to `dir/name` and returns its path as an argument.
fn script(dir: &TempDir, name: &str, source: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, source).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs `python3 SCRIPT ARGS...` to completion within `timeout` and asserts that it exited
/// with 0 and printed `OK` last; returns its stdout.
fn python_ok(script: &str, args: &[String], timeout: Duration) -> String {
    let mut command = Command::new("python3");
    command.arg(script).args(args);
    let out = run_command(command, b"", timeout);
    assert!(
        out.success() && out.stdout.trim_end().ends_with("OK"),
        "python3 {script} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// A helper program the test talks to while it runs: its stdin written, its output watched;
/// killed and reaped when dropped.
#[derive(Debug)]
struct Running {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let to = sink.clone();
    let thread = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            to.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (sink, thread)
}

impl Running {
    fn python(script: &str, args: &[String]) -> Running {
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start python3");
        let stdin = child.stdin.take();
        let (stdout, t1) = collect(child.stdout.take().expect("stdout"));
        let (stderr, t2) = collect(child.stderr.take().expect("stderr"));
        Running {
            what: format!("python3 {script} {args:?}"),
            child,
            stdin,
            stdout,
            stderr,
            threads: vec![t1, t2],
        }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until a line of stdout starts with `prefix` and returns it, failing early if the
    /// program exits first.
    fn wait_line(&mut self, prefix: &str) -> String {
        let what = format!("{} prints a line starting {prefix:?}", self.what);
        wait_for(&what, TIMEOUT * 2, || {
            let out = self.out();
            if let Some(line) = out.lines().find(|l| l.starts_with(prefix)) {
                return Some(line.to_owned());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} exited ({st}) before printing {prefix:?}; stdout:\n{out}\nstderr:\n{}",
                    self.what,
                    self.err()
                );
            }
            None
        })
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", self.what));
    }

    /// Waits (boundedly) for the exit and asserts it was 0 with `OK` printed last.
    fn finish_ok(mut self, timeout: Duration) -> String {
        self.stdin.take();
        let status = wait_exit(&mut self.child, timeout);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (out, err) = (self.out(), self.err());
        assert!(
            status.is_some_and(|s| s.success()) && out.trim_end().ends_with("OK"),
            "{} ended {status:?}:\nstdout:\n{out}\nstderr:\n{err}",
            self.what
        );
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Servers with flags of their own
// ---------------------------------------------------------------------------------------------

/// `ditto --exit-on-stdin-eof ARGS...` with `env` set, as [`Server::spawn`] starts one.
fn spawn_with(name: &str, port: u16, args: &[String], env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(bin());
    command.arg("--exit-on-stdin-eof").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    Server::spawn_command(name, port, command)
}

/// A primary and `n` backups, every one started with `flags` and `env`, all synced (waited for
/// through `status`, which may authenticate first).
fn cluster_with(
    n: usize,
    flags: &[&str],
    env: &[(&str, &str)],
    status: impl Fn(u16) -> Option<String>,
) -> Cluster {
    let with = |args: Vec<String>| -> Vec<String> {
        args.into_iter()
            .chain(flags.iter().map(|f| f.to_string()))
            .collect()
    };
    let p = free_port();
    let mut primary = spawn_with(
        "primary",
        p,
        &with(vec!["primary".into(), p.to_string()]),
        env,
    );
    wait_until("the primary answers", TIMEOUT, || {
        primary.assert_running();
        status(p).is_some_and(|s| field(&s, "role") == Some("primary"))
    });
    let mut backups: Vec<Server> = (0..n)
        .map(|_| {
            let b = free_port();
            let args = with(vec!["backup".into(), b.to_string(), p.to_string()]);
            spawn_with(&format!("backup :{b}"), b, &args, env)
        })
        .collect();
    for b in &mut backups {
        let what = format!("backup :{} is synced with the primary :{p}", b.port);
        wait_until(&what, TIMEOUT, || {
            b.assert_running();
            status(p).is_some_and(|s| {
                members(&s)
                    .iter()
                    .any(|(port, _, state, _)| *port == b.port && state == "active")
            }) && status(b.port).is_some_and(|s| field(&s, "role") == Some("backup"))
        });
    }
    Cluster { primary, backups }
}

/// The `STATUS` line of a server with the client password `pw`, given first.
fn status_with_password(port: u16, pw: &str) -> Option<String> {
    let mut conn = Conn::try_connect(port).ok()?;
    conn.send(&format!("AUTH:{pw}"));
    conn.send("STATUS");
    match (
        conn.next_within(Duration::from_secs(2)),
        conn.next_within(Duration::from_secs(2)),
    ) {
        (Got::Line(ack), Got::Line(st)) if ack == "ACK" && st.starts_with("STATUS:") => Some(st),
        _ => None,
    }
}

fn ports(ports: &[u16]) -> Vec<String> {
    ports.iter().map(u16::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------------------------

#[test]
fn redis_cli_one_shot_at_the_primary_and_a_backup() {
    if !have(
        "redis_cli_one_shot_at_the_primary_and_a_backup",
        &[Tool::RedisCli],
    ) {
        return;
    }
    let cluster = start_cluster(2);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);

    // Strings, at the primary; each read at a backup right after sees the write.
    assert_eq!(cli(p, &["SET", "user:1", "alice"]), "OK");
    assert_eq!(cli(b, &["GET", "user:1"]), "alice");
    assert_eq!(cli(p, &["INCR", "n"]), "1");
    assert_eq!(cli(p, &["INCRBY", "n", "41"]), "42");
    assert_eq!(cli(p, &["DECR", "n"]), "41");
    assert_eq!(cli(b, &["GET", "n"]), "41");
    assert_eq!(cli(p, &["MGET", "user:1", "nope", "n"]), "alice\n\n41");
    assert_eq!(cli(p, &["APPEND", "user:1", "!"]), "6");
    assert_eq!(cli(b, &["STRLEN", "user:1"]), "6");
    assert_eq!(cli(p, &["EXISTS", "user:1", "n", "nope"]), "2");
    assert_eq!(cli(p, &["GETDEL", "user:1"]), "alice!");
    assert_eq!(cli(b, &["EXISTS", "user:1"]), "0");
    assert_eq!(cli(p, &["DEL", "n", "nope"]), "1");
    assert_eq!(cli(b, &["GET", "n"]), "");

    // ditto's compare-and-set, and SETNX.
    assert_eq!(cli(p, &["SETNX", "c", "a"]), "1");
    assert_eq!(cli(p, &["SETNX", "c", "z"]), "0");
    assert_eq!(cli(p, &["CAS", "c", "wrong", "b"]), "0");
    assert_eq!(cli(b, &["GET", "c"]), "a", "a failed CAS changes nothing");
    assert_eq!(cli(p, &["CAS", "c", "a", "b"]), "1");
    assert_eq!(cli(b, &["GET", "c"]), "b");

    // A write at a backup goes to the primary.
    assert_eq!(cli(b, &["SET", "via-backup", "1"]), "OK");
    assert_eq!(cli(p, &["GET", "via-backup"]), "1");

    // The keyspace as a whole, from either end.
    assert_eq!(cli(p, &["DBSIZE"]), "2");
    assert_eq!(cli(b, &["DBSIZE"]), "2");
    assert_eq!(cli(p, &["KEYS", "v*"]), "via-backup");
    let scan = cli(b, &["SCAN", "0", "MATCH", "*", "COUNT", "1000"]);
    let mut lines: Vec<&str> = scan.lines().collect();
    assert_eq!(lines.remove(0), "0", "one step scans it all: {scan:?}");
    lines.sort_unstable();
    assert_eq!(lines, ["c", "via-backup"]);
    let mut walked: Vec<String> = cli(p, &["--scan", "--pattern", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    walked.sort();
    assert_eq!(walked, ["c", "via-backup"], "redis-cli's own SCAN loop");

    // Expiry: TTL in seconds, PTTL in milliseconds.
    assert_eq!(cli(p, &["SET", "t", "v", "EX", "100"]), "OK");
    let ttl: i64 = cli(b, &["TTL", "t"]).parse().expect("TTL is an integer");
    assert!((99..=100).contains(&ttl), "TTL of a 100 s key: {ttl}");
    let pttl: i64 = cli(p, &["PTTL", "t"]).parse().expect("PTTL is an integer");
    assert!(
        (98_000..=100_000).contains(&pttl),
        "PTTL of a 100 s key: {pttl}"
    );
    assert_eq!(cli(p, &["TTL", "c"]), "-1");
    assert_eq!(cli(p, &["TTL", "nope"]), "-2");

    // Replication as Redis tools read it.
    let info = cli(p, &["INFO", "replication"]);
    assert!(info.contains("role:master"), "{info}");
    assert!(info.contains("connected_slaves:2"), "{info}");
    assert!(info.contains(&format!("port={b},state=online")), "{info}");
    let info = cli(b, &["INFO", "replication"]);
    assert!(info.contains("role:slave"), "{info}");
    assert!(info.contains(&format!("master_port:{p}")), "{info}");
    assert!(info.contains("master_link_status:up"), "{info}");
    let role = cli(p, &["ROLE"]);
    assert_eq!(role.lines().next(), Some("master"), "{role}");
    for backup in cluster.backup_ports() {
        assert!(role.lines().any(|l| l == backup.to_string()), "{role}");
    }
    let role = cli(b, &["ROLE"]);
    let role: Vec<&str> = role.lines().collect();
    assert_eq!(
        role[..4],
        ["slave", "127.0.0.1", &p.to_string(), "connected"]
    );
    assert_eq!(cli(p, &["WAIT", "2", "0"]), "2");
    assert_eq!(cli(p, &["CONFIG", "GET", "maxmemory"]), "maxmemory\n0");

    // Errors in Redis's words, and a refused command changes nothing.
    assert_eq!(
        cli(p, &["nosuch", "a", "b"]),
        "ERR unknown command 'nosuch', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        cli(b, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(cli(p, &["SET", "s", "abc"]), "OK");
    for port in [p, b] {
        assert_eq!(
            cli(port, &["INCR", "s"]),
            "ERR value is not an integer or out of range"
        );
    }
    assert_eq!(cli(p, &["GET", "s"]), "abc");
    assert_eq!(cli(b, &["GET", "s"]), "abc");

    // The seed's register is the key ditto:seed, and holds only integers.
    let out = run(&["client", &p.to_string(), "WRITE:5"], b"", TIMEOUT);
    assert!(out.success(), "{out:?}");
    assert_eq!(cli(b, &["GET", "ditto:seed"]), "5");
    assert!(
        cli(p, &["SET", "ditto:seed", "x"]).starts_with("ERR "),
        "a non-integer in ditto:seed is refused"
    );
    assert_eq!(cli(p, &["INCR", "ditto:seed"]), "6");
    assert_eq!(read(b), 6);

    // redis-cli --pipe sends a bare line end before its closing ECHO: no reply is owed to it.
    let mut pipe = Command::new("redis-cli");
    pipe.args(["-p", &b.to_string(), "--pipe"]);
    let input = b"*3\r\n$3\r\nSET\r\n$4\r\npipe\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$4\r\npipe\r\n";
    let out = run_command(pipe, input, TIMEOUT);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("errors: 0, replies: 2"), "{out:?}");
    assert_eq!(cli(p, &["GET", "pipe"]), "2");
}

/// Drives `redis-cli -p PORT` through a pseudo-terminal: waits for the prompt, types a
/// command's first word and waits for the hint `redis-cli` builds from `COMMAND DOCS`, asks
/// `help`, runs a few commands, quits. Every wait is bounded; the child is killed on failure.
const PTY_SCRIPT: &str = r#"
import fcntl, os, pty, select, signal, struct, sys, termios, time

port = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    os.environ["REDISCLI_HISTFILE"] = "/dev/null"
    os.environ["REDISCLI_RCFILE"] = "/dev/null"
    os.execvp("redis-cli", ["redis-cli", "-p", port])
# A window size, or redis-cli's line editor asks the terminal for one and waits.
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
out = b""

def fail(why):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors="replace"))
    raise SystemExit("FAILED: " + why)

def wait_for(needle, after=0, timeout=10):
    """Reads until `needle` shows after offset `after` of the output; returns where it ends."""
    global out
    deadline = time.monotonic() + timeout
    while needle.encode() not in out[after:]:
        left = deadline - time.monotonic()
        if left <= 0:
            fail("no %r within %ss" % (needle, timeout))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                fail("redis-cli ended before %r" % needle)
            out += chunk
    return out.index(needle.encode(), after) + len(needle)

def typed(text, needle):
    """Types `text`, waits for `needle`, then for the prompt after it: the line editor drops
    what is typed before it is ready for the next line."""
    global out
    out = b""
    os.write(fd, text.encode())
    wait_for(prompt, wait_for(needle))

prompt = "127.0.0.1:%s> " % port
wait_for(prompt)
out = b""
os.write(fd, b"set ")
wait_for("key value [NX|XX] [GET] [EX seconds|PX milliseconds]")
os.write(fd, b"\x15")  # ctrl-u: an empty line again, still in the line editor
typed("help cas\r", "compare-and-set")
typed("set greeting hello\r", "OK")
typed("get greeting\r", '"hello"')
typed("incr visits\r", "(integer) 1")
typed("nosuch\r", "(error) ERR unknown command 'nosuch'")
os.write(fd, b"quit\r")
deadline = time.monotonic() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        fail("redis-cli did not exit after quit")
    ready, _, _ = select.select([fd], [], [], 0.1)
    if ready:
        try:
            os.read(fd, 4096)
        except OSError:
            pass
if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
    raise SystemExit("FAILED: redis-cli ended with status %d" % status)
print("OK")
"#;

#[test]
fn redis_cli_interactive_shows_hints_and_help_from_command_docs() {
    if !have(
        "redis_cli_interactive_shows_hints_and_help_from_command_docs",
        &[Tool::RedisCli, Tool::Python],
    ) {
        return;
    }
    let cluster = start_cluster(1);
    let dir = TempDir::new("redis-pty");
    let pty = script(&dir, "pty_cli.py", PTY_SCRIPT);
    for port in cluster.ports() {
        cli(port, &["DEL", "visits"]);
        python_ok(&pty, &[port.to_string()], TIMEOUT * 3);
        assert_eq!(cli(cluster.primary_port(), &["GET", "greeting"]), "hello");
        assert_eq!(cli(cluster.primary_port(), &["GET", "visits"]), "1");
    }
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark
// ---------------------------------------------------------------------------------------------

#[test]
fn redis_benchmark_runs_every_test_and_loses_no_increment() {
    if !have(
        "redis_benchmark_runs_every_test_and_loses_no_increment",
        &[Tool::RedisCli, Tool::RedisBenchmark],
    ) {
        return;
    }
    let cluster = start_cluster(2);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    const N: u32 = 2000;
    // Plain, pipelined 16 deep, and 50 clients at a backup (whose writes it forwards).
    for (port, extra) in [(p, &[][..]), (p, &["-P", "16"][..]), (b, &["-c", "50"][..])] {
        cli(p, &["DEL", "counter:__rand_int__", "key:__rand_int__"]);
        let mut bench = Command::new("redis-benchmark");
        bench
            .args(["-p", &port.to_string(), "-t", "set,get,incr", "-q"])
            .args(["-n", &N.to_string()])
            .args(extra);
        let out = run_command(bench, b"", Duration::from_secs(30));
        let what = format!("redis-benchmark at :{port} {extra:?}");
        assert!(out.success(), "{what}: {out:?}");
        // -q prints progress over itself with \r, then one line of figures per test.
        let text = out.stdout.replace('\r', "\n");
        for test in ["SET", "GET", "INCR"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{test}: "))
                        && l.contains("requests per second")),
                "{what}: no figures for {test}:\n{text}"
            );
        }
        // Without -r every INCR is on one key: its value counts the increments applied.
        for at in [p, b] {
            assert_eq!(
                cli(at, &["GET", "counter:__rand_int__"]),
                N.to_string(),
                "{what}: INCRs applied, read at :{at}"
            );
            assert_eq!(cli(at, &["STRLEN", "key:__rand_int__"]), "3", "{what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// redis-py
// ---------------------------------------------------------------------------------------------

const PY_COMMANDS: &str = r#"
import sys
import redis
from redis.sentinel import Sentinel

p = int(sys.argv[1])
backups = [int(a) for a in sys.argv[2:]]
b = backups[0]

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

r = redis.Redis(port=p, socket_timeout=10)
rb = redis.Redis(port=b, socket_timeout=10)
check(r.ping() is True, "PING")
check(r.set("py:a", "1") is True, "SET")
check(r.get("py:a") == b"1", "GET")
check(rb.get("py:a") == b"1", "a backup reads what the primary acknowledged")
check(r.incr("py:a") == 2, "INCR")
check(r.set("py:a", "x", nx=True) is None, "SET NX on a present key")
check(r.set("py:a", "3", xx=True, get=True) == b"2", "SET XX GET gives the old value")
check(r.mget("py:a", "py:nope") == [b"3", None], "MGET")
check(r.setnx("py:n", "v") is True and r.setnx("py:n", "w") is False, "SETNX")
check(r.execute_command("CAS", "py:n", "v", "w") == 1, "CAS that swaps")
check(r.execute_command("CAS", "py:n", "v", "x") == 0, "CAS that does not")
check(r.append("py:n", "!") == 2 and r.strlen("py:n") == 2, "APPEND, STRLEN")
check(r.getdel("py:n") == b"w!" and r.exists("py:n") == 0, "GETDEL")
check(rb.set("py:via-backup", "1") is True and r.get("py:via-backup") == b"1", "a write at a backup")
check(r.set("py:t", "v", ex=100) is True, "SET EX")
check(99 <= r.ttl("py:t") <= 100, "TTL in seconds: %r" % r.ttl("py:t"))
check(98000 <= r.pttl("py:t") <= 100000, "PTTL in milliseconds: %r" % r.pttl("py:t"))
r.set("py:s", "abc")
try:
    r.incr("py:s")
    check(False, "INCR of a non-integer was accepted")
except redis.ResponseError as e:
    check("value is not an integer or out of range" in str(e), str(e))
check(r.get("py:s") == b"abc", "a refused INCR changed nothing")
check(sorted(r.scan_iter(match="py:*", count=2)) == sorted(r.keys("py:*")), "SCAN and KEYS agree")
check(r.dbsize() == len(r.keys("*")), "DBSIZE")
check("get" in r.command(), "COMMAND parses")
check(r.client_setname("me") and r.client_getname() == "me", "CLIENT SETNAME/GETNAME")
check(r.info()["role"] == "master" and rb.info()["role"] == "slave", "INFO role")
check(r.config_get("maxmemory") == {"maxmemory": "0"}, "CONFIG GET")
check(r.wait(len(backups), 0) == len(backups), "WAIT")
check(r.echo("hi") == b"hi", "ECHO")

# RESP3.
r3 = redis.Redis(port=p, protocol=3, socket_timeout=10)
check(r3.get("py:a") == b"3" and r3.get("py:nope") is None, "RESP3 GET")
check(r3.mget("py:a", "py:nope") == [b"3", None], "RESP3 MGET")
check(r3.info("replication")["role"] == "master", "RESP3 INFO")
check(r3.config_get("maxmemory") == {"maxmemory": "0"}, "RESP3 CONFIG GET (a map)")
check(r3.execute_command("CAS", "py:a", "3", "4") == 1, "RESP3 CAS")
check(redis.Redis(port=b, protocol=3).get("py:a") == b"4", "RESP3 at a backup")

# Pipelines, without and with a transaction, at the primary and at a backup.
for c in (r, rb):
    pipe = c.pipeline(transaction=False)
    pipe.set("py:p", 1).incr("py:p").get("py:p")
    check(pipe.execute() == [True, 2, b"2"], "a pipeline")
    pipe = c.pipeline(transaction=False)
    for i in range(500):
        pipe.incr("py:many")
    check(pipe.execute() == list(range(1, 501)), "500 pipelined INCRs in order")
    c.delete("py:many", "py:x")
    pipe = c.pipeline(transaction=True)
    pipe.incr("py:x").incr("py:x").incr("py:x")
    check(pipe.execute() == [1, 2, 3], "MULTI/EXEC with INCR x3")
    pipe = c.pipeline(transaction=True)
    pipe.incr("py:x").get("py:x").getdel("py:x")
    check(pipe.execute() == [4, b"4", b"4"], "reads in a transaction see its writes")
    check(c.exists("py:x") == 0, "the transaction's GETDEL")
pipe = r3.pipeline(transaction=True)
pipe.incr("py:x3").incr("py:x3").incr("py:x3")
check(pipe.execute() == [1, 2, 3], "MULTI/EXEC in RESP3")

# Binary-safe keys and values: every byte value.
data = bytes(range(256))
check(r.set(b"py:bin", data) is True, "SET binary")
check(r.get(b"py:bin") == data and rb.get(b"py:bin") == data and r3.get(b"py:bin") == data,
      "all 256 byte values round trip")
check(r.set(data, b"k") is True and rb.get(data) == b"k", "a binary key")
check(r.mset({b"py:b1": data[::-1], b"py:b2": b"\r\n\x00"}) and
      rb.mget(b"py:b1", b"py:b2") == [data[::-1], b"\r\n\x00"], "MSET/MGET binary")

# Sentinel discovery, asking a backup.
s = Sentinel([("127.0.0.1", b)], socket_timeout=10)
check(s.discover_master("ditto") == ("127.0.0.1", p), "discover_master: %r" % (s.discover_master("ditto"),))
check(sorted(s.discover_slaves("ditto")) == sorted(("127.0.0.1", q) for q in backups),
      "discover_slaves: %r" % (s.discover_slaves("ditto"),))
m = s.master_for("ditto", socket_timeout=10)
check(m.set("py:via-sentinel", "1") is True and r.get("py:via-sentinel") == b"1", "master_for")
check(s.slave_for("ditto", socket_timeout=10).get("py:via-sentinel") == b"1", "slave_for")
try:
    Sentinel([("127.0.0.1", b)]).discover_master("other")
    check(False, "a group of another name was found")
except redis.sentinel.MasterNotFoundError:
    pass
print("OK")
"#;

#[test]
fn redis_py_commands_resp3_pipelines_transactions_binary_and_sentinel() {
    if !have(
        "redis_py_commands_resp3_pipelines_transactions_binary_and_sentinel",
        &[Tool::RedisPy],
    ) {
        return;
    }
    let cluster = start_cluster(2);
    let dir = TempDir::new("redis-py");
    let py = script(&dir, "commands.py", PY_COMMANDS);
    python_ok(&py, &ports(&cluster.ports()), Duration::from_secs(30));
}

const PY_FAILOVER: &str = r#"
import sys, time
import redis
from redis.sentinel import Sentinel

p = int(sys.argv[1])
backups = [int(a) for a in sys.argv[2:]]

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

s = Sentinel([("127.0.0.1", backups[0])], socket_timeout=2, socket_connect_timeout=2)
check(s.discover_master("ditto") == ("127.0.0.1", p), "the primary before the kill")
m = s.master_for("ditto", socket_timeout=2, socket_connect_timeout=2)
acked = {}
for i in range(100):
    m.set("fo:%d" % i, str(i))
    acked["fo:%d" % i] = str(i).encode()
for i in range(25):
    m.incr("fo:counter")
acked["fo:counter"] = b"25"
print("ACKED", len(acked), flush=True)

# The test kills the primary now, and says so.
check(sys.stdin.readline().strip() == "killed", "the test's go-ahead")
deadline = time.monotonic() + 20
failures = 0
while True:
    try:
        m.set("fo:after", "1")
        break
    except redis.RedisError as e:
        failures += 1
        if time.monotonic() > deadline:
            raise SystemExit("FAILED: no new primary took a write within 20 s (%d tries): %r" % (failures, e))
        time.sleep(0.02)
new = s.discover_master("ditto")
check(new[1] in backups, "discover_master names a survivor: %r" % (new,))
for k, v in acked.items():
    got = m.get(k)
    check(got == v, "%s was acknowledged as %r before the kill, reads %r" % (k, v, got))
check(m.incr("fo:counter") == 26, "an INCR after the failover counts from the acknowledged 25")
acked["fo:counter"] = b"26"
for q in backups:
    c = redis.Redis(port=q, socket_timeout=5)
    got = c.mget(list(acked))
    check(got == list(acked.values()), "every acknowledged write at :%d: %r" % (q, got))
print("NEW", new[1], "after", failures, "failed tries", flush=True)
print("OK")
"#;

#[test]
fn redis_py_sentinel_finds_the_new_primary_after_a_kill_and_nothing_acknowledged_is_lost() {
    if !have(
        "redis_py_sentinel_finds_the_new_primary_after_a_kill_and_nothing_acknowledged_is_lost",
        &[Tool::RedisPy],
    ) {
        return;
    }
    let mut cluster = start_cluster(2);
    let dir = TempDir::new("redis-py-failover");
    let py = script(&dir, "failover.py", PY_FAILOVER);
    let mut run = Running::python(&py, &ports(&cluster.ports()));
    let acked = run.wait_line("ACKED ");
    assert_eq!(acked, "ACKED 101");
    cluster.primary.kill(); // SIGKILL, and reaped
    run.send("killed");
    let out = run.finish_ok(Duration::from_secs(40));
    let new: u16 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("NEW ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no NEW line in {out}"));
    assert!(cluster.backup_ports().contains(&new), "{out}");
    let st = status(new).expect("the new primary answers STATUS");
    assert_eq!(field(&st, "role"), Some("primary"), "{st}");
}

// ---------------------------------------------------------------------------------------------
// A client password
// ---------------------------------------------------------------------------------------------

const PY_AUTH: &str = r#"
import sys
import redis
from redis.sentinel import Sentinel

p, b = int(sys.argv[1]), int(sys.argv[2])

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

r = redis.Redis(port=p, password="pw", socket_timeout=10)
check(r.set("pw:py", "1") is True, "SET with password=")
check(redis.Redis(port=b, password="pw").get("pw:py") == b"1", "GET at a backup with password=")
check(redis.Redis(port=p, password="pw", protocol=3).get("pw:py") == b"1", "RESP3: HELLO 3 AUTH")
check(redis.Redis(port=p, username="default", password="pw").get("pw:py") == b"1", "user default")
for kwargs in (dict(password="wrong"), dict(password="wrong", protocol=3)):
    try:
        redis.Redis(port=p, **kwargs).set("pw:py", "2")
        check(False, "a wrong password was accepted: %r" % kwargs)
    except redis.AuthenticationError as e:
        check("invalid username-password pair" in str(e), str(e))
try:
    redis.Redis(port=p).set("pw:py", "3")
    check(False, "a SET without a password was accepted")
except redis.AuthenticationError:
    pass
check(r.get("pw:py") == b"1", "the refused SETs changed nothing")
s = Sentinel([("127.0.0.1", b)], sentinel_kwargs={"password": "pw"}, password="pw")
check(s.discover_master("ditto") == ("127.0.0.1", p), "Sentinel with a password")
check(s.master_for("ditto").get("pw:py") == b"1", "master_for with a password")
print("OK")
"#;

#[test]
fn a_client_password_is_asked_of_redis_cli_redis_py_and_the_line_protocol() {
    if !have(
        "a_client_password_is_asked_of_redis_cli_redis_py_and_the_line_protocol",
        &[Tool::RedisCli, Tool::RedisPy],
    ) {
        return;
    }
    let env = [("DITTO_PASSWORD", "pw")];
    // A backup with the password joins a primary with it (it gives it before its JOIN).
    let cluster = cluster_with(1, &[], &env, |port| status_with_password(port, "pw"));
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    let auth = ["-a", "pw", "--no-auth-warning"];
    let with = |args: &[&'static str]| -> Vec<&str> { auth.iter().chain(args).copied().collect() };

    for port in [p, b] {
        assert_eq!(
            cli(port, &["SET", "k", "v"]),
            "NOAUTH Authentication required.",
            "at :{port}"
        );
        assert_eq!(
            cli(port, &with(&["GET", "k"])),
            "",
            "the refused SET changed nothing"
        );
    }
    assert_eq!(cli(p, &with(&["SET", "k", "v"])), "OK");
    assert_eq!(cli(b, &with(&["GET", "k"])), "v");
    assert_eq!(
        cli(b, &with(&["SET", "k2", "w"])),
        "OK",
        "forwarded by the backup"
    );
    assert_eq!(cli(p, &with(&["GET", "k2"])), "w");
    let out = redis_cli(p, &["-a", "wrong", "--no-auth-warning", "GET", "k"]);
    assert!(
        out.stderr
            .contains("AUTH failed: WRONGPASS invalid username-password pair"),
        "{out:?}"
    );
    assert_eq!(out.stdout.trim_end(), "NOAUTH Authentication required.");
    assert_eq!(cli(p, &["PING"]), "NOAUTH Authentication required.");
    assert_eq!(cli(p, &with(&["PING"])), "PONG");

    let dir = TempDir::new("redis-py-auth");
    let py = script(&dir, "auth.py", PY_AUTH);
    python_ok(&py, &ports(&[p, b]), Duration::from_secs(30));

    // The line protocol: refused until AUTH:pw, on that connection only.
    let port = p.to_string();
    let out = run(&["client", &port, "WRITE:9"], b"", TIMEOUT);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("NOAUTH"), "{out:?}");
    let out = run(
        &["client", &port],
        b"READ\nAUTH:pw\nWRITE:7\nREAD\n",
        TIMEOUT,
    );
    // Piped, line n of the output answers line n of the input.
    assert!(!out.success(), "the refused READ fails the run: {out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ERR:NOAUTH"), "{out:?}");
    assert_eq!(lines[1..], ["ACK", "ACK", "VALUE:7"], "{out:?}");
    let out = run(&["client", &port], b"AUTH:nope\nREAD\n", TIMEOUT);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].contains("WRONGPASS") && lines[1].contains("NOAUTH"),
        "{out:?}"
    );
    assert_eq!(cli(b, &with(&["GET", "ditto:seed"])), "7");
}

// ---------------------------------------------------------------------------------------------
// --maxmemory
// ---------------------------------------------------------------------------------------------

const PY_OOM: &str = r#"
import sys
import redis

p, b = int(sys.argv[1]), int(sys.argv[2])

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

r = redis.Redis(port=p, socket_timeout=10)
rb = redis.Redis(port=b, socket_timeout=10)
value = b"v" * 100
acked = []
for i in range(10000):
    try:
        r.set("mm:%d" % i, value)
    except redis.exceptions.OutOfMemoryError as e:
        check(str(e).startswith("command not allowed when used memory > 'maxmemory'"), str(e))
        break
    acked.append("mm:%d" % i)
check(100 < len(acked) < 10000, "refused after %d writes" % len(acked))
check(r.get("mm:%d" % len(acked)) is None, "the refused SET changed nothing")
try:
    rb.set("mm:via-backup", value)
    check(False, "a write forwarded by a backup passed the primary's limit")
except redis.exceptions.OutOfMemoryError:
    pass
# Reads go on, at both, and find every acknowledged value.
for c in (r, rb):
    check(c.mget(acked) == [value] * len(acked), "every acknowledged value is there")
    check(c.dbsize() == len(acked), "DBSIZE %d" % c.dbsize())
print("FULL", len(acked), flush=True)
check(sys.stdin.readline().strip() == "go", "the test's go-ahead")
# Deleting makes room.
check(r.delete(*acked[:10]) == 10, "DEL while full")
check(r.set("mm:small", "x") is True, "a SET after a DEL made room")
check(rb.mget(acked[10:]) == [value] * (len(acked) - 10), "the rest is untouched")
check(r.flushall() is True and rb.dbsize() == 0, "FLUSHALL")
check(r.set("mm:again", value) is True, "a SET after FLUSHALL")
print("OK")
"#;

#[test]
fn maxmemory_refuses_writes_with_oom_and_keeps_what_was_acknowledged() {
    if !have(
        "maxmemory_refuses_writes_with_oom_and_keeps_what_was_acknowledged",
        &[Tool::RedisCli, Tool::RedisPy],
    ) {
        return;
    }
    let cluster = cluster_with(1, &["--maxmemory", "64kb"], &[], status);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    assert_eq!(cli(b, &["CONFIG", "GET", "maxmemory"]), "maxmemory\n65536");
    let dir = TempDir::new("redis-py-oom");
    let py = script(&dir, "oom.py", PY_OOM);
    let mut run = Running::python(&py, &ports(&[p, b]));
    let full: usize = run
        .wait_line("FULL ")
        .strip_prefix("FULL ")
        .and_then(|n| n.parse().ok())
        .expect("FULL n");
    // Full: Redis's OOM error, as redis-cli shows it, at either end; reads go on.
    for port in [p, b] {
        let refused = cli(port, &["SET", "one-more", &"v".repeat(100)]);
        assert!(
            refused.starts_with("OOM command not allowed when used memory > 'maxmemory'"),
            "at :{port}: {refused}"
        );
        assert_eq!(cli(port, &["GET", "mm:0"]), "v".repeat(100));
        assert_eq!(cli(port, &["DBSIZE"]), full.to_string());
    }
    run.send("go");
    run.finish_ok(Duration::from_secs(30));
    assert_eq!(cli(b, &["DBSIZE"]), "1");
}

// ---------------------------------------------------------------------------------------------
// Malformed RESP
// ---------------------------------------------------------------------------------------------

/// Sends `bytes` on a connection of its own and returns the lines that came back before the
/// server closed it (failing if it does not close).
fn lines_then_close(port: u16, bytes: &[u8]) -> Vec<String> {
    let mut c = Conn::connect(port);
    c.send_raw(bytes);
    let mut lines = Vec::new();
    loop {
        match c.next_within(TIMEOUT) {
            Got::Line(l) => lines.push(l),
            Got::Closed => return lines,
            Got::Nothing => panic!("{bytes:?}: the connection stayed open after {lines:?}"),
        }
    }
}

#[test]
fn malformed_resp_gets_a_protocol_error_and_the_connection_closes() {
    let cluster = start_cluster(1);
    let (p, b) = (cluster.primary_port(), cluster.backup_ports()[0]);
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n";
    let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    // A client that behaves, connected throughout.
    let mut good = Conn::connect(p);
    good.send_raw(set);
    assert_eq!(good.recv(), "+OK");

    let over = format!("*1\r\n${}\r\n", 8 * 1024 * 1024 + 1);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"*x\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length",
        ),
        (
            b"*1\r\n$99999999999\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            over.into_bytes(),
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            // A SET whose value is not a bulk string: nothing of it is applied.
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:5\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got ':'",
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2XX".to_vec(),
            "-ERR Protocol error: expected CRLF after bulk",
        ),
    ];
    for port in [p, b] {
        for (bytes, error) in &cases {
            assert_eq!(
                lines_then_close(port, bytes),
                [*error],
                "{:?} at :{port}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Requests before the malformed one on the same connection are answered first.
        let mut pipelined = get.to_vec();
        pipelined.extend_from_slice(b"*1\r\n$4\r\nPING\r\n*x\r\n");
        pipelined.extend_from_slice(set);
        assert_eq!(
            lines_then_close(port, &pipelined),
            [
                "$2",
                "v1",
                "+PONG",
                "-ERR Protocol error: invalid multibulk length"
            ],
            "at :{port}"
        );
        // The server goes on serving the others, and nothing changed.
        good.send_raw(get);
        assert_eq!((good.recv(), good.recv()), ("$2".into(), "v1".into()));
        let mut other = Conn::connect(port);
        other.send_raw(get);
        assert_eq!((other.recv(), other.recv()), ("$2".into(), "v1".into()));
    }
    assert_eq!(read(b), 0, "the line protocol is served as before");
}
