//! The primary: sequences every write, applies it, replicates it, and acknowledges it once every
//! backup has applied it.
//!
//! Writes arrive as `WRITE:v` from clients, `UPDATE:v` from seed backups and `PROPOSE:op` from ditto
//! backups. Each gets the next sequence number of the current epoch, is applied to the primary's
//! register at once, and is appended to an in-memory log that holds the entries some backup has
//! not yet received. A write is acknowledged when every backup registered at the time has
//! acknowledged an entry at or after it: that is the seed's "gets acknowledgement from each backup,
//! then replies", and it is also what makes a write acknowledged anywhere visible everywhere.
//!
//! Backups come in two kinds: ditto backups that asked for a `SYNC` stream get a
//! snapshot and then batches of entries over one persistent connection, in order; seed-only
//! backups get one `UPDATE:v` per write, each on a connection of its own, one at a time so they too
//! apply writes in sequence order. An idle stream carries a heartbeat every
//! [`PrimaryConfig::heartbeat_ms`]. A backup whose stream closes, that is not heard from for
//! [`PrimaryConfig::backup_timeout_ms`], or whose pushes keep failing for
//! [`PrimaryConfig::seed_give_up_ms`], is dropped, so a dead or hung backup does not block writes
//! forever; it catches up from a snapshot when it joins again.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use crate::event::{ConnId, Input, LogLevel, Machine, Millis, Output};
use crate::op::{Op, Register, Seq};
use crate::session::Sessions;
use crate::wire::{self, Request, StreamMsg};

/// Settings of a primary.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrimaryConfig {
    /// The port the primary listens on (reported by `STATUS`).
    pub port: u16,
    /// Distinguishes this run of the primary from earlier ones; sequence numbers restart at 1 in
    /// every epoch. The driver picks something that grows across restarts (e.g. wall-clock ms).
    pub epoch: u64,
    /// How long to wait before pushing again to a seed-only backup whose last push failed.
    pub seed_retry_ms: u64,
    /// A seed-only backup that has failed every push for this long is dropped.
    pub seed_give_up_ms: u64,
    /// A push to a seed-only backup that gets no answer within this long has failed.
    pub seed_push_timeout_ms: u64,
    /// A stream with nothing to send for this long gets a `HEARTBEAT`, which the backup answers.
    pub heartbeat_ms: u64,
    /// A streaming backup not heard from for this long (crashed, hung, cut off) is dropped, so
    /// that writes stop waiting for it. Several heartbeats fit in it.
    pub backup_timeout_ms: u64,
}

impl PrimaryConfig {
    /// Defaults for a primary on `port` in `epoch`.
    pub fn new(port: u16, epoch: u64) -> PrimaryConfig {
        PrimaryConfig {
            port,
            epoch,
            seed_retry_ms: 200,
            seed_give_up_ms: 10_000,
            seed_push_timeout_ms: 3_000,
            heartbeat_ms: 500,
            backup_timeout_ms: 3_000,
        }
    }
}

/// How the primary reaches one backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Link {
    /// A ditto backup fed over a `SYNC` stream on `conn`: a snapshot, then every entry in order.
    Stream {
        conn: ConnId,
        /// Highest entry written to the stream.
        sent: Seq,
        /// Highest entry the backup acknowledged; `None` until it acknowledges the snapshot.
        acked: Option<Seq>,
        /// When the stream last carried something to the backup.
        last_sent: Millis,
        /// When the backup was last heard from.
        last_heard: Millis,
    },
    /// A seed-only backup: one `UPDATE:v` per connection, one at a time.
    Seed {
        /// Highest entry the backup acknowledged; `None` until its first update.
        acked: Option<Seq>,
        /// The push under way: its connection, the entry it carries, and when it times out.
        inflight: Option<(ConnId, Seq, Millis)>,
        /// When to try again after a failed push.
        retry_at: Option<Millis>,
        /// When the current run of failed pushes began.
        failing_since: Option<Millis>,
    },
}

