//! A local cluster of `ditto` processes: a primary and backups, each a child process of this one.
//!
//! Used by `ditto up` (and by tools that need a cluster of their own). Children are started with
//! `--exit-on-stdin-eof` and a pipe on their stdin, so they exit even if this process is killed
//! before it can stop them. Their logs go where [`Logs`] says: to a file each, so that they do
//! not write across a prompt, or to this process's stderr, or nowhere.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use ditto_server::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

/// How long a started cluster may take to have every backup joined and synced.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The line a server started with `--announce-ready` prints on stdout once it listens. A
/// cluster waits for it from each of its servers before it looks at their ports: a port that
/// answers may belong to an older server the new one failed to displace.
pub const READY_LINE: &str = "ready";

/// Where the servers' logs (their stderr) go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logs {
    /// To this process's stderr.
    Inherit,
    /// To one file per server in this directory, named after its role and port
    /// (`primary-7000.log`); a restarted server appends to its file.
    Dir(PathBuf),
}

/// One server process.
#[derive(Debug)]
pub struct Server {
    pub role: &'static str,
    pub port: u16,
    /// The port the group knows it by (`--advertise`): its own, or a proxy's in front of it.
    pub advertised: u16,
    /// The file its log goes to, if it has one.
    pub log: Option<PathBuf>,
    args: Vec<String>,
    child: Option<Child>,
    /// The server's stdin, kept apart from `child`: waiting for a child closes the stdin it
    /// holds, and a server started with `--exit-on-stdin-eof` would take that for an order.
    stdin: Option<ChildStdin>,
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// One line on this server having exited: how, and why if it said so in its log.
    pub fn exited(&self, status: ExitStatus) -> String {
        let what = format!(
            "the {} on port {} exited ({})",
            self.role,
            self.port,
            describe_exit(status)
        );
        match &self.log {
            Some(log) => match final_error(log) {
                Some(error) => format!("{what}: {error}"),
                None => format!("{what}{}", self.log_note()),
            },
            // Its own error went to the same stderr as this line will.
            None => format!("{what}; is the port in use?"),
        }
    }

    /// Where to read more, for the end of a line about this server: `; its log is PATH`.
    fn log_note(&self) -> String {
        match &self.log {
            Some(log) => format!("; its log is {}", log.display()),
            None => String::new(),
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
    }
}

/// How to start one server of a cluster: `ditto ARGS`, listening on `port` and known to the
/// group by `advertised`.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub role: &'static str,
    pub port: u16,
    pub advertised: u16,
    pub args: Vec<String>,
}

impl ServerSpec {
    /// `ditto primary PORT`.
    pub fn primary(port: u16) -> ServerSpec {
        ServerSpec {
            role: "primary",
            port,
            advertised: port,
            args: vec!["primary".into(), port.to_string()],
        }
    }

    /// `ditto backup PORT JOIN`.
    pub fn backup(port: u16, join: u16) -> ServerSpec {
        ServerSpec {
            role: "backup",
            port,
            advertised: port,
            args: vec!["backup".into(), port.to_string(), join.to_string()],
        }
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    pub primary: u16,
    pub backups: Vec<u16>,
    pub servers: Vec<Server>,
    log_level: String,
    logs: Logs,
}

/// Which start of a server a spawn is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Its first: its log file is created afresh, and the cluster waits for it to say that it
    /// listens (see [`READY_LINE`]).
    First,
    /// A restart after a fault: its log file is appended to, and nobody waits for it.
    Again,
}

/// Starts `ditto ARGS` as a server whose stderr goes to the file `log`, or to this process's
/// stderr (`inherit`), or nowhere.
fn spawn(
    args: &[String],
    log_level: &str,
    log: Option<&Path>,
    inherit: bool,
    start: Start,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the ditto executable")?;
    let stderr = match log {
        Some(path) => {
            let file = match start {
                Start::First => File::create(path),
                Start::Again => File::options().create(true).append(true).open(path),
            };
            Stdio::from(file.with_context(|| format!("cannot open {}", path.display()))?)
        }
        None if inherit => Stdio::inherit(),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--exit-on-stdin-eof")
        .arg("--log-level")
        .arg(log_level)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    if start == Start::First {
        cmd.arg("--announce-ready").stdout(Stdio::piped());
    }
    if !inherit {
        // Not writing to the terminal, a server need not be in its process group; out of it,
        // a Ctrl-C typed there reaches only this process, which then stops the servers itself
        // rather than seeing them die.
        cmd.process_group(0);
    }
    cmd.args(args);
    cmd.spawn().context("cannot start a ditto server process")
}

/// How a process ended, in a few words: `exit status 1`, `signal 9: SIGKILL`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("signal {signal}: {name}"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// The last line of a log if it is the error a `ditto` process printed as it gave up, without
/// its `error: ` prefix.
fn final_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    last.strip_prefix("error: ").map(str::to_owned)
}

