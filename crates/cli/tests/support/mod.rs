//! Helpers shared by the integration tests of the `ditto` binary: free ports, server processes
//! that are always reaped, a blocking line client whose every wait is bounded, and polling with a
//! deadline instead of fixed sleeps.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single network wait or start-up may take before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `ditto` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ditto")
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Ports are handed out from below the kernel's ephemeral range (32768 and up on Linux), so that
/// no outbound connection of a server can be given a port a test is about to listen on. The
/// starting point depends on the process id so that test binaries running side by side do not
/// walk the same sequence; every port is checked by binding it before it is handed out.
const PORT_LO: u16 = 20_000;
const PORT_HI: u16 = 32_000;

fn next_candidate() -> u16 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        AtomicU32::new(std::process::id().wrapping_mul(7_919) ^ nanos)
    });
    let n = next.fetch_add(1, Ordering::Relaxed);
    PORT_LO + (n % u32::from(PORT_HI - PORT_LO)) as u16
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive loopback ports nothing listens on right now.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..10_000 {
        let base = next_candidate();
        if base + n > PORT_HI {
            continue;
        }
        if (base..base + n).all(bindable) {
            // Skip the rest of the block so the next caller does not get an overlapping one.
            for _ in 1..n {
                next_candidate();
            }
            return base;
        }
    }
    panic!("found no {n} consecutive free loopback ports");
}

/// A listening socket on a fresh loopback port, for a test that plays a peer.
pub fn listen() -> (TcpListener, u16) {
    for _ in 0..100 {
        let port = free_port();
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return (l, port);
        }
    }
    panic!("cannot listen on any loopback port");
}

/// Whether something accepts connections on `port`.
pub fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A new directory under the system's temporary directory, removed when dropped (and left, with
/// its path printed, when a test fails, so that what is in it can be read).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ditto-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("a temporary path in UTF-8")
    }

    /// The text of file `name` in the directory, or "" if there is none (yet).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- left {} for a look -----", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `cond` until it holds; panics with `what` if it does not within `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || cond().then_some(()))
}

/// Polls `f` until it returns something; panics with `what` if it does not within `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------------
// A blocking line client
// ---------------------------------------------------------------------------------------------

/// What a read from a connection produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Line(String),
    /// The peer closed the connection (end of file, or a reset after its last line).
    Closed,
    /// Nothing arrived in time.
    Nothing,
}

