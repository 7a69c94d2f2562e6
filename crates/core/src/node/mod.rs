//! A ditto server as the driver sees it: the [`Replica`] inside, and at its edge the
//! connections, the seed's text protocol, and the adapters for peers that speak only the seed.
//!
//! The node owns what the replica does not: which connection is a client, a replica-to-replica
//! stream, a seed `JOIN` handshake or a push to a seed-only backup; the reply queue of every
//! client connection (`crate::session`); and the text form of every request and reply. A node
//! whose primary turned out to speak only the seed runs a [`SeedFollower`] in place of the
//! replica: nothing of the seed's looser rules leaks into the replica.
//!
//! Effects of the replica are drained in [`Machine::poll_output`], not after each input: the
//! driver feeds every queued input first, so all the writes that arrived meanwhile leave in one
//! replication message.

mod redis;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use crate::addr::Addr;
use crate::command::Limits;
use crate::event::{ConnId, Input, LogLevel, Machine, Millis, Output};
use crate::keyspace::{KeyOp, Output as KeyOutput};
use crate::peer_auth::{self, Nonces, Secret};
use crate::replica::config::Kind;
use crate::replica::log::{Index, Tag};
use crate::replica::msg::{Hello, Msg};
use crate::replica::{Effect, JoinAnswer, Replica, ReplicaConfig, Status, WriteOutcome};
use crate::seed::{Pusher, SeedFollower, SeedTimeouts};
use crate::session::{ReadKind, Sessions, Wire};
use crate::wire::{self, Request};

/// Settings of a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeConfig {
    pub replica: ReplicaConfig,
    pub seed: SeedTimeouts,
    /// Longest key and value a request may carry.
    pub limits: Limits,
    /// The client password: until a connection gives it (`AUTH`), every command but `AUTH`,
    /// `HELLO` and `QUIT` is refused and changes nothing. Replica streams are not clients.
    pub password: Option<String>,
    /// The name Sentinel clients ask for the group by (`SENTINEL get-master-addr-by-name`).
    pub name: String,
    /// The cluster secret: with it, every replication stream must prove it knows it before a
    /// word of it is read (`crate::peer_auth`), and the seed adapters are off, since a
    /// seed-only peer cannot prove anything.
    pub secret: Option<Secret>,
    /// Where this node's challenge nonces start: drawn at random by the shell.
    pub nonce_seed: u64,
}

impl NodeConfig {
    pub fn new(replica: ReplicaConfig) -> NodeConfig {
        NodeConfig {
            replica,
            seed: SeedTimeouts::default(),
            limits: Limits::default(),
            password: None,
            name: "ditto".to_owned(),
            secret: None,
            nonce_seed: 0,
        }
    }
}

/// A request that arrived before the node knew its group, kept to be answered once it does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Held {
    Line(Vec<u8>),
    Command(Vec<Vec<u8>>),
}

/// What a connection is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Conn {
    /// Requests from a client, a seed-only peer, or anyone: the text protocol.
    Client,
    /// Replica messages from `from`, after its `PEER:` hello (and its proof, with a secret).
    PeerIn { from: Addr },
    /// A stream whose hello was answered with the challenge `nonce`; nothing on it is read
    /// until its `PROOF:`.
    PeerChallenged {
        from: Addr,
        group: u64,
        nonce: String,
    },
    /// This node's stream of replica messages to `to`, opened with a hello naming `group`;
    /// with a secret, `proven` once the challenge was answered (messages wait until then).
    PeerOut { to: Addr, group: u64, proven: bool },
    /// This node's seed `JOIN` to `to`, waiting for the answer.
    Join { to: Addr },
    /// With a client password set: this node's `AUTH:<password>` ahead of its `JOIN` to `to`,
    /// waiting for the `AUTH`'s answer (a server with the password refuses a `JOIN` before it).
    JoinAuth { to: Addr },
    /// A connection the seed adapters opened (a push, a forwarded write, a first `READ`).
    Seed,
}

/// Whether the node runs the replica or, under a seed-only primary, the seed follower.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Mode {
    Replica(Box<Replica>),
    Seed(Box<SeedFollower>),
}

/// A ditto server. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: NodeConfig,
    now: Millis,
    mode: Mode,
    conns: BTreeMap<ConnId, Conn>,
    /// The peer host of each accepted connection.
    hosts: BTreeMap<ConnId, String>,
    /// The open stream to each replica this node sends to.
    peers: BTreeMap<Addr, ConnId>,
    sessions: Sessions,
    next_conn: u64,
    next_token: u64,
    /// The client connection of each write in flight.
    writes: BTreeMap<u64, ConnId>,
    /// Writes of a connection held back behind an unanswered `READ` of the same connection.
    deferred: BTreeMap<ConnId, VecDeque<(u64, KeyOp, Option<Tag>)>>,
    /// Client requests that arrived while the node was still discovering its group.
    held: VecDeque<(ConnId, Held)>,
    /// The RESP connections, with what each chose (`crate::node` answers their commands).
    redis: BTreeMap<ConnId, redis::RedisConn>,
    /// Connections that gave the password (only kept when one is set).
    authed: BTreeSet<ConnId>,
    /// RESP connection ids, as `CLIENT ID` reports them.
    next_client_id: u64,
    nonces: Nonces,
    /// Messages for a stream of ours not yet proven (see [`Conn::PeerOut`]).
    unproven: BTreeMap<ConnId, Vec<String>>,
    /// Reads at a backup waiting for its commit point: (connection, token, barrier).
    barriers: Vec<(ConnId, u64, (u64, Index))>,
    pusher: Pusher,
    out: VecDeque<Output>,
}

