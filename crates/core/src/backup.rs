//! A backup: serves reads from its own replica, forwards writes to the primary, and applies what
//! the primary sends it.
//!
//! Start-up follows the seed and then tries for more. The backup sends the bare `JOIN:port` (which
//! any seed primary understands), retrying with backoff until the primary answers. Once joined, it
//! asks for a ditto stream with `SYNC:port` on a fresh connection. A ditto primary answers with a
//! `SNAPSHOT` of its current state and then streams every later entry in order over that
//! connection, so the backup starts from the primary's state rather than 0 and applies exactly the
//! primary's order. A reply that is not a stream message means the primary speaks only the seed,
//! and the backup then applies the `UPDATE:v` requests the primary pushes, as the seed says. A
//! closed connection is ambiguous (a seed primary that hangs up on unknown verbs, or a network
//! fault): the backup joins again, and after [`BackupConfig::sync_attempts`] such failures in a
//! row joins once more and settles for the seed protocol. Silence for
//! [`BackupConfig::sync_timeout_ms`] makes it act as a seed backup while still listening for a
//! late snapshot, for as long again. Its replica is served only once it is known to be current:
//! after a snapshot, a push, an explicit "no" to `SYNC`, or [`BackupConfig::seed_grace_ms`] after
//! the seed-mode `JOIN` (a seed primary pushes nothing until the next write).
//!
//! A streaming backup answers the primary's heartbeats, and a stream silent for
//! [`BackupConfig::stream_timeout_ms`] is taken for dead: the backup joins again.
//!
//! A client's `WRITE:v` is forwarded. On a stream it goes as `PROPOSE:SET v` over one persistent,
//! pipelined connection; the primary answers `COMMITTED:epoch:seq` and the backup acknowledges the
//! client only once its own replica has applied that entry, so a client always reads its own writes
//! through the same backup. Under a seed-only primary the write goes as `UPDATE:v` on a connection
//! of its own; the seed primary's rule (it pushes the update to every backup before it
//! acknowledges) gives the same guarantee, which the backup checks: it acknowledges the client
//! only if the value was pushed to it after the write was sent, and otherwise reports the outcome
//! unknown. A write that arrives while the backup is between primaries (joining
//! or syncing) waits until it knows which of the two paths is right, and fails as "not applied"
//! after [`BackupConfig::forward_hold_ms`]: forwarding it as a plain `UPDATE` to a ditto primary
//! that no longer streams to this backup would acknowledge it before this replica holds it.

use std::collections::{BTreeMap, VecDeque};

use crate::event::{ConnId, Input, LogLevel, Machine, Millis, Output};
use crate::op::{Op, Register, Seq};
use crate::session::Sessions;
use crate::wire::{self, Request, StreamMsg};

/// How many recent `UPDATE` pushes a backup remembers as evidence for its forwarded writes.
const MAX_RECENT_PUSHES: usize = 4096;

/// Settings of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupConfig {
    /// The port this backup listens on, announced in `JOIN`.
    pub port: u16,
    /// The primary's port.
    pub primary_port: u16,
    /// First delay before retrying a `JOIN` the primary did not answer; doubles on every failure.
    pub join_retry_min_ms: u64,
    /// The longest delay between two `JOIN` attempts.
    pub join_retry_max_ms: u64,
    /// How long to wait for the primary's answer to `SYNC`.
    pub sync_timeout_ms: u64,
    /// How many `SYNC`s in a row may go unanswered (closed or timed out) before the backup
    /// decides that its primary speaks only the seed protocol.
    pub sync_attempts: u32,
    /// How long a client's write may wait for the backup to (re)join before it fails unsent.
    pub forward_hold_ms: u64,
    /// A stream that carries nothing (not even the primary's heartbeats) for this long is taken
    /// for dead: the backup closes it and joins again.
    pub stream_timeout_ms: u64,
    /// After settling for the seed protocol with a fresh `JOIN`, how long to wait for the
    /// primary's first push before serving reads from the seed's initial state.
    pub seed_grace_ms: u64,
    /// How long a write forwarded as a seed `UPDATE` may wait for the primary's answer before
    /// its client is told the outcome is unknown.
    pub forward_timeout_ms: u64,
}