/// Sends `STATUS` to `port`, if something answers there.
pub async fn status(port: u16) -> Option<String> {
    let mut client = Client::connect(port, Duration::from_millis(500))
        .await
        .ok()?;
    client.request("STATUS").await.ok()
}

/// The value of `key` in a `STATUS` line (`key=value` fields separated by blanks).
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .strip_prefix("STATUS:")
        .unwrap_or(status)
        .split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
}

/// Whether a primary's `STATUS` line shows every port of `backups` (as the group knows them) in
/// its active set: synced, and waited for by every write. Members are listed as
/// `id@host:port:kind:state:held`.
pub fn backups_synced(status: &str, backups: &[u16]) -> bool {
    if status_field(status, "role") != Some("primary") {
        return false;
    }
    let list = status_field(status, "members").unwrap_or_default();
    backups.iter().all(|port| {
        list.split(',').any(|entry| {
            let mut parts = entry.rsplitn(4, ':');
            let (_held, state, _kind, addr) =
                (parts.next(), parts.next(), parts.next(), parts.next());
            state == Some("active") && addr.is_some_and(|a| a.ends_with(&format!(":{port}")))
        })
    })
}

impl LocalCluster {
    /// Starts a primary on `base_port` and `backups` backups on the ports after it, and waits
    /// until every backup has joined and synced. With `metrics_port`, each serves its metrics
    /// on 127.0.0.1 too: the primary at `metrics_port`, the backups at the ports after it.
    pub async fn start(
        base_port: u16,
        backups: usize,
        metrics_port: Option<u16>,
        log_level: &str,
        logs: Logs,
    ) -> anyhow::Result<LocalCluster> {
        let last = base_port as usize + backups;
        if last > u16::MAX as usize {
            bail!("ports {base_port}..={last} do not fit below 65536");
        }
        let mut specs = vec![ServerSpec::primary(base_port)];
        specs.extend((1..=backups).map(|i| ServerSpec::backup(base_port + i as u16, base_port)));
        if let Some(first) = metrics_port {
            let last_metrics = first as usize + backups;
            if last_metrics > u16::MAX as usize {
                bail!("metrics ports {first}..={last_metrics} do not fit below 65536");
            }
            if (first as usize) <= last && base_port as usize <= last_metrics {
                bail!(
                    "metrics ports {first}..={last_metrics} overlap the servers' ports {base_port}..={last}"
                );
            }
            for (spec, port) in specs.iter_mut().zip(first..) {
                spec.args
                    .extend(["--metrics".to_owned(), format!("127.0.0.1:{port}")]);
            }
        }
        LocalCluster::start_servers(&specs, log_level, logs).await
    }

    /// Starts the servers `specs`, the first of them the primary the others join, and waits
    /// until every backup has joined and synced. If a server fails to start, the ones already
    /// running are stopped.
    pub async fn start_servers(
        specs: &[ServerSpec],
        log_level: &str,
        logs: Logs,
    ) -> anyhow::Result<LocalCluster> {
        if let Logs::Dir(dir) = &logs {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        }
        let Some((first, rest)) = specs.split_first() else {
            bail!("a cluster needs a primary");
        };
        let mut cluster = LocalCluster {
            primary: first.port,
            backups: rest.iter().map(|s| s.port).collect(),
            servers: Vec::new(),
            log_level: log_level.to_owned(),
            logs,
        };
        match cluster.launch(specs).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    async fn launch(&mut self, specs: &[ServerSpec]) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for (i, spec) in specs.iter().enumerate() {
            self.add(spec)?;
            if i == 0 {
                // The backups join it: it must listen first.
                self.await_listening(0, deadline).await?;
            }
        }
        for i in 1..self.servers.len() {
            self.await_listening(i, deadline).await?;
        }
        // Every port is served by this cluster's own servers now, so the STATUS read there is
        // its own servers'.
        self.await_synced().await
    }

