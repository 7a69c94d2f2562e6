//! A client of a whole group: it follows the primary through failovers and makes its writes
//! at-most-once.
//!
//! A [`GroupClient`] talks to one server at a time (its *session*), on one connection that it
//! keeps. It starts from the addresses it is given and learns the rest of the group from
//! `STATUS`, which it sends on a short-lived connection of its own: a seed-only server may close
//! a connection on a verb it does not know, and that must not cost the session its connection.
//!
//! - **Ditto or seed.** A server that answers `STATUS` with a ditto status line is ditto. Then
//!   the client picks a random id and tags its writes `WRITE:v:id:n` with `n = 1, 2, …`, and may
//!   retry them: the group's client table applies a tagged write at most once, and answers a
//!   duplicate of an applied write with `ACK`. A server that answers anything else is a seed
//!   server: the client sends it only the seed's lines and never retries a write it sent, since
//!   a seed server would apply it again.
//! - **Retries.** A lost connection, no reply in time, or an `ERR:` saying that the outcome is
//!   unknown or that the server cannot serve the request now (not the primary, no primary, no
//!   majority, try again) make the client find the group's primary again (asking every member
//!   it knows) and send the same request again, until a definite answer or the request's
//!   deadline.
//! - **Where requests go** ([`ReadPolicy`]): [`ReadPolicy::Sticky`] keeps the session on its
//!   server (reads are the server's own, sequentially consistent); [`ReadPolicy::Primary`]
//!   follows the primary and reads with `READ:linearizable`, which only a primary under its
//!   lease answers, so a read that reaches a node that has just become a backup is refused and
//!   retried rather than answered from a stale replica.
//!
//! Requests may be pipelined ([`GroupClient::submit_write`], [`GroupClient::next_reply`]);
//! after a failure every request in flight is sent again, in order, on a new connection.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use ditto_core::Addr;
use ditto_core::wire;
use thiserror::Error;
use tokio::time::Instant;

use crate::client::{Client, ClientError};

/// Where reads go, and whether the session follows the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Reads go to the session's server and are answered there: sequentially consistent, and
    /// an `ERR:` answer is the caller's to judge. A read that lost its connection is sent
    /// again.
    Sticky,
    /// The session follows the primary; reads are `READ:linearizable` (on a ditto group) and
    /// are retried until the primary answers one.
    Primary,
}

/// How a [`GroupClient`] behaves.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub reads: ReadPolicy,
    /// Whether the session moves to another member when its server is gone (with
    /// [`ReadPolicy::Primary`] it always follows the primary). Without it, a sticky client
    /// retries its own server until the deadline.
    pub follow: bool,
    /// How long one attempt may wait for a connection or a reply.
    pub request_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub deadline: Duration,
    /// Where to dial a member, when not at its own address (e.g. a proxy in front of it).
    pub dial: BTreeMap<Addr, Addr>,
}

impl GroupOptions {
    /// Options with `policy`, following the group, each wait bounded by `timeout` and each
    /// request by `deadline`.
    pub fn new(policy: ReadPolicy, timeout: Duration, deadline: Duration) -> GroupOptions {
        GroupOptions {
            reads: policy,
            follow: true,
            request_timeout: timeout,
            deadline,
            dial: BTreeMap::new(),
        }
    }
}

/// Why a request got no definite answer before its deadline.
#[derive(Debug, Error)]
pub enum GroupError {
    /// The last attempt got no connection or no reply.
    #[error("{error}")]
    Lost {
        server: Addr,
        error: ClientError,
        /// A write that may have been applied (some attempt of it was sent and not answered,
        /// or answered that its outcome is unknown).
        maybe_applied: bool,
    },
    /// The servers kept answering that they could not serve the request; `reply` is the last
    /// answer.
    #[error("{reply}")]
    Refused {
        server: Addr,
        reply: String,
        maybe_applied: bool,
    },
    /// A sequential request was made while pipelined ones were in flight.
    #[error("requests are in flight on this client")]
    Busy,
}