impl BackupConfig {
    /// Defaults for a backup on `port` whose primary listens on `primary_port`.
    pub fn new(port: u16, primary_port: u16) -> BackupConfig {
        BackupConfig {
            port,
            primary_port,
            join_retry_min_ms: 100,
            join_retry_max_ms: 2_000,
            sync_timeout_ms: 1_000,
            sync_attempts: 3,
            forward_hold_ms: 2_000,
            stream_timeout_ms: 3_000,
            seed_grace_ms: 1_000,
            forward_timeout_ms: 10_000,
        }
    }
}

/// Where the backup stands with its primary.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// Not yet started.
    Idle,
    /// A `JOIN` is under way on `conn` (its answer due at `retry_at`), or the next attempt is
    /// due at `retry_at`. With `then_seed`, an acknowledged join settles for the seed protocol
    /// instead of asking for a stream.
    Joining {
        conn: Option<ConnId>,
        retry_at: Option<Millis>,
        attempt: u32,
        then_seed: bool,
    },
    /// Joined; `SYNC` sent on `conn`, answer due by `deadline`.
    Syncing { conn: ConnId, deadline: Millis },
    /// Fed by the primary's stream on `conn`.
    Streaming { conn: ConnId },
    /// The primary speaks only the seed: it pushes `UPDATE:v` requests.
    SeedOnly,
}

/// The backup role. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backup {
    cfg: BackupConfig,
    now: Millis,
    state: Register,
    /// Epoch and sequence number of the last entry applied from a stream.
    epoch: u64,
    applied: Seq,
    phase: Phase,
    /// Whether the replica has ever been brought up to date by a primary (a snapshot, or a
    /// seed-only primary's acknowledgement of `JOIN`). Until then its 0 is not the store's value,
    /// and reads are refused rather than answered with it.
    joined: bool,
    sessions: Sessions,
    next_conn: u64,
    next_token: u64,
    /// The persistent `PROPOSE` connection, and the (token, client) of each proposal on it, in order.
    propose_conn: Option<ConnId>,
    proposals: VecDeque<(u64, ConnId)>,
    /// One-shot `UPDATE` forwards: connection -> (token, client, value, pushes seen when sent,
    /// when to give up on the answer).
    forwards: BTreeMap<ConnId, (u64, ConnId, i64, u64, Millis)>,
    /// `UPDATE` pushes applied so far, and the latest of them (number, value). A seed primary
    /// pushes a write to every backup it counts before it acknowledges the writer; so a
    /// forwarded write's acknowledgement means "this replica has it" only if its value was
    /// pushed here after it was sent. Without that evidence (the primary may have stopped
    /// counting this backup) the client is told the outcome is unknown.
    pushes: u64,
    recent_pushes: VecDeque<(u64, i64)>,
    /// Committed writes not yet applied here, by (epoch, seq).
    awaiting_apply: BTreeMap<(u64, Seq), Vec<(u64, ConnId)>>,
    /// Writes waiting until the backup knows how to forward them: (token, client, value, give-up time).
    held: VecDeque<(u64, ConnId, i64, Millis)>,
    /// `SYNC`s in a row that were closed or answered out of turn.
    sync_failures: u32,
    /// A `SYNC` connection that went unanswered past its deadline while the backup settled for
    /// the seed protocol: a slow ditto primary may still answer on it with a snapshot.
    late_sync: Option<(ConnId, Millis)>,
    /// When the stream last carried a line.
    stream_heard: Millis,
    /// Until when a backup that settled for the seed protocol after a fresh `JOIN` waits for a
    /// first push before it serves its own value. A ditto primary pushes its value right after
    /// the `JOIN`; a seed primary pushes nothing until the next write, and the seed's backups
    /// start from 0, so past this grace so does this one.
    seed_grace: Option<Millis>,
    /// Writes of each client that wait for an earlier `READ` of the same connection to be
    /// answered before they are forwarded: (token, value).
    deferred: BTreeMap<ConnId, VecDeque<(u64, i64)>>,
    out: VecDeque<Output>,
}

