//! The messages ditto replicas send each other, typed.
//!
//! Every message but the recovery pair carries the sender's view, and the replica compares it
//! before it looks at anything else (VRR §4; Raft's `step` compares terms first). Each travels as
//! one line of JSON on a connection that begins with a [`Hello`] naming the group and the
//! sender's address; see `docs/protocol.md`.

use serde::{Deserialize, Serialize};

use crate::addr::Addr;
use crate::event::Millis;
use crate::keyspace::{KeyOp, Output};
use crate::replica::config::Config;
use crate::replica::log::{Entry, Index, Pos, Snapshot, Tag, View};

/// The first line of a replica-to-replica connection (after `PEER:`): whose messages follow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's group, 0 while it has none.
    pub group: u64,
    /// Where the sender listens: the address other replicas know it by.
    pub from: Addr,
}

/// The answer to a forwarded write.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Forwarded {
    /// Committed as entry `index` of `view`, answering `output` (the same at every replica:
    /// the backup that forwarded it answers its client once it has applied `index`).
    Committed {
        view: View,
        index: Index,
        output: Output,
    },
    /// Not applied, for the reason given.
    Refused(String),
}

/// A message between replicas.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    /// Primary to a backup or learner: install this, then expect entries from `pos + 1`.
    Snapshot {
        view: View,
        group: u64,
        snapshot: Snapshot,
        commit: Index,
    },
    /// Primary to a backup: entries from `first` on (none: a heartbeat), the commit point, and
    /// whether this renews the backup's read lease. `sent` is echoed in the acknowledgement, so
    /// the primary's own lease is measured from when it sent, not when it heard back.
    Entries {
        view: View,
        first: Index,
        entries: Vec<Entry>,
        commit: Index,
        lease: bool,
        sent: Millis,
    },
    /// Backup to primary: I hold every entry up to `held`.
    Ack {
        view: View,
        held: Index,
        echo: Millis,
    },
    /// Backup or learner to primary: send me a snapshot and stream to me.
    Sync { view: View },
    /// Backup to primary: a client's write.
    Propose {
        view: View,
        token: u64,
        op: KeyOp,
        tag: Option<Tag>,
    },
    /// Primary to backup: what became of proposal `token`.
    ProposeReply {
        view: View,
        token: u64,
        outcome: Forwarded,
    },
    /// Candidate to voters: vote for me as primary of `view`; my log ends at `last`. With
    /// `pre`, only asks whether the voter would, and neither side changes view (pre-vote).
    VoteRequest { view: View, last: Pos, pre: bool },
    /// Voter to candidate.
    Vote {
        view: View,
        granted: bool,
        pre: bool,
    },
    /// A restarted member to the others: what view are you in, and who is its primary?
    Recover { nonce: u64 },
    /// The answer to [`Msg::Recover`].
    RecoverReply {
        nonce: u64,
        view: View,
        primary: Option<Addr>,
        config: Config,
        /// The last entry the sender holds.
        last: Pos,
        /// The sender is recovering too: it remembers nothing.
        recovering: bool,
    },
    /// To a member not heard from lately: this group is in `view` (and the sender is its
    /// primary, with `primary`). A restarted member learns here that it has a group.
    Probe { view: View, primary: bool },
    /// Primary to its backups, on a switchover: `to` takes over in `view + 1`.
    Handover { view: View, to: Addr },
}

impl Msg {
    /// The sender's view, for the messages that carry one.
    pub fn view(&self) -> Option<View> {
        match self {
            Msg::Snapshot { view, .. }
            | Msg::Entries { view, .. }
            | Msg::Ack { view, .. }
            | Msg::Sync { view }
            | Msg::Propose { view, .. }
            | Msg::ProposeReply { view, .. }
            | Msg::VoteRequest {
                view, pre: false, ..
            }
            | Msg::Vote {
                view, pre: false, ..
            }
            | Msg::Probe { view, .. }
            | Msg::Handover { view, .. } => Some(*view),
            Msg::Recover { .. }
            | Msg::RecoverReply { .. }
            | Msg::VoteRequest { pre: true, .. }
            | Msg::Vote { pre: true, .. } => None,
        }
    }

    /// The wire form: one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a line of the wire form.
    pub fn parse(line: &[u8]) -> Option<Msg> {
        serde_json::from_slice(line).ok()
    }
}

impl Hello {
    /// The wire form: `PEER:` and one line of JSON.
    pub fn to_line(&self) -> String {
        format!("PEER:{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Parses the text after `PEER:`.
    pub fn parse(text: &[u8]) -> Option<Hello> {
        serde_json::from_slice(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::log::{Payload, State};

    #[test]
    fn messages_round_trip_as_one_line() {
        let config = Config::founding(Addr::local(7000));
        let msgs = [
            Msg::Entries {
                view: 3,
                first: 9,
                entries: vec![Entry {
                    view: 3,
                    time: 1_700_000_000_000,
                    payload: Payload::Write {
                        op: KeyOp::seed_write(-5),
                        tag: Some(Tag {
                            client: 1,
                            number: 2,
                        }),
                    },
                }],
                commit: 8,
                lease: true,
                sent: Millis(12),
            },
            Msg::Snapshot {
                view: 1,
                group: 3,
                snapshot: Snapshot {
                    pos: Pos::default(),
                    state: {
                        let mut state = State::default();
                        let set = KeyOp::MSet(vec![
                            (b"k\n%".to_vec(), vec![0, 255]),
                            (b"plain".to_vec(), b"text".to_vec()),
                        ]);
                        state.keys.apply(&set, 0);
                        state
                    },
                    config: config.clone(),
                    config_index: 1,
                },
                commit: 0,
            },
            Msg::RecoverReply {
                nonce: 5,
                view: 2,
                primary: Some(Addr::local(7001)),
                config,
                last: Pos { view: 2, index: 9 },
                recovering: false,
            },
            Msg::VoteRequest {
                view: 4,
                last: Pos { view: 3, index: 7 },
                pre: true,
            },
        ];
        for msg in msgs {
            let line = msg.to_line();
            assert!(!line.contains('\n'));
            assert_eq!(Msg::parse(line.as_bytes()), Some(msg));
        }
        assert_eq!(Msg::parse(b"{\"Nope\":1}"), None);
        let hello = Hello {
            group: 9,
            from: "[::1]:7000".parse().unwrap(),
        };
        let line = hello.to_line();
        assert_eq!(
            Hello::parse(line.strip_prefix("PEER:").unwrap().as_bytes()),
            Some(hello)
        );
    }
}
