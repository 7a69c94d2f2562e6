//! Exhaustive model checking of the view-based `Replica` through view changes, crashes and
//! recoveries, with stateright.
//!
//! # What runs
//!
//! Three replicas of a group already formed (built by the scenario harness of `replica.rs`: the
//! primary on 7000 and backups on 7001 and 7002, all in the active set) run unmodified inside
//! stateright actors; their typed messages are the actors' messages, on an ordered network (the
//! order of one TCP connection per direction). A client actor writes 1, then 2, through the
//! server the test names, one write at a time. Stateright explores every interleaving of
//! message deliveries, of timer firings (at most `ticks` per replica: any timeout may expire
//! before any message arrives, which is what a slow or dead peer looks like), and of crashes
//! (`crashes` at a time): a crashed replica loses everything, and its restart runs
//! `Replica::new` afresh, as a restarted process without durable state would.
//!
//! Joining is the node's business (the seed's `JOIN`); the model answers a replica's
//! `Effect::Join` itself from the contacted replica's state, as the node would.
//!
//! # Properties
//!
//! * `one primary per view` (always): no two replicas are primary of the same view.
//! * `acknowledged writes survive` (always): the primary of the newest view among live replicas
//!   holds (applied or still in its log) the client's last acknowledged write or a later one.
//! * `applied states agree` (always): replicas that applied the same index hold the same value.
//! * `sometimes`: a view change completes with a new primary; every write is acknowledged.

#[path = "replica/cluster.rs"]
mod cluster;

use std::borrow::Cow;
use std::time::Instant;

use ditto_core::replica::msg::Msg;
use ditto_core::{
    Addr, Effect, JoinAnswer, Millis, Op, Replica, ReplicaConfig, Status, WriteOutcome,
};
use stateright::actor::{Actor, ActorModel, ActorModelState, Id, Network, Out, model_timeout};
use stateright::{Checker, Expectation, Model};

const BASE: u16 = 7000;

fn port_of(id: Id) -> u16 {
    BASE + usize::from(id) as u16
}

fn id_of(addr: &Addr) -> Id {
    Id::from(usize::from(addr.port() - BASE))
}

/// A message between actors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum M {
    Peer(Msg),
    /// The seed `JOIN` a replica's node sends, and the answer the contacted node gives.
    Join,
    JoinAnswer(Option<(u64, u64, Option<Addr>)>),
    /// Client to replica, and back.
    Write {
        token: u64,
        value: i64,
    },
    Done {
        token: u64,
        ok: bool,
    },
}

#[derive(Clone, Debug)]
enum Node {
    Replica { formed: Box<Replica>, now: Millis },
    Client { server: Id, values: Vec<i64> },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum St {
    Replica {
        r: Box<Replica>,
        now: Millis,
        ticks: u8,
        /// How many times it restarted after a crash.
        restarts: u8,
    },
    Client {
        sent: usize,
        acked: Vec<i64>,
    },
}

/// What to check.
#[derive(Clone, Debug)]
struct Setup {
    server: usize,
    ticks: u8,
    crashes: usize,
    /// Restarts after a crash allowed per replica.
    restarts: u8,
}

/// Carries out the effects a replica produced.
fn drain(r: &mut Replica, me: Id, client: Id, o: &mut Out<Node>) {
    while let Some(effect) = r.poll() {
        match effect {
            Effect::Send { to, msg } => o.send(id_of(&to), M::Peer(msg)),
            Effect::Join { to } => o.send(id_of(&to), M::Join),
            Effect::WriteDone { token, outcome } => o.send(
                client,
                M::Done {
                    token,
                    ok: outcome == WriteOutcome::Done,
                },
            ),
            Effect::Log { .. } => {}
        }
    }
    let _ = me;
}

fn arm(r: &Replica, ticks: u8, max: u8, o: &mut Out<Node>) {
    if r.next_timeout().is_some() && ticks < max {
        o.set_timer((), model_timeout());
    } else {
        o.cancel_timer(());
    }
}

#[derive(Debug)]
struct Actors {
    setup: Setup,
}

impl Actors {
    fn restarts(&self) -> u8 {
        self.setup.restarts
    }
}

impl Actor for Node {
    type Msg = M;
    type State = St;
    type Timer = ();
    type Random = ();
    type Storage = u8;