impl Backup {
    /// A backup with value 0 that will join its primary on its first input.
    pub fn new(cfg: BackupConfig) -> Backup {
        Backup {
            cfg,
            now: Millis(0),
            state: Register::default(),
            epoch: 0,
            applied: 0,
            phase: Phase::Idle,
            joined: false,
            sessions: Sessions::default(),
            next_conn: 0,
            next_token: 0,
            propose_conn: None,
            proposals: VecDeque::new(),
            forwards: BTreeMap::new(),
            pushes: 0,
            recent_pushes: VecDeque::new(),
            awaiting_apply: BTreeMap::new(),
            held: VecDeque::new(),
            sync_failures: 0,
            late_sync: None,
            stream_heard: Millis(0),
            seed_grace: None,
            deferred: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// This backup's replica.
    pub fn value(&self) -> i64 {
        self.state.value()
    }

    /// Epoch and sequence number of the last entry applied from a stream.
    pub fn applied(&self) -> (u64, Seq) {
        (self.epoch, self.applied)
    }

    /// Whether the backup is fed by a ditto stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming { .. })
    }

    /// The `STATUS` reply.
    pub fn status(&self) -> String {
        let mode = match self.phase {
            Phase::Idle | Phase::Joining { .. } => "joining",
            Phase::Syncing { .. } => "syncing",
            Phase::Streaming { .. } => "stream",
            Phase::SeedOnly => "seed",
        };
        format!(
            "STATUS:role=backup port={} primary={} mode={mode} epoch={} applied={} value={}",
            self.cfg.port,
            self.cfg.primary_port,
            self.epoch,
            self.applied,
            self.state.value()
        )
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Output::Log { level, message });
    }

