//! The adapter between the core's sans-IO machines and stateright's actor model, the clients, the
//! recorded history and the properties. See the documentation of `model.rs` for what is checked.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ditto_core::wire::{self, Request};
use ditto_core::{
    Backup, BackupConfig, ConnId, Input, Machine, Millis, Output, Primary, PrimaryConfig,
};
use stateright::actor::{
    Actor, ActorModel, ActorModelState, Envelope, Id, LossyNetwork, Network, Out, model_timeout,
};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, SequentialConsistencyTester};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};

/// The primary listens on this port and is actor 0; backup `i` listens on `PRIMARY_PORT + i`.
pub const PRIMARY_PORT: u16 = 7000;
/// Epoch of the primary's only run.
const EPOCH: u64 = 1;
/// Inbound connection ids encode who dialed: `Inbound(dialer * STRIDE + n)` is the other end of
/// the dialer's `Outbound(n)`. See [`Server::route`].
const STRIDE: u64 = 1000;

pub type State = ActorModelState<Node, History>;
pub type DittoModel = ActorModel<Node, Setup, History>;

// ------------------------------------------------------------------------------------------------
// Configuration

/// One client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Write(i64),
    Read,
}

impl Op {
    fn line(self) -> String {
        match self {
            Op::Write(v) => format!("WRITE:{v}"),
            Op::Read => "READ".to_owned(),
        }
    }
}

/// A deliberately broken server, to show that the checker finds what it is meant to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The primary acknowledges a client's `WRITE` as soon as it has applied it itself, before any
    /// backup has it (and swallows its real acknowledgement later).
    PrimaryAcksEarly,
    /// A backup answers its clients' `READ`s with the value its snapshot installed, ignoring the
    /// entries streamed after it (a read cache that is never invalidated).
    BackupCachesReads,
}

/// How the network fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Every message arrives.
    None,
    /// Any message may vanish and its connection carries on without it. This is harsher than TCP
    /// (which never skips a line and keeps the connection); it shows what the protocol assumes.
    Lines,
    /// Any message may vanish, and the receiver notices the gap at the next message of the same
    /// connection and resets the connection, as TCP would: both ends see it close. A lost last
    /// message leaves its connection silent, as a peer that vanished without a reset would.
    Tcp,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Number of backups (actors `1..=backups`).
    pub backups: usize,
    /// Per client: the server it talks to (actor index, 0 = primary) and its operations.
    pub clients: Vec<(usize, Vec<Op>)>,
    pub loss: Loss,
    /// At most this many messages are lost (`None`: any number).
    pub max_losses: Option<u32>,
    /// How often the primary's and each backup's timer ([`Machine::poll_timeout`]) may fire.
    /// 0 = never: every message arrives before any timeout expires.
    pub primary_ticks: u8,
    pub backup_ticks: u8,
    pub bug: Option<Bug>,
}

impl Setup {
    /// One primary, `backups` backups, the given clients; a reliable ordered network on which
    /// every message arrives before any timeout expires.
    pub fn new(backups: usize, clients: Vec<(usize, Vec<Op>)>) -> Setup {
        Setup {
            backups,
            clients,
            loss: Loss::None,
            max_losses: None,
            primary_ticks: 0,
            backup_ticks: 0,
            bug: None,
        }
    }

    fn servers(&self) -> usize {
        1 + self.backups
    }

    /// Whether every run must end with every client done and every replica equal.
    fn must_finish(&self) -> bool {
        self.loss == Loss::None && self.primary_ticks == 0 && self.backup_ticks == 0
    }
}

// ------------------------------------------------------------------------------------------------
// Actors

/// A stateright actor: a server wrapping the real core, or a client.
#[derive(Clone, Debug)]
pub enum Node {
    Server {
        port: u16,
        servers: usize,
        max_ticks: u8,
        /// Number the messages of server-to-server connections to detect gaps ([`Loss::Tcp`]).
        number: bool,
        bug: Option<Bug>,
    },
    Client {
        server: Id,
        ops: Vec<Op>,
    },
}

/// A line, or the end of a connection. `conn` is the connection as the *receiver* names it; `n`
/// numbers the messages of one direction of a connection under [`Loss::Tcp`] (0 otherwise).
///
/// Stateright's ordered network keeps the messages from one actor to another in order, which is
/// stronger than TCP's order per connection: two connections between the same pair of servers
/// (say a backup's `SYNC` stream and its `PROPOSE` connection) cannot overtake each other here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Line { conn: ConnId, n: u32, line: String },
    Closed { conn: ConnId, n: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary(Primary),
    Backup(Backup),
}