/// One TCP connection speaking lines; every read and write has a timeout.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`, panicking if that fails.
    pub fn connect(port: u16) -> Conn {
        Conn::try_connect(port).unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"))
    }

    pub fn try_connect(port: u16) -> io::Result<Conn> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        Ok(Conn::from_stream(stream))
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).expect("set_nodelay");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Sends `line` followed by `\n`.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot send {} bytes: {e}", bytes.len()));
    }

    /// Half-closes: the peer reads end of file, replies can still arrive.
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }

    /// Waits up to `wait` for the next line (without its terminator) or the end of the stream.
    pub fn next_within(&mut self, wait: Duration) -> Got {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Got::Line(String::from_utf8_lossy(&line).into_owned());
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Got::Closed;
                }
                let line = std::mem::take(&mut self.buf);
                return Got::Line(String::from_utf8_lossy(&line).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.eof = true
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next line; panics if none arrives within [`TIMEOUT`].
    pub fn recv(&mut self) -> String {
        match self.next_within(TIMEOUT) {
            Got::Line(line) => line,
            other => panic!("expected a reply line, got {other:?}"),
        }
    }

    /// A line if one arrives within `wait`; panics if the connection closes.
    pub fn recv_within(&mut self, wait: Duration) -> Option<String> {
        match self.next_within(wait) {
            Got::Line(line) => Some(line),
            Got::Nothing => None,
            Got::Closed => panic!("the connection closed while a line was expected"),
        }
    }

    /// Sends `line` and returns the reply.
    pub fn request(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    /// Sends `READ` and parses the `VALUE:n` reply.
    pub fn read_value(&mut self) -> i64 {
        let reply = self.request("READ");
        parse_value(&reply).unwrap_or_else(|| panic!("READ got {reply:?}"))
    }

    /// Waits for the peer to close the connection; panics if a line or nothing arrives instead.
    pub fn expect_closed(&mut self) {
        match self.next_within(TIMEOUT) {
            Got::Closed => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// Parses a `VALUE:n` reply.
pub fn parse_value(reply: &str) -> Option<i64> {
    reply.strip_prefix("VALUE:")?.parse().ok()
}

/// One request on a connection of its own.
pub fn request(port: u16, line: &str) -> String {
    Conn::connect(port).request(line)
}

/// The value held by the server on `port`.
pub fn read(port: u16) -> i64 {
    Conn::connect(port).read_value()
}

/// Writes `v` at `port` and asserts the acknowledgement.
pub fn write(port: u16, v: i64) {
    let reply = request(port, &format!("WRITE:{v}"));
    assert_eq!(reply, "ACK", "WRITE:{v} at port {port}");
}

/// The server's `STATUS` line, if it answers one within a short time.
pub fn status(port: u16) -> Option<String> {
    let mut conn = Conn::try_connect(port).ok()?;
    conn.send("STATUS");
    match conn.next_within(Duration::from_secs(2)) {
        Got::Line(line) if line.starts_with("STATUS:") => Some(line),
        _ => None,
    }
}

/// The value of `key=` in a `STATUS` line.
pub fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .strip_prefix("STATUS:")
        .unwrap_or(status)
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// The `members=` entries of a `STATUS` line (`id@host:port:kind:state:held`): (port, kind,
/// state, held), the primary's own entry included.
pub fn members(status: &str) -> Vec<(u16, String, String, String)> {
    field(status, "members")
        .unwrap_or("")
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let parts: Vec<&str> = e.rsplitn(4, ':').collect();
            assert_eq!(
                parts.len(),
                4,
                "malformed members entry {e:?} in {status:?}"
            );
            let port = parts[3].rsplit(':').next().and_then(|p| p.parse().ok());
            (
                port.unwrap_or_else(|| panic!("no port in {e:?}")),
                parts[2].to_owned(),
                parts[1].to_owned(),
                parts[0].to_owned(),
            )
        })
        .collect()
}

/// Whether the primary on `primary` has `backup` in its active set: synced, and waited for by
/// every write.
pub fn backup_streaming(primary: u16, backup: u16) -> bool {
    status(primary).is_some_and(|s| {
        field(&s, "role") == Some("primary")
            && members(&s)
                .iter()
                .any(|(p, _, state, _)| *p == backup && state == "active")
    })
}

// ---------------------------------------------------------------------------------------------
// Accepting connections as a fake peer
// ---------------------------------------------------------------------------------------------

/// Accepts one connection if one arrives within `wait`.
pub fn accept_within(listener: &TcpListener, wait: Duration) -> Option<Conn> {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                return Some(Conn::from_stream(stream));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept failed: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Accepts one connection; panics if none arrives within [`TIMEOUT`].
pub fn accept(listener: &TcpListener) -> Conn {
    accept_within(listener, TIMEOUT).expect("no connection arrived")
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Collects everything a child writes to one of its pipes.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn spawn(mut pipe: impl Read + Send + 'static) -> (Captured, JoinHandle<()>) {
        let captured = Captured::default();
        let sink = captured.0.clone();
        let handle = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        (captured, handle)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A running `ditto` server. Dropping it kills the process and reaps it.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub port: u16,
    child: Child,
    /// Held open: the server runs with `--exit-on-stdin-eof`, so it also dies with the tests.
    stdin: Option<ChildStdin>,
    stderr: Captured,
}

impl Server {
    /// Starts `ditto --exit-on-stdin-eof ARGS...` whose log is captured.
    pub fn spawn(name: &str, port: u16, args: &[String]) -> Server {
        let mut command = Command::new(bin());
        command.arg("--exit-on-stdin-eof").args(args);
        Server::spawn_command(name, port, command)
    }

    /// Starts a server by a command of its own (one that runs `ditto` in a network namespace,
    /// say), handled as [`Server::spawn`] handles `ditto`: its log captured, its stdin held, and
    /// the process killed and reaped when dropped. The command must become the server process
    /// itself (exec it, not fork it), since that is the process that is killed.
    pub fn spawn_command(name: &str, port: u16, mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start ditto");
        let stdin = child.stdin.take();
        let (stderr, _) = Captured::spawn(child.stderr.take().expect("stderr"));
        Server {
            name: name.to_owned(),
            port,
            child,
            stdin,
            stderr,
        }
    }

    /// Starts a primary on `port` and waits until it answers.
    pub fn primary(port: u16) -> Server {
        let mut s = Server::spawn("primary", port, &["primary".into(), port.to_string()]);
        s.wait_answering();
        s
    }

    /// Starts `ditto primary PORT` without waiting for it to answer.
    pub fn primary_unchecked(port: u16) -> Server {
        Server::spawn("primary", port, &["primary".into(), port.to_string()])
    }

    /// Starts a backup on `port` for the primary on `primary` (without waiting for it).
    pub fn backup(port: u16, primary: u16) -> Server {
        Server::spawn(
            &format!("backup :{port}"),
            port,
            &["backup".into(), port.to_string(), primary.to_string()],
        )
    }

    /// Waits until the server answers `STATUS`, failing early if it exits.
    pub fn wait_answering(&mut self) {
        let what = format!("{} answers on port {}", self.name, self.port);
        wait_until(&what, TIMEOUT, || {
            self.assert_running();
            status(self.port).is_some()
        });
    }

    /// Panics (with the server's log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited ({st}); its log:\n{}", self.name, self.log());
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let what = format!("the log of {} mentions {needle:?}", self.name);
        wait_until(&what, TIMEOUT, || self.log().contains(needle));
    }

    /// Kills the process (as a crash would) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the process `signal` (SIGSTOP to freeze it, SIGCONT to let it go on).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the server");
    }

    /// The process's `STATUS` line; panics if it does not answer.
    pub fn status(&self) -> String {
        status(self.port).unwrap_or_else(|| panic!("{} does not answer STATUS", self.name))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
    }
}

/// A primary and its backups, all synced.
#[derive(Debug)]
pub struct Cluster {
    pub primary: Server,
    pub backups: Vec<Server>,
}

impl Cluster {
    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    pub fn backup_ports(&self) -> Vec<u16> {
        self.backups.iter().map(|b| b.port).collect()
    }

    /// Every server's port, the primary's first.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.primary.port];
        ports.extend(self.backup_ports());
        ports
    }

    /// Waits until the primary has every backup in its active set, and every backup says it
    /// follows that primary.
    pub fn wait_synced(&mut self) {
        let primary = self.primary.port;
        for b in &mut self.backups {
            let what = format!("backup :{} is synced with primary :{primary}", b.port);
            wait_until(&what, TIMEOUT, || {
                b.assert_running();
                backup_streaming(primary, b.port)
                    && status(b.port).is_some_and(|s| {
                        field(&s, "role") == Some("backup")
                            && field(&s, "primary")
                                .is_some_and(|p| p.ends_with(&format!(":{primary}")))
                    })
            });
        }
    }
}

/// Starts a primary and `n` backups on fresh ports and waits until every backup is synced.
pub fn start_cluster(n: usize) -> Cluster {
    let primary = Server::primary(free_port());
    let backups = (0..n)
        .map(|_| Server::backup(free_port(), primary.port))
        .collect();
    let mut cluster = Cluster { primary, backups };
    cluster.wait_synced();
    cluster
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `ditto ARGS...` to completion with `input` on stdin, killing it after `timeout`.
pub fn run(args: &[&str], input: &[u8], timeout: Duration) -> Outcome {
    let mut command = Command::new(bin());
    command.args(args);
    run_command(command, input, timeout)
}

/// Runs `command` to completion with `input` on stdin, killing it after `timeout`.
pub fn run_command(mut command: Command, input: &[u8], timeout: Duration) -> Outcome {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start ditto");
    let (stdout, out_thread) = Captured::spawn(child.stdout.take().expect("stdout"));
    let (stderr, err_thread) = Captured::spawn(child.stderr.take().expect("stderr"));
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // The command may exit without reading its input; that is its business.
        let _ = stdin.write_all(input);
    }
    let status = wait_exit(&mut child, timeout)
        .unwrap_or_else(|| panic!("{what} did not exit within {timeout:?}"));
    join_readers(vec![out_thread, err_thread]);
    Outcome {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// Waits (boundedly) for the threads reading a finished child's pipes. A pipe stays open while a
/// grandchild holds it; the output read so far is used then rather than waiting forever.
fn join_readers(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

/// Waits for `child` to exit; kills it and returns `None` after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// A `ditto` process whose stdin the test writes and whose output it watches while it runs.
#[derive(Debug)]
pub struct Interactive {
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Captured,
    pub stderr: Captured,
    threads: Vec<JoinHandle<()>>,
}

impl Interactive {
    pub fn spawn(args: &[&str]) -> Interactive {
        let mut child = Command::new(bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start ditto");
        let stdin = child.stdin.take();
        let (stdout, t1) = Captured::spawn(child.stdout.take().expect("stdout"));
        let (stderr, t2) = Captured::spawn(child.stderr.take().expect("stderr"));
        Interactive {
            child,
            stdin,
            stdout,
            stderr,
            threads: vec![t1, t2],
        }
    }

    /// Waits until stdout contains `needle`, failing early if the process exits.
    pub fn wait_stdout(&mut self, needle: &str) {
        let what = format!("stdout contains {needle:?}");
        let (child, stdout, stderr) = (&mut self.child, &self.stdout, &self.stderr);
        wait_until(&what, TIMEOUT, || {
            if stdout.text().contains(needle) {
                return true;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "exited ({st}) before printing {needle:?}; stdout:\n{}\nstderr:\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            false
        });
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Writes `input` and closes stdin.
    pub fn finish_input(&mut self, input: &[u8]) {
        let mut stdin = self.stdin.take().expect("stdin already closed");
        stdin.write_all(input).expect("write stdin");
    }

    /// Waits for the process to exit (and its output pipes to close).
    pub fn wait(&mut self, timeout: Duration) -> Outcome {
        let status = wait_exit(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            )
        });
        join_readers(self.threads.drain(..).collect());
        Outcome {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