    fn connect_primary(&mut self) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId::Outbound(self.next_conn);
        self.out.push_back(Output::Connect {
            conn,
            addr: crate::addr::Addr::local(self.cfg.primary_port),
        });
        conn
    }

    fn send(&mut self, conn: ConnId, line: String) {
        self.out.push_back(Output::Send { conn, line });
    }

    fn start_join(&mut self, attempt: u32, then_seed: bool) {
        let conn = self.connect_primary();
        self.send(conn, format!("JOIN:{}", self.cfg.port));
        self.phase = Phase::Joining {
            conn: Some(conn),
            retry_at: Some(self.now.after(self.cfg.sync_timeout_ms)),
            attempt,
            then_seed,
        };
    }

    fn retry_join(&mut self, attempt: u32, why: &str) {
        let delay = self
            .cfg
            .join_retry_min_ms
            .saturating_mul(1 << attempt.min(20))
            .min(self.cfg.join_retry_max_ms);
        self.log(
            LogLevel::Warn,
            format!(
                "primary :{} {why}; joining again in {delay} ms",
                self.cfg.primary_port
            ),
        );
        self.phase = Phase::Joining {
            conn: None,
            retry_at: Some(self.now.after(delay)),
            attempt: attempt.saturating_add(1),
            then_seed: false,
        };
    }

    /// Settles for the seed protocol. `definite` when the primary said it does not take `SYNC`:
    /// the replica then starts at 0 as the seed's backups do. Otherwise (the primary went
    /// silent) the replica's value is served only once the primary has pushed one.
    fn become_seed_only(&mut self, why: &str, definite: bool) {
        if let Phase::Syncing { conn, .. } = self.phase
            && self.late_sync.map(|(c, _)| c) != Some(conn)
        {
            self.out.push_back(Output::Close { conn });
        }
        self.phase = Phase::SeedOnly;
        self.joined |= definite;
        self.release_held();
        self.log(
            LogLevel::Info,
            format!(
                "joined primary :{} ({why}); it speaks only the seed protocol, applying its UPDATE pushes",
                self.cfg.primary_port
            ),
        );
    }

    /// A `SYNC` that was closed or answered out of turn: join again and ask again, or, after too
    /// many, join once more and settle for the seed protocol. Settling needs that last `JOIN`:
    /// a ditto primary that saw the `SYNC` dropped this backup when its connection closed, and a
    /// seed-only backup must be registered to get the updates.
    fn sync_unanswered(&mut self, why: &str) {
        if let Phase::Syncing { conn, .. } = self.phase {
            self.out.push_back(Output::Close { conn });
        }
        self.sync_failures += 1;
        if self.sync_failures >= self.cfg.sync_attempts {
            self.log(
                LogLevel::Warn,
                format!(
                    "primary :{} {why}; joining for the seed protocol",
                    self.cfg.primary_port
                ),
            );
            self.start_join(0, true);
        } else {
            let why = format!("{why} (SYNC attempt {})", self.sync_failures);
            self.retry_join(self.sync_failures - 1, &why);
        }
    }

    fn on_line(&mut self, conn: ConnId, line: &[u8]) {
        match self.phase {
            Phase::Joining {
                conn: Some(c),
                attempt,
                then_seed,
                ..
            } if c == conn => {
                self.out.push_back(Output::Close { conn });
                if wire::is_error_reply(line) {
                    let reply = String::from_utf8_lossy(line).into_owned();
                    return self.retry_join(attempt, &format!("refused JOIN ({reply})"));
                }
                if then_seed {
                    self.seed_grace = Some(self.now.after(self.cfg.seed_grace_ms));
                    return self.become_seed_only("SYNC went unanswered", false);
                }
                let sync = self.connect_primary();
                self.send(sync, format!("SYNC:{}", self.cfg.port));
                self.phase = Phase::Syncing {
                    conn: sync,
                    deadline: self.now.after(self.cfg.sync_timeout_ms),
                };
                return;
            }
            Phase::Syncing { conn: c, .. } if c == conn => {
                return match wire::parse_stream(line) {
                    Ok(StreamMsg::Snapshot { epoch, seq, value }) => {
                        self.start_streaming(conn, epoch, seq, value)
                    }
                    // A stream message other than a snapshot proves a ditto primary, out of turn.
                    Ok(_) => self.sync_unanswered("answered SYNC out of turn"),
                    Err(_) => self.become_seed_only("it did not take SYNC", true),
                };
            }
            _ if self.late_sync.map(|(c, _)| c) == Some(conn) => {
                self.late_sync = None;
                return match wire::parse_stream(line) {
                    Ok(StreamMsg::Snapshot { epoch, seq, value }) => {
                        self.start_streaming(conn, epoch, seq, value)
                    }
                    _ => self.out.push_back(Output::Close { conn }),
                };
            }
            Phase::Streaming { conn: c } if c == conn => return self.on_stream(conn, line),
            _ => {}
        }
        if self.propose_conn == Some(conn) {
            if let Some((token, client)) = self.proposals.pop_front() {
                self.on_proposal_reply(token, client, line);
            }
            return;
        }
        if let Some((token, client, v, pushes_then, _)) = self.forwards.remove(&conn) {
            self.out.push_back(Output::Close { conn });
            let pushed_since = self
                .recent_pushes
                .iter()
                .any(|&(n, pushed)| n > pushes_then && pushed == v);
            let reply = if wire::is_error_reply(line) {
                String::from_utf8_lossy(line).into_owned()
            } else if pushed_since {
                wire::ACK.to_owned()
            } else {
                wire::err_reply(
                    "the primary acknowledged a write this backup was not sent; outcome unknown",
                )
            };
            self.resolve(client, token, reply);
            return;
        }
        self.on_request(conn, line);
    }

    /// The primary answered `SYNC` (in time or late) with a snapshot: `conn` is now the stream.
    fn start_streaming(&mut self, conn: ConnId, epoch: u64, seq: Seq, value: i64) {
        self.phase = Phase::Streaming { conn };
        self.sync_failures = 0;
        self.install(conn, epoch, seq, value);
        self.release_held();
        self.log(
            LogLevel::Info,
            format!(
                "joined primary :{} and synced at entry {seq} of epoch {epoch}",
                self.cfg.primary_port
            ),
        );
    }

    fn on_request(&mut self, conn: ConnId, line: &[u8]) {
        let value = self.state.value();
        let reply = match wire::parse_request(line) {
            Ok(Request::Read) if self.joined => {
                return self
                    .sessions
                    .read(conn, &|_| wire::value_reply(value), &mut self.out);
            }
            Ok(Request::Read) => {
                wire::err_reply("not joined to the primary yet; try again shortly")
            }
            Ok(Request::ReadLinearizable) => wire::err_reply(format!(
                "not the primary; the primary is {}",
                crate::addr::Addr::local(self.cfg.primary_port)
            )),
            Ok(Request::Write(v) | Request::TaggedWrite { value: v, .. }) => {
                return self.forward(conn, v);
            }
            Ok(Request::Update(v)) => {
                if self.is_streaming() {
                    wire::err_reply(
                        "this backup follows its primary's SYNC stream; UPDATE is not accepted",
                    )
                } else {
                    self.state.apply(&Op::Set(v));
                    // A pushed value is the primary's state at the time: safe to serve.
                    self.joined = true;
                    self.pushes += 1;
                    self.recent_pushes.push_back((self.pushes, v));
                    if self.recent_pushes.len() > MAX_RECENT_PUSHES {
                        self.recent_pushes.pop_front();
                    }
                    wire::ACK.to_owned()
                }
            }
            Ok(Request::Status) => self.status(),
            Ok(
                Request::Join(_)
                | Request::Sync(_)
                | Request::Acked(_)
                | Request::Propose(_)
                | Request::Failover(_),
            ) => wire::err_reply(format!(
                "this is a backup; the primary listens on port {}",
                self.cfg.primary_port
            )),
            Err(e) => wire::err_reply(e),
        };
        let value = self.state.value();
        self.sessions
            .reply(conn, reply, &|_| wire::value_reply(value), &mut self.out);
    }

    /// Sends a client's write to the primary; the client's reply waits for the outcome.
    ///
    /// A write pipelined behind a `READ` of the same connection that is still waiting (for an
    /// earlier write) is deferred until that read is answered; otherwise the read could see it.
    fn forward(&mut self, client: ConnId, v: i64) {
        self.next_token += 1;
        let token = self.next_token;
        self.sessions.pending(client, token);
        if !self.deferred.contains_key(&client) && !self.sessions.has_read_before(client, token) {
            return self.send_forward(token, client, v);
        }
        self.deferred
            .entry(client)
            .or_default()
            .push_back((token, v));
        self.release_deferred(client);
    }

    /// Forwards the deferred writes of `client` that no unanswered read precedes any more.
    fn release_deferred(&mut self, client: ConnId) {
        while let Some(queue) = self.deferred.get_mut(&client) {
            let Some(&(token, v)) = queue.front() else {
                self.deferred.remove(&client);
                return;
            };
            if self.sessions.has_read_before(client, token) {
                return;
            }
            queue.pop_front();
            self.send_forward(token, client, v);
        }
    }

    /// Gives a pending request its reply, then lets through what was waiting behind it.
    fn resolve(&mut self, client: ConnId, token: u64, reply: String) {
        let value = self.state.value();
        self.sessions.resolve(
            client,
            token,
            reply,
            &|_| wire::value_reply(value),
            &mut self.out,
        );
        if self.deferred.contains_key(&client) {
            self.release_deferred(client);
        }
    }

    /// Forwards a write on the path the current phase calls for, or holds it until there is one.
    fn send_forward(&mut self, token: u64, client: ConnId, v: i64) {
        if self.is_streaming() {
            let conn = match self.propose_conn {
                Some(conn) => conn,
                None => {
                    let conn = self.connect_primary();
                    self.propose_conn = Some(conn);
                    conn
                }
            };
            self.send(conn, format!("PROPOSE:{}", Op::Set(v)));
            self.proposals.push_back((token, client));
        } else if self.phase == Phase::SeedOnly {
            let conn = self.connect_primary();
            self.send(conn, format!("UPDATE:{v}"));
            let give_up = self.now.after(self.cfg.forward_timeout_ms);
            self.forwards
                .insert(conn, (token, client, v, self.pushes, give_up));
        } else {
            let give_up = self.now.after(self.cfg.forward_hold_ms);
            self.held.push_back((token, client, v, give_up));
        }
    }

    /// Sends the writes held while joining, now that the path is known.
    fn release_held(&mut self) {
        for (token, client, v, _) in std::mem::take(&mut self.held) {
            self.send_forward(token, client, v);
        }
    }

    /// Fails the held writes whose time is up: they were never sent, so they were not applied.
    fn expire_held(&mut self) {
        while let Some(&(token, client, _, give_up)) = self.held.front() {
            if give_up > self.now {
                break;
            }
            self.held.pop_front();
            let err = wire::err_reply("not joined to the primary; write not applied");
            self.resolve(client, token, err);
        }
    }

    fn on_proposal_reply(&mut self, token: u64, client: ConnId, line: &[u8]) {
        if let Some(pos) = wire::parse_committed(line) {
            if pos <= (self.epoch, self.applied) {
                self.resolve(client, token, wire::ACK.to_owned());
            } else {
                self.awaiting_apply
                    .entry(pos)
                    .or_default()
                    .push((token, client));
            }
        } else {
            let reply = if wire::is_error_reply(line) {
                String::from_utf8_lossy(line).into_owned()
            } else {
                wire::ACK.to_owned()
            };
            self.resolve(client, token, reply);
        }
    }

    fn on_stream(&mut self, conn: ConnId, line: &[u8]) {
        self.stream_heard = self.now;
        match wire::parse_stream(line) {
            Ok(StreamMsg::Heartbeat { epoch, seq })
                if (epoch, seq) == (self.epoch, self.applied) =>
            {
                self.send(conn, format!("ACKED:{}", self.applied));
            }
            Ok(StreamMsg::Snapshot { epoch, seq, value }) => self.install(conn, epoch, seq, value),
            Ok(StreamMsg::Entries { epoch, first, ops })
                if epoch == self.epoch && first == self.applied + 1 =>
            {
                for op in &ops {
                    self.state.apply(op);
                }
                self.applied += ops.len() as Seq;
                self.send(conn, format!("ACKED:{}", self.applied));
                self.release_applied();
            }
            _ => {
                self.out.push_back(Output::Close { conn });
                self.retry_join(0, "sent an unexpected stream message");
            }
        }
    }

    fn install(&mut self, conn: ConnId, epoch: u64, seq: Seq, value: i64) {
        self.stream_heard = self.now;
        self.joined = true;
        self.epoch = epoch;
        self.applied = seq;
        self.state = Register::new(value);
        self.send(conn, format!("ACKED:{seq}"));
        self.release_applied();
    }

    /// Acknowledges the clients whose committed writes this replica now holds.
    fn release_applied(&mut self) {
        let later = self
            .awaiting_apply
            .split_off(&(self.epoch, self.applied.saturating_add(1)));
        let ready = std::mem::replace(&mut self.awaiting_apply, later);
        for (token, client) in ready.into_values().flatten() {
            self.resolve(client, token, wire::ACK.to_owned());
        }
    }

    /// Gives up on the proposals in flight: their outcome is unknown.
    fn drop_proposals(&mut self) {
        if let Some(conn) = self.propose_conn.take() {
            self.out.push_back(Output::Close { conn });
        }
        for (token, client) in std::mem::take(&mut self.proposals) {
            let err = wire::err_reply("lost the connection to the primary; outcome unknown");
            self.resolve(client, token, err);
        }
    }

    /// Gives up on seed forwards the primary has not answered in time.
    fn expire_forwards(&mut self) {
        let now = self.now;
        let due: Vec<ConnId> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.4 <= now)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in due {
            if let Some((token, client, ..)) = self.forwards.remove(&conn) {
                self.out.push_back(Output::Close { conn });
                let err = wire::err_reply("no answer from the primary; outcome unknown");
                self.resolve(client, token, err);
            }
        }
    }

    fn on_closed(&mut self, conn: ConnId) {
        match self.phase {
            Phase::Joining {
                conn: Some(c),
                attempt,
                ..
            } if c == conn => return self.retry_join(attempt, "is not answering"),
            _ if self.late_sync.map(|(c, _)| c) == Some(conn) => {
                // A ditto primary that registered this SYNC has now dropped this backup.
                self.late_sync = None;
                if self.phase == Phase::SeedOnly {
                    return self.retry_join(0, "closed a late SYNC");
                }
                return;
            }
            Phase::Syncing { conn: c, .. } if c == conn => {
                return self.sync_unanswered("it closed the SYNC connection");
            }
            Phase::Streaming { conn: c } if c == conn => {
                return self.retry_join(0, "closed the stream");
            }
            _ => {}
        }
        if self.propose_conn == Some(conn) {
            self.drop_proposals();
        } else if let Some((token, client, _, _, _)) = self.forwards.remove(&conn) {
            let err = wire::err_reply("primary unreachable; outcome unknown");
            self.resolve(client, token, err);
        } else {
            self.sessions.forget(conn);
            self.deferred.remove(&conn);
        }
    }
}