    /// Waits until server `i` says it listens; fails with its own reason if it exits first.
    async fn await_listening(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        let server = &mut self.servers[i];
        let (role, port) = (server.role, server.port);
        let child = server.child.as_mut().context("the server is not running")?;
        let stdout = child.stdout.take().context("no pipe from the server")?;
        let mut lines = BufReader::new(stdout).lines();
        let said_ready = async {
            while let Some(line) = lines.next_line().await? {
                if line == READY_LINE {
                    return Ok(true);
                }
            }
            Ok::<bool, std::io::Error>(false)
        };
        match tokio::time::timeout_at(deadline, said_ready).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(_) => {}
            Err(_) => bail!(
                "the {role} on port {port} was not listening within {START_TIMEOUT:?}{}",
                server.log_note()
            ),
        }
        // Its stdout closed without the line: it is exiting.
        match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            Ok(Ok(status)) => bail!("{}", server.exited(status)),
            _ => bail!(
                "the {role} on port {port} closed its output without listening{}",
                server.log_note()
            ),
        }
    }

    fn add(&mut self, spec: &ServerSpec) -> anyhow::Result<()> {
        let (role, port) = (spec.role, spec.port);
        let log = match &self.logs {
            Logs::Dir(dir) => Some(dir.join(format!("{role}-{port}.log"))),
            Logs::Inherit => None,
        };
        let inherit = self.logs == Logs::Inherit;
        let mut child = spawn(
            &spec.args,
            &self.log_level,
            log.as_deref(),
            inherit,
            Start::First,
        )?;
        self.servers.push(Server {
            role,
            port,
            advertised: spec.advertised,
            log,
            args: spec.args.clone(),
            stdin: child.stdin.take(),
            child: Some(child),
        });
        Ok(())
    }

    fn server(&mut self, port: u16) -> anyhow::Result<&mut Server> {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .with_context(|| format!("no server on port {port}"))
    }

    /// Waits until a running server exits, reaps it, and returns its index in `servers` and how
    /// it ended. Never completes while no server runs. Cancel-safe: dropping the future leaves
    /// every server as it was.
    pub async fn next_exit(&mut self) -> (usize, std::io::Result<ExitStatus>) {
        let waits: Vec<_> = self
            .servers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, server)| {
                let child = server.child.as_mut()?;
                Some(Box::pin(async move { (i, child.wait().await) }))
            })
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        let ((i, result), _, _) = futures::future::select_all(waits).await;
        self.servers[i].child = None;
        (i, result)
    }

    /// Kills the server on `port` with SIGKILL and reaps it.
    pub async fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let server = self.server(port)?;
        server.signal(nix::sys::signal::Signal::SIGCONT);
        if let Some(mut child) = server.child.take() {
            let _ = child.kill().await;
        }
        Ok(())
    }

    /// Starts the server on `port` again, with the arguments it first had.
    pub async fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let log_level = self.log_level.clone();
        let inherit = self.logs == Logs::Inherit;
        let server = self.server(port)?;
        if server.child.is_none() {
            let mut child = spawn(
                &server.args,
                &log_level,
                server.log.as_deref(),
                inherit,
                Start::Again,
            )?;
            server.stdin = child.stdin.take();
            server.child = Some(child);
        }
        Ok(())
    }

    /// Freezes the server on `port` (SIGSTOP): its sockets stay open but it does nothing.
    pub fn pause(&mut self, port: u16) -> anyhow::Result<()> {
        self.server(port)?.signal(nix::sys::signal::Signal::SIGSTOP);
        Ok(())
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&mut self, port: u16) -> anyhow::Result<()> {
        self.server(port)?.signal(nix::sys::signal::Signal::SIGCONT);
        Ok(())
    }

    /// The server that is primary now, with its `STATUS` line: of the servers that answer as
    /// primary, the one of the newest view (an old primary cut off from the group may still
    /// think it is one until its lease runs out).
    pub async fn primary_now(&self) -> Option<(u16, String)> {
        let mut best: Option<(u64, u16, String)> = None;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let Some(line) = status(server.port).await else {
                continue;
            };
            if status_field(&line, "role") != Some("primary") {
                continue;
            }
            let view = status_field(&line, "view")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if best.as_ref().is_none_or(|(v, _, _)| view > *v) {
                best = Some((view, server.port, line));
            }
        }
        best.map(|(_, port, line)| (port, line))
    }

    /// Waits until the primary's `STATUS` shows every other server synced, whichever server is
    /// primary now, failing early if a server exits.
    pub async fn await_synced(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for server in &mut self.servers {
                if let Some(child) = server.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("{}", server.exited(status));
                }
            }
            if let Some((port, line)) = self.primary_now().await {
                let others: Vec<u16> = self
                    .servers
                    .iter()
                    .filter(|s| s.port != port)
                    .map(|s| s.advertised)
                    .collect();
                if backups_synced(&line, &others) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the cluster did not come up within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every server: SIGTERM, then SIGKILL for any still running after a grace period.
    pub async fn stop(&mut self) {
        for server in &self.servers {
            server.signal(nix::sys::signal::Signal::SIGCONT);
            server.signal(nix::sys::signal::Signal::SIGTERM);
        }
        for server in &mut self.servers {
            if let Some(child) = server.child.as_mut() {
                let waited = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
                if waited.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
        self.servers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_synced_backups_from_status() {
        let s = "STATUS:role=primary port=7000 view=1 commit=3 value=0 members=1@127.0.0.1:7000:ditto:active:3,2@127.0.0.1:7001:ditto:active:3,3@[::1]:7002:ditto:inactive:-";
        assert!(backups_synced(s, &[7001]));
        assert!(!backups_synced(s, &[7002]));
        assert!(!backups_synced(s, &[7001, 7003]));
        assert!(backups_synced("STATUS:role=primary members=", &[]));
        assert!(!backups_synced("STATUS:role=backup members=", &[]));
        assert_eq!(status_field(s, "port"), Some("7000"));
        assert_eq!(status_field(s, "value"), Some("0"));
        assert_eq!(status_field(s, "val"), None);
    }

    #[test]
    fn exits_are_told_in_a_few_words() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal 9: SIGKILL");
    }
}
