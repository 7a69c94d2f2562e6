//! The driver loop: one per node, the only owner of the node's state machine.
//!
//! Connection tasks send it what they read; it feeds the state machine, then carries out the
//! machine's outputs. It drains every event already queued before it asks for outputs, so that
//! writes arriving together leave in one replication message.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::time::Duration;

use ditto_core::{Addr, ConnId, Input, LogLevel, Machine, Millis, Node, NodeConfig, Output, wire};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::{self, Cmd, ConnLimits, Event};
use crate::net::{Listener, Net};

/// Settings of the shell, as opposed to the protocol.
#[derive(Clone, Copy, Debug)]
pub struct DriverConfig {
    /// Longest request line, terminator excluded.
    pub max_line: usize,
    /// Longest line of a replication stream: a snapshot travels as one line until state
    /// transfer is chunked, so this bounds the keyspace a backup can be sent.
    pub max_stream_line: usize,
    /// Requests one connection may have unanswered before the server stops reading from it.
    pub max_in_flight: i64,
    /// How long an outbound connect may take before it counts as failed.
    pub connect_timeout: Duration,
    /// Most events fed to the machine before its outputs are flushed.
    pub max_batch_events: usize,
    /// How long accepting pauses after `accept` fails (usually: out of file descriptors).
    /// Only accepting pauses; timers and connections go on.
    pub accept_backoff: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            max_line: wire::MAX_LINE,
            max_stream_line: 512 << 20,
            max_in_flight: 1024,
            connect_timeout: Duration::from_secs(2),
            max_batch_events: 4096,
            accept_backoff: Duration::from_millis(50),
        }
    }
}

/// Runs a ditto node on `listener` until `shutdown` completes.
pub async fn run_node<N: Net>(
    net: N,
    listener: N::Listener,
    cfg: NodeConfig,
    driver: DriverConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let node = Node::new(cfg, Millis(0));
    run(net, listener, node, driver, shutdown).await
}

struct Driver<N: Net, M: Machine> {
    net: N,
    machine: M,
    cfg: DriverConfig,
    start: Instant,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Cmd>>,
    tasks: JoinSet<()>,
    events: mpsc::UnboundedSender<Event>,
    next_inbound: u64,
}

/// Runs `machine` on `listener` until `shutdown` completes. Every connection task ends with it.
pub async fn run<N: Net, M: Machine>(
    net: N,
    mut listener: N::Listener,
    machine: M,
    cfg: DriverConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (events, mut inbox) = mpsc::unbounded_channel();
    let mut d = Driver {
        net,
        machine,
        cfg,
        start: Instant::now(),
        conns: HashMap::new(),
        tasks: JoinSet::new(),
        events,
        next_inbound: 0,
    };
    tokio::pin!(shutdown);
    d.feed(Input::Tick);
    d.dispatch();
    // After a failed accept (no file descriptors left, say), accepting waits until then; the
    // rest of the loop does not.
    let mut accept_paused: Option<Instant> = None;
    loop {
        if accept_paused.is_some_and(|t| Instant::now() >= t) {
            accept_paused = None;
        }
        let deadline = d
            .machine
            .poll_timeout()
            .map(|t| d.start + Duration::from_millis(t.0));
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(event) = inbox.recv() => {
                d.event(event);
                for _ in 1..d.cfg.max_batch_events {
                    match inbox.try_recv() {
                        Ok(event) => d.event(event),
                        Err(_) => break,
                    }
                }
            }
            accepted = listener.accept(), if accept_paused.is_none() => match accepted {
                Ok((stream, host)) => d.accept(stream, &host),
                Err(e) => {
                    // Usually running out of file descriptors: pause accepting instead of
                    // spinning, and keep serving timers and connections meanwhile.
                    tracing::warn!("accept failed: {e}; pausing new connections briefly");
                    accept_paused = Some(Instant::now() + d.cfg.accept_backoff);
                }
            },
            () = sleep_until(deadline) => d.feed(Input::Tick),
            () = sleep_until(accept_paused) => {}
        }
        // Reap finished connection tasks so the set does not grow with every connection.
        while d.tasks.try_join_next().is_some() {}
        d.dispatch();
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl<N: Net, M: Machine> Driver<N, M> {
    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }

    fn feed(&mut self, input: Input<'_>) {
        let now = self.now();
        self.machine.handle(now, input);
    }

    fn limits(&self) -> ConnLimits {
        ConnLimits {
            max_line: self.cfg.max_line,
            max_stream_line: self.cfg.max_stream_line,
            max_in_flight: self.cfg.max_in_flight,
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Line(conn, line) => self.feed(Input::Line { conn, line: &line }),
            Event::TooLong(conn) => self.feed(Input::LineTooLong { conn }),
            Event::Command(conn, args) => self.feed(Input::Command { conn, args: &args }),
            Event::BadFrame(conn, why) => self.feed(Input::BadFrame { conn, why: &why }),
            Event::Closed(conn) => {
                self.conns.remove(&conn);
                self.feed(Input::Closed { conn });
            }
        }
    }

    fn accept(&mut self, stream: N::Stream, host: &str) {
        self.next_inbound += 1;
        let id = ConnId::Inbound(self.next_inbound);
        self.feed(Input::Accepted { conn: id, host });
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns.insert(id, tx);
        let (events, limits) = (self.events.clone(), self.limits());
        self.tasks
            .spawn(async move { conn::run(stream, id, events, rx, limits).await });
    }

    fn dispatch(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Send { conn, line } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(Cmd::Line(line));
                    }
                }
                Output::Write { conn, bytes } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(Cmd::Bytes(bytes));
                    }
                }
                Output::Close { conn } => {
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.send(Cmd::Close);
                    }
                }
                Output::Connect { conn, addr } => self.connect(conn, addr),
                Output::Stream { conn } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(Cmd::Stream);
                    }
                }
                Output::Log { level, message } => match level {
                    LogLevel::Info => tracing::info!("{message}"),
                    LogLevel::Warn => tracing::warn!("{message}"),
                },
            }
        }
    }

    fn connect(&mut self, id: ConnId, addr: Addr) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns.insert(id, tx);
        let (net, events, limits) = (self.net.clone(), self.events.clone(), self.limits());
        let timeout = self.cfg.connect_timeout;
        self.tasks.spawn(async move {
            match tokio::time::timeout(timeout, net.connect(&addr)).await {
                Ok(Ok(stream)) => conn::run(stream, id, events, rx, limits).await,
                Ok(Err(e)) => {
                    tracing::debug!("connect to {addr} failed: {e}");
                    let _ = events.send(Event::Closed(id));
                }
                Err(_) => {
                    tracing::debug!("connect to {addr} timed out");
                    let _ = events.send(Event::Closed(id));
                }
            }
        });
    }
}