impl Machine for Backup {
    fn handle(&mut self, now: Millis, input: Input<'_>) {
        self.now = now;
        if self.phase == Phase::Idle {
            self.start_join(0, false);
        }
        match input {
            Input::Line { conn, line } => self.on_line(conn, line),
            Input::LineTooLong { conn } => {
                let value = self.state.value();
                self.sessions
                    .refuse_overlong(conn, &|_| wire::value_reply(value), &mut self.out);
            }
            Input::Closed { conn } => self.on_closed(conn),
            Input::Accepted { .. } => {}
            Input::Tick => {
                match self.phase {
                    Phase::Joining {
                        conn,
                        retry_at: Some(t),
                        attempt,
                        then_seed,
                    } if t <= now => {
                        // An unanswered JOIN is abandoned; a due retry is made.
                        if let Some(conn) = conn {
                            self.out.push_back(Output::Close { conn });
                        }
                        self.start_join(attempt.saturating_add(1), then_seed);
                    }
                    Phase::Syncing { conn, deadline } if deadline <= now => {
                        // Silence is ambiguous: a seed primary ignoring SYNC, or a slow ditto
                        // primary. Serve as a seed backup, but keep listening for a snapshot.
                        let give_up = now.after(self.cfg.sync_timeout_ms);
                        self.late_sync = Some((conn, give_up));
                        self.become_seed_only("no answer to SYNC yet", false);
                    }
                    Phase::SeedOnly => {
                        if let Some(grace) = self.seed_grace
                            && grace <= now
                        {
                            self.seed_grace = None;
                            if !self.joined {
                                self.joined = true;
                                self.log(
                                    LogLevel::Info,
                                    "no value pushed since joining; serving from the seed's initial state"
                                        .to_owned(),
                                );
                            }
                        }
                        if let Some((conn, give_up)) = self.late_sync
                            && give_up <= now
                        {
                            // No late snapshot: the connection may be dead while a ditto
                            // primary has dropped this backup. Join and ask again.
                            self.late_sync = None;
                            self.out.push_back(Output::Close { conn });
                            self.sync_unanswered("did not answer SYNC");
                        }
                    }
                    Phase::Streaming { conn }
                        if now.0.saturating_sub(self.stream_heard.0)
                            >= self.cfg.stream_timeout_ms =>
                    {
                        self.out.push_back(Output::Close { conn });
                        let silent = format!(
                            "sent nothing on the stream for {} ms",
                            self.cfg.stream_timeout_ms
                        );
                        // A silent primary will not answer proposals either.
                        self.drop_proposals();
                        self.retry_join(0, &silent);
                    }
                    _ => {}
                }
                self.expire_held();
                self.expire_forwards();
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        let phase = match self.phase {
            Phase::Joining { retry_at, .. } => retry_at,
            Phase::Syncing { deadline, .. } => Some(deadline),
            Phase::Streaming { .. } => Some(self.stream_heard.after(self.cfg.stream_timeout_ms)),
            Phase::SeedOnly => {
                let grace = self.seed_grace.filter(|_| !self.joined);
                let late = self.late_sync.map(|(_, give_up)| give_up);
                grace.into_iter().chain(late).min()
            }
            _ => None,
        };
        let held = self.held.front().map(|h| h.3);
        let forwards = self.forwards.values().map(|f| f.4).min();
        phase.into_iter().chain(held).chain(forwards).min()
    }
}
