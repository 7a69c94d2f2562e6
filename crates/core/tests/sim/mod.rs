//! An in-memory network for scenario tests of the sans-IO core.
//!
//! Nodes are addressed by port. Every connection is a pair of FIFO queues, one per direction, like
//! TCP; which queued message is delivered next is chosen by the test (in order, or by a seeded
//! random choice to explore reorderings across connections). Clients are endpoints the test drives
//! by hand: it sends lines and reads the replies.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use ditto_core::{
    Backup, BackupConfig, ConnId, Input, Machine, Millis, Output, Primary, PrimaryConfig,
};

/// How much simulated time [`Net::run`] lets pass once the network is quiet: enough for join
/// retries and the stream timeouts to play out.
pub const SETTLE_MS: u64 = 10_000;

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    Node(u16, ConnId),
    Client(usize),
}

#[derive(Debug)]
enum Ev {
    Line(String),
    Closed,
}

#[derive(Debug)]
struct Pipe {
    a: End,
    b: End,
    a_to_b: VecDeque<Ev>,
    b_to_a: VecDeque<Ev>,
    a_open: bool,
    b_open: bool,
}

#[derive(Debug)]
pub enum Node {
    Primary(Primary),
    Backup(Backup),
}

impl Node {
    fn machine(&mut self) -> &mut dyn Machine {
        match self {
            Node::Primary(p) => p,
            Node::Backup(b) => b,
        }
    }

    pub fn value(&self) -> i64 {
        match self {
            Node::Primary(p) => p.value(),
            Node::Backup(b) => b.value(),
        }
    }
}

/// A tiny deterministic PRNG (xorshift), so the core's tests need no dependency.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Debug)]
pub struct Net {
    pub now: Millis,
    pub nodes: BTreeMap<u16, Node>,
    pipes: Vec<Pipe>,
    next_inbound: u64,
    /// Lines received by each client connection, in order.
    pub inbox: BTreeMap<usize, Vec<String>>,
    pub logs: Vec<String>,
    /// Nodes that are hung (think SIGSTOP): nothing is delivered to them and their timers do not
    /// fire, but their connections stay open.
    pub frozen: std::collections::BTreeSet<u16>,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            now: Millis(0),
            nodes: BTreeMap::new(),
            pipes: Vec::new(),
            next_inbound: 0,
            inbox: BTreeMap::new(),
            logs: Vec::new(),
            frozen: Default::default(),
        }
    }
}

impl Net {
    pub fn add_primary(&mut self, port: u16) {
        let node = Node::Primary(Primary::new(PrimaryConfig::new(port, 1)));
        self.nodes.insert(port, node);
        self.input(port, Input::Tick);
    }

    pub fn add_backup(&mut self, port: u16, primary: u16) {
        self.nodes.insert(
            port,
            Node::Backup(Backup::new(BackupConfig::new(port, primary))),
        );
        self.input(port, Input::Tick);
    }

    /// Removes a node as if its process died: its connections close.
    pub fn crash(&mut self, port: u16) {
        self.nodes.remove(&port);
        for i in 0..self.pipes.len() {
            let p = &mut self.pipes[i];
            // The dead node's ends become tombstones (port 0), so a restarted node on the same
            // port, which numbers its connections afresh, is never confused with them.
            if let End::Node(n, c) = p.a
                && n == port
            {
                p.a = End::Node(0, c);
                if p.a_open {
                    p.a_open = false;
                    p.a_to_b.push_back(Ev::Closed);
                }
            }
            if let End::Node(n, c) = p.b
                && n == port
            {
                p.b = End::Node(0, c);
                if p.b_open {
                    p.b_open = false;
                    p.b_to_a.push_back(Ev::Closed);
                }
            }
        }
    }

    pub fn primary(&self, port: u16) -> &Primary {
        match &self.nodes[&port] {
            Node::Primary(p) => p,
            Node::Backup(_) => panic!("{port} is a backup"),
        }
    }

    pub fn backup(&self, port: u16) -> &Backup {
        match &self.nodes[&port] {
            Node::Backup(b) => b,
            Node::Primary(_) => panic!("{port} is a primary"),
        }
    }

    /// Opens a client connection to the node at `port`; returns the client's id.
    pub fn client(&mut self, port: u16) -> usize {
        let id = self.inbox.len();
        self.inbox.insert(id, Vec::new());
        self.next_inbound += 1;
        self.pipes.push(Pipe {
            a: End::Client(id),
            b: End::Node(port, ConnId::Inbound(self.next_inbound)),
            a_to_b: VecDeque::new(),
            b_to_a: VecDeque::new(),
            a_open: true,
            b_open: true,
        });
        id
    }