    fn on_start(&self, id: Id, storage: &Option<u8>, o: &mut Out<Self>) -> St {
        match self {
            Node::Replica { formed, now } => {
                // The first start is the formed group; a start after a crash is a fresh process.
                let restarts = storage.map_or(0, |n| n + 1);
                o.save(restarts);
                let r = if storage.is_none() {
                    (**formed).clone()
                } else {
                    let port = port_of(id);
                    let contact = (port != BASE).then(|| Addr::local(BASE));
                    let cfg = ReplicaConfig::new(Addr::local(port), contact, 99);
                    let mut r = Replica::new(cfg, *now);
                    drain(&mut r, id, Id::from(3), o);
                    r
                };
                o.set_timer((), model_timeout());
                St::Replica {
                    r: Box::new(r),
                    now: *now,
                    ticks: 0,
                    restarts,
                }
            }
            Node::Client { server, values } => {
                o.send(
                    *server,
                    M::Write {
                        token: 1,
                        value: values[0],
                    },
                );
                St::Client {
                    sent: 1,
                    acked: Vec::new(),
                }
            }
        }
    }

    fn on_msg(&self, id: Id, state: &mut Cow<St>, src: Id, msg: M, o: &mut Out<Self>) {
        let max = MAX_TICKS.with(|m| *m.borrow());
        match (self, msg) {
            (Node::Client { server, values }, M::Done { ok, .. }) => {
                let St::Client { sent, acked } = state.to_mut() else {
                    return;
                };
                if ok {
                    acked.push(values[*sent - 1]);
                }
                if *sent < values.len() {
                    *sent += 1;
                    o.send(
                        *server,
                        M::Write {
                            token: *sent as u64,
                            value: values[*sent - 1],
                        },
                    );
                }
            }
            (Node::Replica { .. }, msg) => {
                let St::Replica { r, now, ticks, .. } = state.to_mut() else {
                    return;
                };
                let from = Addr::local(port_of(src));
                match msg {
                    M::Peer(m) => {
                        let _ = r.on_msg(*now, from, m);
                    }
                    M::Join => {
                        let answer = (r.group() != 0
                            && matches!(r.status(), Status::Normal | Status::ViewChange))
                        .then(|| (r.group(), r.view(), r.primary().cloned()));
                        o.send(src, M::JoinAnswer(answer));
                    }
                    M::JoinAnswer(answer) => {
                        let answer = match answer {
                            Some((group, view, primary)) => JoinAnswer::Ditto {
                                group,
                                view,
                                primary,
                            },
                            None => JoinAnswer::Failed("no group".into()),
                        };
                        r.on_join_answer(&from, answer);
                    }
                    M::Write { token, value } => r.propose(token, Op::Set(value), None),
                    M::Done { .. } => {}
                }
                drain(r, id, Id::from(3), o);
                arm(r, *ticks, max, o);
            }
            _ => {}
        }
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<St>, _timer: &(), o: &mut Out<Self>) {
        let max = MAX_TICKS.with(|m| *m.borrow());
        let St::Replica { r, now, ticks, .. } = state.to_mut() else {
            return;
        };
        if let Some(t) = r.next_timeout() {
            *now = (*now).max(t);
            r.tick(*now);
            *ticks += 1;
        }
        drain(r, id, Id::from(3), o);
        arm(r, *ticks, max, o);
    }
}

thread_local! {
    static MAX_TICKS: std::cell::RefCell<u8> = const { std::cell::RefCell::new(0) };
}

type State = ActorModelState<Node, ()>;

fn replicas(state: &State) -> impl Iterator<Item = (usize, &Replica)> {
    state
        .actor_states
        .iter()
        .enumerate()
        .take(3)
        .filter(|(i, _)| !state.crashed[*i])
        .filter_map(|(i, s)| match &**s {
            St::Replica { r, .. } => Some((i, &**r)),
            St::Client { .. } => None,
        })
}

fn acked(state: &State) -> Vec<i64> {
    match &*state.actor_states[3] {
        St::Client { acked, .. } => acked.clone(),
        St::Replica { .. } => Vec::new(),
    }
}

fn one_primary_per_view(_: &ActorModel<Node, Actors, ()>, state: &State) -> bool {
    let primaries: Vec<(u64, u64)> = replicas(state)
        .filter(|(_, r)| r.is_primary())
        .map(|(_, r)| (r.group(), r.view()))
        .collect();
    let mut unique = primaries.clone();
    unique.sort_unstable();
    unique.dedup();
    unique.len() == primaries.len()
}

fn acknowledged_writes_survive(_: &ActorModel<Node, Actors, ()>, state: &State) -> bool {
    let Some(&last_acked) = acked(state).iter().max() else {
        return true;
    };
    let newest = replicas(state)
        .filter(|(_, r)| r.is_primary())
        .max_by_key(|(_, r)| r.view());
    newest.is_none_or(|(_, p)| p.value_after(p.last().index) >= last_acked)
}

fn applied_states_agree(_: &ActorModel<Node, Actors, ()>, state: &State) -> bool {
    let rs: Vec<&Replica> = replicas(state).map(|(_, r)| r).collect();
    rs.iter().all(|a| {
        rs.iter().all(|b| {
            a.group() != b.group()
                || a.applied().index != b.applied().index
                || a.applied().index == 0
                || a.value() == b.value()
        })
    })
}

fn model(setup: &Setup) -> ActorModel<Node, Actors, ()> {
    let c = cluster::three();
    let now = c.now;
    let mut m = ActorModel::new(
        Actors {
            setup: setup.clone(),
        },
        (),
    );
    for port in [7000, 7001, 7002] {
        let r = c.nodes[&Addr::local(port)].clone().expect("formed");
        m = m.actor(Node::Replica {
            formed: Box::new(r),
            now,
        });
    }
    m.actor(Node::Client {
        server: Id::from(setup.server),
        values: vec![1],
    })
    .init_network(Network::new_ordered([]))
    .max_crashes(setup.crashes)
    .within_boundary(|actors: &Actors, state: &State| {
        state.actor_states.iter().all(|s| match &**s {
            St::Replica { restarts, .. } => *restarts <= actors.restarts(),
            St::Client { .. } => true,
        })
    })
    .property(
        Expectation::Always,
        "one primary per view",
        one_primary_per_view,
    )
    .property(
        Expectation::Always,
        "acknowledged writes survive",
        acknowledged_writes_survive,
    )
    .property(
        Expectation::Always,
        "applied states agree",
        applied_states_agree,
    )
    .property(
        Expectation::Sometimes,
        "a new primary takes over",
        |_, s| replicas(s).any(|(i, r)| i != 0 && r.is_primary()),
    )
    .property(
        Expectation::Sometimes,
        "every write acknowledged",
        |_, s| acked(s).len() == 1,
    )
}

fn check(name: &str, setup: Setup) -> usize {
    MAX_TICKS.with(|m| *m.borrow_mut() = setup.ticks);
    let started = Instant::now();
    let checker = model(&setup).checker().spawn_bfs().join();
    let n = checker.unique_state_count();
    println!("{name}: {n} unique states in {:.1?}", started.elapsed());
    checker.assert_properties();
    n
}

/// Not yet part of `cargo test`: even with one write, one timer firing per replica and no
/// restarts, the search does not finish within minutes (a release build explores millions of
/// states). The state space must be cut first (fewer messages in flight from the formed
/// group's heartbeats, a symmetry reduction of the two backups) before its count is pinned.
#[test]
#[ignore = "the state space is not yet small enough to explore in CI"]
fn the_primary_crashes_and_a_backup_takes_over() {
    let n = check(
        "primary crash, client at a backup",
        Setup {
            server: 1,
            ticks: 1,
            crashes: 1,
            restarts: 0,
        },
    );
    assert!(n > 0);
}