impl Link {
    fn acked(&self) -> Option<Seq> {
        match self {
            Link::Stream { acked, .. } | Link::Seed { acked, .. } => *acked,
        }
    }

    /// The highest entry this link no longer needs from the log, if it needs the log at all.
    fn log_position(&self) -> Option<Seq> {
        match self {
            Link::Stream { sent, .. } => Some(*sent),
            // A first push in flight carries the state as of its entry; the entries after it
            // are what the backup will need next.
            Link::Seed {
                acked, inflight, ..
            } => acked.or(inflight.map(|(_, seq, _)| seq)),
        }
    }

    /// The connections this link owns.
    fn conn(&self) -> Option<ConnId> {
        match self {
            Link::Stream { conn, .. } => Some(*conn),
            Link::Seed { inflight, .. } => inflight.map(|(c, _, _)| c),
        }
    }
}

/// What a committed write's client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AckKind {
    /// `ACK`, for the seed's `WRITE` and `UPDATE`.
    Plain,
    /// `COMMITTED:epoch:seq`, for a ditto backup's `PROPOSE`.
    Committed,
}

/// The primary role. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Primary {
    cfg: PrimaryConfig,
    now: Millis,
    state: Register,
    /// Sequence number of the last write applied.
    last: Seq,
    /// Every write up to here is acknowledged by every backup (monotonic).
    commit: Seq,
    /// Entries `log_first..` with the value after each: what some backup still needs.
    log: VecDeque<(Op, i64)>,
    log_first: Seq,
    backups: BTreeMap<u16, Link>,
    /// Connections owned by backup links (streams and in-flight pushes), by backup port.
    links: BTreeMap<ConnId, u16>,
    sessions: Sessions,
    /// Writes waiting for commit: the client connection and what to tell it.
    waiting: BTreeMap<Seq, (ConnId, AckKind)>,
    out: VecDeque<Output>,
    next_conn: u64,
    /// New entries or links exist that [`Primary::flush`] has not yet sent.
    dirty: bool,
}

impl Primary {
    /// A primary with value 0 and no backups.
    pub fn new(cfg: PrimaryConfig) -> Primary {
        Primary {
            cfg,
            now: Millis(0),
            state: Register::default(),
            last: 0,
            commit: 0,
            log: VecDeque::new(),
            log_first: 1,
            backups: BTreeMap::new(),
            links: BTreeMap::new(),
            sessions: Sessions::default(),
            waiting: BTreeMap::new(),
            out: VecDeque::new(),
            next_conn: 0,
            dirty: false,
        }
    }

    /// The primary's replica.
    pub fn value(&self) -> i64 {
        self.state.value()
    }

    /// Sequence number of the last write applied.
    pub fn last_seq(&self) -> Seq {
        self.last
    }

    /// Every write up to this sequence number has been applied by every backup.
    pub fn commit_seq(&self) -> Seq {
        self.commit
    }

    /// Ports of the registered backups, with the highest entry each acknowledged.
    pub fn backups(&self) -> Vec<(u16, Option<Seq>)> {
        self.backups.iter().map(|(p, l)| (*p, l.acked())).collect()
    }

