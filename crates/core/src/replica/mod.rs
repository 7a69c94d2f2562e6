//! One replica whose status changes: primary or backup in a view, view change, recovery.
//!
//! This is the protocol of `docs/replication.md` as a deterministic state machine with time
//! passed in: [`Replica::on_msg`] takes a typed message from another replica, [`Replica::tick`]
//! the passing of time, [`Replica::propose`] and [`Replica::read`] a client's requests; what the
//! replica wants done leaves as [`Effect`]s. It has no connections: peers are named by address,
//! and the node around it (`crate::node`) keeps the connections, the text protocols and the
//! seed adapters.
//!
//! Each incoming message is checked for its view before anything else: an older view is
//! refused, a newer one is adopted first (VRR §4; Raft's `step`). The primary is never stored
//! apart from the view: it is whoever won the view, learned from its own messages.

pub mod config;
pub mod log;
pub mod msg;
pub mod timers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::addr::Addr;
use crate::event::{LogLevel, Millis};
use crate::keyspace::{KeyOp, Output, Query, SEED_KEY};
use config::{Config, Kind};
use log::{Entry, Index, Log, Payload, Pos, Snapshot, State, Tag, View};
use msg::{Forwarded, Msg};
use timers::{Timer, Timers};

/// The most entries one `Entries` message carries. A message is one line, which must stay
/// below the line limit (`wire::MAX_LINE`): an entry's JSON is at most about 150 bytes.
pub const MAX_BATCH: usize = 256;

/// About the most bytes of keys and values one `Entries` message carries (one entry larger
/// than this goes alone), so a batch of large values neither passes the replication line limit
/// nor holds a link for long.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Every timeout and interval of a replica, in milliseconds. See `docs/replication.md` for why
/// each default is what it is and how they relate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// How often a primary sends something on every stream, entries or not.
    pub heartbeat: u64,
    /// A backup not heard from for this long no longer gets its read lease renewed.
    pub backup_suspect: u64,
    /// How long a backup may serve reads after a lease-renewing message from its primary.
    pub backup_lease: u64,
    /// A backup in the active set not heard from for this long is removed from it. Must exceed
    /// `backup_suspect + backup_lease`, so a removed backup has stopped serving reads.
    pub backup_remove: u64,
    /// How long a primary serves reads after a quorum acknowledged a message it sent. Must be
    /// below `election_timeout`, the time voters wait before voting for anyone else.
    pub primary_lease: u64,
    /// A backup that has not heard from its primary for this long starts a view change (plus
    /// `election_stagger` per place in line); a voter refuses votes before this much silence.
    pub election_timeout: u64,
    pub election_stagger: u64,
    /// A fresh `ditto primary` waits this long to be claimed by a group before founding one.
    /// Must exceed `probe`.
    pub discovery: u64,
    /// How often a primary contacts members it has no stream to.
    pub probe: u64,
    /// Joining and recovering: first retry delay, doubled up to `retry_max`.
    pub retry_min: u64,
    pub retry_max: u64,
    /// How long a client's write may wait for a primary to forward it to.
    pub forward_hold: u64,
    /// How long a forwarded write may wait for the primary's answer.
    pub forward_timeout: u64,
    /// How long a switchover may wait for its target to catch up.
    pub handover: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            heartbeat: 100,
            backup_suspect: 500,
            backup_lease: 500,
            backup_remove: 1_200,
            primary_lease: 800,
            election_timeout: 1_000,
            election_stagger: 250,
            discovery: 1_000,
            probe: 250,
            retry_min: 100,
            retry_max: 2_000,
            forward_hold: 3_000,
            forward_timeout: 3_000,
            handover: 2_000,
        }
    }
}

/// Settings of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaConfig {
    /// Where this replica listens, as other replicas reach it.
    pub addr: Addr,
    /// A backup's first contact (`ditto backup B P`: the primary's address); `None` for a
    /// `ditto primary`, which founds a group if none claims it.
    pub contact: Option<Addr>,
    /// The id of a group this replica founds. The shell draws it at random; tests fix it.
    pub group_seed: u64,
    pub timeouts: Timeouts,
    /// The wall clock at the driver's time 0, in milliseconds since the UNIX epoch: a primary
    /// stamps each entry with it plus the driver's time (see [`log::Entry::time`]). `None`
    /// leaves entries unstamped, so no key ever expires: the model checker's setting, where
    /// time stands for timeouts alone.
    pub epoch: Option<u64>,
    /// `--maxmemory`: a write that would take the keyspace past this many bytes is refused
    /// before it is appended, so no replica ever refuses an entry it is sent.
    pub max_memory: Option<usize>,
    /// Seeded bugs, for the model checker's tests only (`crates/core/tests/model_views.rs`):
    /// all off by default, and nothing outside those tests turns one on.
    #[doc(hidden)]
    pub bugs: Bugs,
}

/// Deliberate bugs the model checker must find, each behind a switch so that the tests that
/// prove the checker can fail run the real replica with one rule broken. They are compiled in
/// always (rather than behind a cargo feature) so that the same build runs both the checks and
/// the seeded bugs, and a feature cannot leak into a release by accident of feature
/// unification; every switch defaults to off.
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    /// A voter grants its vote without comparing the candidate's log with its own (or with its
    /// vote floor).
    pub elect_without_longest_log: bool,
    /// A voter grants its vote to a candidate its configuration has removed from the active
    /// set, and such a candidate campaigns.
    pub removed_member_votes: bool,
    /// A primary that lost its lease (no quorum heard from lately) commits, and so
    /// acknowledges, every entry it holds on its own.
    pub stale_primary_acks: bool,
}

impl ReplicaConfig {
    pub fn new(addr: Addr, contact: Option<Addr>, group_seed: u64) -> ReplicaConfig {
        ReplicaConfig {
            addr,
            contact,
            group_seed,
            timeouts: Timeouts::default(),
            epoch: None,
            max_memory: None,
            bugs: Bugs::default(),
        }
    }
}

/// Where a replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// A fresh `ditto primary` waiting to learn whether a group counts it as a member.
    Discovering,
    /// A fresh `ditto backup` asking its contact which group it joins.
    Joining,
    /// Learning the group's view and state; votes for nobody, counts for no quorum.
    Recovering,
    /// Primary or backup of the current view.
    Normal,
    /// Between primaries: campaigning, or waiting for a primary of a newer view.
    ViewChange,
}

/// How a client's write ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// Committed, and applied at this replica, with what it answered.
    Done(Output),
    /// Not applied.
    Refused(String),
    /// May or may not have been applied.
    Unknown(String),
}

/// What a replica wants done.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Send `msg` to the replica at `to` (over a connection the node keeps).
    Send { to: Addr, msg: Msg },
    /// Ask `to` with the seed's `JOIN:port` which group it belongs to; the node reports the
    /// answer through [`Replica::on_join_answer`].
    Join { to: Addr },
    /// The client write `token` ended.
    WriteDone { token: u64, outcome: WriteOutcome },
    /// Something an operator should know.
    Log { level: LogLevel, message: String },
}

/// What a contact said to the seed `JOIN` of a joining ditto replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JoinAnswer {
    /// A ditto replica of `group`, in `view`, whose primary is at `primary` (if it knows one).
    Ditto {
        group: u64,
        view: View,
        primary: Option<Addr>,
    },
    /// No answer, or a refusal.
    Failed(String),
}

/// A read refused, and why.
pub type ReadRefused = String;

/// The primary's view of one replica it streams to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Link {
    /// The next entry to send.
    next: Index,
    /// Every entry up to here is held there (acknowledged).
    held: Index,
    /// When it was last heard from.
    heard: Millis,
    /// The latest send time it echoed.
    echo: Millis,
    /// When something was last sent to it, and the commit point sent.
    sent_at: Millis,
    sent_commit: Index,
    /// A seed-only backup, fed by the node's push adapter: nothing is sent to it from here.
    seed: bool,
}

/// A recovery in progress (VRR §4.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Recovery {
    nonce: u64,
    /// Whom to ask first (and again), until a configuration is known.
    first: Addr,
    config: Option<Config>,
    /// Replies by sender: (view, the primary it names, its last entry, whether it is
    /// recovering too).
    replies: BTreeMap<Addr, (View, Option<Addr>, Pos, bool)>,
    /// Whom a `Sync` was sent to, once chosen.
    syncing: Option<Addr>,
}

/// A client write waiting at a backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Forward {
    token: u64,
    op: KeyOp,
    tag: Option<Tag>,
    /// When the write gives up.
    deadline: Millis,
}

