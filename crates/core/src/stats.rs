//! What a node tells its shell about itself, as plain data: the shell turns it into metrics.
//!
//! The core keeps no counters and reads no clock for this. [`NodeStats`] is a snapshot of state
//! the node holds anyway, taken when the shell asks ([`crate::Node::stats`]); rates, durations
//! and "seconds since" are the shell's business, computed on its own clock from the [`Millis`]
//! given here.

use crate::addr::Addr;
use crate::event::Millis;
use crate::replica::log::{Index, View};
use crate::replica::{Replica, Status};
use crate::seed::SeedFollower;

/// The part a node plays at the moment, as metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    /// A backup of a view in normal operation (or following a seed-only primary).
    Backup,
    /// Discovering, joining, recovering, or between views.
    Other,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Primary, Role::Backup, Role::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Other => "other",
        }
    }
}

/// A backup as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupStats {
    pub addr: Addr,
    /// The highest log index the backup is known to hold.
    pub held: Index,
    /// When the primary last heard from it, on the clock the driver passes in.
    pub heard: Millis,
}

/// A snapshot of a node's state for its shell. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeStats {
    /// The address the node is known by: its id in logs and metrics.
    pub addr: Addr,
    pub role: Role,
    pub status: Status,
    pub view: View,
    pub commit: Index,
    /// The index of the last entry in the log.
    pub last: Index,
    /// The replicas the primary streams to (none at a backup).
    pub backups: Vec<BackupStats>,
    /// Keys held (expired ones not yet removed included).
    pub keys: u64,
    /// Bytes counted against `--maxmemory`: keys, values and a per-key overhead.
    pub memory_bytes: u64,
}

/// A seed follower's share of [`NodeStats::keys`] and [`NodeStats::memory_bytes`]: the one
/// integer it holds.
const REGISTER_KEYS: u64 = 1;
const REGISTER_BYTES: u64 = std::mem::size_of::<i64>() as u64;

impl NodeStats {
    pub(crate) fn of_replica(r: &Replica) -> NodeStats {
        let role = if r.is_primary() {
            Role::Primary
        } else if r.status() == Status::Normal {
            Role::Backup
        } else {
            Role::Other
        };
        NodeStats {
            addr: r.addr().clone(),
            role,
            status: r.status(),
            view: r.view(),
            commit: r.commit(),
            last: r.last().index,
            backups: r
                .links()
                .map(|(addr, held, heard)| BackupStats {
                    addr: addr.clone(),
                    held,
                    heard,
                })
                .collect(),
            keys: r.state().keys.len() as u64,
            memory_bytes: r.state().keys.used() as u64,
        }
    }

    /// A follower of a seed-only primary has no views and no log: those read 0.
    pub(crate) fn of_seed(addr: &Addr, f: &SeedFollower) -> NodeStats {
        NodeStats {
            addr: addr.clone(),
            role: if f.joined() {
                Role::Backup
            } else {
                Role::Other
            },
            status: if f.joined() {
                Status::Normal
            } else {
                Status::Joining
            },
            view: 0,
            commit: 0,
            last: 0,
            backups: Vec::new(),
            keys: REGISTER_KEYS,
            memory_bytes: REGISTER_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Machine;
    use crate::node::{Node, NodeConfig};
    use crate::replica::ReplicaConfig;

    #[test]
    fn a_node_reports_its_role_view_and_state() {
        let me = Addr::local(7000);
        let mut node = Node::new(
            NodeConfig::new(ReplicaConfig::new(me.clone(), None, 9)),
            Millis(0),
        );
        let stats = node.stats();
        assert_eq!(
            (stats.role, stats.status, stats.view),
            (Role::Other, Status::Discovering, 0)
        );
        assert_eq!(stats.addr, me);
        let mut now = 0;
        while node.stats().role != Role::Primary {
            now += 50;
            assert!(now < 10_000, "the node never became primary");
            node.handle(Millis(now), crate::event::Input::Tick);
            while node.poll_output().is_some() {}
        }
        let stats = node.stats();
        assert_eq!(stats.status, Status::Normal);
        assert!(stats.view >= 1);
        assert!(stats.commit <= stats.last);
        assert!(stats.backups.is_empty(), "a lone primary streams to nobody");
        assert_eq!(
            (stats.keys, stats.memory_bytes),
            (0, 0),
            "nothing written yet"
        );
        assert_eq!(Role::ALL.map(Role::as_str), ["primary", "backup", "other"]);
    }
}