impl GroupError {
    /// Whether the request may have taken effect: only a write can, and only if some attempt
    /// of it was sent without being definitely refused.
    pub fn maybe_applied(&self) -> bool {
        match self {
            GroupError::Lost { maybe_applied, .. } | GroupError::Refused { maybe_applied, .. } => {
                *maybe_applied
            }
            GroupError::Busy => false,
        }
    }
}

/// The session moved from one server to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: Addr,
    pub to: Addr,
    /// `to` is the primary, as far as the group said.
    pub primary: bool,
    /// `from` did not answer (rather than, say, redirecting to the primary).
    pub gone: bool,
}

/// What the session's server turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// Not asked yet, or no answer yet.
    Unknown,
    Ditto,
    Seed,
}

/// A request of the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    Write(i64),
    Read,
}

/// A request in flight.
#[derive(Debug)]
struct Inflight {
    id: u64,
    req: Req,
    /// The line, fixed when it was first sent (a write's tag is chosen then, once the client
    /// knows whether the server is ditto).
    line: Option<String>,
    /// Sent on the current connection.
    on_conn: bool,
    deadline: Instant,
    maybe_applied: bool,
    /// Failed for good (an untagged write that lost its connection): reported when it reaches
    /// the front.
    dead: Option<GroupError>,
}

impl Inflight {
    fn tagged(&self) -> bool {
        self.line
            .as_ref()
            .is_some_and(|l| l.matches(':').count() == 3)
    }

    fn linearizable(&self) -> bool {
        self.line.as_deref() == Some(READ_LINEARIZABLE)
    }

    /// Whether this request may be sent again after its first attempt failed.
    fn resendable(&self) -> bool {
        match self.req {
            Req::Read => true,
            Req::Write(_) => self.line.is_none() || self.tagged(),
        }
    }
}

const READ_LINEARIZABLE: &str = "READ:linearizable";

/// The most moves kept for [`GroupClient::take_moves`].
const MAX_MOVES: usize = 64;

/// What a member said to `STATUS`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatusInfo {
    role: String,
    view: u64,
    primary: Option<Addr>,
    /// The ditto members of the configuration.
    members: Vec<Addr>,
}

/// Reads a ditto `STATUS` line; `None` for anything else (a seed server's answer).
fn parse_status(line: &str) -> Option<StatusInfo> {
    let rest = line.trim().strip_prefix("STATUS:")?;
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    let role = field("role")?.to_owned();
    let members = field("members")
        .unwrap_or("")
        .split(',')
        .filter_map(|entry| {
            // id@host:port:kind:state:held
            let mut parts = entry.rsplitn(4, ':');
            let (_held, _state, kind, rest) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let (_, addr) = rest.split_once('@')?;
            (kind == "ditto").then(|| addr.parse().ok()).flatten()
        })
        .collect();
    Some(StatusInfo {
        view: field("view").and_then(|v| v.parse().ok()).unwrap_or(0),
        primary: field("primary").and_then(|p| p.parse().ok()),
        role,
        members,
    })
}

/// How an `ERR:` answer bears on a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The server cannot serve the request now; a write may have been applied.
    Unknown,
    /// The server cannot serve the request now; nothing was applied.
    Unavailable,
    /// The request itself was refused (malformed, or not allowed): retrying changes nothing.
    Definite,
}

fn refusal(reply: &str) -> Option<Refusal> {
    if !wire::is_error_reply(reply.as_bytes()) {
        return None;
    }
    let text = reply.to_ascii_lowercase();
    if text.contains("outcome unknown") {
        return Some(Refusal::Unknown);
    }
    const UNAVAILABLE: [&str; 8] = [
        "not applied",
        "not the primary",
        "no primary",
        "try again",
        "not serving reads",
        "not in touch",
        "not joined",
        "majority",
    ];
    Some(if UNAVAILABLE.iter().any(|p| text.contains(p)) {
        Refusal::Unavailable
    } else {
        Refusal::Definite
    })
}