impl Node {
    /// A node that starts as its configuration says: discovering (`ditto primary`) or joining
    /// its contact (`ditto backup`).
    pub fn new(cfg: NodeConfig, now: Millis) -> Node {
        let nonce_seed = cfg.nonce_seed;
        let replica = Replica::new(cfg.replica.clone(), now);
        Node {
            pusher: Pusher::new(cfg.seed.clone()),
            cfg,
            now,
            mode: Mode::Replica(Box::new(replica)),
            conns: BTreeMap::new(),
            hosts: BTreeMap::new(),
            peers: BTreeMap::new(),
            sessions: Sessions::default(),
            next_conn: 0,
            next_token: 0,
            writes: BTreeMap::new(),
            deferred: BTreeMap::new(),
            held: VecDeque::new(),
            redis: BTreeMap::new(),
            authed: BTreeSet::new(),
            next_client_id: 0,
            nonces: Nonces::new(nonce_seed),
            unproven: BTreeMap::new(),
            barriers: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// The replica, unless the node follows a seed-only primary.
    pub fn replica(&self) -> Option<&Replica> {
        match &self.mode {
            Mode::Replica(r) => Some(r),
            Mode::Seed(_) => None,
        }
    }

    /// The value reads return here.
    pub fn value(&self) -> i64 {
        match &self.mode {
            Mode::Replica(r) => r.value(),
            Mode::Seed(f) => f.value(),
        }
    }

    /// The `STATUS` reply.
    pub fn status_line(&self) -> String {
        match &self.mode {
            Mode::Replica(r) => status_line(r),
            Mode::Seed(f) => format!(
                "STATUS:role=seed-backup addr={} port={} primary={} status={} value={}",
                self.cfg.replica.addr,
                self.cfg.replica.addr.port(),
                f.primary(),
                if f.joined() { "normal" } else { "joining" },
                f.value()
            ),
        }
    }

    fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId::Outbound(self.next_conn)
    }

    fn send(&mut self, conn: ConnId, line: String) {
        self.out.push_back(Output::Send { conn, line });
    }

    fn close(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.out.push_back(Output::Close { conn });
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Output::Log { level, message });
    }

    /// The stream to the replica at `to`, opened (with its hello) if there is none.
    fn peer_conn(&mut self, to: &Addr) -> ConnId {
        if let Some(conn) = self.peers.get(to) {
            return *conn;
        }
        let conn = self.new_conn();
        self.out.push_back(Output::Connect {
            conn,
            addr: to.clone(),
        });
        self.out.push_back(Output::Stream { conn });
        let group = self.replica().map_or(0, Replica::group);
        let hello = Hello {
            group,
            from: self.cfg.replica.addr.clone(),
        };
        self.send(conn, hello.to_line());
        let proven = self.cfg.secret.is_none();
        let out = Conn::PeerOut {
            to: to.clone(),
            group,
            proven,
        };
        self.conns.insert(conn, out);
        self.peers.insert(to.clone(), conn);
        conn
    }

    // --------------------------------------------------------------------------------------
    // Input

    fn on_line(&mut self, conn: ConnId, line: &[u8]) {
        match self.conns.get(&conn).cloned() {
            Some(Conn::PeerIn { from }) => self.on_peer_line(conn, from, line),
            Some(Conn::PeerChallenged { from, group, nonce }) => {
                self.on_proof(conn, from, group, &nonce, line);
            }
            Some(Conn::PeerOut {
                to,
                group,
                proven: false,
            }) if line.starts_with(peer_auth::CHALLENGE.as_bytes()) => {
                self.on_challenge(conn, to, group, line);
            }
            // A refusal sent back on a stream of ours (an old view, another group): the
            // replica learns what it needs from the messages of the newer view itself.
            Some(Conn::PeerOut { .. }) => {}
            Some(Conn::Join { to }) => self.on_join_answer(conn, to, line),
            Some(Conn::JoinAuth { to }) if line == wire::ACK.as_bytes() => {
                self.conns.insert(conn, Conn::Join { to });
            }
            Some(Conn::JoinAuth { to }) => self.on_join_answer(conn, to, line),
            Some(Conn::Seed) => self.on_seed_line(conn, line),
            Some(Conn::Client) | None => {
                if let Some(hello) = line.strip_prefix(b"PEER:") {
                    return self.on_hello(conn, hello);
                }
                let discovering = self
                    .replica()
                    .is_some_and(|r| r.status() == Status::Discovering);
                if discovering {
                    // Until the node knows whether it belongs to a group, it cannot say what it
                    // holds: requests wait (at most the discovery time).
                    return self.held.push_back((conn, Held::Line(line.to_vec())));
                }
                self.on_request(conn, line);
            }
        }
    }

    fn on_hello(&mut self, conn: ConnId, text: &[u8]) {
        let Some(hello) = Hello::parse(text) else {
            self.send(conn, wire::err_reply("bad PEER hello"));
            return self.close(conn);
        };
        let ours = self.replica().map_or(0, Replica::group);
        if ours != 0 && hello.group != 0 && hello.group != ours {
            let err = format!(
                "{} belongs to group {:x}, this server to group {ours:x}",
                hello.from, hello.group
            );
            self.log(LogLevel::Warn, format!("refused a stream: {err}"));
            self.send(conn, wire::err_reply(err));
            return self.close(conn);
        }
        if let Some(host) = self.hosts.get(&conn) {
            // A ditto replica that joined with the seed's JOIN is not a seed-only backup.
            self.pusher.cancel_join(host, hello.from.port());
        }
        self.out.push_back(Output::Stream { conn });
        if self.cfg.secret.is_some() {
            let nonce = self.nonces.fresh();
            self.send(conn, format!("{}{nonce}", peer_auth::CHALLENGE));
            let challenged = Conn::PeerChallenged {
                from: hello.from,
                group: hello.group,
                nonce,
            };
            return {
                self.conns.insert(conn, challenged);
            };
        }
        self.conns.insert(conn, Conn::PeerIn { from: hello.from });
    }