/// A server: the core's machine plus what its driver would keep.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    pub role: Role,
    /// The driver's clock: it only moves when a timer fires, to the instant the machine asked for.
    now: Millis,
    /// Timer firings so far (bounded by `max_ticks`).
    ticks: u8,
    /// Where each `Outbound(n)` the machine opened leads (actor index), while it is open.
    dialed: BTreeMap<u64, usize>,
    /// Connections this end closed or saw closed: what still arrives on them is discarded.
    closed: BTreeSet<ConnId>,
    /// [`Loss::Tcp`]: messages sent and received so far on each open server-to-server connection.
    sent_n: BTreeMap<ConnId, u32>,
    recv_n: BTreeMap<ConnId, u32>,
    /// Primary only (auxiliary): the value written by each entry, `writes[seq - 1]`.
    pub writes: Vec<i64>,
    /// [`Bug::PrimaryAcksEarly`]: real `ACK`s still to swallow, per client connection.
    early: BTreeMap<ConnId, u32>,
    /// [`Bug::BackupCachesReads`]: the value installed by the snapshot.
    cache: Option<i64>,
}

/// A client: runs its operations one at a time over one connection (`Outbound(1)`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Client {
    /// Operations completed.
    pub done: usize,
    /// An operation failed (`ERR`, or the connection closed): the client stops.
    pub failed: bool,
    /// Values read, in order.
    pub reads: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    Server(Box<Server>),
    Client(Client),
}

impl Server {
    fn machine(&mut self) -> &mut dyn Machine {
        match &mut self.role {
            Role::Primary(p) => p,
            Role::Backup(b) => b,
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        match &self.role {
            Role::Primary(p) => p.poll_timeout(),
            Role::Backup(b) => b.poll_timeout(),
        }
    }

    /// The actor at the other end of `conn` and its name for the connection, if `conn` is open.
    ///
    /// A driver numbers inbound connections as it accepts them; here the number is made of the
    /// dialer's actor index and the dialer's own number for the connection, so no table is needed
    /// and the numbering does not depend on the order of accepts (which would only multiply
    /// equivalent states). The core only compares connection ids, so this is as good as any.
    fn route(&self, me: Id, conn: ConnId) -> Option<(Id, ConnId)> {
        if self.closed.contains(&conn) {
            return None;
        }
        match conn {
            ConnId::Outbound(n) => self.dialed.get(&n).map(|&dst| {
                (
                    Id::from(dst),
                    ConnId::Inbound(usize::from(me) as u64 * STRIDE + n),
                )
            }),
            ConnId::Inbound(k) => Some((
                Id::from((k / STRIDE) as usize),
                ConnId::Outbound(k % STRIDE),
            )),
        }
    }

    /// Sends a line (or, with `None`, the end of the connection) to the peer on `conn`, if open.
    fn emit(&mut self, node: &Node, me: Id, conn: ConnId, line: Option<String>, o: &mut Out<Node>) {
        let Some((dst, theirs)) = self.route(me, conn) else {
            return;
        };
        let n = if node.numbers(conn) {
            let n = self.sent_n.entry(conn).or_default();
            *n += 1;
            *n - 1
        } else {
            0
        };
        o.send(
            dst,
            match line {
                Some(line) => Msg::Line {
                    conn: theirs,
                    n,
                    line,
                },
                None => Msg::Closed { conn: theirs, n },
            },
        );
    }

    fn forget(&mut self, conn: ConnId) {
        self.closed.insert(conn);
        self.sent_n.remove(&conn);
        self.recv_n.remove(&conn);
        if let ConnId::Outbound(n) = conn {
            self.dialed.remove(&n);
        }
    }
}

/// Whether `conn`, as a server names it, was dialed by a client.
fn from_client(conn: ConnId, servers: usize) -> bool {
    matches!(conn, ConnId::Inbound(k) if k / STRIDE >= servers as u64)
}

/// The connection of client `id`, as its server names it.
fn client_conn(id: Id) -> ConnId {
    ConnId::Inbound(usize::from(id) as u64 * STRIDE + 1)
}

impl Node {
    /// Whether messages on `conn` are numbered. Client connections never are: a client sends its
    /// next request only after the reply to the previous one, so a loss there cannot be followed
    /// by another message and can only leave the client waiting.
    fn numbers(&self, conn: ConnId) -> bool {
        matches!(self, Node::Server { number: true, servers, .. } if !from_client(conn, *servers))
    }

