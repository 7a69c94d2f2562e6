//! An in-memory network of replicas for tests: replicas exchange typed messages in order per
//! pair, the test crashes, restarts and cuts them off, and time moves in 5 ms steps.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ditto_core::keyspace::KeyOp;
use ditto_core::replica::log::Tag;
use ditto_core::replica::msg::Msg;
use ditto_core::{
    Addr, Bugs, Effect, JoinAnswer, Millis, Replica, ReplicaConfig, Status, Timeouts, WriteOutcome,
};

pub const STEP: u64 = 5;

pub struct Cluster {
    pub nodes: BTreeMap<Addr, Option<Replica>>,
    pub contact: BTreeMap<Addr, Option<Addr>>,
    pub queue: VecDeque<(Addr, Addr, Msg)>,
    /// Pairs that cannot reach each other (both directions).
    pub cut: BTreeSet<(Addr, Addr)>,
    pub now: Millis,
    pub done: BTreeMap<u64, WriteOutcome>,
    pub log: Vec<String>,
    pub next_token: u64,
    /// The timeouts every replica started from now on gets.
    pub timeouts: Timeouts,
    /// The seeded bugs every replica started from now on has (none, but in the model's tests).
    pub bugs: Bugs,
}

pub fn addr(port: u16) -> Addr {
    Addr::local(port)
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            nodes: BTreeMap::new(),
            contact: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            now: Millis(0),
            done: BTreeMap::new(),
            log: Vec::new(),
            next_token: 0,
            timeouts: Timeouts::default(),
            bugs: Bugs::default(),
        }
    }

    /// Starts a replica on `port` (a primary when `contact` is `None`).
    pub fn start(&mut self, port: u16, contact: Option<u16>) {
        let a = addr(port);
        let contact = contact.map(addr);
        // Each start draws its own group id, as the shell does, so a group founded by mistake
        // is never mistaken for the group.
        self.next_token += 1;
        let mut cfg = ReplicaConfig::new(
            a.clone(),
            contact.clone(),
            (port as u64) << 32 | self.next_token,
        );
        cfg.timeouts = self.timeouts.clone();
        cfg.bugs = self.bugs.clone();
        self.nodes
            .insert(a.clone(), Some(Replica::new(cfg, self.now)));
        self.contact.insert(a, contact);
    }

    pub fn crash(&mut self, port: u16) {
        self.nodes.insert(addr(port), None);
    }

    /// Starts a crashed replica again, reconnected.
    pub fn restart(&mut self, port: u16) {
        self.cut
            .retain(|(a, b)| a.port() != port && b.port() != port);
        let contact = self.contact[&addr(port)].clone();
        self.start(port, contact.map(|c| c.port()));
    }

    pub fn isolate(&mut self, port: u16) {
        let all: Vec<Addr> = self.nodes.keys().cloned().collect();
        for other in all {
            if other != addr(port) {
                self.cut.insert((addr(port), other.clone()));
                self.cut.insert((other, addr(port)));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn node(&self, port: u16) -> &Replica {
        self.nodes[&addr(port)].as_ref().expect("node is up")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut Replica {
        self.nodes
            .get_mut(&addr(port))
            .unwrap()
            .as_mut()
            .expect("node is up")
    }

    pub fn drain(&mut self, at: &Addr) {
        loop {
            let Some(Some(r)) = self.nodes.get_mut(at) else {
                return;
            };
            let Some(effect) = r.poll() else { return };
            match effect {
                Effect::Send { to, msg } => self.queue.push_back((at.clone(), to, msg)),
                Effect::Join { to } => {
                    let answer = match self.nodes.get(&to) {
                        Some(Some(r))
                            if !self.cut.contains(&(at.clone(), to.clone()))
                                && r.group() != 0
                                && matches!(r.status(), Status::Normal | Status::ViewChange) =>
                        {
                            JoinAnswer::Ditto {
                                group: r.group(),
                                view: r.view(),
                                primary: r.primary().cloned(),
                            }
                        }
                        _ => JoinAnswer::Failed("no answer".into()),
                    };
                    let r = self.nodes.get_mut(at).unwrap().as_mut().unwrap();
                    r.on_join_answer(&to, answer);
                }
                Effect::WriteDone { token, outcome } => {
                    self.done.insert(token, outcome);
                }
                Effect::Log { message, .. } => self.log.push(format!("{at}: {message}")),
            }
        }
    }

    /// Delivers every queued message, then lets `ms` of time pass in steps.
    pub fn run(&mut self, ms: u64) {
        let end = self.now.0 + ms;
        loop {
            let addrs: Vec<Addr> = self.nodes.keys().cloned().collect();
            for a in &addrs {
                self.drain(a);
            }
            while let Some((from, to, msg)) = self.queue.pop_front() {
                if self.cut.contains(&(from.clone(), to.clone())) {
                    continue;
                }
                // The node's hello check: replicas of two different groups do not talk.
                let group = |a: &Addr| {
                    self.nodes
                        .get(a)
                        .and_then(|r| r.as_ref())
                        .map_or(0, |r| r.group())
                };
                let (gf, gt) = (group(&from), group(&to));
                if gf != 0 && gt != 0 && gf != gt {
                    continue;
                }
                if let Some(Some(r)) = self.nodes.get_mut(&to) {
                    let _ = r.on_msg(self.now, from, msg);
                    self.drain(&to);
                }
            }
            if self.now.0 >= end {
                break;
            }
            self.now = Millis(self.now.0 + STEP);
            for a in &addrs {
                if let Some(Some(r)) = self.nodes.get_mut(a)
                    && r.next_timeout().is_some_and(|t| t <= self.now)
                {
                    r.tick(self.now);
                }
            }
        }
    }

    /// Runs until `cond` holds, at most `ms`; returns the time it took.
    pub fn run_until(&mut self, ms: u64, cond: impl Fn(&Cluster) -> bool) -> Option<u64> {
        let start = self.now.0;
        while self.now.0 - start <= ms {
            if cond(self) {
                return Some(self.now.0 - start);
            }
            self.run(STEP);
        }
        None
    }

    pub fn write(&mut self, port: u16, v: i64, tag: Option<Tag>) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        let now = self.now;
        let r = self.node_mut(port);
        r.tick(now);
        r.propose(token, KeyOp::seed_write(v), tag);
        token
    }

    /// Writes at `port` and waits for the outcome.
    pub fn write_and_wait(&mut self, port: u16, v: i64, ms: u64) -> Option<WriteOutcome> {
        let token = self.write(port, v, None);
        self.run_until(ms, |c| c.done.contains_key(&token))?;
        self.done.get(&token).cloned()
    }

    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter_map(|(a, r)| r.as_ref().filter(|r| r.is_primary()).map(|_| a.port()))
            .collect()
    }

    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (a, r) in &self.nodes {
            match r {
                Some(r) => s.push_str(&format!(
                    "{a}: {:?} next={:?} now={:?} view={} primary={:?} commit={} last={:?} value={} active={:?}\n",
                    r.status(),
                    r.next_timeout(),
                    self.now,
                    r.view(),
                    r.primary().map(|p| p.port()),
                    r.commit(),
                    r.last(),
                    r.value(),
                    r.config()
                        .active()
                        .map(|(_, m)| m.addr.port())
                        .collect::<Vec<_>>()
                )),
                None => s.push_str(&format!("{a}: down\n")),
            }
        }
        let tail = self.log.len().saturating_sub(40);
        s.push_str(&self.log[tail..].join("\n"));
        s
    }
}

/// A primary on 7000 and backups on 7001 and 7002, all in the active set.
pub fn three() -> Cluster {
    three_with(Timeouts::default(), Bugs::default())
}

/// [`three`], every replica with `timeouts` and the seeded `bugs`.
pub fn three_with(timeouts: Timeouts, bugs: Bugs) -> Cluster {
    let mut c = Cluster::new();
    c.timeouts = timeouts;
    c.bugs = bugs;
    c.start(7000, None);
    c.start(7001, Some(7000));
    c.start(7002, Some(7000));
    let formed = c.run_until(5_000, |c| {
        c.node(7000).is_primary()
            && c.node(7000).config().active().count() == 3
            && c.node(7000).commit() == c.node(7000).last().index
    });
    assert!(formed.is_some(), "the group did not form:\n{}", c.dump());
    c
}
