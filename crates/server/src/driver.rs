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
use tracing::Instrument;

use crate::conn::{self, Cmd, ConnLimits, Event};
use crate::net::{Listener, Net};
use crate::observe::Observe;
use crate::telemetry::Telemetry;

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
    /// Whether the driver records metrics (see [`crate::telemetry`]). Off, it keeps no
    /// bookkeeping for them; on, they go to whatever recorder the process installed.
    pub metrics: bool,
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
            metrics: false,
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
    telemetry: Telemetry,
    /// The span of [`node_span`] everything of this node is logged in.
    span: tracing::Span,
}

/// The span a node's log lines are written in: each carries `node=ADDR view=N`.
///
/// The driver opens one, unless it runs inside one already: a caller that logs before the
/// driver starts, or runs tasks beside it, creates the span itself and runs the driver in it,
/// and the driver then records the view on that span (which its other tasks share) rather than
/// opening a second.
///
/// At level ERROR, so that no level filter drops the span while letting its events through: a
/// warning must name its node under `--log-level warn` too.
pub fn node_span(node: &Addr, view: u64) -> tracing::Span {
    tracing::error_span!(NODE_SPAN, node = %node, view)
}

const NODE_SPAN: &str = "node";

/// The span the driver of a machine reporting `stats` logs in. See [`node_span`].
fn driver_span(stats: Option<&ditto_core::NodeStats>) -> tracing::Span {
    let current = tracing::Span::current();
    if current
        .metadata()
        .is_some_and(|m| m.name() == NODE_SPAN && m.fields().field("view").is_some())
    {
        return current;
    }
    match stats {
        Some(stats) => node_span(&stats.addr, stats.view),
        None => tracing::error_span!(
            NODE_SPAN,
            node = tracing::field::Empty,
            view = tracing::field::Empty
        ),
    }
}

/// Runs `machine` on `listener` until `shutdown` completes. Every connection task ends with it.
pub async fn run<N: Net, M: Machine + Observe>(
    net: N,
    listener: N::Listener,
    machine: M,
    cfg: DriverConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let stats = machine.stats();
    let span = driver_span(stats.as_ref());
    let view = machine.view().or(stats.map(|s| s.view));
    let (events, inbox) = mpsc::unbounded_channel();
    let d = Driver {
        net,
        machine,
        cfg,
        start: Instant::now(),
        conns: HashMap::new(),
        tasks: JoinSet::new(),
        events,
        next_inbound: 0,
        telemetry: Telemetry::new(cfg.metrics, view),
        span: span.clone(),
    };
    d.run(listener, inbox, shutdown).instrument(span).await
}

impl<N: Net, M: Machine + Observe> Driver<N, M> {
    async fn run(
        mut self,
        mut listener: N::Listener,
        mut inbox: mpsc::UnboundedReceiver<Event>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        tokio::pin!(shutdown);
        self.feed(Input::Tick);
        self.dispatch();
        // After a failed accept (no file descriptors left, say), accepting waits until then; the
        // rest of the loop does not.
        let mut accept_paused: Option<Instant> = None;
        loop {
            if accept_paused.is_some_and(|t| Instant::now() >= t) {
                accept_paused = None;
            }
            let deadline = self
                .machine
                .poll_timeout()
                .map(|t| self.start + Duration::from_millis(t.0));
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(event) = inbox.recv() => {
                    self.event(event);
                    for _ in 1..self.cfg.max_batch_events {
                        match inbox.try_recv() {
                            Ok(event) => self.event(event),
                            Err(_) => break,
                        }
                    }
                }
                accepted = listener.accept(), if accept_paused.is_none() => match accepted {
                    Ok((stream, host)) => self.accept(stream, &host),
                    Err(e) => {
                        // Usually running out of file descriptors: pause accepting instead of
                        // spinning, and keep serving timers and connections meanwhile.
                        tracing::warn!("accept failed: {e}; pausing new connections briefly");
                        accept_paused = Some(Instant::now() + self.cfg.accept_backoff);
                    }
                },
                () = sleep_until(deadline) => self.feed(Input::Tick),
                () = sleep_until(accept_paused) => {}
                () = sleep_until(self.telemetry.sample_due()) => {}
            }
            // Reap finished connection tasks so the set does not grow with every connection.
            while self.tasks.try_join_next().is_some() {}
            self.dispatch();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl<N: Net, M: Machine + Observe> Driver<N, M> {
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
            Event::Line(conn, line) => {
                self.telemetry.request(conn, &line);
                self.feed(Input::Line { conn, line: &line });
            }
            Event::TooLong(conn) => {
                self.telemetry.overlong(conn);
                self.feed(Input::LineTooLong { conn });
            }
            Event::Command(conn, args) => {
                self.telemetry.command(conn, &args);
                self.feed(Input::Command { conn, args: &args });
            }
            Event::BadFrame(conn, why) => {
                // Answered (refused) like a request, as an overlong line is.
                self.telemetry.overlong(conn);
                self.feed(Input::BadFrame { conn, why: &why });
            }
            Event::Closed(conn) => {
                self.conns.remove(&conn);
                self.telemetry.closed(conn);
                self.feed(Input::Closed { conn });
            }
        }
    }

    fn accept(&mut self, stream: N::Stream, host: &str) {
        self.next_inbound += 1;
        let id = ConnId::Inbound(self.next_inbound);
        self.telemetry.accepted(id);
        self.feed(Input::Accepted { conn: id, host });
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns.insert(id, tx);
        let (events, limits) = (self.events.clone(), self.limits());
        // A connection task logs nothing, so it is not run in the node's span: entering the
        // span on each of its polls would cost for nothing.
        self.tasks
            .spawn(async move { conn::run(stream, id, events, rx, limits).await });
    }

    /// Carries out the machine's outputs, with the log's view brought up to date first (the
    /// inputs just fed may have changed it) and again after, then samples the metrics.
    fn dispatch(&mut self) {
        self.follow_view();
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Send { conn, line } => {
                    self.telemetry.reply(conn, &line);
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(Cmd::Line(line));
                    }
                }
                Output::Write { conn, bytes } => {
                    self.telemetry.resp_reply(conn, &bytes);
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(Cmd::Bytes(bytes));
                    }
                }
                Output::Close { conn } => {
                    self.telemetry.closed(conn);
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.send(Cmd::Close);
                    }
                }
                Output::Connect { conn, addr } => self.connect(conn, addr),
                Output::Stream { conn } => {
                    self.telemetry.stream(conn);
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
        self.follow_view();
        let node_now = self.now();
        self.telemetry
            .sample(&self.machine, Instant::now(), node_now);
    }

    fn follow_view(&mut self) {
        if let Some(view) = self.telemetry.view(self.machine.view()) {
            self.span.record("view", view);
        }
    }

    fn connect(&mut self, id: ConnId, addr: Addr) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns.insert(id, tx);
        let (net, events, limits) = (self.net.clone(), self.events.clone(), self.limits());
        let timeout = self.cfg.connect_timeout;
        // Only a failed connect logs, in the node's span (entered then, not on every poll).
        let span = self.span.clone();
        self.tasks.spawn(async move {
            match tokio::time::timeout(timeout, net.connect(&addr)).await {
                Ok(Ok(stream)) => conn::run(stream, id, events, rx, limits).await,
                Ok(Err(e)) => {
                    span.in_scope(|| tracing::debug!("connect to {addr} failed: {e}"));
                    let _ = events.send(Event::Closed(id));
                }
                Err(_) => {
                    span.in_scope(|| tracing::debug!("connect to {addr} timed out"));
                    let _ = events.send(Event::Closed(id));
                }
            }
        });
    }
}