    /// Feeds `input` to the machine, then does what the machine asks, as a driver would.
    fn input(&self, me: Id, s: &mut Server, input: Input<'_>, o: &mut Out<Self>) {
        let Node::Server {
            servers,
            max_ticks,
            bug,
            ..
        } = self
        else {
            unreachable!("clients have no machine")
        };
        let now = s.now;
        s.machine().handle(now, input);
        if let Role::Primary(p) = &s.role {
            // One input sequences at most one write, so the value after it is the entry's value.
            assert!(p.last_seq() <= s.writes.len() as u64 + 1);
            if p.last_seq() > s.writes.len() as u64 {
                s.writes.push(p.value());
            }
        }
        while let Some(out) = s.machine().poll_output() {
            match out {
                Output::Send { conn, line } => {
                    if line == wire::ACK
                        && let Some(n) = s.early.get_mut(&conn)
                    {
                        *n -= 1;
                        if *n == 0 {
                            s.early.remove(&conn);
                        }
                        continue;
                    }
                    s.emit(self, me, conn, Some(line), o);
                }
                Output::Connect {
                    conn: ConnId::Outbound(n),
                    addr,
                } => {
                    let dst = usize::from(addr.port().wrapping_sub(PRIMARY_PORT));
                    if dst < *servers {
                        s.dialed.insert(n, dst);
                    } else {
                        // Nobody listens there: the connect fails.
                        let conn = ConnId::Outbound(n);
                        o.send(me, Msg::Closed { conn, n: 0 });
                    }
                }
                Output::Connect { conn, .. } => panic!("the core opened {conn}, an inbound id"),
                Output::Stream { .. } => {}
                Output::Close { conn } => {
                    s.emit(self, me, conn, None, o);
                    s.forget(conn);
                }
                Output::Log { .. } => {}
            }
        }
        if *bug == Some(Bug::BackupCachesReads)
            && let Role::Backup(b) = &s.role
            && b.is_streaming()
            && s.cache.is_none()
        {
            s.cache = Some(b.value());
        }
        match s.poll_timeout() {
            Some(_) if s.ticks < *max_ticks => o.set_timer((), model_timeout()),
            _ => o.cancel_timer(()),
        }
    }

    /// A server receives `msg` from actor `src`.
    fn server_msg(&self, me: Id, s: &mut Server, src: Id, msg: Msg, o: &mut Out<Self>) {
        let Node::Server { servers, bug, .. } = self else {
            unreachable!()
        };
        let (Msg::Line { conn, n, .. } | Msg::Closed { conn, n }) = msg;
        if self.numbers(conn) {
            let expected = s.recv_n.entry(conn).or_default();
            if n > *expected {
                // Something before this message was lost: TCP would have reset the connection.
                s.emit(self, me, conn, None, o);
                s.forget(conn);
                return self.input(me, s, Input::Closed { conn }, o);
            }
            *expected += 1;
        }
        let line = match msg {
            Msg::Closed { .. } => {
                s.forget(conn);
                return self.input(me, s, Input::Closed { conn }, o);
            }
            Msg::Line { line, .. } => line,
        };
        if from_client(conn, *servers) {
            let reply = |line: String| Msg::Line {
                conn: ConnId::Outbound(1),
                n: 0,
                line,
            };
            match (bug, &s.role, wire::parse_request(line.as_bytes())) {
                (Some(Bug::PrimaryAcksEarly), Role::Primary(_), Ok(Request::Write(_))) => {
                    o.send(src, reply(wire::ACK.to_owned()));
                    *s.early.entry(conn).or_default() += 1;
                }
                (Some(Bug::BackupCachesReads), Role::Backup(_), Ok(Request::Read)) => {
                    if let Some(v) = s.cache {
                        return o.send(src, reply(wire::value_reply(v)));
                    }
                }
                _ => {}
            }
        }
        let line = Input::Line {
            conn,
            line: line.as_bytes(),
        };
        self.input(me, s, line, o);
    }
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = ();
    type Random = ();
    type Storage = ();

