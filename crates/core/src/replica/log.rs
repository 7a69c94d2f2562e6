//! The replicated log and the state it folds into.
//!
//! Entries are numbered from 1; each carries the view that created it. A replica applies
//! entries to its [`State`] only up to the commit point, so what it serves can never be undone
//! by a view change. The log keeps the entries after the applied point (not yet committed) and,
//! at the primary, the applied ones some backup still needs; a backup too far behind gets a
//! [`Snapshot`] instead.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::op::{Op, Register};
use crate::replica::config::Config;

/// A view number: grows with every view change; each view has at most one primary.
pub type View = u64;
/// A position in the log: entry 1 is the first; 0 is the empty log.
pub type Index = u64;

/// Where an entry sits: the view that created it, and its index. Compared by view first, so
/// the later of two logs is the one whose last entry comes from the later view (Raft §5.4.1).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Pos {
    pub view: View,
    pub index: Index,
}

/// Who wrote a write, for at-most-once application: a client id and that client's request
/// number. A client numbers its writes upwards and retries a write with the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tag {
    pub client: u64,
    pub number: u64,
}

/// What an entry does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// A client's write, tagged when the client asked for at-most-once.
    Write { op: Op, tag: Option<Tag> },
    /// A new configuration, in force from this entry on. The first entry of every view is one.
    Config(Config),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub view: View,
    pub payload: Payload,
}

/// How many clients the client table remembers; the least recently written are forgotten
/// first, and a forgotten client's retry is applied as a new write. The table travels in
/// snapshots, and a snapshot is one line below the line limit until state transfer is chunked:
/// 512 clients at their widest take about 34 KB.
pub const CLIENT_TABLE_SIZE: usize = 512;

/// The replicated state machine: the register and the client table.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct State {
    pub register: Register,
    /// Per client: the number of its latest applied write and the index it was applied at.
    pub clients: BTreeMap<u64, (u64, Index)>,
}

impl State {
    /// Applies a write at `index`, unless its tag shows it was applied already. Returns whether
    /// it was applied.
    fn apply(&mut self, index: Index, op: &Op, tag: Option<Tag>) -> bool {
        if let Some(tag) = tag {
            if self
                .clients
                .get(&tag.client)
                .is_some_and(|(number, _)| *number >= tag.number)
            {
                return false;
            }
            self.clients.insert(tag.client, (tag.number, index));
            if self.clients.len() > CLIENT_TABLE_SIZE
                && let Some(oldest) = self
                    .clients
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(c, _)| *c)
            {
                self.clients.remove(&oldest);
            }
        }
        self.register.apply(op);
        true
    }

    /// Whether the write tagged `tag` has been applied.
    pub fn has_applied(&self, tag: Tag) -> bool {
        self.clients
            .get(&tag.client)
            .is_some_and(|(number, _)| *number >= tag.number)
    }
}

/// Everything a replica needs to continue from an applied point: what a learner or a backup of
/// a new view installs before the entries that follow it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last entry folded into `state`.
    pub pos: Pos,
    pub state: State,
    /// The configuration in force at `pos`, and the index of the entry that carried it.
    pub config: Config,
    pub config_index: Index,
}

/// A replica's log. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Log {
    /// Entries from index `first`; entries before `first` are folded into `state` or gone.
    first: Index,
    entries: VecDeque<Entry>,
    /// Position of the last entry applied to `state`.
    applied: Pos,
    state: State,
    /// The configurations from the one in force at `applied` on, with the index of the entry
    /// that carried each.
    configs: Vec<(Index, Config)>,
}

impl Log {
    /// The log a snapshot starts.
    pub fn from_snapshot(s: Snapshot) -> Log {
        Log {
            first: s.pos.index + 1,
            entries: VecDeque::new(),
            applied: s.pos,
            state: s.state,
            configs: vec![(s.config_index, s.config)],
        }
    }

    /// The position of the last entry.
    pub fn last(&self) -> Pos {
        match self.entries.back() {
            Some(e) => Pos {
                view: e.view,
                index: self.first + self.entries.len() as u64 - 1,
            },
            None => self.applied,
        }
    }