    pub fn send(&mut self, client: usize, line: &str) {
        let pipe = self
            .pipes
            .iter_mut()
            .find(|p| p.a == End::Client(client))
            .expect("client exists");
        pipe.a_to_b.push_back(Ev::Line(line.to_owned()));
    }

    pub fn replies(&self, client: usize) -> &[String] {
        &self.inbox[&client]
    }

    fn input(&mut self, port: u16, input: Input<'_>) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&port) else {
            return;
        };
        let m = node.machine();
        m.handle(now, input);
        let mut outs = Vec::new();
        while let Some(o) = m.poll_output() {
            outs.push(o);
        }
        for o in outs {
            self.output(port, o);
        }
    }

    fn output(&mut self, port: u16, out: Output) {
        match out {
            Output::Send { conn, line } => {
                if let Some((pipe, is_a)) = self.find(End::Node(port, conn)) {
                    let p = &mut self.pipes[pipe];
                    if is_a && p.a_open {
                        p.a_to_b.push_back(Ev::Line(line));
                    } else if !is_a && p.b_open {
                        p.b_to_a.push_back(Ev::Line(line));
                    }
                }
            }
            Output::Close { conn } => {
                if let Some((pipe, is_a)) = self.find(End::Node(port, conn)) {
                    let p = &mut self.pipes[pipe];
                    if is_a && p.a_open {
                        p.a_open = false;
                        p.a_to_b.push_back(Ev::Closed);
                        p.b_to_a.clear();
                    } else if !is_a && p.b_open {
                        p.b_open = false;
                        p.b_to_a.push_back(Ev::Closed);
                        p.a_to_b.clear();
                    }
                }
            }
            Output::Stream { .. } => {}
            Output::Connect { conn, addr } => {
                let to = addr.port();
                self.next_inbound += 1;
                let mut pipe = Pipe {
                    a: End::Node(port, conn),
                    b: End::Node(to, ConnId::Inbound(self.next_inbound)),
                    a_to_b: VecDeque::new(),
                    b_to_a: VecDeque::new(),
                    a_open: true,
                    b_open: true,
                };
                if !self.nodes.contains_key(&to) {
                    pipe.b_open = false;
                    pipe.b_to_a.push_back(Ev::Closed);
                }
                self.pipes.push(pipe);
            }
            Output::Log { message, .. } => self.logs.push(format!(":{port} {message}")),
        }
    }

    fn find(&self, end: End) -> Option<(usize, bool)> {
        self.pipes.iter().enumerate().find_map(|(i, p)| {
            if p.a == end {
                Some((i, true))
            } else if p.b == end {
                Some((i, false))
            } else {
                None
            }
        })
    }

    /// Queues with something to deliver: (pipe, direction a->b?).
    fn ready(&self) -> Vec<(usize, bool)> {
        let frozen = |end: End| matches!(end, End::Node(port, _) if self.frozen.contains(&port));
        let mut r = Vec::new();
        for (i, p) in self.pipes.iter().enumerate() {
            if !p.a_to_b.is_empty() && !frozen(p.b) {
                r.push((i, true));
            }
            if !p.b_to_a.is_empty() && !frozen(p.a) {
                r.push((i, false));
            }
        }
        r
    }

    fn deliver(&mut self, pipe: usize, a_to_b: bool) {
        let p = &mut self.pipes[pipe];
        let (ev, to) = if a_to_b {
            (p.a_to_b.pop_front(), p.b)
        } else {
            (p.b_to_a.pop_front(), p.a)
        };
        let Some(ev) = ev else { return };
        match (to, ev) {
            (End::Client(id), Ev::Line(line)) => self.inbox.get_mut(&id).unwrap().push(line),
            (End::Client(id), Ev::Closed) => {
                self.inbox.get_mut(&id).unwrap().push("<closed>".into())
            }
            (End::Node(port, conn), Ev::Line(line)) => self.input(
                port,
                Input::Line {
                    conn,
                    line: line.as_bytes(),
                },
            ),
            (End::Node(port, conn), Ev::Closed) => self.input(port, Input::Closed { conn }),
        }
    }

    /// Delivers messages in a seeded random order; when none are in flight, fires the next timer,
    /// for up to [`SETTLE_MS`] of simulated time (heartbeats never stop, so "no timer left" never
    /// comes). Bounded so a livelock fails the test instead of hanging it.
    pub fn run(&mut self, rng: &mut Rng) {
        let horizon = self.now.0 + SETTLE_MS;
        for _ in 0..100_000 {
            let ready = self.ready();
            if ready.is_empty() {
                if self.next_timer().is_none_or(|t| t.0 > horizon) || !self.fire_timer() {
                    return;
                }
                continue;
            }
            let (pipe, dir) = ready[rng.below(ready.len())];
            self.deliver(pipe, dir);
        }
        panic!("network did not quiesce");
    }

    /// Delivers in FIFO order of queues (deterministic, no reordering).
    pub fn run_in_order(&mut self) {
        self.run(&mut Rng(0))
    }

    /// When the earliest timer of a running node is due.
    pub fn next_timer(&self) -> Option<Millis> {
        self.nodes
            .iter()
            .filter(|(port, _)| !self.frozen.contains(port))
            .filter_map(|(_, n)| match n {
                Node::Primary(p) => p.poll_timeout(),
                Node::Backup(b) => b.poll_timeout(),
            })
            .min()
    }

    /// Advances time to the earliest timer and fires it. Returns false if there is none.
    pub fn fire_timer(&mut self) -> bool {
        let due = self
            .nodes
            .iter()
            .filter(|(port, _)| !self.frozen.contains(port))
            .filter_map(|(port, n)| {
                let t = match n {
                    Node::Primary(p) => p.poll_timeout(),
                    Node::Backup(b) => b.poll_timeout(),
                };
                t.map(|t| (t, *port))
            })
            .min();
        let Some((t, port)) = due else { return false };
        self.now = self.now.max(t);
        self.input(port, Input::Tick);
        true
    }
}