    fn on_start(&self, id: Id, _storage: &Option<()>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Server { port, .. } => {
                let role = if *port == PRIMARY_PORT {
                    Role::Primary(Primary::new(PrimaryConfig::new(*port, EPOCH)))
                } else {
                    Role::Backup(Backup::new(BackupConfig::new(*port, PRIMARY_PORT)))
                };
                let mut s = Server {
                    role,
                    now: Millis(0),
                    ticks: 0,
                    dialed: BTreeMap::new(),
                    closed: BTreeSet::new(),
                    sent_n: BTreeMap::new(),
                    recv_n: BTreeMap::new(),
                    writes: Vec::new(),
                    early: BTreeMap::new(),
                    cache: None,
                };
                // Drivers feed a first tick at start-up; it is what makes a backup join.
                self.input(id, &mut s, Input::Tick, o);
                NodeState::Server(Box::new(s))
            }
            Node::Client { server, ops } => {
                if let Some(op) = ops.first() {
                    let (conn, n, line) = (client_conn(id), 0, op.line());
                    o.send(*server, Msg::Line { conn, n, line });
                }
                NodeState::Client(Client::default())
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match (self, &**state) {
            (Node::Server { .. }, NodeState::Server(s)) => {
                let (Msg::Line { conn, .. } | Msg::Closed { conn, .. }) = &msg;
                if s.closed.contains(conn) {
                    // A closed socket discards what still arrives.
                    return;
                }
                let NodeState::Server(s) = state.to_mut() else {
                    unreachable!()
                };
                self.server_msg(id, s, src, msg, o);
            }
            (Node::Client { server, ops }, NodeState::Client(c)) => {
                if c.failed || c.done == ops.len() {
                    return;
                }
                let NodeState::Client(c) = state.to_mut() else {
                    unreachable!()
                };
                match (&msg, ops[c.done]) {
                    (Msg::Line { line, .. }, Op::Write(_)) if line == wire::ACK => c.done += 1,
                    (Msg::Line { line, .. }, Op::Read) => match wire::parse_value_reply(line) {
                        Some(v) => {
                            c.reads.push(v);
                            c.done += 1;
                        }
                        None => c.failed = true,
                    },
                    _ => c.failed = true,
                }
                if !c.failed
                    && let Some(op) = ops.get(c.done)
                {
                    let (conn, n, line) = (client_conn(id), 0, op.line());
                    o.send(*server, Msg::Line { conn, n, line });
                }
            }
            _ => unreachable!("actor and state disagree"),
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, _timer: &(), o: &mut Out<Self>) {
        let NodeState::Server(s) = state.to_mut() else {
            unreachable!("clients set no timers")
        };
        s.ticks += 1;
        if let Some(at) = s.poll_timeout() {
            s.now = s.now.max(at);
        }
        self.input(id, s, Input::Tick, o);
    }
}

// ------------------------------------------------------------------------------------------------
// History

/// Auxiliary state kept by the model next to the actors.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct History {
    /// The clients' invocations and returns, checked for sequential consistency.
    ops: SequentialConsistencyTester<Id, Register<i64>>,
    /// Messages sent and delivered so far: with the messages in flight, they tell how many the
    /// network lost, which bounds the lossy state space.
    sent: u32,
    delivered: u32,
}

impl History {
    fn new() -> History {
        History {
            ops: SequentialConsistencyTester::new(Register(0)),
            sent: 0,
            delivered: 0,
        }
    }
}

/// A client sending a request invokes an operation.
fn record_out(cfg: &Setup, history: &History, env: Envelope<&Msg>) -> Option<History> {
    let mut history = history.clone();
    history.sent += 1;
    if let Msg::Line { line, .. } = env.msg
        && usize::from(env.src) >= cfg.servers()
    {
        let op = match wire::parse_request(line.as_bytes()) {
            Ok(Request::Write(v)) => Some(RegisterOp::Write(v)),
            Ok(Request::Read) => Some(RegisterOp::Read),
            _ => None,
        };
        if let Some(op) = op {
            // An invalid history (a second invocation in flight) makes the tester inconsistent.
            let _ = history.ops.on_invoke(env.src, op);
        }
    }
    Some(history)
}

/// A client receiving a reply completes its operation. An `ERR` leaves the operation in flight
/// for good: it may or may not have taken effect.
fn record_in(cfg: &Setup, history: &History, env: Envelope<&Msg>) -> Option<History> {
    let mut history = history.clone();
    history.delivered += 1;
    if let Msg::Line { line, .. } = env.msg
        && usize::from(env.dst) >= cfg.servers()
        && !wire::is_error_reply(line.as_bytes())
    {
        let ret = match wire::parse_value_reply(line) {
            Some(v) => RegisterRet::ReadOk(v),
            None => RegisterRet::WriteOk,
        };
        let _ = history.ops.on_return(env.dst, ret);
    }
    Some(history)
}

/// How many messages the network lost so far.
fn losses(state: &State) -> u32 {
    state.history.sent - state.history.delivered - state.network.len() as u32
}

// ------------------------------------------------------------------------------------------------
// Properties

pub fn server(state: &State, i: usize) -> &Server {
    match &*state.actor_states[i] {
        NodeState::Server(s) => s,
        NodeState::Client(_) => panic!("actor {i} is a client"),
    }
}

fn primary(state: &State) -> (&Primary, &[i64]) {
    let s = server(state, 0);
    match &s.role {
        Role::Primary(p) => (p, &s.writes),
        Role::Backup(_) => panic!("actor 0 is a backup"),
    }
}

/// The backups with their ports.
fn backups<'a>(model: &DittoModel, state: &'a State) -> impl Iterator<Item = (u16, &'a Backup)> {
    (1..model.cfg.servers()).map(move |i| match &server(state, i).role {
        Role::Backup(b) => (PRIMARY_PORT + i as u16, b),
        Role::Primary(_) => panic!("actor {i} is a primary"),
    })
}

pub fn clients<'a>(
    model: &'a DittoModel,
    state: &'a State,
) -> impl Iterator<Item = (&'a [Op], &'a Client)> {
    (model.cfg.servers()..model.actors.len()).map(move |i| {
        match (&model.actors[i], &*state.actor_states[i]) {
            (Node::Client { ops, .. }, NodeState::Client(c)) => (&ops[..], c),
            _ => panic!("actor {i} is not a client"),
        }
    })
}