    /// The answer to this node's challenge on a stream from `from`: the stream is read from
    /// now on if it proves the secret, else refused and closed.
    fn on_proof(&mut self, conn: ConnId, from: Addr, group: u64, nonce: &str, line: &[u8]) {
        let proof = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.strip_prefix(peer_auth::PROOF));
        let me = &self.cfg.replica.addr;
        let good = match (&self.cfg.secret, proof) {
            (Some(secret), Some(proof)) => secret.verify(proof.trim(), nonce, group, &from, me),
            _ => false,
        };
        if good {
            self.conns.insert(conn, Conn::PeerIn { from });
            return;
        }
        self.log(
            LogLevel::Warn,
            format!("refused a replication stream claiming to be {from}: it did not prove the cluster secret"),
        );
        self.send(
            conn,
            wire::err_reply("this group requires the cluster secret; the stream is refused"),
        );
        self.close(conn);
    }

    /// A challenge on a stream of ours: prove the secret, then send what waited.
    fn on_challenge(&mut self, conn: ConnId, to: Addr, group: u64, line: &[u8]) {
        let Some(secret) = &self.cfg.secret else {
            return;
        };
        let nonce = String::from_utf8_lossy(&line[peer_auth::CHALLENGE.len()..]);
        let proof = secret.prove(nonce.trim(), group, &self.cfg.replica.addr, &to);
        self.send(conn, format!("{}{proof}", peer_auth::PROOF));
        self.conns.insert(
            conn,
            Conn::PeerOut {
                to,
                group,
                proven: true,
            },
        );
        for line in self.unproven.remove(&conn).unwrap_or_default() {
            self.send(conn, line);
        }
    }

    fn on_peer_line(&mut self, conn: ConnId, from: Addr, line: &[u8]) {
        let Mode::Replica(r) = &mut self.mode else {
            return self.send(
                conn,
                wire::err_reply("this server follows a seed-only primary"),
            );
        };
        let Some(msg) = Msg::parse(line) else {
            return self.send(conn, wire::err_reply("bad replication message"));
        };
        if let Err(why) = r.on_msg(self.now, from, msg) {
            self.send(conn, wire::err_reply(why));
        }
    }

    fn on_request(&mut self, conn: ConnId, line: &[u8]) {
        self.conns.entry(conn).or_insert(Conn::Client);
        let request = wire::parse_request(line);
        if let Some(refusal) = self.line_auth(conn, &request) {
            return self.reply(conn, refusal);
        }
        let reply = match request {
            Ok(Request::Read) => return self.read(conn),
            Ok(Request::ReadLinearizable) => {
                let Node {
                    mode,
                    sessions,
                    out,
                    ..
                } = self;
                return sessions.read_linearizable(conn, &|kind| read_reply(mode, kind), out);
            }
            Ok(Request::Write(v)) => return self.write(conn, KeyOp::seed_write(v), None),
            Ok(Request::TaggedWrite { value, tag }) => {
                return self.write(conn, KeyOp::seed_write(value), Some(tag));
            }
            Ok(Request::Update(v)) => match &mut self.mode {
                // A seed-only backup forwards its client's write to its primary as an UPDATE.
                Mode::Replica(_) if self.cfg.secret.is_some() => wire::err_reply(
                    "this group requires the cluster secret; seed-only backups cannot forward writes",
                ),
                Mode::Replica(r) if r.is_primary() => {
                    return self.write(conn, KeyOp::seed_write(v), None);
                }
                Mode::Replica(_) => wire::err_reply(
                    "this server follows its primary's replication stream; UPDATE is not accepted",
                ),
                Mode::Seed(f) => {
                    let out = f.on_push(v, self.now);
                    self.finish_writes(out);
                    wire::ACK.to_owned()
                }
            },
            Ok(Request::Join(port)) => self.join_request(conn, port),
            Ok(Request::Status) => self.status_line(),
            Ok(Request::Failover(to)) => match &mut self.mode {
                Mode::Replica(r) => match r.failover(to) {
                    Ok(to) => format!("ACK:handing over to {to}"),
                    Err(why) => wire::err_reply(why),
                },
                Mode::Seed(_) => wire::err_reply("this server follows a seed-only primary"),
            },
            Ok(Request::Auth(_)) => {
                wire::err_reply("AUTH given, but this server has no client password set")
            }
            Ok(Request::Sync(_) | Request::Acked(_) | Request::Propose) => {
                wire::err_reply(wire::ParseError::UnknownVerb)
            }
            Err(e) => wire::err_reply(e),
        };
        self.reply(conn, reply);
    }

    /// Queues a known reply on `conn`, after the replies owed before it.
    fn reply(&mut self, conn: ConnId, reply: impl Into<Wire>) {
        let Node {
            mode,
            sessions,
            out,
            ..
        } = self;
        sessions.reply(conn, reply, &|kind| read_reply(mode, kind), out);
    }

    fn read(&mut self, conn: ConnId) {
        self.read_kind(conn, ReadKind::Local);
    }

    /// Queues a read of the committed state; at a backup holding entries beyond its commit
    /// point, after that point reaches them (see [`Replica::read_barrier`]).
    fn read_kind(&mut self, conn: ConnId, kind: ReadKind) {
        if let Some(barrier) = self.replica().and_then(Replica::read_barrier) {
            self.next_token += 1;
            let token = self.next_token;
            self.sessions.read_after(conn, token, kind);
            return self.barriers.push((conn, token, barrier));
        }
        let Node {
            mode,
            sessions,
            out,
            ..
        } = self;
        sessions.read_kind(conn, kind, &|kind| read_reply(mode, kind), out);
    }

    /// With a password set, the line protocol's refusal of `request` on a connection that has
    /// not given it (`AUTH:<password>`), or the answer to that `AUTH`.
    fn line_auth(
        &mut self,
        conn: ConnId,
        request: &Result<Request, wire::ParseError>,
    ) -> Option<String> {
        let password = self.cfg.password.as_deref()?;
        if let Ok(Request::Auth(given)) = request {
            return Some(
                if redis::same_secret(given.as_bytes(), password.as_bytes()) {
                    self.authed.insert(conn);
                    wire::ACK.to_owned()
                } else {
                    self.authed.remove(&conn);
                    wire::err_reply("WRONGPASS invalid password")
                },
            );
        }
        if self.authed.contains(&conn) {
            return None;
        }
        Some(wire::err_reply(
            "NOAUTH authentication required; send AUTH:<password> first",
        ))
    }

    fn write(&mut self, conn: ConnId, op: KeyOp, tag: Option<Tag>) {
        self.next_token += 1;
        let token = self.next_token;
        self.writes.insert(token, conn);
        self.sessions.pending(conn, token);
        if self.deferred.contains_key(&conn) || self.sessions.has_read_before(conn, token) {
            // A write behind an unanswered read of its own connection waits: once applied,
            // it would show through in that read.
            return self
                .deferred
                .entry(conn)
                .or_default()
                .push_back((token, op, tag));
        }
        self.submit(token, op, tag);
    }

    fn submit(&mut self, token: u64, op: KeyOp, tag: Option<Tag>) {
        match &mut self.mode {
            Mode::Replica(r) => r.propose(token, op, tag),
            Mode::Seed(f) => {
                // Under a seed-only primary only the seed's register exists, and only its
                // integer writes can be forwarded.
                let Some(v) = seed_write_value(&op) else {
                    let why = "this server follows a seed-only primary, which holds only the \
                               seed's integer; the write was not applied";
                    return self.write_done(token, WriteOutcome::Refused(why.to_owned()));
                };
                self.next_conn += 1;
                let conn = ConnId::Outbound(self.next_conn);
                self.conns.insert(conn, Conn::Seed);
                let outputs = f.forward(token, v, conn, self.now);
                self.out.extend(outputs);
            }
        }
    }

    fn release_deferred(&mut self, conn: ConnId) {
        while let Some(queue) = self.deferred.get_mut(&conn) {
            let Some(&(token, ..)) = queue.front() else {
                self.deferred.remove(&conn);
                return;
            };
            if self.sessions.has_read_before(conn, token) {
                return;
            }
            if let Some((token, op, tag)) = queue.pop_front() {
                self.submit(token, op, tag);
            }
        }
    }

    fn write_done(&mut self, token: u64, outcome: WriteOutcome) {
        let Some(conn) = self.writes.remove(&token) else {
            return;
        };
        let line: Wire = match self.redis.get(&conn) {
            Some(rc) => Wire::Resp(redis::write_reply(&outcome).to_bytes(rc.version)),
            None => match outcome {
                WriteOutcome::Done(KeyOutput::Err(e)) => wire::err_reply(e),
                WriteOutcome::Done(_) => wire::ACK.to_owned(),
                WriteOutcome::Refused(why) | WriteOutcome::Unknown(why) => wire::err_reply(why),
            }
            .into(),
        };
        let Node {
            mode,
            sessions,
            out,
            ..
        } = self;
        sessions.resolve(conn, token, line, &|kind| read_reply(mode, kind), out);
        if self.deferred.contains_key(&conn) {
            self.release_deferred(conn);
        }
    }

    fn finish_writes(&mut self, done: Vec<(u64, WriteOutcome)>) {
        for (token, outcome) in done {
            self.write_done(token, outcome);
        }
    }

    /// The seed's `JOIN:port`: a ditto primary admits the sender (as a seed-only backup unless
    /// a ditto hello follows) and shows itself in the acknowledgement, so a joining ditto
    /// replica knows it may speak ditto to it. The answer is one line, as the seed's is.
    fn join_request(&mut self, conn: ConnId, port: u16) -> String {
        let host = self
            .hosts
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| crate::addr::LOCALHOST.to_owned());
        let Mode::Replica(r) = &mut self.mode else {
            return wire::err_reply("this is a backup; JOIN its primary");
        };
        let Ok(addr) = Addr::new(&host, port) else {
            return wire::err_reply(wire::ParseError::BadPort);
        };
        if addr == self.cfg.replica.addr
            || port == self.cfg.replica.addr.port() && host == self.cfg.replica.addr.host()
        {
            return wire::err_reply(format!("port {port} is this server's own port"));
        }
        let ditto = format!(
            "ditto=1 group={:x} view={} primary={}",
            r.group(),
            r.view(),
            r.primary().map_or("-".to_owned(), Addr::to_string)
        );
        if self.cfg.secret.is_some() {
            // A ditto replica reads the fields and goes on to an authenticated stream; a
            // seed-only backup, which cannot authenticate, is refused.
            wire::err_reply(format!(
                "this group requires the cluster secret; seed-only backups cannot join {ditto}"
            ))
        } else if r.is_primary() {
            self.pusher.joined(addr, self.now);
            format!("ACK {ditto}")
        } else if let Some(p) = r.primary() {
            wire::err_reply(format!("this is a backup; the primary is {p} {ditto}"))
        } else if r.group() != 0 {
            wire::err_reply(format!(
                "no primary at the moment; try again shortly {ditto}"
            ))
        } else {
            wire::err_reply("not in a group yet; try again shortly")
        }
    }

    fn on_join_answer(&mut self, conn: ConnId, to: Addr, line: &[u8]) {
        self.close(conn);
        let text = String::from_utf8_lossy(line).into_owned();
        let Mode::Replica(r) = &mut self.mode else {
            return;
        };
        if let Some(fields) = ditto_fields(&text) {
            let answer = JoinAnswer::Ditto {
                group: fields.group,
                view: fields.view,
                primary: fields.primary,
            };
            return r.on_join_answer(&to, answer);
        }
        if wire::is_error_reply(line) {
            return r.on_join_answer(&to, JoinAnswer::Failed(text));
        }
        if self.cfg.secret.is_some() {
            let why = format!(
                "{to} speaks only the seed protocol, which cannot prove the cluster secret; not following it"
            );
            return r.on_join_answer(&to, JoinAnswer::Failed(why));
        }
        // Any other acknowledgement: a primary that speaks only the seed.
        self.log(
            LogLevel::Info,
            format!("joined {to}, which speaks only the seed protocol ({text}); applying its UPDATE pushes"),
        );
        let mut follower = SeedFollower::new(to, self.cfg.seed.clone(), self.now);
        let read = self.new_conn();
        self.conns.insert(read, Conn::Seed);
        self.out.extend(follower.start(read));
        self.mode = Mode::Seed(Box::new(follower));
    }

    fn on_seed_line(&mut self, conn: ConnId, line: &[u8]) {
        self.close(conn);
        match &mut self.mode {
            Mode::Replica(r) => {
                let outcome = self.pusher.on_reply(conn, line, self.now);
                if let Some((addr, index)) = outcome.held {
                    r.seed_held(&addr, index);
                }
                if let Some((addr, why)) = outcome.failed {
                    r.seed_failed(&addr, &why);
                }
                self.out.extend(outcome.logs);
            }
            Mode::Seed(f) => {
                let done = f.on_reply(conn, line, self.now);
                self.finish_writes(done);
            }
        }
    }

    fn on_closed(&mut self, conn: ConnId) {
        self.hosts.remove(&conn);
        match self.conns.remove(&conn) {
            Some(Conn::PeerOut { to, .. }) => {
                self.peers.remove(&to);
                self.unproven.remove(&conn);
            }
            Some(Conn::Join { to } | Conn::JoinAuth { to }) => {
                if let Mode::Replica(r) = &mut self.mode {
                    r.on_join_answer(&to, JoinAnswer::Failed("no answer".to_owned()));
                }
            }
            Some(Conn::Seed) => match &mut self.mode {
                Mode::Replica(r) => {
                    let outcome = self.pusher.on_closed(conn, self.now);
                    if let Some((addr, why)) = outcome.failed {
                        r.seed_failed(&addr, &why);
                    }
                    self.out.extend(outcome.logs);
                }
                Mode::Seed(f) => {
                    let done = f.on_closed(conn, self.now);
                    self.finish_writes(done);
                }
            },
            Some(Conn::Client | Conn::PeerIn { .. } | Conn::PeerChallenged { .. }) | None => {
                self.redis.remove(&conn);
                self.authed.remove(&conn);
                self.sessions.forget(conn);
                self.deferred.remove(&conn);
                self.barriers.retain(|(c, _, _)| *c != conn);
            }
        }
    }

    /// Carries out one effect of the replica.
    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, msg } => {
                let conn = self.peer_conn(&to);
                match self.conns.get(&conn) {
                    Some(Conn::PeerOut { proven: false, .. }) => {
                        self.unproven.entry(conn).or_default().push(msg.to_line());
                    }
                    _ => self.send(conn, msg.to_line()),
                }
            }
            Effect::Join { to } => {
                let conn = self.new_conn();
                self.out.push_back(Output::Connect {
                    conn,
                    addr: to.clone(),
                });
                let join = match self.cfg.password.clone() {
                    Some(password) => {
                        self.send(conn, format!("AUTH:{password}"));
                        Conn::JoinAuth { to }
                    }
                    None => Conn::Join { to },
                };
                self.send(conn, format!("JOIN:{}", self.cfg.replica.addr.port()));
                self.conns.insert(conn, join);
            }
            Effect::WriteDone { token, outcome } => self.write_done(token, outcome),
            Effect::Log { level, message } => self.log(level, message),
        }
    }

    /// Lets through the reads whose barrier the commit point has passed.
    fn release_barriers(&mut self) {
        if self.barriers.is_empty() {
            return;
        }
        let Mode::Replica(r) = &self.mode else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.barriers)
            .into_iter()
            .partition(|(_, _, b)| r.barrier_passed(*b));
        self.barriers = waiting;
        for (conn, token, _) in ready {
            let Node {
                mode,
                sessions,
                out,
                ..
            } = self;
            sessions.release(conn, token, &|kind| read_reply(mode, kind), out);
            if self.deferred.contains_key(&conn) {
                self.release_deferred(conn);
            }
        }
    }

    /// Replays the requests held while discovering, once the node knows its group.
    fn replay_held(&mut self) {
        let discovering = self
            .replica()
            .is_some_and(|r| r.status() == Status::Discovering);
        if discovering {
            return;
        }
        for (conn, held) in std::mem::take(&mut self.held) {
            if self.conns.contains_key(&conn) || !matches!(conn, ConnId::Outbound(_)) {
                match held {
                    Held::Line(line) => self.on_request(conn, &line),
                    Held::Command(args) => self.on_command(conn, &args),
                }
            }
        }
    }

    /// What the node's shell reports of it (metrics): a snapshot, taken when asked.
    pub fn stats(&self) -> crate::stats::NodeStats {
        match &self.mode {
            Mode::Replica(r) => crate::stats::NodeStats::of_replica(r),
            Mode::Seed(f) => crate::stats::NodeStats::of_seed(&self.cfg.replica.addr, f),
        }
    }
}