    /// The `STATUS` reply.
    pub fn status(&self) -> String {
        let mut line = format!(
            "STATUS:role=primary port={} epoch={} last={} commit={} value={} backups=",
            self.cfg.port,
            self.cfg.epoch,
            self.last,
            self.commit,
            self.state.value()
        );
        for (i, (port, link)) in self.backups.iter().enumerate() {
            let kind = match link {
                Link::Stream { .. } => "stream",
                Link::Seed { .. } => "seed",
            };
            let acked = link.acked().map_or("none".to_owned(), |a| a.to_string());
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(line, "{sep}{port}:{kind}:{acked}");
        }
        line
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Output::Log { level, message });
    }

    fn on_line(&mut self, conn: ConnId, line: &[u8]) {
        if let Some(&port) = self.links.get(&conn) {
            return self.on_link_line(port, conn, line);
        }
        let value = self.state.value();
        let reply = match wire::parse_request(line) {
            // The value is taken now, not when the reply leaves: every earlier write of this
            // connection is already applied here, and a later one must not show through.
            // The only primary there is: every read here is linearizable.
            Ok(Request::Read | Request::ReadLinearizable) => wire::value_reply(value),
            Ok(Request::Write(v) | Request::Update(v) | Request::TaggedWrite { value: v, .. }) => {
                return self.propose(conn, Op::Set(v), AckKind::Plain);
            }
            Ok(Request::Propose(op)) => return self.propose(conn, op, AckKind::Committed),
            Ok(Request::Join(port) | Request::Sync(port)) if port == self.cfg.port => {
                wire::err_reply(format!("port {port} is this primary's own port"))
            }
            Ok(Request::Join(port)) => {
                self.register(
                    port,
                    Link::Seed {
                        acked: None,
                        inflight: None,
                        retry_at: None,
                        failing_since: None,
                    },
                );
                self.log(LogLevel::Info, format!("backup :{port} joined"));
                wire::ACK.to_owned()
            }
            Ok(Request::Sync(port)) => return self.sync(port, conn),
            Ok(Request::Status) => self.status(),
            Ok(Request::Acked(_)) => wire::err_reply("ACKED is only valid on a SYNC stream"),
            Ok(Request::Failover(_)) => wire::err_reply("this primary cannot hand over"),
            Err(e) => wire::err_reply(e),
        };
        self.sessions
            .reply(conn, reply, &|_| wire::value_reply(value), &mut self.out);
    }

    /// Assigns the next sequence number to `op`, applies it, and queues the client's reply for
    /// when every backup has it.
    fn propose(&mut self, conn: ConnId, op: Op, ack: AckKind) {
        self.last += 1;
        self.state.apply(&op);
        self.log.push_back((op, self.state.value()));
        self.dirty = true;
        self.sessions.pending(conn, self.last);
        self.waiting.insert(self.last, (conn, ack));
        self.advance_commit();
    }

    /// Registers (or re-registers) the backup at `port`, replacing any earlier link to it.
    fn register(&mut self, port: u16, link: Link) {
        if let Some(conn) = link.conn() {
            self.links.insert(conn, port);
        }
        if let Some(old) = self.backups.insert(port, link)
            && let Some(conn) = old.conn()
        {
            self.links.remove(&conn);
            self.out.push_back(Output::Close { conn });
        }
        self.dirty = true;
        self.advance_commit();
    }

    /// Turns `conn` into a `SYNC` stream to the backup at `port`, starting with a snapshot.
    fn sync(&mut self, port: u16, conn: ConnId) {
        self.sessions.forget(conn);
        let snapshot = StreamMsg::Snapshot {
            epoch: self.cfg.epoch,
            seq: self.last,
            value: self.state.value(),
        };
        self.out.push_back(Output::Send {
            conn,
            line: wire::format_stream(&snapshot),
        });
        self.register(
            port,
            Link::Stream {
                conn,
                sent: self.last,
                acked: None,
                last_sent: self.now,
                last_heard: self.now,
            },
        );
        self.log(
            LogLevel::Info,
            format!("backup :{port} streaming from entry {}", self.last),
        );
    }

    fn drop_backup(&mut self, port: u16, why: &str) {
        if let Some(link) = self.backups.remove(&port) {
            if let Some(conn) = link.conn() {
                self.links.remove(&conn);
                self.out.push_back(Output::Close { conn });
            }
            self.log(
                LogLevel::Warn,
                format!("dropped backup :{port} ({why}); writes no longer wait for it"),
            );
            self.advance_commit();
        }
    }

    fn on_link_line(&mut self, port: u16, conn: ConnId, line: &[u8]) {
        match self.backups.get_mut(&port) {
            Some(Link::Stream {
                sent,
                acked,
                last_heard,
                ..
            }) => match wire::parse_request(line) {
                Ok(Request::Acked(seq)) if seq <= *sent => {
                    *last_heard = self.now;
                    *acked = Some(acked.map_or(seq, |a| a.max(seq)));
                    self.advance_commit();
                }
                _ => self.drop_backup(port, "protocol error on its stream"),
            },
            Some(Link::Seed {
                acked,
                inflight,
                failing_since,
                ..
            }) => {
                let Some((_, seq, _)) = *inflight else { return };
                self.links.remove(&conn);
                self.out.push_back(Output::Close { conn });
                *inflight = None;
                if wire::is_error_reply(line) {
                    self.push_failed(port);
                } else {
                    *acked = Some(seq);
                    *failing_since = None;
                    self.dirty = true;
                    self.advance_commit();
                }
            }
            None => {}
        }
    }

    fn push_failed(&mut self, port: u16) {
        let (now, cfg) = (self.now, &self.cfg);
        let Some(Link::Seed {
            inflight,
            retry_at,
            failing_since,
            ..
        }) = self.backups.get_mut(&port)
        else {
            return;
        };
        *inflight = None;
        let since = *failing_since.get_or_insert(now);
        if now.0.saturating_sub(since.0) >= cfg.seed_give_up_ms {
            self.drop_backup(port, "updates keep failing");
        } else {
            *retry_at = Some(now.after(cfg.seed_retry_ms));
        }
    }

    fn on_closed(&mut self, conn: ConnId) {
        self.sessions.forget(conn);
        let Some(port) = self.links.remove(&conn) else {
            return;
        };
        match self.backups.get(&port) {
            Some(Link::Stream { .. }) => self.drop_backup(port, "its stream closed"),
            Some(Link::Seed { .. }) => self.push_failed(port),
            None => {}
        }
    }

    /// Raises the commit point to the lowest acknowledgement among the backups, answers the
    /// writes it covers, and trims log entries no backup needs any more.
    fn advance_commit(&mut self) {
        let floor = self
            .backups
            .values()
            .map(|l| l.acked().unwrap_or(0))
            .min()
            .unwrap_or(self.last);
        if floor > self.commit {
            self.commit = floor;
            let value = self.state.value();
            let later = self.waiting.split_off(&(floor + 1));
            for (seq, (conn, ack)) in std::mem::replace(&mut self.waiting, later) {
                let line = match ack {
                    AckKind::Plain => wire::ACK.to_owned(),
                    AckKind::Committed => wire::committed_reply(self.cfg.epoch, seq),
                };
                self.sessions.resolve(
                    conn,
                    seq,
                    line,
                    &|_| wire::value_reply(value),
                    &mut self.out,
                );
            }
        }
        let keep_from = self
            .backups
            .values()
            .filter_map(Link::log_position)
            .min()
            .unwrap_or(self.last)
            + 1;
        while self.log_first < keep_from && self.log.pop_front().is_some() {
            self.log_first += 1;
        }
        self.log_first = self.log_first.max(keep_from.min(self.last + 1));
    }

    /// Sends what the backups have not yet been sent: a batch of entries per stream, the next
    /// update per idle seed backup.
    fn flush(&mut self) {
        self.dirty = false;
        let Primary {
            cfg,
            now,
            state,
            last,
            log,
            log_first,
            backups,
            links,
            out,
            next_conn,
            ..
        } = self;
        let entry = |seq: Seq| &log[(seq - *log_first) as usize];
        for (port, link) in backups.iter_mut() {
            match link {
                Link::Stream {
                    conn,
                    sent,
                    last_sent,
                    ..
                } => {
                    if *sent < *last {
                        *last_sent = *now;
                    }
                    while *sent < *last {
                        let n = (*last - *sent).min(wire::MAX_BATCH as u64);
                        let ops = (*sent + 1..=*sent + n).map(|s| entry(s).0).collect();
                        let msg = StreamMsg::Entries {
                            epoch: cfg.epoch,
                            first: *sent + 1,
                            ops,
                        };
                        out.push_back(Output::Send {
                            conn: *conn,
                            line: wire::format_stream(&msg),
                        });
                        *sent += n;
                    }
                }
                Link::Seed {
                    acked,
                    inflight: inflight @ None,
                    retry_at: None,
                    ..
                } => {
                    let (seq, value) = match *acked {
                        None => (*last, state.value()),
                        Some(a) if a < *last => (a + 1, entry(a + 1).1),
                        Some(_) => continue,
                    };
                    *next_conn += 1;
                    let conn = ConnId::Outbound(*next_conn);
                    out.push_back(Output::Connect {
                        conn,
                        addr: crate::addr::Addr::local(*port),
                    });
                    out.push_back(Output::Send {
                        conn,
                        line: format!("UPDATE:{value}"),
                    });
                    let timeout = cfg.seed_push_timeout_ms;
                    *inflight = Some((conn, seq, now.after(timeout)));
                    links.insert(conn, *port);
                }
                Link::Seed { .. } => {}
            }
        }
    }
}