/// The replica. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    cfg: ReplicaConfig,
    now: Millis,
    status: Status,
    group: u64,
    view: View,
    /// The primary of `view`, once known (this replica, when it is the primary).
    primary: Option<Addr>,
    voted_for: Option<Addr>,
    log: Log,
    /// The highest index known committed (at least the applied point).
    commit: Index,
    /// Whether this replica installed a snapshot from the primary of `view` (a backup applies
    /// entries of a view only on top of that view's snapshot).
    synced: bool,
    /// Backup: when the primary was last heard from, and until when reads may be served.
    heard_primary: Millis,
    lease_until: Millis,
    /// Candidate: the voters that granted, and those that would (pre-vote, Raft §9.6).
    votes: BTreeSet<Addr>,
    pre_votes: BTreeSet<Addr>,
    /// The primary this replica last followed: a new primary takes it out of the active set.
    prev_primary: Option<Addr>,
    /// Primary: when it began to lead (its quorum check starts then).
    lead_since: Millis,
    /// After recovering with no state (see `on_recover_reply`), the most recent log any member
    /// that remembers reported: this replica votes only for a candidate at least that recent.
    vote_floor: Pos,
    /// Primary: streams by address, the first index of this view, local waiters by index,
    /// forwarded proposals by index.
    links: BTreeMap<Addr, Link>,
    view_start: Index,
    waiting: BTreeMap<Index, Vec<u64>>,
    remote: BTreeMap<Index, Vec<(Addr, u64)>>,
    handover: Option<(Addr, Millis)>,
    /// Backup: writes not yet forwarded (no primary), and forwarded ones by token.
    held: VecDeque<Forward>,
    forwarded: BTreeMap<u64, Forward>,
    /// Backup: forwarded writes committed at an index not yet applied here, with what the
    /// primary said they answered.
    awaiting: BTreeMap<Index, Vec<(u64, Output)>>,
    recovery: Option<Recovery>,
    /// Joining/recovering: the retry delay, doubled per failure.
    retry_delay: u64,
    next_nonce: u64,
    timers: Timers,
    /// Whether there may be entries or a commit point to send.
    dirty: bool,
    out: VecDeque<Effect>,
}

fn empty_log(config: Config) -> Log {
    Log::from_snapshot(Snapshot {
        pos: Pos::default(),
        state: State::default(),
        config,
        config_index: 0,
    })
}

impl Replica {
    /// A replica that starts discovering (no contact) or joining its contact.
    pub fn new(cfg: ReplicaConfig, now: Millis) -> Replica {
        let log = empty_log(Config::default());
        let mut r = Replica {
            now,
            status: Status::Discovering,
            group: 0,
            view: 0,
            primary: None,
            voted_for: None,
            log,
            commit: 0,
            synced: false,
            heard_primary: now,
            lease_until: now,
            votes: BTreeSet::new(),
            pre_votes: BTreeSet::new(),
            prev_primary: None,
            lead_since: now,
            vote_floor: Pos::default(),
            links: BTreeMap::new(),
            view_start: 0,
            waiting: BTreeMap::new(),
            remote: BTreeMap::new(),
            handover: None,
            held: VecDeque::new(),
            forwarded: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            recovery: None,
            retry_delay: cfg.timeouts.retry_min,
            next_nonce: 0,
            timers: Timers::default(),
            dirty: false,
            out: VecDeque::new(),
            cfg,
        };
        match r.cfg.contact.clone() {
            None => {
                let at = now.after(r.cfg.timeouts.discovery);
                r.timers.set(Timer::Discovery, at);
            }
            Some(contact) => {
                r.status = Status::Joining;
                r.out.push_back(Effect::Join { to: contact });
                r.arm_retry();
            }
        }
        r
    }

    // --------------------------------------------------------------------------------------
    // What the node asks