/// The answer to a read now.
fn read_reply(mode: &Mode, kind: &ReadKind) -> Wire {
    if let ReadKind::Query(query, version) = kind {
        return Wire::Resp(redis::query_reply(mode, query).to_bytes(*version));
    }
    match (mode, kind) {
        (Mode::Replica(r), ReadKind::Linearizable) if !r.is_primary() => {
            wire::err_reply(not_primary(r.primary()))
        }
        (Mode::Seed(_), ReadKind::Linearizable) => wire::err_reply(
            "this server follows a seed-only primary, which serves no linearizable reads",
        ),
        (Mode::Replica(r), _) => match r.read_seed() {
            Ok(v) => wire::value_reply(v),
            Err(why) => wire::err_reply(why),
        },
        (Mode::Seed(f), _) => match f.read() {
            Ok(v) => wire::value_reply(v),
            Err(why) => wire::err_reply(why),
        },
    }
    .into()
}

/// The integer a write sets the seed register to, if it is the seed's `WRITE:v`.
fn seed_write_value(op: &KeyOp) -> Option<i64> {
    match op {
        KeyOp::Set {
            key,
            value,
            when: crate::keyspace::SetIf::Always,
            get: false,
            px: None,
        } if key == crate::keyspace::SEED_KEY => std::str::from_utf8(value).ok()?.parse().ok(),
        _ => None,
    }
}