/// The primary an `ERR:` answer names (`...; the primary is <host:port>`).
fn primary_hint(reply: &str) -> Option<Addr> {
    let (_, rest) = reply.split_once("the primary is ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A random nonzero client id: two clients that picked the same id would have each other's
/// writes taken for duplicates.
fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// A client of a replicated group. See the module documentation.
#[derive(Debug)]
pub struct GroupClient {
    opts: GroupOptions,
    /// The members known, the addresses given first.
    members: Vec<Addr>,
    server: Addr,
    conn: Option<Client>,
    /// Whether the current connection's server has been asked `STATUS` (once per connection
    /// while the flavor is unknown).
    probed: bool,
    flavor: Flavor,
    primary: Option<Addr>,
    id: u64,
    number: u64,
    next_id: u64,
    inflight: VecDeque<Inflight>,
    /// How many requests at the front of `inflight` were sent on the current connection (or
    /// failed for good): the next to send is `inflight[sent]`.
    sent: usize,
    moves: Vec<Move>,
    /// Failures since the last answer, for the backoff between retries.
    failures: u32,
}

impl GroupClient {
    /// A client that starts at `servers[0]` and knows the others as members. Nothing is sent
    /// until the first request.
    ///
    /// # Panics
    ///
    /// If `servers` is empty.
    pub fn new(servers: Vec<Addr>, opts: GroupOptions) -> GroupClient {
        assert!(!servers.is_empty(), "a group client needs an address");
        GroupClient {
            opts,
            server: servers[0].clone(),
            members: servers,
            conn: None,
            probed: false,
            flavor: Flavor::Unknown,
            primary: None,
            id: random_id(),
            number: 0,
            next_id: 0,
            inflight: VecDeque::new(),
            sent: 0,
            moves: Vec::new(),
            failures: 0,
        }
    }

    /// The server the session talks to now.
    pub fn server(&self) -> &Addr {
        &self.server
    }

    /// `Some(true)` once a server answered a ditto status, `Some(false)` once one answered
    /// anything else.
    pub fn is_ditto(&self) -> Option<bool> {
        match self.flavor {
            Flavor::Unknown => None,
            Flavor::Ditto => Some(true),
            Flavor::Seed => Some(false),
        }
    }

    /// The id that tags this client's writes.
    pub fn client_id(&self) -> u64 {
        self.id
    }

    /// The members known so far.
    pub fn members(&self) -> &[Addr] {
        &self.members
    }

    /// Whether a read now is `READ:linearizable` (the primary policy, on a ditto group).
    pub fn reads_linearizable(&self) -> bool {
        self.opts.reads == ReadPolicy::Primary && self.flavor == Flavor::Ditto
    }

    /// The moves of the session since the last call (the latest 64).
    pub fn take_moves(&mut self) -> Vec<Move> {
        std::mem::take(&mut self.moves)
    }

    /// Asks the group for its members and primary (and whether it is ditto) now, rather than
    /// at the first request that needs it. Returns whether any member answered.
    pub async fn learn(&mut self) -> bool {
        let answered = self.ask_members().await;
        // The session's server was just asked: no need to ask again on this connection.
        self.probed |= self.conn.is_some();
        answered
    }

    /// Writes `v`: `ACK`, or a definite `ERR:` (a malformed request), or an error once the
    /// deadline passed.
    pub async fn write(&mut self, v: i64) -> Result<String, GroupError> {
        self.sequential(Req::Write(v)).await
    }

    /// Reads, as the [`ReadPolicy`] says: `VALUE:n` or an `ERR:` answer (sticky), or an error
    /// once the deadline passed.
    pub async fn read(&mut self) -> Result<String, GroupError> {
        self.sequential(Req::Read).await
    }

    async fn sequential(&mut self, req: Req) -> Result<String, GroupError> {
        if !self.inflight.is_empty() {
            return Err(GroupError::Busy);
        }
        let id = self.submit(req).await;
        let (got, reply) = self.next_reply().await?;
        debug_assert_eq!(got, id);
        Ok(reply)
    }

    /// Sends a write without waiting for its answer; [`GroupClient::next_reply`] returns it.
    pub async fn submit_write(&mut self, v: i64) -> u64 {
        self.submit(Req::Write(v)).await
    }

    /// Sends a read without waiting for its answer.
    pub async fn submit_read(&mut self) -> u64 {
        self.submit(Req::Read).await
    }

    async fn submit(&mut self, req: Req) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.inflight.push_back(Inflight {
            id,
            req,
            line: None,
            on_conn: false,
            deadline: Instant::now() + self.opts.deadline,
            maybe_applied: false,
            dead: None,
        });
        // Send now if the connection is there; a failure is dealt with in `next_reply`.
        if self.conn.is_some() {
            let _ = self.flush().await;
        }
        id
    }

    /// The answer to the oldest request in flight, as (its id, the reply line), once it is
    /// definite; or why it got none before its deadline.
    pub async fn next_reply(&mut self) -> Result<(u64, String), GroupError> {
        loop {
            let Some(front) = self.inflight.front_mut() else {
                return Err(GroupError::Busy);
            };
            if let Some(err) = front.dead.take() {
                self.pop_front();
                return Err(err);
            }
            let deadline = front.deadline;
            if let Err(error) = self.flush().await {
                self.failed(error, deadline).await?;
                continue;
            }
            let wait = self
                .opts
                .request_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let answer = match tokio::time::timeout(wait, conn.recv()).await {
                Ok(answer) => answer,
                Err(_) => Err(ClientError::Timeout(wait)),
            };
            match answer {
                Ok(reply) => {
                    if let Some(done) = self.answered(reply, deadline).await? {
                        return Ok(done);
                    }
                }
                Err(error) => self.failed(error, deadline).await?,
            }
        }
    }

    /// Judges `reply`, the answer to the front request: `Some` if it is definite.
    async fn answered(
        &mut self,
        reply: String,
        deadline: Instant,
    ) -> Result<Option<(u64, String)>, GroupError> {
        let Some(front) = self.inflight.front_mut() else {
            return Ok(None);
        };
        let retry = match (refusal(&reply), front.req) {
            (None | Some(Refusal::Definite), _) => false,
            (Some(r), Req::Write(_)) if front.tagged() => {
                front.maybe_applied |= r == Refusal::Unknown;
                true
            }
            (Some(_), Req::Read) => front.linearizable(),
            (Some(_), Req::Write(_)) => false,
        };
        if !retry {
            self.failures = 0;
            let front = self.pop_front().expect("a front request");
            return Ok(Some((front.id, reply)));
        }
        let maybe_applied = front.maybe_applied;
        if Instant::now() >= deadline {
            let front = self.pop_front().expect("a front request");
            self.drop_conn();
            return Err(GroupError::Refused {
                server: self.server.clone(),
                reply,
                maybe_applied: maybe_applied || front.maybe_applied,
            });
        }
        let hint = primary_hint(&reply);
        self.drop_conn();
        self.recover(hint, false, deadline).await;
        Ok(None)
    }

    /// The connection failed (or the front request got no reply in time): requests in flight
    /// are sent again after recovering, or the front one fails if its deadline passed.
    async fn failed(&mut self, error: ClientError, deadline: Instant) -> Result<(), GroupError> {
        let connect_failed = matches!(
            error,
            ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::ConnectAddr { .. }
                | ClientError::ConnectAddrTimeout { .. }
        );
        let server = self.server.clone();
        for f in &mut self.inflight {
            if f.on_conn && matches!(f.req, Req::Write(_)) {
                f.maybe_applied = true;
            }
            if f.on_conn && !f.resendable() && f.dead.is_none() {
                f.dead = Some(GroupError::Lost {
                    server: server.clone(),
                    error: ClientError::Closed,
                    maybe_applied: true,
                });
            }
        }
        self.drop_conn();
        let front_dead = self.inflight.front().is_some_and(|f| f.dead.is_some());
        if front_dead {
            // Reported by `next_reply` as it is.
            if let Some(f) = self.inflight.front_mut()
                && let Some(GroupError::Lost { error: e, .. }) = f.dead.as_mut()
            {
                *e = error;
            }
            return Ok(());
        }
        let elsewhere = self.opts.follow || self.opts.reads == ReadPolicy::Primary;
        // A server that cannot be reached, with no group known to turn to: say so at once.
        let nobody_else = elsewhere && self.members.len() <= 1 && self.flavor != Flavor::Ditto;
        if Instant::now() >= deadline || (connect_failed && nobody_else) {
            let maybe_applied = self.pop_front().is_some_and(|front| front.maybe_applied);
            return Err(GroupError::Lost {
                server,
                error,
                maybe_applied,
            });
        }
        self.recover(None, true, deadline).await;
        Ok(())
    }

    /// Finds where to send the requests in flight next: the primary named by `hint`, or as the
    /// group says; waits a little first after repeated failures, so that a group in the middle
    /// of a failover is not hammered.
    async fn recover(&mut self, hint: Option<Addr>, gone: bool, deadline: Instant) {
        if self.failures > 0 {
            let backoff = Duration::from_millis(25 << self.failures.min(4));
            tokio::time::sleep_until((Instant::now() + backoff).min(deadline)).await;
        }
        self.failures += 1;
        let elsewhere = self.opts.follow || self.opts.reads == ReadPolicy::Primary;
        if !elsewhere {
            return;
        }
        let target = match hint {
            Some(p) => {
                self.primary = Some(p.clone());
                Some(p)
            }
            None => {
                let alive = self.ask_members_alive().await;
                let stay = self.opts.reads == ReadPolicy::Sticky && alive.contains(&self.server);
                if stay {
                    None
                } else if let Some(p) = self.primary.clone().filter(|p| alive.contains(p)) {
                    Some(p)
                } else if self.opts.reads == ReadPolicy::Sticky {
                    alive.first().cloned()
                } else {
                    None
                }
            }
        };
        if let Some(to) = target
            && to != self.server
        {
            let primary = self.primary.as_ref() == Some(&to);
            let from = std::mem::replace(&mut self.server, to.clone());
            if !self.members.contains(&to) {
                self.members.push(to.clone());
            }
            if self.moves.len() >= MAX_MOVES {
                // Nobody is reading them: keep the latest.
                self.moves.remove(0);
            }
            self.moves.push(Move {
                from,
                to,
                primary,
                gone,
            });
        }
    }

    /// Connects if needed and sends every request in flight not yet sent on this connection.
    async fn flush(&mut self) -> Result<(), ClientError> {
        if self.conn.is_none() {
            let conn = self
                .dial(&self.server.clone(), self.opts.request_timeout)
                .await?;
            self.conn = Some(conn);
            self.probed = false;
            self.sent = 0;
        }
        if self.sent >= self.inflight.len() {
            return Ok(());
        }
        if self.flavor == Flavor::Unknown && !self.probed {
            let policy = self.opts.reads;
            let needs_flavor = self.inflight.range(self.sent..).any(|f| {
                f.line.is_none()
                    && (matches!(f.req, Req::Write(_)) || policy == ReadPolicy::Primary)
            });
            if needs_flavor {
                // The session's connection is made first: a seed server that serves one
                // connection at a time then serves the session, and the probe goes unanswered.
                self.probed = true;
                self.probe_session().await;
            }
        }
        let (flavor, policy, client) = (self.flavor, self.opts.reads, self.id);
        while self.sent < self.inflight.len() {
            let f = &mut self.inflight[self.sent];
            if f.dead.is_some() {
                self.sent += 1;
                continue;
            }
            let line = match (&f.line, f.req) {
                (Some(line), _) => line.clone(),
                (None, Req::Write(v)) if flavor == Flavor::Ditto => {
                    self.number += 1;
                    format!("WRITE:{v}:{client}:{}", self.number)
                }
                (None, Req::Write(v)) => format!("WRITE:{v}"),
                (None, Req::Read) if flavor == Flavor::Ditto && policy == ReadPolicy::Primary => {
                    READ_LINEARIZABLE.to_owned()
                }
                (None, Req::Read) => "READ".to_owned(),
            };
            f.line = Some(line.clone());
            let conn = self.conn.as_mut().ok_or(ClientError::Closed)?;
            conn.send(&line).await?;
            self.inflight[self.sent].on_conn = true;
            self.sent += 1;
        }
        Ok(())
    }

    /// Takes the front request off the queue.
    fn pop_front(&mut self) -> Option<Inflight> {
        self.sent = self.sent.saturating_sub(1);
        self.inflight.pop_front()
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        self.sent = 0;
        for f in &mut self.inflight {
            f.on_conn = false;
        }
    }

    /// A raw request on the session's connection, once, with no retry: for lines the caller
    /// composes. A failure drops the connection; the next request makes a new one.
    pub async fn request(&mut self, line: &str) -> Result<String, ClientError> {
        if !self.inflight.is_empty() {
            return Err(ClientError::BadRequest);
        }
        if self.conn.is_none() {
            self.conn = Some(
                self.dial(&self.server.clone(), self.opts.request_timeout)
                    .await?,
            );
            self.probed = false;
        }
        let conn = self.conn.as_mut().ok_or(ClientError::Closed)?;
        let result = conn.request(line).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Talks to `addr` from now on, if a connection to it can be made; otherwise nothing
    /// changes. What the client learned about the group is kept only if `addr` is a member.
    pub async fn switch_to(&mut self, addr: Addr) -> Result<(), ClientError> {
        if !self.inflight.is_empty() {
            return Err(ClientError::BadRequest);
        }
        let conn = self.dial(&addr, self.opts.request_timeout).await?;
        if !self.members.contains(&addr) {
            self.members = vec![addr.clone()];
            self.flavor = Flavor::Unknown;
            self.primary = None;
        }
        self.server = addr;
        self.conn = Some(conn);
        self.probed = false;
        Ok(())
    }

    /// Replaces the session's connection with a new one to the same server.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.drop_conn();
        let conn = self
            .dial(&self.server.clone(), self.opts.request_timeout)
            .await?;
        self.conn = Some(conn);
        self.probed = false;
        Ok(())
    }

    /// Where `addr` is dialed.
    fn dial_addr<'a>(&'a self, addr: &'a Addr) -> &'a Addr {
        self.opts.dial.get(addr).unwrap_or(addr)
    }

    async fn dial(&self, addr: &Addr, timeout: Duration) -> Result<Client, ClientError> {
        let to = self.dial_addr(addr);
        if to.host() == ditto_core::addr::LOCALHOST {
            // Named by port, as the seed's command lines name servers.
            Client::connect(to.port(), timeout).await
        } else {
            Client::connect_addr(to, timeout).await
        }
    }

    /// How long `STATUS` may take: a ditto node answers at once, but one that has just
    /// started holds requests for up to its discovery time (1 s).
    fn probe_timeout(&self) -> Duration {
        self.opts.request_timeout.min(Duration::from_millis(1_500))
    }

    /// `STATUS` at `addr`, on a connection of its own: `Ok(Some)` for a ditto status, `Ok(None)`
    /// for any other answer (a seed server), `Err` for no answer.
    async fn status_of(&self, addr: &Addr) -> Result<Option<StatusInfo>, ClientError> {
        let timeout = self.probe_timeout();
        let mut conn = self.dial(addr, timeout).await?;
        match conn.request("STATUS").await {
            Ok(line) => Ok(parse_status(&line)),
            // Closed on an unknown verb: an answer all the same, and not ditto's.
            Err(ClientError::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the session's server what it is.
    async fn probe_session(&mut self) {
        let server = self.server.clone();
        match self.status_of(&server).await {
            Ok(Some(info)) => self.took_status(&server, info),
            Ok(None) => self.flavor = Flavor::Seed,
            Err(_) => {}
        }
    }

    /// Records what a member said: the group is ditto (unless the member follows a seed-only
    /// primary), its members, and its primary.
    fn took_status(&mut self, from: &Addr, info: StatusInfo) {
        if info.role == "seed-backup" {
            // A ditto node under a seed-only primary: the group keeps no client table.
            self.flavor = Flavor::Seed;
            return;
        }
        self.flavor = Flavor::Ditto;
        for m in info.members {
            if !self.members.contains(&m) {
                self.members.push(m);
            }
        }
        if info.role == "primary" {
            self.primary = Some(from.clone());
        }
    }

    async fn ask_members(&mut self) -> bool {
        !self.ask_members_alive().await.is_empty()
    }

    /// Asks every known member for its status at once; returns those that answered, and
    /// takes as the primary the one that says it is, in the highest view (or else the one
    /// the members of the highest view name).
    async fn ask_members_alive(&mut self) -> Vec<Addr> {
        let members = self.members.clone();
        let answers = futures::future::join_all(members.iter().map(|m| self.status_of(m))).await;
        let mut alive = Vec::new();
        let mut best: Option<(u64, bool, Addr)> = None;
        let mut infos = Vec::new();
        for (addr, answer) in members.into_iter().zip(answers) {
            match answer {
                Ok(Some(info)) => {
                    alive.push(addr.clone());
                    let claim = if info.role == "primary" {
                        Some((info.view, true, addr.clone()))
                    } else {
                        info.primary.clone().map(|p| (info.view, false, p))
                    };
                    if let Some(c) = claim
                        && best.as_ref().is_none_or(|b| (c.0, c.1) > (b.0, b.1))
                    {
                        best = Some(c);
                    }
                    infos.push((addr, info));
                }
                Ok(None) => {
                    alive.push(addr);
                    if self.flavor == Flavor::Unknown {
                        self.flavor = Flavor::Seed;
                    }
                }
                Err(_) => {}
            }
        }
        for (addr, info) in infos {
            self.took_status(&addr, info);
        }
        // Only a primary seen alive is worth going to; a named one may be the dead one.
        self.primary = best
            .map(|(_, _, p)| p)
            .filter(|p| alive.contains(p))
            .or(self.primary.take().filter(|p| alive.contains(p)));
        alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ditto_status_lines() {
        let line = "STATUS:role=backup addr=127.0.0.1:7001 port=7001 id=3 group=1f view=4 \
            status=normal primary=127.0.0.1:7000 commit=5 applied=5 last=5 value=5 \
            members=1@127.0.0.1:7000:ditto:active:5,2@[::1]:7002:ditto:inactive:-,\
            3@127.0.0.1:7001:ditto:active:5,4@127.0.0.1:7009:seed:active:5";
        let info = parse_status(line).unwrap();
        assert_eq!(info.role, "backup");
        assert_eq!(info.view, 4);
        assert_eq!(info.primary, Some(Addr::local(7000)));
        assert_eq!(
            info.members,
            [
                Addr::local(7000),
                "[::1]:7002".parse().unwrap(),
                Addr::local(7001)
            ],
            "seed-only members take no tagged writes"
        );
        let none = parse_status("STATUS:role=none view=2 primary=- members=").unwrap();
        assert_eq!(none.primary, None);
        assert!(none.members.is_empty());
        assert_eq!(parse_status("ERR:unknown command"), None);
        assert_eq!(parse_status("VALUE:3"), None);
    }

    #[test]
    fn error_replies_say_whether_to_retry() {
        for (reply, want) in [
            ("ACK", None),
            ("VALUE:1", None),
            (
                "ERR:the primary changed before the write committed; outcome unknown",
                Some(Refusal::Unknown),
            ),
            (
                "ERR:no primary reachable; write not applied",
                Some(Refusal::Unavailable),
            ),
            (
                "ERR:not the primary; the primary is 127.0.0.1:7001",
                Some(Refusal::Unavailable),
            ),
            (
                "ERR:this primary cannot reach a majority of its group; not serving reads",
                Some(Refusal::Unavailable),
            ),
            (
                "ERR:not in touch with a current primary; try again shortly or ask another server",
                Some(Refusal::Unavailable),
            ),
            (
                "ERR:bad value: expected a whole number",
                Some(Refusal::Definite),
            ),
            (
                "ERR:line too long (limit 65536 bytes); closing",
                Some(Refusal::Definite),
            ),
        ] {
            assert_eq!(refusal(reply), want, "{reply}");
        }
        assert_eq!(
            primary_hint("ERR:not the primary; the primary is 127.0.0.1:7001"),
            Some(Addr::local(7001))
        );
        assert_eq!(
            primary_hint("ERR:this is a backup; the primary is [::1]:7000 ditto=1 group=1"),
            Some("[::1]:7000".parse().unwrap())
        );
        assert_eq!(
            primary_hint("ERR:not the primary; no primary at the moment"),
            None
        );
    }

    #[test]
    fn client_ids_are_nonzero_and_differ() {
        let (a, b) = (random_id(), random_id());
        assert!(a != 0 && b != 0);
        assert_ne!(a, b);
    }
}