/// The value after entry `seq` of the primary's log (0 before the first).
fn value_at(writes: &[i64], seq: u64) -> Option<i64> {
    match seq {
        0 => Some(0),
        s => writes.get(s as usize - 1).copied(),
    }
}

/// Nothing in flight and no timer pending: no step is left but losing nothing.
fn is_quiet(state: &State) -> bool {
    state.network.len() == 0 && state.timers_set.iter().all(|t| t.iter().next().is_none())
}

fn sequentially_consistent(_: &DittoModel, state: &State) -> bool {
    state.history.ops.is_consistent()
}

/// Once a client holds `ACK` for a write, the primary counts it as committed, and every backup
/// that the primary counts and that follows its stream has applied it or a later entry: a
/// backup does not learn of a write it was said to hold later, or never.
fn acked_writes_are_replicated(model: &DittoModel, state: &State) -> bool {
    let (p, writes) = primary(state);
    let counted = p.backups();
    clients(model, state).all(|(ops, c)| {
        ops[..c.done].iter().all(|op| {
            let Op::Write(v) = *op else { return true };
            let Some(i) = writes.iter().position(|w| *w == v) else {
                return false;
            };
            let seq = i as u64 + 1;
            p.commit_seq() >= seq
                && backups(model, state).all(|(port, b)| {
                    !b.is_streaming()
                        || !counted.iter().any(|(p, _)| *p == port)
                        || b.applied().1 >= seq
                })
        })
    })
}

/// A backup that follows the stream holds exactly the primary's value after the entries it
/// applied: it applies the primary's entries, all of them, in the primary's order.
fn backups_follow_the_log(model: &DittoModel, state: &State) -> bool {
    let (p, writes) = primary(state);
    backups(model, state).all(|(_, b)| {
        let (epoch, applied) = b.applied();
        !b.is_streaming()
            || (epoch == EPOCH
                && applied <= p.last_seq()
                && value_at(writes, applied) == Some(b.value()))
    })
}

