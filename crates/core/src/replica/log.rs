//! The replicated log and the state it folds into.
//!
//! Entries are numbered from 1; each carries the view that created it. A replica applies
//! entries to its [`State`] only up to the commit point, so what it serves can never be undone
//! by a view change. The log keeps the entries after the applied point (not yet committed) and,
//! at the primary, the applied ones some backup still needs; a backup too far behind gets a
//! [`Snapshot`] instead.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::keyspace::{KeyError, KeyOp, Keyspace, Output};
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
    Write { op: KeyOp, tag: Option<Tag> },
    /// A new configuration, in force from this entry on. The first entry of every view is one.
    Config(Config),
}

impl Payload {
    /// About how many bytes of keys and values this carries (at least 1).
    pub fn size(&self) -> usize {
        match self {
            Payload::Write { op, .. } => op.size().max(1),
            Payload::Config(_) => 1,
        }
    }
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub view: View,
    /// The primary's clock when it appended the entry, in milliseconds since the UNIX epoch
    /// (0 where the replica runs without a clock). Never less than the entry before it, across
    /// primaries too; expiry reads only this, so every replica expires the same keys at the
    /// same entry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time: u64,
    pub payload: Payload,
}

fn is_zero(t: &u64) -> bool {
    *t == 0
}

/// How many clients the client table remembers; the least recently written are forgotten
/// first, and a forgotten client's retry is applied as a new write. The table travels in
/// snapshots, and a snapshot is one line below the line limit until state transfer is chunked:
/// 512 clients at their widest take about 34 KB.
pub const CLIENT_TABLE_SIZE: usize = 512;

/// A client's latest applied write, in the client table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The write's number, and the index it was applied at.
    pub number: u64,
    pub index: Index,
    /// What it answered, for a retry to be told the same (an `INCR` retried after a failover
    /// learns the value it produced, not the value of a second increment).
    pub output: Output,
}

/// The replicated state machine: the keyspace and the client table.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct State {
    pub keys: Keyspace,
    /// The time stamped on the last entry applied.
    #[serde(default)]
    pub time: u64,
    /// Per client: its latest applied write.
    pub clients: BTreeMap<u64, ClientRecord>,
}

impl State {
    /// Applies a write at `index` stamped `time`, unless its tag shows it was applied already;
    /// returns what it answers (for a duplicate, what the original answered).
    fn apply(&mut self, index: Index, time: u64, op: &KeyOp, tag: Option<Tag>) -> Output {
        if let Some(tag) = tag
            && let Some(earlier) = self.reply_to(tag)
        {
            return earlier;
        }
        let output = self.keys.apply_guarded(op, time);
        if let Some(tag) = tag {
            let record = ClientRecord {
                number: tag.number,
                index,
                output: output.clone(),
            };
            self.clients.insert(tag.client, record);
            if self.clients.len() > CLIENT_TABLE_SIZE
                && let Some(oldest) = self
                    .clients
                    .iter()
                    .min_by_key(|(_, r)| r.index)
                    .map(|(c, _)| *c)
            {
                self.clients.remove(&oldest);
            }
        }
        output
    }

    /// What the write tagged `tag` answered, if it has been applied: its output if it is the
    /// client's latest, else [`KeyError::ReplyForgotten`].
    pub fn reply_to(&self, tag: Tag) -> Option<Output> {
        let r = self.clients.get(&tag.client)?;
        if r.number == tag.number {
            Some(r.output.clone())
        } else {
            (r.number > tag.number).then_some(Output::Err(KeyError::ReplyForgotten))
        }
    }