/// Why a request only the primary serves is refused here, with a hint of where the primary is
/// (clients follow it: `...; the primary is <host:port>`).
fn not_primary(primary: Option<&Addr>) -> String {
    match primary {
        Some(p) => format!("not the primary; the primary is {p}"),
        None => "not the primary; no primary at the moment".to_owned(),
    }
}

/// The ditto fields of a `JOIN` answer: `ditto=1 group=<hex> view=<n> primary=<addr|->`.
#[derive(Debug, PartialEq, Eq)]
struct DittoFields {
    group: u64,
    view: u64,
    primary: Option<Addr>,
}

fn ditto_fields(text: &str) -> Option<DittoFields> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    if field("ditto") != Some("1") {
        return None;
    }
    Some(DittoFields {
        group: u64::from_str_radix(field("group")?, 16).ok()?,
        view: field("view")?.parse().ok()?,
        primary: field("primary").and_then(|p| p.parse().ok()),
    })
}

/// The `STATUS` line of a replica: `key=value` fields, then the members.
pub fn status_line(r: &Replica) -> String {
    let config = r.config();
    let role = if r.is_primary() {
        "primary"
    } else if r.status() == Status::Normal {
        "backup"
    } else {
        "none"
    };
    let status = match r.status() {
        Status::Discovering => "discovering",
        Status::Joining => "joining",
        Status::Recovering => "recovering",
        Status::Normal => "normal",
        Status::ViewChange => "view-change",
    };
    let id = config
        .id_of(r.addr())
        .map_or("-".to_owned(), |id| id.0.to_string());
    let mut line = format!(
        "STATUS:role={role} addr={} port={} id={id} group={:x} view={} status={status} primary={} commit={} applied={} last={} value={} members=",
        r.addr(),
        r.addr().port(),
        r.group(),
        r.view(),
        r.primary().map_or("-".to_owned(), Addr::to_string),
        r.commit(),
        r.applied().index,
        r.last().index,
        r.value()
    );
    let held: BTreeMap<&Addr, Index> = r.links().map(|(a, h, _)| (a, h)).collect();
    for (i, (id, m)) in config.members.iter().enumerate() {
        let kind = match m.kind {
            Kind::Ditto => "ditto",
            Kind::Seed => "seed",
        };
        let state = if m.active { "active" } else { "inactive" };
        let held = if m.addr == *r.addr() {
            r.last().index.to_string()
        } else {
            held.get(&m.addr).map_or("-".to_owned(), |h| h.to_string())
        };
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(line, "{sep}{}@{}:{kind}:{state}:{held}", id.0, m.addr);
    }
    line
}