impl Net {
    /// Delivers everything the client has queued, and nothing else.
    pub fn deliver_client(&mut self, client: usize) {
        while let Some(i) = self
            .pipes
            .iter()
            .position(|p| p.a == End::Client(client) && !p.a_to_b.is_empty())
        {
            self.deliver(i, true);
        }
    }

    /// Delivers one message from every non-empty queue.
    pub fn deliver_all_once(&mut self) {
        for (pipe, dir) in self.ready() {
            self.deliver(pipe, dir);
        }
    }
}

impl Net {
    /// Breaks every connection between nodes `a` and `b`, as a network fault would: both ends
    /// see the connection close. New connections can be made at once.
    pub fn sever(&mut self, a: u16, b: u16) {
        for p in &mut self.pipes {
            let ends = (p.a, p.b);
            let between = matches!(ends, (End::Node(x, _), End::Node(y, _)) if (x, y) == (a, b) || (x, y) == (b, a));
            if between {
                p.a_to_b.clear();
                p.b_to_a.clear();
                if p.a_open {
                    p.a_open = false;
                    p.b_to_a.push_back(Ev::Closed);
                }
                if p.b_open {
                    p.b_open = false;
                    p.a_to_b.push_back(Ev::Closed);
                }
            }
        }
    }
}

impl Net {
    /// Closes the connections between `a` and `b` on `a`'s side only, and loses the close: `b`
    /// goes on believing they are open (a half-open TCP connection).
    pub fn half_open(&mut self, a: u16, b: u16) {
        for p in &mut self.pipes {
            match (p.a, p.b) {
                (End::Node(x, c), End::Node(y, _)) if (x, y) == (a, b) => {
                    p.a_open = false;
                    p.a_to_b.clear();
                    p.b_to_a.clear();
                    p.a = End::Node(0, c);
                }
                (End::Node(x, _), End::Node(y, c)) if (x, y) == (b, a) => {
                    p.b_open = false;
                    p.a_to_b.clear();
                    p.b_to_a.clear();
                    p.b = End::Node(0, c);
                }
                _ => {}
            }
        }
    }

    /// Fires timers and delivers messages until `done` holds or `limit` timers have fired.
    pub fn run_until(&mut self, limit: usize, mut done: impl FnMut(&Net) -> bool) -> bool {
        for _ in 0..limit {
            while !self.ready().is_empty() {
                self.deliver_all_once();
            }
            if done(self) {
                return true;
            }
            if !self.fire_timer() {
                return done(self);
            }
        }
        done(self)
    }
}