/// Reliable network and timely messages: when nothing is left to happen, every client finished
/// every operation, every write is committed, and every backup follows the stream, is counted by
/// the primary and holds the primary's value.
fn quiet_means_done_and_converged(model: &DittoModel, state: &State) -> bool {
    if !is_quiet(state) {
        return true;
    }
    let (p, _) = primary(state);
    let counted = p.backups();
    clients(model, state).all(|(ops, c)| !c.failed && c.done == ops.len())
        && p.commit_seq() == p.last_seq()
        && backups(model, state).all(|(port, b)| {
            b.is_streaming()
                && counted.contains(&(port, Some(p.last_seq())))
                && b.applied().1 == p.last_seq()
                && b.value() == p.value()
        })
}

/// Whether a backup believes it follows the primary: by its stream, or by the seed's pushes.
fn follows(b: &Backup) -> bool {
    let status = b.status();
    status.contains(" mode=stream ") || status.contains(" mode=seed ")
}

/// Faults: a lost message or an expired timeout may leave clients waiting or failed, but when
/// nothing is left to happen and every client is done, every backup that believes it follows the
/// primary (by stream or by the seed's pushes) holds the primary's value.
fn quiet_and_done_means_converged(model: &DittoModel, state: &State) -> bool {
    if !is_quiet(state) || !clients(model, state).all(|(ops, c)| c.done == ops.len()) {
        return true;
    }
    let (p, _) = primary(state);
    backups(model, state).all(|(_, b)| !follows(b) || b.value() == p.value())
}

fn all_clients_done(model: &DittoModel, state: &State) -> bool {
    clients(model, state).all(|(ops, c)| c.done == ops.len())
}

/// Some client read a value that only another client wrote.
fn read_anothers_write(model: &DittoModel, state: &State) -> bool {
    clients(model, state).any(|(ops, c)| {
        c.reads
            .iter()
            .any(|r| *r != 0 && !ops.contains(&Op::Write(*r)))
    })
}

/// Some client read a value whose writer has not yet been told it is stored: replicas serve
/// entries before they are committed.
fn read_an_unacknowledged_write(model: &DittoModel, state: &State) -> bool {
    let cs: Vec<_> = clients(model, state).collect();
    cs.iter().any(|(_, reader)| {
        reader.reads.iter().any(|r| {
            cs.iter().any(|(ops, writer)| {
                ops.iter()
                    .position(|op| *op == Op::Write(*r))
                    .is_some_and(|i| writer.done <= i)
            })
        })
    })
}

// ------------------------------------------------------------------------------------------------
// Model and checking

pub const SEQUENTIALLY_CONSISTENT: &str = "sequentially consistent";
pub const ACKED_WRITES_ARE_REPLICATED: &str = "acked writes are replicated";
pub const BACKUPS_FOLLOW_THE_LOG: &str = "backups follow the log";
pub const QUIET_MEANS_DONE_AND_CONVERGED: &str = "quiet means done and converged";
pub const QUIET_AND_DONE_MEANS_CONVERGED: &str = "quiet and done means converged";

pub fn model(setup: Setup) -> DittoModel {
    // Write values identify entries in the properties.
    let mut values: Vec<i64> = setup
        .clients
        .iter()
        .flat_map(|(_, ops)| ops.iter())
        .filter_map(|op| match op {
            Op::Write(v) => Some(*v),
            Op::Read => None,
        })
        .collect();
    let n = values.len();
    values.sort_unstable();
    values.dedup();
    assert!(
        values.len() == n && !values.contains(&0),
        "write distinct non-zero values"
    );

    let servers = setup.servers();
    let number = setup.loss == Loss::Tcp;
    let m = ActorModel::new(setup.clone(), History::new())
        .actors((0..servers).map(|i| Node::Server {
            port: PRIMARY_PORT + i as u16,
            servers,
            max_ticks: if i == 0 {
                setup.primary_ticks
            } else {
                setup.backup_ticks
            },
            number,
            bug: setup.bug,
        }))
        .actors(setup.clients.iter().map(|(server, ops)| Node::Client {
            server: Id::from(*server),
            ops: ops.clone(),
        }))
        .init_network(Network::new_ordered([]))
        .lossy_network(match setup.loss {
            Loss::None => LossyNetwork::No,
            Loss::Lines | Loss::Tcp => LossyNetwork::Yes,
        })
        .record_msg_out(record_out)
        .record_msg_in(record_in)
        .within_boundary(|cfg, state| cfg.max_losses.is_none_or(|max| losses(state) <= max))
        .property(
            Expectation::Always,
            SEQUENTIALLY_CONSISTENT,
            sequentially_consistent,
        )
        .property(
            Expectation::Always,
            ACKED_WRITES_ARE_REPLICATED,
            acked_writes_are_replicated,
        )
        .property(
            Expectation::Always,
            BACKUPS_FOLLOW_THE_LOG,
            backups_follow_the_log,
        );
    let m = if setup.must_finish() {
        m.property(
            Expectation::Always,
            QUIET_MEANS_DONE_AND_CONVERGED,
            quiet_means_done_and_converged,
        )
    } else {
        m.property(
            Expectation::Always,
            QUIET_AND_DONE_MEANS_CONVERGED,
            quiet_and_done_means_converged,
        )
    };
    let m = m.property(Expectation::Sometimes, "all clients done", all_clients_done);
    if setup.clients.len() < 2 {
        return m;
    }
    m.property(
        Expectation::Sometimes,
        "a client reads another's write",
        read_anothers_write,
    )
    .property(
        Expectation::Sometimes,
        "a client reads an unacknowledged write",
        read_an_unacknowledged_write,
    )
}