    pub fn status(&self) -> Status {
        self.status
    }
    pub fn addr(&self) -> &Addr {
        &self.cfg.addr
    }
    pub fn group(&self) -> u64 {
        self.group
    }
    pub fn view(&self) -> View {
        self.view
    }
    pub fn primary(&self) -> Option<&Addr> {
        self.primary.as_ref()
    }
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && self.primary.as_ref() == Some(&self.cfg.addr)
    }
    pub fn config(&self) -> &Config {
        self.log.config()
    }
    pub fn commit(&self) -> Index {
        self.commit
    }
    pub fn last(&self) -> Pos {
        self.log.last()
    }
    pub fn applied(&self) -> Pos {
        self.log.applied()
    }
    /// The seed register's committed value ([`SEED_KEY`]), as `READ` returns it.
    pub fn value(&self) -> i64 {
        self.log.state().keys.seed_value(self.read_time())
    }

    /// The committed state: the keyspace and client table.
    pub fn state(&self) -> &log::State {
        self.log.state()
    }

    /// The time reads are answered at (see `read_time`), in milliseconds since the UNIX
    /// epoch: what `TIME` reports.
    pub fn wall_clock(&self) -> u64 {
        self.read_time()
    }

    /// This replica's wall clock in milliseconds since the UNIX epoch, or 0 without one.
    fn clock(&self) -> u64 {
        self.cfg.epoch.map_or(0, |e| e.saturating_add(self.now.0))
    }

    /// The time reads are answered at: the local clock, but never before the last entry
    /// applied, so a read never sees a key that a write it follows saw expired.
    fn read_time(&self) -> u64 {
        self.clock().max(self.log.state().time)
    }
    pub fn timeouts(&self) -> &Timeouts {
        &self.cfg.timeouts
    }

    /// The value after entry `index` (applied or not): what a seed-only backup holding entries
    /// up to `index` holds.
    pub fn value_after(&self, index: Index) -> i64 {
        let mut seed = self.log.state().keys.only(SEED_KEY);
        let mut time = self.log.state().time;
        let upto = index.min(self.log.last().index);
        for i in self.log.applied().index + 1..=upto {
            if let Some(Entry {
                payload: Payload::Write { op, .. },
                time: t,
                ..
            }) = self.log.entry(i)
                && op.touches(SEED_KEY)
            {
                time = time.max(*t);
                seed.apply_guarded(op, time);
            }
        }
        seed.seed_value(time)
    }

    /// The first write after entry `after`, up to the last entry: its index and value. What a
    /// seed-only backup holding the state after `after` is pushed next, one write at a time
    /// as the seed's primary does.
    pub fn next_write_after(&self, after: Index) -> Option<(Index, i64)> {
        let last = self.log.last().index;
        ((after + 1).max(self.log.first())..=last).find_map(|i| match self.log.entry(i) {
            Some(Entry {
                payload: Payload::Write { op, .. },
                ..
            }) if op.touches(SEED_KEY) => Some((i, self.value_after(i))),
            _ => None,
        })
    }

    /// Per replica the primary streams to: address, highest index held, when last heard from.
    pub fn links(&self) -> impl Iterator<Item = (&Addr, Index, Millis)> {
        self.links.iter().map(|(a, l)| (a, l.held, l.heard))
    }

    /// The next instant the replica wants [`Replica::tick`].
    pub fn next_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// The next effect, if any. Entries and commit points are batched: they are sent once the
    /// queue is empty, so every write that arrived meanwhile leaves in one message.
    pub fn poll(&mut self) -> Option<Effect> {
        if self.out.is_empty() && self.dirty {
            self.dirty = false;
            self.flush();
        }
        self.out.pop_front()
    }

    /// A client's read of the committed state, if this replica may serve it now.
    pub fn read(&self, query: &Query) -> Result<Output, ReadRefused> {
        self.may_read()
            .map(|()| self.log.state().keys.query(query, self.read_time()))
    }

    /// The seed's `READ`: the seed register's committed value, if this replica may serve it.
    pub fn read_seed(&self) -> Result<i64, ReadRefused> {
        self.may_read().map(|()| self.value())
    }

    /// Whether this replica may serve reads now, and why not.
    fn may_read(&self) -> Result<(), ReadRefused> {
        match self.status {
            Status::Normal if self.is_primary() => {
                if self.holds_lease() {
                    Ok(())
                } else {
                    Err(
                        "this primary cannot reach a majority of its group; not serving reads"
                            .to_owned(),
                    )
                }
            }
            Status::Normal if self.synced && self.now < self.lease_until => Ok(()),
            Status::Normal | Status::ViewChange => Err(
                "not in touch with a current primary; try again shortly or ask another server"
                    .to_owned(),
            ),
            Status::Discovering | Status::Joining | Status::Recovering => {
                Err("not joined to a group yet; try again shortly".to_owned())
            }
        }
    }

    /// Where a read at this backup must wait until the commit point reaches: the last entry it
    /// holds, if that is beyond what it knows committed. A write acknowledged anywhere is held
    /// by every replica of the active set, so once the commit point covers what a backup holds,
    /// a read there returns every write acknowledged before the read arrived (the seed's
    /// promise), without writes waiting for backups to apply.
    pub fn read_barrier(&self) -> Option<(View, Index)> {
        let last = self.log.last().index;
        (self.status == Status::Normal && !self.is_primary() && last > self.commit)
            .then_some((self.view, last))
    }

    /// Whether a read waiting for `barrier` may go ahead: the commit point reached it, or the
    /// view changed (the entries it waited for may be gone; the read is answered from what is
    /// committed now, or refused).
    ///
    /// A read never waits longer than this backup's lease: a primary that stopped talking
    /// (crashed between sending entries and their commit point) leaves the read to be answered
    /// without a lease, that is refused, rather than held forever.
    pub fn barrier_passed(&self, barrier: (View, Index)) -> bool {
        self.view != barrier.0
            || self.status != Status::Normal
            || self.commit >= barrier.1
            || self.now >= self.lease_until
    }

    /// A client's write, `token` naming it in the [`Effect::WriteDone`] that ends it.
    pub fn propose(&mut self, token: u64, op: KeyOp, tag: Option<Tag>) {
        if self.is_primary() {
            if let Some(reply) = tag.and_then(|t| self.log.state().reply_to(t)) {
                return self.done(token, WriteOutcome::Done(reply));
            }
            if let Err(why) = self.memory_allows(&op) {
                return self.done(token, WriteOutcome::Refused(why));
            }
            let index = self.append(Payload::Write { op, tag });
            self.waiting.entry(index).or_default().push(token);
            return self.advance_commit();
        }
        let f = Forward {
            token,
            op,
            tag,
            deadline: self.now.after(self.cfg.timeouts.forward_hold),
        };
        if self.can_forward() {
            self.forward(f);
        } else {
            self.held.push_back(f);
            self.arm_writes();
        }
    }

    /// Whether `op` fits under `--maxmemory`. The bound counts the applied keyspace plus what
    /// `op` can add; entries appended but not yet applied are not counted, so the keyspace may
    /// pass the bound by what is in flight, never by more.
    fn memory_allows(&self, op: &KeyOp) -> Result<(), String> {
        let Some(max) = self.cfg.max_memory else {
            return Ok(());
        };
        let keys = &self.log.state().keys;
        let growth = keys.growth(op);
        if growth > 0 && keys.used() + growth > max {
            return Err("OOM command not allowed when used memory > 'maxmemory'".to_owned());
        }
        Ok(())
    }

    /// An operator's switchover: hand the primary role to `to` (or the most caught-up backup).
    pub fn failover(&mut self, to: Option<Addr>) -> Result<Addr, String> {
        if !self.is_primary() {
            return Err("this server is not the primary".to_owned());
        }
        let config = self.log.config();
        let target = match to {
            Some(addr) => addr,
            None => self
                .links
                .iter()
                .filter(|(a, l)| !l.seed && config.id_of(a).is_some_and(|id| config.is_voter(id)))
                .max_by_key(|(_, l)| l.held)
                .map(|(a, _)| a.clone())
                .ok_or("no backup to hand over to")?,
        };
        let eligible = config
            .id_of(&target)
            .is_some_and(|id| config.is_voter(id) && config.is_active(id));
        if !eligible || target == self.cfg.addr {
            return Err(format!(
                "{target} is not an in-sync ditto backup of this group"
            ));
        }
        self.handover = Some((target.clone(), self.now.after(self.cfg.timeouts.handover)));
        self.log(
            LogLevel::Info,
            format!("handing over to {target} once it holds every entry"),
        );
        self.try_handover();
        Ok(target)
    }

    // --------------------------------------------------------------------------------------
    // Time

    /// Time passed: fire whatever timers are due.
    pub fn tick(&mut self, now: Millis) {
        self.now = now;
        if self.timers.fire(Timer::Discovery, now) && self.status == Status::Discovering {
            self.found_group();
        }
        if self.timers.fire(Timer::Retry, now) {
            self.retry();
        }
        if self.timers.fire(Timer::Heartbeat, now) && self.is_primary() {
            self.heartbeat();
        }
        if self.timers.fire(Timer::Probe, now)
            && matches!(self.status, Status::Normal | Status::ViewChange)
        {
            self.probe();
        }
        if self.timers.fire(Timer::Election, now) {
            self.election_due();
        }
        if self.timers.fire(Timer::ViewChange, now) && self.status == Status::ViewChange {
            self.election_due();
        }
        if self.timers.fire(Timer::Writes, now) {
            self.expire_writes();
        }
    }

    fn arm_retry(&mut self) {
        let at = self.now.after(self.retry_delay);
        self.timers.set(Timer::Retry, at);
        self.retry_delay = (self.retry_delay * 2).min(self.cfg.timeouts.retry_max);
    }

    fn arm_election(&mut self) {
        let t = &self.cfg.timeouts;
        let rank = self.rank().unwrap_or(0) as u64;
        let at = self
            .heard_primary
            .after(t.election_timeout + rank * t.election_stagger);
        self.timers.set(Timer::Election, at);
    }

    fn arm_writes(&mut self) {
        let next = self
            .held
            .iter()
            .chain(self.forwarded.values())
            .map(|f| f.deadline)
            .min();
        match next {
            Some(at) => self.timers.set(Timer::Writes, at),
            None => self.timers.clear(Timer::Writes),
        }
    }

    /// This replica's place among the backups that may campaign (active voters but the
    /// primary, by id): the first in line waits least.
    fn rank(&self) -> Option<usize> {
        let config = self.log.config();
        let me = config.id_of(&self.cfg.addr)?;
        config
            .voters()
            .filter(|(_, m)| m.active && Some(&m.addr) != self.primary.as_ref())
            .position(|(id, _)| id == me)
    }

    // --------------------------------------------------------------------------------------
    // Founding, joining, recovering

    fn found_group(&mut self) {
        self.group = self.cfg.group_seed;
        self.log = empty_log(Config::founding(self.cfg.addr.clone()));
        self.log(
            LogLevel::Warn,
            format!(
                "no group contacted this node within {} ms and it holds no data: founding group {:x} \
                 with this node as its primary. If this node belonged to a group that is entirely \
                 down, that group's data is gone (state is kept in memory only).",
                self.cfg.timeouts.discovery, self.group
            ),
        );
        self.view = 1;
        self.become_primary(BTreeSet::new());
    }

    /// The node's report on the seed `JOIN` it sent for [`Effect::Join`].
    pub fn on_join_answer(&mut self, from: &Addr, answer: JoinAnswer) {
        if self.status != Status::Joining {
            return;
        }
        match answer {
            JoinAnswer::Ditto {
                group,
                view,
                primary,
            } => {
                self.group = group;
                self.view = self.view.max(view);
                // The group may still name this replica as its primary: it restarted before
                // the others noticed. Then the member that answered is the one to ask.
                let first = primary
                    .filter(|p| *p != self.cfg.addr)
                    .unwrap_or_else(|| from.clone());
                self.start_recovery(first);
            }
            JoinAnswer::Failed(why) => {
                if self.retry_delay <= self.cfg.timeouts.retry_min * 2 {
                    self.log(
                        LogLevel::Warn,
                        format!("cannot join through {from} ({why}); retrying"),
                    );
                }
                // The retry timer was armed when this JOIN went out; arming it again here
                // would advance the backoff twice for one attempt.
            }
        }
    }

    fn start_recovery(&mut self, first: Addr) {
        self.next_nonce += 1;
        let nonce = self.next_nonce.wrapping_mul(0x9E37_79B9) ^ self.cfg.group_seed;
        self.status = Status::Recovering;
        self.recovery = Some(Recovery {
            nonce,
            first: first.clone(),
            config: None,
            replies: BTreeMap::new(),
            syncing: None,
        });
        self.retry_delay = self.cfg.timeouts.retry_min;
        self.send(first, Msg::Recover { nonce });
        self.arm_retry();
    }

    fn retry(&mut self) {
        match self.status {
            Status::Joining => {
                if let Some(contact) = self.cfg.contact.clone() {
                    self.out.push_back(Effect::Join { to: contact });
                }
                self.arm_retry();
            }
            Status::Recovering => {
                let Some(rec) = &mut self.recovery else {
                    return;
                };
                rec.replies.clear();
                rec.syncing = None;
                let nonce = rec.nonce;
                let mut to: Vec<Addr> = vec![rec.first.clone()];
                to.extend(self.cfg.contact.clone());
                if let Some(c) = &rec.config {
                    to.extend(c.voters().map(|(_, m)| m.addr.clone()));
                }
                to.sort();
                to.dedup();
                let me = self.cfg.addr.clone();
                for addr in to.into_iter().filter(|a| *a != me) {
                    self.send(addr, Msg::Recover { nonce });
                }
                self.arm_retry();
            }
            _ => {}
        }
    }

    /// An answer to this replica's `Recover`. VRR §4.3: once answers from as many other
    /// members as a quorum has came in, the primary of the newest view among them included,
    /// take a snapshot from that primary.
    ///
    /// One more case ends a recovery: every other member answered, none is the primary of the
    /// newest view, and some are recovering too (members restarted together; the primary then
    /// steps down for want of a quorum, and nobody could recover). Every view any member
    /// remembers is then known here, so this replica waits in `ViewChange` and votes, but only
    /// for a candidate whose log is at least as recent as the most recent one reported: a write
    /// committed in a view nobody remembers lived only on members that forgot it.
    fn on_recover_reply(
        &mut self,
        from: Addr,
        nonce: u64,
        reply: (View, Option<Addr>, Pos, bool),
        config: Config,
    ) {
        let me = self.cfg.addr.clone();
        let Some(rec) = &mut self.recovery else {
            return;
        };
        if rec.nonce != nonce || self.status != Status::Recovering {
            return;
        }
        // Keep the configuration of the most recent log heard of.
        let remembers = !reply.3;
        let best = rec
            .replies
            .values()
            .filter(|r| !r.3)
            .map(|r| (r.0, r.2))
            .max();
        if rec.config.is_none() || (remembers && best.is_none_or(|b| (reply.0, reply.2) >= b)) {
            rec.config = Some(config);
        }
        rec.replies.insert(from, reply);
        let Some(config) = rec.config.clone() else {
            return;
        };
        let amnesiac = config.id_of(&me).is_some_and(|id| config.is_voter(id)) && config.elects();
        // A new replica never voted: any primary will do. A member needs answers from as many
        // other members as a quorum has, so that it learns every view it may have voted in.
        let need = if amnesiac { config.quorum() } else { 1 };
        let others: Vec<&Addr> = rec.replies.keys().filter(|a| **a != me).collect();
        if others.len() < need || rec.syncing.is_some() {
            if amnesiac && others.len() < need {
                let asked: Vec<Addr> = config
                    .voters()
                    .map(|(_, m)| m.addr.clone())
                    .filter(|a| *a != me && !rec.replies.contains_key(a))
                    .collect();
                for addr in asked {
                    self.out.push_back(Effect::Send {
                        to: addr,
                        msg: Msg::Recover { nonce },
                    });
                }
            }
            return;
        }
        let max_view = rec
            .replies
            .values()
            .filter(|r| !r.3)
            .map(|r| r.0)
            .max()
            .unwrap_or(0);
        let primary = rec
            .replies
            .iter()
            .find(|(a, r)| !r.3 && r.0 == max_view && r.1.as_ref() == Some(*a))
            .map(|(a, _)| a.clone());
        if let Some(primary) = primary {
            rec.syncing = Some(primary.clone());
            self.view = self.view.max(max_view);
            return self.send(primary, Msg::Sync { view: max_view });
        }
        let everyone = config
            .voters()
            .all(|(_, m)| m.addr == me || rec.replies.contains_key(&m.addr));
        let others_forgot = rec.replies.values().any(|r| r.3);
        if !(amnesiac && everyone && others_forgot) {
            return; // The primary of the newest view has not answered (yet): retry asks again.
        }
        let floor = rec
            .replies
            .values()
            .filter(|r| !r.3)
            .map(|r| r.2)
            .max()
            .unwrap_or_default();
        self.log(
            LogLevel::Warn,
            format!(
                "every member answered and none leads: members restarted together. Waiting for                  a new primary holding at least entry {} of view {}",
                floor.index, floor.view
            ),
        );
        self.recovery = None;
        self.timers.clear(Timer::Retry);
        self.log = empty_log(config);
        self.commit = 0;
        self.vote_floor = floor;
        self.view = self.view.max(max_view);
        self.voted_for = None;
        self.synced = false;
        self.primary = None;
        self.status = Status::ViewChange;
        let at = self.now.after(self.cfg.timeouts.election_timeout);
        self.timers.set(Timer::ViewChange, at);
    }

    // --------------------------------------------------------------------------------------
    // Messages

    /// A message from the replica at `from` (as its connection's hello named it). `Err` is a
    /// refusal the node sends back as `ERR:`.
    pub fn on_msg(&mut self, now: Millis, from: Addr, msg: Msg) -> Result<(), String> {
        self.now = now;
        if let Some(view) = msg.view() {
            if view < self.view {
                // A vote request of an old view still gets an answer, so its sender learns.
                if let Msg::VoteRequest { .. } = msg {
                    self.send(
                        from,
                        Msg::Vote {
                            view: self.view,
                            granted: false,
                            pre: false,
                        },
                    );
                    return Ok(());
                }
                return Err(format!(
                    "stale view {view}; this group is in view {}",
                    self.view
                ));
            }
            if view > self.view && !self.adopt_view(&from, &msg, view) {
                return Ok(());
            }
        }
        match msg {
            Msg::Recover { nonce } => self.answer_recover(from, nonce),
            Msg::RecoverReply {
                nonce,
                view,
                primary,
                config,
                last,
                recovering,
            } => self.on_recover_reply(from, nonce, (view, primary, last, recovering), config),
            Msg::Probe { view, primary } => self.on_probe(from, view, primary),
            Msg::Sync { .. } => return self.on_sync(from),
            Msg::Snapshot {
                view,
                group,
                snapshot,
                commit,
            } => return self.on_snapshot(from, view, group, snapshot, commit),
            Msg::Entries {
                first,
                entries,
                commit,
                lease,
                sent,
                ..
            } => return self.on_entries(from, first, entries, commit, lease, sent),
            Msg::Ack { held, echo, .. } => self.on_ack(&from, held, echo),
            Msg::Propose { token, op, tag, .. } => self.on_propose(from, token, op, tag),
            Msg::ProposeReply { token, outcome, .. } => self.on_propose_reply(token, outcome),
            Msg::VoteRequest { view, last, pre } => self.on_vote_request(from, view, last, pre),
            Msg::Vote { view, granted, pre } => self.on_vote(from, view, granted, pre),
            Msg::Handover { to, .. } => self.on_handover(from, to),
        }
        Ok(())
    }

    /// A message of a newer view arrived. Decides whether to move to that view (and so stop
    /// following or leading the current one) before the message is handled. A vote request from
    /// a candidate while this replica still hears from a live primary does not move it (Raft
    /// §6's rule against disruptive servers): that keeps the primary's lease safe.
    fn adopt_view(&mut self, from: &Addr, msg: &Msg, view: View) -> bool {
        if matches!(msg, Msg::VoteRequest { .. }) && self.hears_primary() {
            self.send(
                from.clone(),
                Msg::Vote {
                    view,
                    granted: false,
                    pre: false,
                },
            );
            return false;
        }
        if matches!(
            self.status,
            Status::Discovering | Status::Joining | Status::Recovering
        ) {
            // Nothing to step down from; recovery tracks views on its own.
            return !matches!(msg, Msg::VoteRequest { .. } | Msg::Vote { .. });
        }
        self.step_down(view, "a newer view began");
        true
    }

    /// Whether a live primary holds this replica's promise not to vote for anyone else.
    fn hears_primary(&self) -> bool {
        if self.is_primary() {
            return true;
        }
        self.status == Status::Normal
            && self.primary.is_some()
            && self.now.0 < self.heard_primary.0 + self.cfg.timeouts.election_timeout
    }

    /// Leaves the current view for `view`: a primary stops leading (its waiting writes end as
    /// unknown), a backup stops following, and nobody is primary until one shows itself.
    fn step_down(&mut self, view: View, why: &str) {
        let was_primary = self.is_primary();
        if was_primary {
            self.log(
                LogLevel::Warn,
                format!("stepping down as primary of view {} ({why})", self.view),
            );
        }
        self.fail_waiting("the primary changed before the write committed; outcome unknown");
        self.links.clear();
        self.handover = None;
        self.timers.clear(Timer::Heartbeat);
        self.timers.set_earliest(Timer::Probe, self.now);
        if view > self.view {
            self.view = view;
            self.voted_for = None;
        }
        if let Some(p) = self.primary.take()
            && p != self.cfg.addr
        {
            // Whom a handover of the next view may come from.
            self.prev_primary = Some(p);
        }
        self.synced = false;
        self.votes.clear();
        self.status = Status::ViewChange;
        let at = self.now.after(self.cfg.timeouts.election_timeout);
        self.timers.set(Timer::ViewChange, at);
        self.lose_forwarded("lost the primary before it answered; outcome unknown");
    }

    fn answer_recover(&mut self, from: Addr, nonce: u64) {
        let recovering = match self.status {
            Status::Normal | Status::ViewChange => false,
            // A restarted member answers too, so that members restarted together can tell
            // that nobody else remembers more (see `on_recover_reply`).
            Status::Recovering => true,
            Status::Discovering | Status::Joining => return,
        };
        let primary = if self.status == Status::Normal {
            self.primary.clone()
        } else {
            None
        };
        let config = self.log.config().clone();
        let last = self.log.last();
        self.send(
            from,
            Msg::RecoverReply {
                nonce,
                view: self.view,
                primary,
                config,
                last,
                recovering,
            },
        );
    }

    fn on_probe(&mut self, from: Addr, view: View, primary: bool) {
        match self.status {
            Status::Discovering | Status::Joining => {
                self.timers.clear(Timer::Discovery);
                self.log(
                    LogLevel::Info,
                    format!(
                        "{from} (view {view}) counts this node as a member of its group; recovering"
                    ),
                );
                self.start_recovery(from);
            }
            Status::Normal | Status::ViewChange
                if primary && !self.is_primary() && !self.synced =>
            {
                self.send(from, Msg::Sync { view });
            }
            _ => {}
        }
    }

    /// A replica asks for a snapshot and a stream: it becomes a learner, or resumes as a backup.
    fn on_sync(&mut self, from: Addr) -> Result<(), String> {
        if !self.is_primary() {
            return Err(match &self.primary {
                Some(p) => format!("not the primary; the primary is {p}"),
                None => "not the primary; no primary at the moment".to_owned(),
            });
        }
        let snapshot = self.log.snapshot();
        let next = snapshot.pos.index + 1;
        self.send(
            from.clone(),
            Msg::Snapshot {
                view: self.view,
                group: self.group,
                snapshot,
                commit: self.commit,
            },
        );
        self.links.insert(
            from,
            Link {
                next,
                held: 0,
                heard: self.now,
                echo: Millis(0),
                sent_at: self.now,
                sent_commit: self.commit,
                seed: false,
            },
        );
        self.dirty = true;
        Ok(())
    }

    fn on_snapshot(
        &mut self,
        from: Addr,
        view: View,
        group: u64,
        snapshot: Snapshot,
        commit: Index,
    ) -> Result<(), String> {
        if self.group != 0 && group != self.group {
            return Err(format!(
                "snapshot of group {group:x}; this replica is in group {:x}",
                self.group
            ));
        }
        // Only the primary this replica asked, or a voter of its group, may install state here.
        let asked = self.recovery.as_ref().and_then(|r| r.syncing.as_ref()) == Some(&from);
        let voter = self
            .log
            .config()
            .id_of(&from)
            .is_some_and(|id| self.log.config().is_voter(id));
        if !asked && !voter {
            return Err(format!(
                "{from} is not a member of this group; snapshot refused"
            ));
        }
        if self.is_primary() {
            return Err("this replica is the primary of this view".to_owned());
        }
        let first_time = self.recovery.is_some() || self.status != Status::Normal;
        self.group = group;
        self.vote_floor = Pos::default();
        self.log = Log::from_snapshot(snapshot);
        self.commit = self
            .log
            .applied()
            .index
            .max(commit.min(self.log.last().index));
        self.view = view;
        self.primary = Some(from.clone());
        self.status = Status::Normal;
        self.synced = true;
        self.recovery = None;
        self.timers.clear(Timer::Retry);
        self.timers.clear(Timer::ViewChange);
        self.heard_primary = self.now;
        self.lease_until = self.now.after(self.cfg.timeouts.backup_lease);
        self.arm_election();
        let at = self.now.after(self.cfg.timeouts.probe);
        self.timers.set_earliest(Timer::Probe, at);
        if first_time {
            self.log(
                LogLevel::Info,
                format!(
                    "following primary {from} in view {view} from entry {}",
                    self.log.applied().index
                ),
            );
        }
        self.send(
            from,
            Msg::Ack {
                view,
                held: self.log.last().index,
                echo: Millis(0),
            },
        );
        self.release_held();
        Ok(())
    }

    fn on_entries(
        &mut self,
        from: Addr,
        first: Index,
        entries: Vec<Entry>,
        commit: Index,
        lease: bool,
        sent: Millis,
    ) -> Result<(), String> {
        if self.is_primary() {
            return Err("this replica is the primary of this view".to_owned());
        }
        if !self.synced || self.primary.as_ref() != Some(&from) {
            let member = self
                .log
                .config()
                .id_of(&from)
                .is_some_and(|id| self.log.config().is_voter(id));
            if !member {
                return Err(format!(
                    "{from} is not a member of this group; entries refused"
                ));
            }
            // A primary of this view this replica has no snapshot from yet: ask for one.
            if self.status != Status::Recovering {
                self.send(from, Msg::Sync { view: self.view });
            }
            return Ok(());
        }
        self.heard_primary = self.now;
        if lease {
            self.lease_until = self.now.after(self.cfg.timeouts.backup_lease);
        }
        self.arm_election();
        let last = self.log.last().index;
        if first > last + 1 {
            // A gap: something was lost on the way. Start over from a snapshot.
            self.synced = false;
            self.send(from, Msg::Sync { view: self.view });
            return Ok(());
        }
        for (i, entry) in entries.into_iter().enumerate() {
            if first + i as u64 > last {
                self.log.append(entry);
            }
        }
        self.learn_commit(commit);
        let held = self.log.last().index;
        self.send(
            from,
            Msg::Ack {
                view: self.view,
                held,
                echo: sent,
            },
        );
        Ok(())
    }

    /// The primary says entries up to `commit` are committed: apply what this replica holds of
    /// them, and answer the forwarded writes they cover.
    fn learn_commit(&mut self, commit: Index) {
        let commit = commit.min(self.log.last().index);
        if commit <= self.commit && self.log.applied().index >= self.commit {
            return;
        }
        self.commit = self.commit.max(commit);
        self.log.apply_to(self.commit);
        let applied = self.log.applied().index;
        let later = self.awaiting.split_off(&(applied + 1));
        for (token, output) in std::mem::replace(&mut self.awaiting, later)
            .into_values()
            .flatten()
        {
            self.done(token, WriteOutcome::Done(output));
        }
    }

    fn on_ack(&mut self, from: &Addr, held: Index, echo: Millis) {
        let now = self.now;
        let last = self.log.last().index;
        let Some(link) = self.links.get_mut(from) else {
            return;
        };
        link.heard = now;
        link.held = link.held.max(held.min(last));
        link.echo = link.echo.max(echo);
        self.advance_commit();
        self.promote_learners();
        self.try_handover();
    }

    fn on_propose(&mut self, from: Addr, token: u64, op: KeyOp, tag: Option<Tag>) {
        if !self.is_primary() {
            let outcome = Forwarded::Refused("not the primary; write not applied".to_owned());
            return self.send(
                from,
                Msg::ProposeReply {
                    view: self.view,
                    token,
                    outcome,
                },
            );
        }
        let early = match tag.and_then(|t| self.log.state().reply_to(t)) {
            Some(output) => Some(Forwarded::Committed {
                view: self.view,
                index: self.commit,
                output,
            }),
            None => self.memory_allows(&op).err().map(Forwarded::Refused),
        };
        if let Some(outcome) = early {
            return self.send(
                from,
                Msg::ProposeReply {
                    view: self.view,
                    token,
                    outcome,
                },
            );
        }
        let index = self.append(Payload::Write { op, tag });
        self.remote.entry(index).or_default().push((from, token));
        self.advance_commit();
    }

    fn on_propose_reply(&mut self, token: u64, outcome: Forwarded) {
        let Some(_) = self.forwarded.remove(&token) else {
            return;
        };
        self.arm_writes();
        match outcome {
            Forwarded::Committed {
                view,
                index,
                output,
            } if view == self.view && self.synced => {
                if self.log.applied().index >= index {
                    self.done(token, WriteOutcome::Done(output));
                } else {
                    self.awaiting
                        .entry(index)
                        .or_default()
                        .push((token, output));
                    // The primary committed it, so it is safe to apply as far as it goes.
                    self.learn_commit(index);
                }
            }
            Forwarded::Committed { .. } => self.done(
                token,
                WriteOutcome::Unknown(
                    "committed in a view this server no longer follows; outcome unknown".to_owned(),
                ),
            ),
            Forwarded::Refused(why) => self.done(token, WriteOutcome::Refused(why)),
        }
    }

    fn on_vote_request(&mut self, from: Addr, view: View, last: Pos, pre: bool) {
        let config = self.log.config();
        let bugs = &self.cfg.bugs;
        let candidate_ok = config.id_of(&from).is_some_and(|id| {
            config.is_voter(id) && (config.is_active(id) || bugs.removed_member_votes)
        });
        let up_to_date =
            (last >= self.log.last() && last >= self.vote_floor) || bugs.elect_without_longest_log;
        // A real request has moved this replica to `view` already (see `adopt_view`); a
        // pre-vote is answered as the real request would be, without recording anything.
        let free = if pre {
            view > self.view || (view == self.view && self.voted_for.is_none())
        } else {
            view == self.view && self.voted_for.as_ref().is_none_or(|v| *v == from)
        };
        let granted = matches!(self.status, Status::Normal | Status::ViewChange)
            && !self.is_primary()
            && free
            && candidate_ok
            && up_to_date
            && !self.hears_primary();
        if granted && !pre {
            self.voted_for = Some(from.clone());
            // Having voted, give the candidate time before campaigning in its place.
            let at = self.now.after(self.cfg.timeouts.election_timeout);
            self.timers.set(Timer::ViewChange, at);
        }
        self.send(from, Msg::Vote { view, granted, pre });
    }

    fn on_vote(&mut self, from: Addr, view: View, granted: bool, pre: bool) {
        if !granted || self.log.config().id_of(&from).is_none() {
            return;
        }
        let quorum = self.log.config().quorum();
        if pre {
            if view != self.view + 1 || !self.may_lead() || self.pre_votes.is_empty() {
                return;
            }
            self.pre_votes.insert(from);
            if self.pre_votes.len() >= quorum {
                self.campaign();
            }
            return;
        }
        if view != self.view
            || self.status != Status::ViewChange
            || self.voted_for.as_ref() != Some(&self.cfg.addr)
        {
            return;
        }
        self.votes.insert(from);
        if self.votes.len() >= quorum {
            let votes = std::mem::take(&mut self.votes);
            self.become_primary(votes);
        }
    }

    /// The primary this replica followed hands its role to `to` for the current view (the
    /// message's view, which the generic check moved this replica to).
    fn on_handover(&mut self, from: Addr, to: Addr) {
        let followed = self.primary.as_ref().or(self.prev_primary.as_ref());
        if followed != Some(&from) {
            return;
        }
        // The primary is leaving: reads stop at once. The target campaigns now; the others
        // give it an election timeout before they would (as if they had just heard from the
        // primary), rather than race it.
        self.lease_until = self.now;
        if to == self.cfg.addr {
            self.heard_primary = Millis(0);
            self.campaign_in(self.view);
        } else {
            self.heard_primary = self.now;
            self.arm_election();
        }
    }

    // --------------------------------------------------------------------------------------
    // Elections

    fn election_due(&mut self) {
        match self.status {
            Status::Normal if !self.is_primary() => {
                if self.now.0 < self.heard_primary.0 + self.cfg.timeouts.election_timeout {
                    return self.arm_election();
                }
                if !self.log.config().elects() {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "the primary {} has been silent for {} ms; a group of fewer than three \
                             members has no automatic failover (use `ditto failover` while the \
                             primary is up, or restart it)",
                            self.primary.as_ref().map_or("?".into(), |p| p.to_string()),
                            self.cfg.timeouts.election_timeout
                        ),
                    );
                    self.lease_until = self.now;
                    return;
                }
                if self.pre_votes.is_empty() {
                    let silent = self.now.0.saturating_sub(self.heard_primary.0);
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "the primary {} has been silent for {silent} ms; asking the group to                              elect a new one",
                            self.primary.as_ref().map_or("?".into(), |p| p.to_string()),
                        ),
                    );
                }
                self.pre_campaign();
            }
            Status::ViewChange if self.log.config().elects() => self.pre_campaign(),
            _ => {}
        }
    }

    /// Whether this replica may lead: an active voter, following or looking for a primary.
    fn may_lead(&self) -> bool {
        let config = self.log.config();
        config.id_of(&self.cfg.addr).is_some_and(|id| {
            config.is_voter(id) && (config.is_active(id) || self.cfg.bugs.removed_member_votes)
        }) && matches!(self.status, Status::Normal | Status::ViewChange)
            && !self.is_primary()
            && self.log.last() >= self.vote_floor
    }

    /// Asks every voter whether it would vote for this replica in the next view, without
    /// leaving the current one (Raft's pre-vote, §9.6): a node cut off from the group keeps
    /// failing here instead of raising its view, so it can rejoin the group's view afterwards.
    fn pre_campaign(&mut self) {
        if !self.may_lead() {
            return;
        }
        self.pre_votes = BTreeSet::from([self.cfg.addr.clone()]);
        let (view, last) = (self.view + 1, self.log.last());
        let voters: Vec<Addr> = self
            .log
            .config()
            .voters()
            .map(|(_, m)| m.addr.clone())
            .filter(|a| *a != self.cfg.addr)
            .collect();
        for to in voters {
            self.send(
                to,
                Msg::VoteRequest {
                    view,
                    last,
                    pre: true,
                },
            );
        }
        // Try again if this round does not gather a quorum: a backup still in `Normal` retries
        // on its election timer, a replica between views on its view-change timer.
        let rank = self.rank().unwrap_or(0) as u64;
        let t = &self.cfg.timeouts;
        let at = self
            .now
            .after(t.election_timeout + rank * t.election_stagger);
        let retry = if self.status == Status::Normal {
            Timer::Election
        } else {
            Timer::ViewChange
        };
        self.timers.set(retry, at);
        if self.pre_votes.len() >= self.log.config().quorum() {
            self.campaign();
        }
    }

    /// Moves to the next view and asks every voter for its vote in it.
    fn campaign(&mut self) {
        self.campaign_in(self.view + 1);
    }

    /// Asks for votes to lead `view`: the next one, or the current one when the primary of the
    /// last handed it over and this replica has voted for no one in it yet.
    fn campaign_in(&mut self, view: View) {
        if !self.may_lead()
            || view < self.view
            || view == self.view
                && (self.status != Status::ViewChange
                    || self.voted_for.as_ref().is_some_and(|v| *v != self.cfg.addr))
        {
            return;
        }
        let config = self.log.config().clone();
        let followed = self.primary.clone().or(self.prev_primary.take());
        self.step_down(view, "starting a view change");
        self.prev_primary = followed;
        self.voted_for = Some(self.cfg.addr.clone());
        self.votes = BTreeSet::from([self.cfg.addr.clone()]);
        self.pre_votes.clear();
        self.log(
            LogLevel::Info,
            format!("asking for votes to become primary of view {}", self.view),
        );
        let last = self.log.last();
        for (_, m) in config.voters() {
            if m.addr != self.cfg.addr {
                self.send(
                    m.addr.clone(),
                    Msg::VoteRequest {
                        view: self.view,
                        last,
                        pre: false,
                    },
                );
            }
        }
        if self.votes.len() >= config.quorum() {
            let votes = std::mem::take(&mut self.votes);
            self.become_primary(votes);
        }
    }

    /// Won view `self.view + 1` (or founded the group): lead it. The first entry is a
    /// configuration that drops from the active set the previous primary (unless it voted for
    /// this one) and adds the voters; when it commits, everything before it commits.
    fn become_primary(&mut self, votes: BTreeSet<Addr>) {
        self.lead_since = self.now;
        self.status = Status::Normal;
        self.primary = Some(self.cfg.addr.clone());
        self.voted_for = Some(self.cfg.addr.clone());
        self.synced = true;
        self.recovery = None;
        self.timers.clear(Timer::Election);
        self.timers.clear(Timer::ViewChange);
        self.timers.clear(Timer::Retry);
        let mut config = self.log.config().clone();
        for (id, m) in config.members.clone() {
            if votes.contains(&m.addr) {
                config = config.activated(&m.addr, Kind::Ditto);
            } else if self.prev_primary.as_ref() == Some(&m.addr) && m.addr != self.cfg.addr {
                // The old primary may be gone, and writes would wait for it.
                config = config.deactivated(id);
            }
        }
        if !config.active_has_quorum() {
            // Voters that answered fill the active set up to a quorum (they sync before any
            // entry commits).
            for addr in &votes {
                config = config.activated(addr, Kind::Ditto);
            }
        }
        self.links.clear();
        self.view_start = self.append(Payload::Config(config.clone()));
        self.log(
            LogLevel::Info,
            format!(
                "primary of view {} (group {:x}), {} member(s)",
                self.view,
                self.group,
                config.voters().count()
            ),
        );
        // Stream to every member at once rather than wait for each to ask.
        let snapshot = self.log.snapshot();
        for (_, m) in config.members.iter() {
            if m.kind == Kind::Ditto && m.addr != self.cfg.addr {
                self.send(
                    m.addr.clone(),
                    Msg::Snapshot {
                        view: self.view,
                        group: self.group,
                        snapshot: snapshot.clone(),
                        commit: self.commit,
                    },
                );
                self.links.insert(
                    m.addr.clone(),
                    Link {
                        next: snapshot.pos.index + 1,
                        held: 0,
                        heard: self.now,
                        echo: Millis(0),
                        sent_at: self.now,
                        sent_commit: self.commit,
                        seed: false,
                    },
                );
            } else if m.kind == Kind::Seed {
                self.links.insert(
                    m.addr.clone(),
                    Link {
                        next: self.log.last().index + 1,
                        held: 0,
                        heard: self.now,
                        echo: Millis(0),
                        sent_at: self.now,
                        sent_commit: 0,
                        seed: true,
                    },
                );
            }
        }
        self.dirty = true;
        let at = self.now.after(self.cfg.timeouts.heartbeat);
        self.timers.set(Timer::Heartbeat, at);
        self.timers.set(Timer::Probe, self.now);
        self.advance_commit();
        self.release_held();
    }

    // --------------------------------------------------------------------------------------
    // The primary's work

    fn append(&mut self, payload: Payload) -> Index {
        self.dirty = true;
        let time = self.clock().max(self.log.last_time());
        self.log.append(Entry {
            view: self.view,
            time,
            payload,
        })
    }

    /// Raises the commit point to what the configurations allow, applies it, and answers the
    /// writes it covers. Only entries of this view are counted (Raft §5.4.2): earlier ones
    /// commit with the view's first entry.
    fn advance_commit(&mut self) {
        if !self.is_primary() {
            return;
        }
        let last = self.log.last().index;
        let held = |addr: &Addr| -> Index {
            if *addr == self.cfg.addr {
                last
            } else {
                self.links.get(addr).map_or(0, |l| l.held)
            }
        };
        // The newest configuration governs from its own entry on. If that entry is not
        // committed under it, the entries before it are governed by the configuration before.
        let mut configs: Vec<(Index, &Config)> = vec![(0, self.log.config_at(0))];
        configs.extend(self.log.pending_configs().map(|(i, c)| (*i, c)));
        let mut upper = last;
        let mut commit = self.commit;
        for (at, config) in configs.into_iter().rev() {
            let c = config
                .committed_by(|id| config.member(id).map_or(0, |m| held(&m.addr)))
                .min(upper);
            if c >= at {
                commit = commit.max(c);
                break;
            }
            upper = at.saturating_sub(1);
        }
        if self.cfg.bugs.stale_primary_acks && !self.holds_lease() {
            commit = last;
        }
        if commit < self.view_start {
            return;
        }
        if commit > self.commit {
            self.commit = commit;
            self.dirty = true;
        }
        let done: BTreeMap<Index, Output> = self.log.apply_to(self.commit).into_iter().collect();
        if done.is_empty() && self.waiting.is_empty() && self.remote.is_empty() {
            return;
        }
        // Every waiter at or below the commit point was applied just now: a write is waited
        // for from its append, which is above the commit point, until the call that passes it.
        let answer = |index: Index| -> Output {
            done.get(&index).cloned().unwrap_or_else(|| {
                debug_assert!(false, "entry {index} answered before it was applied");
                Output::Ok
            })
        };
        let later = self.waiting.split_off(&(self.commit + 1));
        for (index, tokens) in std::mem::replace(&mut self.waiting, later) {
            for token in tokens {
                self.done(token, WriteOutcome::Done(answer(index)));
            }
        }
        let later = self.remote.split_off(&(self.commit + 1));
        for (index, waiters) in std::mem::replace(&mut self.remote, later) {
            for (to, token) in waiters {
                let outcome = Forwarded::Committed {
                    view: self.view,
                    index,
                    output: answer(index),
                };
                self.send(
                    to,
                    Msg::ProposeReply {
                        view: self.view,
                        token,
                        outcome,
                    },
                );
            }
        }
        // Entries every stream has are no longer needed for sending.
        let keep = self
            .links
            .values()
            .filter(|l| !l.seed)
            .map(|l| l.next)
            .min()
            .unwrap_or(self.commit + 1);
        self.log.trim(keep);
    }

    /// Sends each stream what it lacks: new entries, or the new commit point.
    fn flush(&mut self) {
        if !self.is_primary() {
            return;
        }
        let last = self.log.last().index;
        let (view, group, commit, now) = (self.view, self.group, self.commit, self.now);
        let suspect = self.cfg.timeouts.backup_suspect;
        let mut sends = Vec::new();
        for (addr, link) in self.links.iter_mut().filter(|(_, l)| !l.seed) {
            if link.next < self.log.first() {
                // Too far behind for entries: a fresh snapshot.
                link.next = self.log.applied().index + 1;
                sends.push((
                    addr.clone(),
                    Msg::Snapshot {
                        view,
                        group,
                        snapshot: self.log.snapshot(),
                        commit,
                    },
                ));
            }
            if link.next <= last || link.sent_commit < commit {
                loop {
                    let entries = self.log.entries_from(link.next, MAX_BATCH, MAX_BATCH_BYTES);
                    let first = link.next;
                    link.next += entries.len() as u64;
                    let lease = now.0.saturating_sub(link.heard.0) < suspect;
                    sends.push((
                        addr.clone(),
                        Msg::Entries {
                            view,
                            first,
                            entries,
                            commit,
                            lease,
                            sent: now,
                        },
                    ));
                    if link.next > last {
                        break;
                    }
                }
                link.sent_at = now;
                link.sent_commit = commit;
            }
        }
        for (to, msg) in sends {
            self.send(to, msg);
        }
    }

    /// Every heartbeat interval: keep idle streams alive (renewing leases), drop silent backups
    /// from the active set, and step down if no quorum has been heard from.
    fn heartbeat(&mut self) {
        let t = self.cfg.timeouts.clone();
        let now = self.now;
        let (view, commit, last) = (self.view, self.commit, self.log.last().index);
        let mut beats = Vec::new();
        for (addr, link) in self.links.iter_mut().filter(|(_, l)| !l.seed) {
            if now.0.saturating_sub(link.sent_at.0) >= t.heartbeat {
                let lease = now.0.saturating_sub(link.heard.0) < t.backup_suspect;
                beats.push((
                    addr.clone(),
                    Msg::Entries {
                        view,
                        first: link.next,
                        entries: Vec::new(),
                        commit,
                        lease,
                        sent: now,
                    },
                ));
                link.sent_at = now;
                link.sent_commit = commit;
            }
        }
        let _ = last;
        for (to, msg) in beats {
            self.send(to, msg);
        }
        self.timers.set(Timer::Heartbeat, now.after(t.heartbeat));
        self.remove_silent();
        let config = self.log.config();
        let leading_long = now.0 >= self.lead_since.0 + t.election_timeout;
        if config.elects() && leading_long && !self.heard_quorum_within(t.election_timeout) {
            self.step_down(self.view, "cannot reach a majority of its group");
            self.fail_held("no primary reachable; write not applied");
        }
    }

    /// Whether a quorum of voters (this one included) acknowledged a message sent within `ms`.
    fn heard_quorum_within(&self, ms: u64) -> bool {
        let config = self.log.config();
        let since = self.now.0.saturating_sub(ms);
        let fresh = config
            .voters()
            .filter(|(_, m)| {
                m.addr == self.cfg.addr
                    || self
                        .links
                        .get(&m.addr)
                        .is_some_and(|l| l.echo.0 >= since && l.echo.0 > 0)
            })
            .count();
        fresh >= config.quorum()
    }

    fn holds_lease(&self) -> bool {
        !self.log.config().elects() || self.heard_quorum_within(self.cfg.timeouts.primary_lease)
    }

    /// Whether a configuration change may be proposed now: this replica leads, this view's
    /// first entry is committed, and no other change is in flight (one at a time, Raft §4.1).
    fn may_reconfigure(&self) -> bool {
        self.is_primary()
            && self.commit >= self.view_start
            && self.log.pending_configs().next().is_none()
    }

    /// Appends configuration `next` (said so in the log) and commits what it allows.
    fn reconfigure(&mut self, next: Config, level: LogLevel, why: String) {
        self.log(level, why);
        self.append(Payload::Config(next));
        self.advance_commit();
    }

    /// Proposes removing from the active set a backup silent for `backup_remove`, if no other
    /// change is in flight, this view's first entry is committed, and a quorum stays active.
    fn remove_silent(&mut self) {
        if !self.may_reconfigure() {
            return;
        }
        let config = self.log.config().clone();
        let limit = self.cfg.timeouts.backup_remove;
        let now = self.now;
        let silent = config.active().find(|(_, m)| {
            m.addr != self.cfg.addr
                && self
                    .links
                    .get(&m.addr)
                    .is_none_or(|l| now.0.saturating_sub(l.heard.0) >= limit)
        });
        let Some((id, m)) = silent else {
            return;
        };
        let next = config.deactivated(id);
        if !next.active_has_quorum() {
            return;
        }
        let why = format!(
            "{} has not answered for {limit} ms; writes stop waiting for it once a majority accepts",
            m.addr
        );
        self.reconfigure(next, LogLevel::Warn, why);
    }

    /// Proposes adding to the active set a learner that holds every entry.
    fn promote_learners(&mut self) {
        if !self.may_reconfigure() {
            return;
        }
        let config = self.log.config();
        let last = self.log.last().index;
        let ready = self.links.iter().find(|(addr, l)| {
            !l.seed && l.held >= last && config.id_of(addr).is_none_or(|id| !config.is_active(id))
        });
        let Some((addr, _)) = ready else {
            return;
        };
        let next = config.activated(addr, Kind::Ditto);
        let why = format!("{addr} caught up; adding it to the active set");
        self.reconfigure(next, LogLevel::Info, why);
    }

    /// Contacts the members that may have restarted and forgotten their group, which wait to
    /// be claimed (see `Status::Discovering`): a primary probes the members it has not heard
    /// from lately, a backup its silent primary, a replica between views every voter.
    fn probe(&mut self) {
        let config = self.log.config().clone();
        let quiet = self.cfg.timeouts.backup_suspect;
        let now = self.now;
        // Members outside the active set are the ones that may have restarted: everyone
        // probes them, so a restarted member is claimed even while the group has no primary.
        let inactive = config
            .voters()
            .filter(|(_, m)| !m.active)
            .map(|(_, m)| m.addr.clone());
        let targets: Vec<Addr> = if self.is_primary() {
            config
                .voters()
                .map(|(_, m)| m.addr.clone())
                .filter(|a| {
                    self.links.get(a).is_none_or(|l| {
                        let never = l.echo == Millis(0) && l.held == 0;
                        never || now.0.saturating_sub(l.heard.0) >= quiet
                    })
                })
                .collect()
        } else if self.status == Status::Normal {
            self.primary
                .clone()
                .filter(|_| now.0.saturating_sub(self.heard_primary.0) >= quiet)
                .into_iter()
                .chain(inactive)
                .collect()
        } else {
            config.voters().map(|(_, m)| m.addr.clone()).collect()
        };
        let (primary, me) = (self.is_primary(), self.cfg.addr.clone());
        for to in targets.into_iter().filter(|a| *a != me) {
            self.send(
                to,
                Msg::Probe {
                    view: self.view,
                    primary,
                },
            );
        }
        let at = self.now.after(self.cfg.timeouts.probe);
        self.timers.set(Timer::Probe, at);
    }

    fn try_handover(&mut self) {
        let Some((target, deadline)) = self.handover.clone() else {
            return;
        };
        if self.now > deadline {
            self.handover = None;
            return self.log(
                LogLevel::Warn,
                format!("switchover to {target} abandoned: it did not catch up in time"),
            );
        }
        let last = self.log.last().index;
        if self.links.get(&target).is_none_or(|l| l.held < last) {
            return;
        }
        let config = self.log.config().clone();
        self.log(LogLevel::Info, format!("handed over to {target}"));
        let view = self.view;
        self.step_down(view, "switchover");
        // Vote for the target in the next view; campaign for nothing.
        self.view = view + 1;
        self.voted_for = Some(target.clone());
        self.timers.clear(Timer::ViewChange);
        let at = self.now.after(2 * self.cfg.timeouts.election_timeout);
        self.timers.set(Timer::ViewChange, at);
        // The handover names the view the target is to lead: a member may hear of that view
        // from another member first (on another connection), and the handover must still
        // count then, not be refused as a message of an older view.
        for (_, m) in config.voters() {
            if m.addr != self.cfg.addr {
                self.send(
                    m.addr.clone(),
                    Msg::Handover {
                        view: view + 1,
                        to: target.clone(),
                    },
                );
            }
        }
    }

    // --------------------------------------------------------------------------------------
    // Seed-only backups, fed by the node's push adapter

    /// A seed-only backup at `addr` acknowledged a push of the state after entry `index`.
    pub fn seed_held(&mut self, addr: &Addr, index: Index) {
        if !self.is_primary() {
            return;
        }
        let now = self.now;
        let link = self.links.entry(addr.clone()).or_insert(Link {
            next: index + 1,
            held: 0,
            heard: now,
            echo: Millis(0),
            sent_at: now,
            sent_commit: 0,
            seed: true,
        });
        link.heard = now;
        link.held = link.held.max(index);
        let config = self.log.config();
        let active = config.id_of(addr).is_some_and(|id| config.is_active(id));
        if !active && index >= self.log.last().index && self.may_reconfigure() {
            let next = config.activated(addr, Kind::Seed);
            let why = format!(
                "seed-only backup {addr} holds the current value; adding it to the active set"
            );
            return self.reconfigure(next, LogLevel::Info, why);
        }
        self.advance_commit();
    }

    /// A seed-only backup at `addr` did not answer a push in time: writes must stop waiting
    /// for it (through a configuration a majority accepts, like any silent backup).
    pub fn seed_failed(&mut self, addr: &Addr, why: &str) {
        if !self.may_reconfigure() {
            return;
        }
        let config = self.log.config().clone();
        let Some(id) = config.id_of(addr).filter(|id| config.is_active(*id)) else {
            return;
        };
        let next = config.deactivated(id);
        if !next.active_has_quorum() {
            return;
        }
        self.links.remove(addr);
        let why = format!(
            "seed-only backup {addr} {why}; writes stop waiting for it, and it is pushed the current value until it answers again"
        );
        self.reconfigure(next, LogLevel::Warn, why);
    }

    /// The seed-only backups of the configuration: address, whether active.
    pub fn seed_backups(&self) -> Vec<(Addr, bool)> {
        self.log
            .config()
            .members
            .values()
            .filter(|m| m.kind == Kind::Seed)
            .map(|m| (m.addr.clone(), m.active))
            .collect()
    }

    // --------------------------------------------------------------------------------------
    // Writes at a backup

    fn can_forward(&self) -> bool {
        self.status == Status::Normal && self.synced && self.primary.is_some()
    }

    fn forward(&mut self, mut f: Forward) {
        let Some(primary) = self.primary.clone() else {
            return self.held.push_back(f);
        };
        f.deadline = self.now.after(self.cfg.timeouts.forward_timeout);
        self.send(
            primary,
            Msg::Propose {
                view: self.view,
                token: f.token,
                op: f.op.clone(),
                tag: f.tag,
            },
        );
        self.forwarded.insert(f.token, f);
        self.arm_writes();
    }

    fn release_held(&mut self) {
        if self.is_primary() {
            for f in std::mem::take(&mut self.held) {
                let index = self.append(Payload::Write {
                    op: f.op,
                    tag: f.tag,
                });
                self.waiting.entry(index).or_default().push(f.token);
            }
            self.advance_commit();
        } else if self.can_forward() {
            for f in std::mem::take(&mut self.held) {
                self.forward(f);
            }
        }
        self.arm_writes();
    }

    fn expire_writes(&mut self) {
        let now = self.now;
        while self.held.front().is_some_and(|f| f.deadline <= now) {
            if let Some(f) = self.held.pop_front() {
                self.done(
                    f.token,
                    WriteOutcome::Refused("no primary reachable; write not applied".to_owned()),
                );
            }
        }
        let due: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            self.forwarded.remove(&token);
            self.done(
                token,
                WriteOutcome::Unknown("no answer from the primary; outcome unknown".to_owned()),
            );
        }
        self.arm_writes();
    }

    fn lose_forwarded(&mut self, why: &str) {
        for (token, _) in std::mem::take(&mut self.forwarded) {
            self.done(token, WriteOutcome::Unknown(why.to_owned()));
        }
        for (token, _) in std::mem::take(&mut self.awaiting).into_values().flatten() {
            self.done(token, WriteOutcome::Unknown(why.to_owned()));
        }
        self.arm_writes();
    }

    fn fail_waiting(&mut self, why: &str) {
        for token in std::mem::take(&mut self.waiting).into_values().flatten() {
            self.done(token, WriteOutcome::Unknown(why.to_owned()));
        }
        self.remote.clear();
    }

    fn fail_held(&mut self, why: &str) {
        for f in std::mem::take(&mut self.held) {
            self.done(f.token, WriteOutcome::Refused(why.to_owned()));
        }
        self.arm_writes();
    }

    // --------------------------------------------------------------------------------------

    fn done(&mut self, token: u64, outcome: WriteOutcome) {
        self.out.push_back(Effect::WriteDone { token, outcome });
    }

    fn send(&mut self, to: Addr, msg: Msg) {
        self.out.push_back(Effect::Send { to, msg });
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Effect::Log { level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::log::Tag;
    use crate::wire::MAX_LINE;

    /// The largest entry there is: every number at its widest.
    fn widest_entry() -> Entry {
        Entry {
            view: u64::MAX,
            time: u64::MAX,
            payload: Payload::Write {
                op: KeyOp::seed_write(i64::MIN),
                tag: Some(Tag {
                    client: u64::MAX,
                    number: u64::MAX,
                }),
            },
        }
    }

    #[test]
    fn a_full_batch_of_the_widest_entries_fits_in_a_line() {
        let msg = Msg::Entries {
            view: u64::MAX,
            first: u64::MAX,
            entries: vec![widest_entry(); MAX_BATCH],
            commit: u64::MAX,
            lease: true,
            sent: Millis(u64::MAX),
        };
        assert!(
            msg.to_line().len() < MAX_LINE,
            "{} bytes",
            msg.to_line().len()
        );
    }

    #[test]
    fn a_snapshot_with_a_full_client_table_fits_in_a_line() {
        let mut state = State::default();
        for c in 0..log::CLIENT_TABLE_SIZE as u64 {
            let record = log::ClientRecord {
                number: u64::MAX,
                index: u64::MAX,
                output: Output::Int(i64::MIN),
            };
            state.clients.insert(u64::MAX - c, record);
        }
        let mut config = Config::founding(Addr::local(7000));
        for p in 7001..7008 {
            config = config.activated(&Addr::local(p), Kind::Ditto);
        }
        let msg = Msg::Snapshot {
            view: u64::MAX,
            group: u64::MAX,
            snapshot: Snapshot {
                pos: Pos {
                    view: u64::MAX,
                    index: u64::MAX,
                },
                state,
                config,
                config_index: u64::MAX,
            },
            commit: u64::MAX,
        };
        assert!(
            msg.to_line().len() < MAX_LINE,
            "{} bytes",
            msg.to_line().len()
        );
    }
}
