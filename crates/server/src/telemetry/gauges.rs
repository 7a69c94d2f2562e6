//! The node's state as gauges, set from a [`NodeStats`] snapshot.

use std::collections::BTreeSet;

use ditto_core::{Millis, NodeStats, Role};
use metrics::gauge;

use super::names;

/// The gauges of one node, and which backups they show.
#[derive(Debug, Default)]
pub struct NodeGauges {
    /// The `backup` labels set by the last snapshot.
    backups: BTreeSet<String>,
}

impl NodeGauges {
    /// Sets every gauge from `stats`, taken at `now` on the node's clock.
    ///
    /// A backup the primary no longer streams to (dropped from the group, or this node is no
    /// longer the primary) has its series set to 0: the metrics facade cannot remove a series,
    /// and a lag left at its last value would look like a backup still falling behind.
    pub fn set(&mut self, stats: &NodeStats, now: Millis) {
        gauge!(names::VIEW).set(stats.view as f64);
        for role in Role::ALL {
            let current = if role == stats.role { 1.0 } else { 0.0 };
            gauge!(names::ROLE, "role" => role.as_str()).set(current);
        }
        gauge!(names::COMMIT_INDEX).set(stats.commit as f64);
        gauge!(names::LAST_INDEX).set(stats.last as f64);
        gauge!(names::KEYS).set(stats.keys as f64);
        gauge!(names::MEMORY_BYTES).set(stats.memory_bytes as f64);

        let mut linked = BTreeSet::new();
        for backup in &stats.backups {
            let label = backup.addr.to_string();
            let lag = stats.last.saturating_sub(backup.held);
            let silent = now.0.saturating_sub(backup.heard.0);
            gauge!(names::REPLICATION_LAG, "backup" => label.clone()).set(lag as f64);
            gauge!(names::BACKUP_LAST_HEARD, "backup" => label.clone()).set(silent as f64 / 1000.0);
            linked.insert(label);
        }
        for gone in self.backups.difference(&linked) {
            gauge!(names::REPLICATION_LAG, "backup" => gone.clone()).set(0.0);
            gauge!(names::BACKUP_LAST_HEARD, "backup" => gone.clone()).set(0.0);
        }
        self.backups = linked;
    }
}