    pub fn applied(&self) -> Pos {
        self.applied
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The configuration in force after the last entry (committed or not, as Raft uses it).
    pub fn config(&self) -> &Config {
        &self.latest_config().1
    }

    /// The latest configuration and the index of its entry.
    pub fn latest_config(&self) -> &(Index, Config) {
        self.configs
            .last()
            .expect("a log always has the configuration of its snapshot")
    }

    /// The configuration in force at `index` (at or after the applied point).
    pub fn config_at(&self, index: Index) -> &Config {
        self.configs
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map_or(&self.configs[0].1, |(_, c)| c)
    }

    /// The index of every configuration entry after the applied point, oldest first.
    pub fn pending_configs(&self) -> impl Iterator<Item = &(Index, Config)> {
        self.configs.iter().skip(1)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        index
            .checked_sub(self.first)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// The oldest index still held as an entry.
    pub fn first(&self) -> Index {
        self.first
    }

    /// Appends an entry after the last one; returns its index.
    pub fn append(&mut self, entry: Entry) -> Index {
        let index = self.last().index + 1;
        if let Payload::Config(c) = &entry.payload {
            self.configs.push((index, c.clone()));
        }
        self.entries.push_back(entry);
        index
    }

    /// Applies every entry up to `commit` (bounded by what the log holds). Returns the writes
    /// applied, by index, with whether each took effect (a duplicate of an applied tagged write
    /// does not).
    pub fn apply_to(&mut self, commit: Index) -> Vec<(Index, bool)> {
        let mut done = Vec::new();
        let upto = commit.min(self.last().index);
        while self.applied.index < upto {
            let index = self.applied.index + 1;
            let Some(entry) = self.entry(index) else {
                break;
            };
            let view = entry.view;
            if let Payload::Write { op, tag } = &entry.payload {
                let (op, tag) = (*op, *tag);
                let took = self.state.apply(index, &op, tag);
                done.push((index, took));
            }
            self.applied = Pos { view, index };
        }
        // Configurations before the applied point are no longer needed, but the one in force.
        while self.configs.len() > 1 && self.configs[1].0 <= self.applied.index {
            self.configs.remove(0);
        }
        done
    }

    /// Forgets applied entries before `keep_from` (nobody needs them any more).
    pub fn trim(&mut self, keep_from: Index) {
        let keep_from = keep_from.min(self.applied.index + 1);
        while self.first < keep_from && self.entries.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// A snapshot of the applied state, for a replica that cannot be sent the entries.
    pub fn snapshot(&self) -> Snapshot {
        let (config_index, config) = self.configs[0].clone();
        Snapshot {
            pos: self.applied,
            state: self.state.clone(),
            config,
            config_index,
        }
    }

    /// The entries from `from` to the last (those held), for sending.
    pub fn entries_from(&self, from: Index, max: usize) -> Vec<Entry> {
        let start = from.saturating_sub(self.first) as usize;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;

    fn write(view: View, v: i64, tag: Option<Tag>) -> Entry {
        Entry {
            view,
            payload: Payload::Write {
                op: Op::Set(v),
                tag,
            },
        }
    }

    fn empty() -> Log {
        Log::from_snapshot(Snapshot {
            pos: Pos::default(),
            state: State::default(),
            config: Config::founding(Addr::local(7000)),
            config_index: 0,
        })
    }

    #[test]
    fn applies_only_up_to_the_commit_point() {
        let mut log = empty();
        log.append(write(1, 5, None));
        log.append(write(1, 6, None));
        assert_eq!(log.last(), Pos { view: 1, index: 2 });
        assert_eq!(log.apply_to(1), vec![(1, true)]);
        assert_eq!(log.state().register.value(), 5);
        assert_eq!(log.apply_to(9), vec![(2, true)]);
        assert_eq!(log.state().register.value(), 6);
    }

    #[test]
    fn a_retried_tagged_write_is_applied_once() {
        let mut log = empty();
        let tag = Some(Tag {
            client: 7,
            number: 1,
        });
        log.append(write(1, 5, tag));
        log.append(write(1, 6, None));
        log.append(write(2, 5, tag));
        assert_eq!(log.apply_to(3), vec![(1, true), (2, true), (3, false)]);
        assert_eq!(
            log.state().register.value(),
            6,
            "the retry did not undo the later write"
        );
    }

    #[test]
    fn snapshots_and_trimming_keep_what_is_needed() {
        let mut log = empty();
        for v in 1..=5 {
            log.append(write(1, v, None));
        }
        log.apply_to(3);
        log.trim(10);
        assert_eq!(log.first(), 4, "unapplied entries stay");
        let snap = log.snapshot();
        assert_eq!(snap.pos.index, 3);
        let mut copy = Log::from_snapshot(snap);
        for e in log.entries_from(4, 10) {
            copy.append(e);
        }
        copy.apply_to(5);
        log.apply_to(5);
        assert_eq!(copy.state(), log.state());
        assert_eq!(copy.last(), log.last());
    }

    #[test]
    fn configurations_take_effect_from_their_entry() {
        let mut log = empty();
        let two = log
            .config()
            .activated(&Addr::local(7001), crate::replica::config::Kind::Ditto);
        log.append(write(1, 1, None));
        let at = log.append(Entry {
            view: 1,
            payload: Payload::Config(two.clone()),
        });
        assert_eq!(at, 2);
        assert_eq!(log.config(), &two);
        assert_eq!(log.config_at(1).voters().count(), 1);
        assert_eq!(log.config_at(2), &two);
        log.apply_to(2);
        assert_eq!(log.pending_configs().count(), 0);
        assert_eq!(log.snapshot().config, two);
    }
}