/// Explores every reachable state and prints the counts. Every `always` property must hold in
/// every state (if one does not, a short counterexample is printed) and every `sometimes` property
/// in some state. Returns the number of unique states.
pub fn check(name: &str, setup: Setup) -> usize {
    let start = Instant::now();
    let model = model(setup);
    let checker = model.clone().checker().spawn_bfs().join();
    println!(
        "{name}: {} unique states ({} generated), max depth {}, {:.2?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        start.elapsed()
    );
    let properties = model.properties();
    let violated: Vec<_> = properties
        .iter()
        .filter(|p| p.expectation == Expectation::Always && checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect();
    for property in &violated {
        counterexample(name, &model, property);
    }
    assert!(violated.is_empty(), "{name}: violated {violated:?}");
    for p in properties
        .iter()
        .filter(|p| p.expectation == Expectation::Sometimes)
    {
        assert!(
            checker.discovery(p.name).is_some(),
            "{name}: no state where {:?}",
            p.name
        );
    }
    checker.unique_state_count()
}

/// Explores every reachable state and returns the `always` properties that fail somewhere.
pub fn violations(setup: Setup) -> Vec<&'static str> {
    let model = model(setup);
    let checker = model.clone().checker().spawn_bfs().join();
    model
        .properties()
        .iter()
        .filter(|p| p.expectation == Expectation::Always && checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect()
}

/// Explores until `property` fails, prints the counterexample and returns its number of steps.
pub fn find_counterexample(name: &str, setup: Setup, property: &'static str) -> usize {
    counterexample(name, &model(setup), property)
}

fn counterexample(name: &str, model: &DittoModel, property: &'static str) -> usize {
    let start = Instant::now();
    // Stop soon after the first violation, which breadth-first search meets on a short path.
    let checker = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let found = checker
        .discovery(property)
        .unwrap_or_else(|| panic!("{name}: no counterexample to {property:?}"));
    // The checker keeps the last violation it met; cut the path at its first violation.
    let condition = model
        .properties()
        .into_iter()
        .find(|p| p.name == property)
        .expect("a property of the model")
        .condition;
    let steps = found.into_vec();
    let init = steps[0].0.clone();
    let cut = steps
        .iter()
        .position(|(state, _)| !condition(model, state))
        .expect("the last state violates the property");
    let actions: Vec<_> = steps[..cut].iter().filter_map(|(_, a)| a.clone()).collect();
    let path = Path::from_actions(model, init, &actions).expect("the path replays");
    println!(
        "{name}: counterexample to {property:?} ({} steps, found in {:.2?}):",
        actions.len(),
        start.elapsed()
    );
    for a in &actions {
        println!("  {}", model.format_action(a));
    }
    let last = path.last_state();
    println!("  client histories: {:?}", last.history.ops);
    for (i, s) in last.actor_states.iter().enumerate() {
        match &**s {
            NodeState::Server(s) => match &s.role {
                Role::Primary(p) => println!("  actor {i}: {} writes={:?}", p.status(), s.writes),
                Role::Backup(b) => println!("  actor {i}: {}", b.status()),
            },
            NodeState::Client(c) => println!("  actor {i}: {c:?}"),
        }
    }
    actions.len()
}
