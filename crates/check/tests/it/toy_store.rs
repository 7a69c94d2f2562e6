//! A toy primary–backup store, correct and deliberately broken, as a target for the checker.
//!
//! One primary and two replicas each hold a copy of the register. A write, through any server,
//! reaches the primary, which applies it and sends an update to each replica; the client is
//! acknowledged once both replicas applied it. Reads are served from the client's own server.
//! In the correct store, updates reach each replica in the order the primary sent them. In the
//! broken one they may overtake each other, so the replicas apply concurrent writes in
//! different orders, and clients reading from different replicas disagree on the order.

use std::collections::VecDeque;

use ditto_check::{History, Op, OpKind, Outcome, linearizable, seqcst};

use crate::support::Rng;

const PRIMARY_PORT: u16 = 7000;
const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 8;
const SEEDS: u64 = 300;

/// A write on its way: which operation, which value, and how many replicas applied it.
struct Update {
    op: usize,
    value: i64,
    acks: u8,
}

struct ToyStore {
    /// Updates reach a replica in the order sent (correct) or in any order (broken).
    in_order: bool,
    rng: Rng,
    /// The primary's copy, then the two replicas'.
    copies: [i64; 3],
    updates: Vec<Update>,
    to_primary: VecDeque<usize>,
    to_replica: [Vec<usize>; 2],
    ops: Vec<Op>,
    /// Per client: operations left, and whether one is in flight.
    left: [usize; CLIENTS],
    busy: [bool; CLIENTS],
    next_value: i64,
    clock: u64,
}

#[derive(Clone, Copy)]
enum Action {
    Start(usize),
    DeliverToPrimary,
    DeliverToReplica(usize),
}

impl ToyStore {
    fn run(seed: u64, in_order: bool) -> History {
        let mut store = ToyStore {
            in_order,
            rng: Rng::new(seed),
            copies: [0; 3],
            updates: Vec::new(),
            to_primary: VecDeque::new(),
            to_replica: [Vec::new(), Vec::new()],
            ops: Vec::new(),
            left: [OPS_PER_CLIENT; CLIENTS],
            busy: [false; CLIENTS],
            next_value: 1,
            clock: 0,
        };
        while let Some(action) = store.pick() {
            store.clock += 2;
            store.perform(action);
        }
        History::new(store.ops)
    }

    /// Client `c` talks to server `c % 3`: the primary or one of the replicas.
    fn server_of(client: usize) -> usize {
        client % 3
    }

    fn pick(&mut self) -> Option<Action> {
        let mut actions: Vec<Action> = (0..CLIENTS)
            .filter(|&c| !self.busy[c] && self.left[c] > 0)
            .map(Action::Start)
            .collect();
        if !self.to_primary.is_empty() {
            actions.push(Action::DeliverToPrimary);
        }
        for r in 0..2 {
            if !self.to_replica[r].is_empty() {
                actions.push(Action::DeliverToReplica(r));
            }
        }
        (!actions.is_empty()).then(|| actions[self.rng.below(actions.len())])
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Start(c) => {
                self.left[c] -= 1;
                let server = Self::server_of(c);
                let port = PRIMARY_PORT + server as u16;
                if self.rng.chance(1, 2) {
                    // Reads are answered at once from the server's own copy.
                    let op = Op::read(c as u64, self.copies[server], self.clock, self.clock + 1);
                    self.ops.push(op.at(port));
                } else {
                    let value = self.next_value;
                    self.next_value += 1;
                    let mut op = Op::write(c as u64, value, self.clock, 0).at(port);
                    op.return_ns = None;
                    op.outcome = Outcome::Unknown;
                    self.updates.push(Update {
                        op: self.ops.len(),
                        value,
                        acks: 0,
                    });
                    self.ops.push(op);
                    self.to_primary.push_back(self.updates.len() - 1);
                    self.busy[c] = true;
                }
            }
            Action::DeliverToPrimary => {
                if let Some(u) = self.to_primary.pop_front() {
                    self.copies[0] = self.updates[u].value;
                    self.to_replica[0].push(u);
                    self.to_replica[1].push(u);
                }
            }
            Action::DeliverToReplica(r) => {
                let queue = &mut self.to_replica[r];
                let at = if self.in_order {
                    0
                } else {
                    self.rng.below(queue.len())
                };
                let u = queue.remove(at);
                self.copies[r + 1] = self.updates[u].value;
                self.updates[u].acks += 1;
                if self.updates[u].acks == 2 {
                    let op = &mut self.ops[self.updates[u].op];
                    op.return_ns = Some(self.clock);
                    op.outcome = Outcome::Ok;
                    self.busy[op.client as usize] = false;
                }
            }
        }
    }
}

/// The operations a primary-based store must keep linearizable: every write (a write through a
/// replica takes effect at the primary before it is acknowledged) and the primary's reads.
fn at_primary(op: &Op) -> bool {
    op.kind == OpKind::Write || op.server == Some(PRIMARY_PORT)
}

fn primary_linearizable(history: &History) -> bool {
    linearizable::check(history, at_primary, &linearizable::Config::default())
        .expect("valid history")
        .is_ok()
}

#[test]
fn the_correct_store_is_always_accepted() {
    for seed in 0..SEEDS {
        let history = ToyStore::run(seed, true);
        assert_eq!(history.len(), CLIENTS * OPS_PER_CLIENT);
        let verdict = seqcst::check(&history).expect("valid history");
        assert!(verdict.is_ok(), "seed {seed}: {verdict}");
        assert!(primary_linearizable(&history), "seed {seed}");
    }
}

#[test]
fn the_broken_store_is_caught() {
    let mut caught = Vec::new();
    for seed in 0..SEEDS {
        let history = ToyStore::run(seed, false);
        let verdict = seqcst::check(&history).expect("valid history");
        if let seqcst::Verdict::Violation(v) = verdict {
            // The fault is in the replicas: the primary's side is still linearizable.
            assert!(primary_linearizable(&history), "seed {seed}");
            caught.push((seed, v));
        }
    }
    assert!(
        !caught.is_empty(),
        "no seed out of {SEEDS} exposed the broken store"
    );
    // Explanations stay small: a handful of operations, not the whole run.
    let largest = caught.iter().map(|(_, v)| v.ops().len()).max().unwrap_or(0);
    assert!(largest <= 12, "an explanation names {largest} operations");
    let (seed, first) = &caught[0];
    println!(
        "{} of {SEEDS} seeds caught; seed {seed}: {first}",
        caught.len()
    );
}

#[test]
fn the_simulation_replays_exactly_from_its_seed() {
    assert_eq!(ToyStore::run(7, false), ToyStore::run(7, false));
    assert_ne!(ToyStore::run(7, false), ToyStore::run(8, false));
}