impl Machine for Node {
    fn handle(&mut self, now: Millis, input: Input<'_>) {
        self.now = now;
        match input {
            Input::Accepted { conn, host } => {
                self.hosts.insert(conn, host.to_owned());
                self.conns.insert(conn, Conn::Client);
            }
            Input::Line { conn, line } => self.on_line(conn, line),
            Input::Command { conn, args } => {
                let discovering = self
                    .replica()
                    .is_some_and(|r| r.status() == Status::Discovering);
                if discovering {
                    self.held.push_back((conn, Held::Command(args.to_vec())));
                } else {
                    self.on_command(conn, args);
                }
            }
            Input::BadFrame { conn, why } => {
                let reply = crate::resp::Reply::Error(format!("ERR {why}"));
                let version = self.redis.get(&conn).map(|c| c.version).unwrap_or_default();
                let Node {
                    mode,
                    sessions,
                    out,
                    ..
                } = self;
                sessions.refuse_frame(
                    conn,
                    reply.to_bytes(version),
                    &|kind| read_reply(mode, kind),
                    out,
                );
            }
            Input::LineTooLong { conn } => match self.conns.get(&conn) {
                Some(Conn::Client) | None => {
                    let Node {
                        mode,
                        sessions,
                        out,
                        ..
                    } = self;
                    sessions.refuse_overlong(conn, &|kind| read_reply(mode, kind), out);
                }
                Some(_) => self.close(conn),
            },
            Input::Closed { conn } => self.on_closed(conn),
            Input::Tick => match &mut self.mode {
                Mode::Replica(r) => {
                    r.tick(now);
                    if !r.is_primary() {
                        return self.replay_held();
                    }
                    let outcome = self.pusher.tick(now);
                    if let Some((addr, why)) = outcome.failed {
                        r.seed_failed(&addr, &why);
                    }
                    self.out.extend(outcome.logs);
                }
                Mode::Seed(f) => {
                    let done = f.tick(now);
                    self.finish_writes(done);
                }
            },
        }
        self.replay_held();
    }

    fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.out.pop_front() {
                return Some(output);
            }
            let Mode::Replica(r) = &mut self.mode else {
                return None;
            };
            if let Some(effect) = r.poll() {
                self.effect(effect);
                continue;
            }
            if !self.barriers.is_empty() {
                let before = self.out.len();
                self.release_barriers();
                if self.out.len() > before {
                    continue;
                }
            }
            let Mode::Replica(r) = &mut self.mode else {
                return None;
            };
            // The replica is idle: feed the seed-only backups what it appended.
            let pushes = self.pusher.push(r, self.now, &mut self.next_conn);
            if pushes.is_empty() {
                return None;
            }
            for (conn, output) in pushes {
                if let Some(conn) = conn {
                    self.conns.insert(conn, Conn::Seed);
                }
                self.out.push_back(output);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        match &self.mode {
            // The seed pushes are a primary's work: their deadlines wait while it is not one.
            Mode::Replica(r) => {
                let pushes = self.pusher.next_timeout().filter(|_| r.is_primary());
                [r.next_timeout(), pushes].into_iter().flatten().min()
            }
            Mode::Seed(f) => f.next_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_answers_show_a_ditto_primary() {
        let f = ditto_fields("ACK ditto=1 group=1f view=3 primary=127.0.0.1:7000").unwrap();
        assert_eq!(
            f,
            DittoFields {
                group: 0x1f,
                view: 3,
                primary: Some(Addr::local(7000))
            }
        );
        let f =
            ditto_fields("ERR:no primary at the moment ditto=1 group=2 view=4 primary=-").unwrap();
        assert_eq!(f.primary, None);
        assert_eq!(ditto_fields("ACK"), None);
        assert_eq!(ditto_fields("JOINED"), None);
        assert_eq!(ditto_fields("ACK ditto=2 group=1 view=1"), None);
    }

    /// The lines the node sent on `conn` since the last call.
    fn replies(node: &mut Node, conn: ConnId) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(out) = node.poll_output() {
            if let Output::Send { conn: c, line } = out
                && c == conn
            {
                lines.push(line);
            }
        }
        lines
    }

    fn request(node: &mut Node, now: u64, conn: ConnId, line: &str) -> Vec<String> {
        node.handle(
            Millis(now),
            Input::Line {
                conn,
                line: line.as_bytes(),
            },
        );
        replies(node, conn)
    }

    /// A node that founded a group of its own: the primary, with a lease that never lapses.
    fn lone_primary() -> (Node, u64) {
        lone_primary_with(NodeConfig::new(ReplicaConfig::new(
            Addr::local(7000),
            None,
            9,
        )))
    }

    fn lone_primary_with(cfg: NodeConfig) -> (Node, u64) {
        let mut node = Node::new(cfg, Millis(0));
        let mut now = 0;
        while node.replica().is_none_or(|r| !r.is_primary()) {
            now += 50;
            assert!(now < 10_000, "the node never became primary");
            node.handle(Millis(now), Input::Tick);
            while node.poll_output().is_some() {}
        }
        (node, now)
    }

    #[test]
    fn a_linearizable_read_is_answered_by_the_primary() {
        let (mut node, now) = lone_primary();
        let c = ConnId::Inbound(1);
        node.handle(
            Millis(now),
            Input::Accepted {
                conn: c,
                host: "127.0.0.1",
            },
        );
        assert_eq!(request(&mut node, now, c, "WRITE:5"), ["ACK"]);
        assert_eq!(request(&mut node, now, c, "READ:linearizable"), ["VALUE:5"]);
        assert_eq!(request(&mut node, now, c, "read:LINEARIZABLE"), ["VALUE:5"]);
        assert_eq!(request(&mut node, now, c, "READ"), ["VALUE:5"]);
        assert_eq!(
            request(&mut node, now, c, "READ:x"),
            ["ERR:READ takes no argument, or READ:linearizable"]
        );
    }

    /// A backup given the client password gives it before its `JOIN`, which a primary with
    /// the password refuses otherwise (so no backup could join one), and takes the `AUTH`'s
    /// `ACK` for what it is, not for a seed-only primary's answer to the `JOIN`.
    #[test]
    fn a_backup_with_the_password_gives_it_before_joining() {
        let mut cfg = NodeConfig::new(ReplicaConfig::new(
            Addr::local(7001),
            Some(Addr::local(7000)),
            9,
        ));
        cfg.password = Some("pw".to_owned());
        let mut node = Node::new(cfg, Millis(0));
        let mut join = None;
        let mut sent = Vec::new();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Connect { conn, addr } if addr == Addr::local(7000) => join = Some(conn),
                Output::Send { conn, line } if Some(conn) == join => sent.push(line),
                _ => {}
            }
        }
        let join = join.expect("the backup connects to its contact");
        assert_eq!(sent, ["AUTH:pw", "JOIN:7001"]);
        for line in ["ACK", "ACK ditto=1 group=1f view=1 primary=127.0.0.1:7000"] {
            node.handle(
                Millis(1),
                Input::Line {
                    conn: join,
                    line: line.as_bytes(),
                },
            );
            while node.poll_output().is_some() {}
        }
        assert!(
            node.replica().is_some(),
            "the AUTH's ACK was taken for a seed-only primary's"
        );
        assert_eq!(node.replica().map(Replica::group), Some(0x1f));
    }

    #[test]
    fn a_linearizable_read_elsewhere_is_refused_with_a_hint() {
        // A backup that has not joined yet knows no primary; a READ there is refused too, but
        // for another reason, and `READ:linearizable` names the primary's absence.
        let cfg = NodeConfig::new(ReplicaConfig::new(
            Addr::local(7001),
            Some(Addr::local(7000)),
            9,
        ));
        let mut node = Node::new(cfg, Millis(0));
        while node.poll_output().is_some() {}
        let c = ConnId::Inbound(1);
        node.handle(
            Millis(0),
            Input::Accepted {
                conn: c,
                host: "127.0.0.1",
            },
        );
        assert_eq!(
            request(&mut node, 0, c, "READ:linearizable"),
            ["ERR:not the primary; no primary at the moment"]
        );
        assert_eq!(
            not_primary(Some(&Addr::local(7000))),
            "not the primary; the primary is 127.0.0.1:7000"
        );
    }

    /// The RESP replies the node sent on `conn` for `words`, as text.
    fn command(node: &mut Node, now: u64, conn: ConnId, words: &[&str]) -> String {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        node.handle(Millis(now), Input::Command { conn, args: &args });
        let mut text = String::new();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Write { conn: c, bytes } if c == conn => {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
                Output::Close { conn: c } if c == conn => text.push_str("<close>"),
                _ => {}
            }
        }
        text
    }

    fn accepted(node: &mut Node, now: u64, n: u64) -> ConnId {
        let c = ConnId::Inbound(n);
        node.handle(
            Millis(now),
            Input::Accepted {
                conn: c,
                host: "127.0.0.1",
            },
        );
        c
    }

    #[test]
    fn resp_commands_read_and_write_the_keyspace_and_the_seed_register() {
        let (mut node, now) = lone_primary();
        let c = accepted(&mut node, now, 1);
        assert_eq!(command(&mut node, now, c, &["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(command(&mut node, now, c, &["get", "k"]), "$1\r\nv\r\n");
        assert_eq!(command(&mut node, now, c, &["INCR", "n"]), ":1\r\n");
        assert_eq!(
            command(&mut node, now, c, &["INCR", "k"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(command(&mut node, now, c, &["GET", "nope"]), "$-1\r\n");
        let line = ConnId::Inbound(2);
        assert_eq!(request(&mut node, now, line, "WRITE:7"), ["ACK"]);
        assert_eq!(
            command(&mut node, now, c, &["GET", "ditto:seed"]),
            "$1\r\n7\r\n"
        );
        assert_eq!(
            command(&mut node, now, c, &["INCRBY", "ditto:seed", "3"]),
            ":10\r\n"
        );
        assert_eq!(request(&mut node, now, line, "READ"), ["VALUE:10"]);
        assert_eq!(
            command(&mut node, now, c, &["HELLO", "3"]).get(..1),
            Some("%"),
            "HELLO 3 answers with a RESP3 map"
        );
        assert_eq!(
            command(&mut node, now, c, &["GET", "nope"]),
            "_\r\n",
            "RESP3's null"
        );
        assert_eq!(command(&mut node, now, c, &["QUIT"]), "+OK\r\n<close>");
    }

    #[test]
    fn multi_exec_is_one_entry_and_a_refused_command_discards_it() {
        let (mut node, now) = lone_primary();
        let c = accepted(&mut node, now, 1);
        assert_eq!(command(&mut node, now, c, &["MULTI"]), "+OK\r\n");
        assert_eq!(command(&mut node, now, c, &["INCR", "x"]), "+QUEUED\r\n");
        assert_eq!(command(&mut node, now, c, &["INCR", "x"]), "+QUEUED\r\n");
        assert_eq!(command(&mut node, now, c, &["GET", "x"]), "+QUEUED\r\n");
        let before = node.replica().unwrap().last().index;
        assert_eq!(
            command(&mut node, now, c, &["EXEC"]),
            "*3\r\n:1\r\n:2\r\n$1\r\n2\r\n"
        );
        assert_eq!(
            node.replica().unwrap().last().index,
            before + 1,
            "one entry"
        );
        assert_eq!(command(&mut node, now, c, &["MULTI"]), "+OK\r\n");
        assert_eq!(command(&mut node, now, c, &["INCR", "x"]), "+QUEUED\r\n");
        assert!(command(&mut node, now, c, &["INCR"]).starts_with("-ERR wrong number"));
        assert!(command(&mut node, now, c, &["EXEC"]).starts_with("-EXECABORT"));
        assert_eq!(
            command(&mut node, now, c, &["GET", "x"]),
            "$1\r\n2\r\n",
            "unchanged"
        );
        assert_eq!(
            command(&mut node, now, c, &["EXEC"]),
            "-ERR EXEC without MULTI\r\n"
        );
    }

    #[test]
    fn a_tagged_retry_gets_the_first_reply_and_changes_nothing() {
        let (mut node, now) = lone_primary();
        let c = accepted(&mut node, now, 1);
        let incr = ["DITTO.TAGGED", "5", "1", "INCRBY", "n", "10"];
        assert_eq!(command(&mut node, now, c, &incr), ":10\r\n");
        assert_eq!(command(&mut node, now, c, &incr), ":10\r\n");
        assert_eq!(command(&mut node, now, c, &["GET", "n"]), "$2\r\n10\r\n");
    }

    #[test]
    fn with_a_password_nothing_but_auth_is_served_until_it_is_given() {
        let mut cfg = NodeConfig::new(ReplicaConfig::new(Addr::local(7000), None, 9));
        cfg.password = Some("s3cret".to_owned());
        let (mut node, now) = lone_primary_with(cfg);
        let c = accepted(&mut node, now, 1);
        assert_eq!(
            command(&mut node, now, c, &["SET", "k", "v"]),
            "-NOAUTH Authentication required.\r\n"
        );
        assert!(command(&mut node, now, c, &["AUTH", "wrong"]).starts_with("-WRONGPASS"));
        assert_eq!(command(&mut node, now, c, &["AUTH", "s3cret"]), "+OK\r\n");
        assert_eq!(
            command(&mut node, now, c, &["GET", "k"]),
            "$-1\r\n",
            "the SET did nothing"
        );
        let line = accepted(&mut node, now, 2);
        assert!(request(&mut node, now, line, "WRITE:5")[0].starts_with("ERR:NOAUTH"));
        assert!(request(&mut node, now, line, "AUTH:nope")[0].starts_with("ERR:WRONGPASS"));
        assert_eq!(request(&mut node, now, line, "AUTH:s3cret"), ["ACK"]);
        assert_eq!(
            request(&mut node, now, line, "READ"),
            ["VALUE:0"],
            "the WRITE did nothing"
        );
    }

    #[test]
    fn maxmemory_refuses_growth_but_not_deletes() {
        let mut cfg = NodeConfig::new(ReplicaConfig::new(Addr::local(7000), None, 9));
        cfg.replica.max_memory = Some(200);
        let (mut node, now) = lone_primary_with(cfg);
        let c = accepted(&mut node, now, 1);
        assert_eq!(command(&mut node, now, c, &["SET", "a", "1"]), "+OK\r\n");
        let big = "x".repeat(300);
        assert!(command(&mut node, now, c, &["SET", "b", &big]).starts_with("-OOM "));
        assert_eq!(command(&mut node, now, c, &["EXISTS", "b"]), ":0\r\n");
        assert_eq!(command(&mut node, now, c, &["DEL", "a"]), ":1\r\n");
    }

    /// Every line the node sent on `conn`, and whether it closed it.
    fn lines_and_close(node: &mut Node, conn: ConnId) -> (Vec<String>, bool) {
        let (mut lines, mut closed) = (Vec::new(), false);
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { conn: c, line } if c == conn => lines.push(line),
                Output::Close { conn: c } if c == conn => closed = true,
                _ => {}
            }
        }
        (lines, closed)
    }

    #[test]
    fn with_a_secret_a_stream_is_read_only_after_it_proves_it() {
        let secret = Secret::new(b"a cluster secret of some length".to_vec()).unwrap();
        let mut cfg = NodeConfig::new(ReplicaConfig::new(Addr::local(7000), None, 9));
        cfg.secret = Some(secret.clone());
        let (mut node, now) = lone_primary_with(cfg);
        let stranger = Addr::local(7005);
        let hello = Hello {
            group: 0,
            from: stranger.clone(),
        }
        .to_line();
        let challenge = |node: &mut Node, n| {
            let c = accepted(node, now, n);
            node.handle(
                Millis(now),
                Input::Line {
                    conn: c,
                    line: hello.as_bytes(),
                },
            );
            let (lines, closed) = lines_and_close(node, c);
            assert!(!closed);
            let nonce = lines[0]
                .strip_prefix(peer_auth::CHALLENGE)
                .unwrap()
                .to_owned();
            (c, nonce)
        };
        // A message instead of a proof: refused, and the stream closed.
        let (c, _) = challenge(&mut node, 1);
        node.handle(
            Millis(now),
            Input::Line {
                conn: c,
                line: b"{}",
            },
        );
        let (lines, closed) = lines_and_close(&mut node, c);
        assert!(closed && lines[0].contains("cluster secret"), "{lines:?}");
        // A proof made with another secret, or for another challenge: the same.
        let (c, nonce) = challenge(&mut node, 2);
        let wrong = Secret::new(b"not the cluster secret at all".to_vec()).unwrap();
        let proof = format!(
            "PROOF:{}",
            wrong.prove(&nonce, 0, &stranger, &Addr::local(7000))
        );
        node.handle(
            Millis(now),
            Input::Line {
                conn: c,
                line: proof.as_bytes(),
            },
        );
        assert!(lines_and_close(&mut node, c).1);
        let (c, nonce) = challenge(&mut node, 3);
        let (_, other) = challenge(&mut node, 4);
        assert_ne!(nonce, other, "every challenge is new");
        let replayed = format!(
            "PROOF:{}",
            secret.prove(&other, 0, &stranger, &Addr::local(7000))
        );
        node.handle(
            Millis(now),
            Input::Line {
                conn: c,
                line: replayed.as_bytes(),
            },
        );
        assert!(
            lines_and_close(&mut node, c).1,
            "a proof for another challenge"
        );
        // The right proof: the stream is read from now on (a bad message is answered, not
        // ignored, and the stream stays open).
        let (c, nonce) = challenge(&mut node, 5);
        let proof = format!(
            "PROOF:{}",
            secret.prove(&nonce, 0, &stranger, &Addr::local(7000))
        );
        node.handle(
            Millis(now),
            Input::Line {
                conn: c,
                line: proof.as_bytes(),
            },
        );
        node.handle(
            Millis(now),
            Input::Line {
                conn: c,
                line: b"{}",
            },
        );
        let (lines, closed) = lines_and_close(&mut node, c);
        assert!(!closed);
        assert_eq!(lines, ["ERR:bad replication message"]);
    }

    #[test]
    fn with_a_secret_the_seed_adapters_are_off() {
        let mut cfg = NodeConfig::new(ReplicaConfig::new(Addr::local(7000), None, 9));
        cfg.secret = Some(Secret::new(b"a cluster secret of some length".to_vec()).unwrap());
        let (mut node, now) = lone_primary_with(cfg);
        let c = accepted(&mut node, now, 1);
        assert!(request(&mut node, now, c, "JOIN:7009")[0].starts_with("ERR:"));
        assert!(request(&mut node, now, c, "UPDATE:5")[0].starts_with("ERR:"));
        assert_eq!(
            request(&mut node, now, c, "READ"),
            ["VALUE:0"],
            "nothing changed"
        );
        assert_eq!(
            request(&mut node, now, c, "WRITE:6"),
            ["ACK"],
            "clients are clients"
        );
    }
}