    /// Whether the write tagged `tag` has been applied.
    pub fn has_applied(&self, tag: Tag) -> bool {
        self.reply_to(tag).is_some()
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

    /// The time stamped on the last entry (what the next entry's stamp may not go below).
    pub fn last_time(&self) -> u64 {
        self.entries.back().map_or(self.state.time, |e| e.time)
    }

    /// Applies every entry up to `commit` (bounded by what the log holds). Returns the writes
    /// applied, by index, with what each answered (a duplicate of an applied tagged write
    /// answers what the original did, and changes nothing).
    pub fn apply_to(&mut self, commit: Index) -> Vec<(Index, Output)> {
        let mut done = Vec::new();
        let upto = commit.min(self.last().index);
        while self.applied.index < upto {
            let index = self.applied.index + 1;
            let Some(entry) = self.entry(index) else {
                break;
            };
            let (view, time) = (entry.view, entry.time);
            if let Payload::Write { op, tag } = &entry.payload {
                let (op, tag) = (op.clone(), *tag);
                let output = self.state.apply(index, time, &op, tag);
                done.push((index, output));
            }
            self.state.time = self.state.time.max(time);
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

    /// The entries from `from` on (those held), for sending: at most `max` of them, and no
    /// more than about `max_bytes` of keys and values (but always one, however large).
    pub fn entries_from(&self, from: Index, max: usize, max_bytes: usize) -> Vec<Entry> {
        let start = from.saturating_sub(self.first) as usize;
        let mut bytes = 0;
        self.entries
            .iter()
            .skip(start)
            .take(max)
            .take_while(|e| {
                let first = bytes == 0;
                bytes += e.payload.size();
                first || bytes <= max_bytes
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;

    fn write(view: View, v: i64, tag: Option<Tag>) -> Entry {
        Entry {
            view,
            time: 0,
            payload: Payload::Write {
                op: KeyOp::seed_write(v),
                tag,
            },
        }
    }

    fn value(log: &Log) -> i64 {
        log.state().keys.seed_value(0)
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
        assert_eq!(log.apply_to(1), vec![(1, Output::Ok)]);
        assert_eq!(value(&log), 5);
        assert_eq!(log.apply_to(9), vec![(2, Output::Ok)]);
        assert_eq!(value(&log), 6);
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
        assert_eq!(
            log.apply_to(3),
            vec![(1, Output::Ok), (2, Output::Ok), (3, Output::Ok)]
        );
        assert_eq!(value(&log), 6, "the retry did not undo the later write");
    }

    #[test]
    fn a_retried_increment_answers_what_the_original_did() {
        let mut log = empty();
        let incr = |number| Entry {
            view: 1,
            time: 0,
            payload: Payload::Write {
                op: KeyOp::IncrBy {
                    key: b"n".to_vec(),
                    by: 1,
                },
                tag: Some(Tag { client: 3, number }),
            },
        };
        log.append(incr(1));
        log.append(incr(1));
        log.append(incr(2));
        log.append(incr(1));
        assert_eq!(
            log.apply_to(4),
            vec![
                (1, Output::Int(1)),
                (2, Output::Int(1)),
                (3, Output::Int(2)),
                (4, Output::Err(KeyError::ReplyForgotten)),
            ]
        );
        assert_eq!(log.state().keys.value(b"n", 0), Some(&b"2"[..]));
    }

    #[test]
    fn entry_stamps_carry_into_the_state_and_expire_keys_alike() {
        let mut log = empty();
        let set = Entry {
            view: 1,
            time: 1_000,
            payload: Payload::Write {
                op: KeyOp::Set {
                    key: b"t".to_vec(),
                    value: b"v".to_vec(),
                    when: crate::keyspace::SetIf::Always,
                    get: false,
                    px: Some(50),
                },
                tag: None,
            },
        };
        log.append(set);
        let mut incr = write(1, 0, None);
        incr.time = 1_050;
        incr.payload = Payload::Write {
            op: KeyOp::Append {
                key: b"t".to_vec(),
                value: b"w".to_vec(),
            },
            tag: None,
        };
        log.append(incr);
        assert_eq!(log.last_time(), 1_050);
        assert_eq!(log.apply_to(2)[1], (2, Output::Int(1)), "expired at 1050");
        assert_eq!(log.state().time, 1_050);
    }

    #[test]
    fn the_seed_key_takes_only_integers() {
        let mut log = empty();
        log.append(write(1, 5, None));
        let mut bad = write(1, 0, None);
        bad.payload = Payload::Write {
            op: KeyOp::Append {
                key: crate::keyspace::SEED_KEY.to_vec(),
                value: b"x".to_vec(),
            },
            tag: None,
        };
        log.append(bad);
        assert_eq!(log.apply_to(2)[1].1, Output::Err(KeyError::SeedNotInteger));
        assert_eq!(value(&log), 5, "the refused write changed nothing");
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
        for e in log.entries_from(4, 10, usize::MAX) {
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
            time: 0,
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