impl Machine for Primary {
    fn handle(&mut self, now: Millis, input: Input<'_>) {
        self.now = now;
        match input {
            Input::Line { conn, line } => self.on_line(conn, line),
            Input::LineTooLong { conn } => {
                if let Some(port) = self.links.get(&conn).copied() {
                    self.drop_backup(port, "it sent an overlong line");
                } else {
                    let value = self.state.value();
                    self.sessions.refuse_overlong(
                        conn,
                        &|_| wire::value_reply(value),
                        &mut self.out,
                    );
                }
            }
            Input::Closed { conn } => self.on_closed(conn),
            Input::Accepted { .. } => {}
            Input::Tick => {
                let mut timed_out = Vec::new();
                let mut silent = Vec::new();
                for (port, link) in self.backups.iter_mut() {
                    if let Link::Stream {
                        conn,
                        sent,
                        last_sent,
                        last_heard,
                        ..
                    } = link
                    {
                        if now.0.saturating_sub(last_heard.0) >= self.cfg.backup_timeout_ms {
                            silent.push(*port);
                        } else if now.0.saturating_sub(last_sent.0) >= self.cfg.heartbeat_ms {
                            let beat = StreamMsg::Heartbeat {
                                epoch: self.cfg.epoch,
                                seq: *sent,
                            };
                            self.out.push_back(Output::Send {
                                conn: *conn,
                                line: wire::format_stream(&beat),
                            });
                            *last_sent = now;
                        }
                    }
                    if let Link::Seed {
                        retry_at, inflight, ..
                    } = link
                    {
                        if retry_at.is_some_and(|t| t <= now) {
                            *retry_at = None;
                            self.dirty = true;
                        }
                        if let Some((conn, _, deadline)) = *inflight
                            && deadline <= now
                        {
                            timed_out.push((*port, conn));
                        }
                    }
                }
                for (port, conn) in timed_out {
                    self.links.remove(&conn);
                    self.out.push_back(Output::Close { conn });
                    self.push_failed(port);
                }
                let timeout = self.cfg.backup_timeout_ms;
                for port in silent {
                    self.drop_backup(port, &format!("not heard from for {timeout} ms"));
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_empty() && self.dirty {
            self.flush();
        }
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.backups
            .values()
            .filter_map(|l| match l {
                Link::Seed {
                    retry_at, inflight, ..
                } => retry_at.or(inflight.map(|(_, _, deadline)| deadline)),
                Link::Stream {
                    last_sent,
                    last_heard,
                    ..
                } => Some(
                    last_sent
                        .after(self.cfg.heartbeat_ms)
                        .min(last_heard.after(self.cfg.backup_timeout_ms)),
                ),
            })
            .min()
    }
}
