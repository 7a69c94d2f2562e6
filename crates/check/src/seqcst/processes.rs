//! The sequential processes of a history, as Jepsen counts them: each client is one, until an
//! operation of it ends `unknown`; it may take effect at any later time, so what the client
//! does next is a new process with no program order to what it did before.
//!
//! Processes are found on the whole history, whatever the keys: a part of a history with keys
//! is checked with its operations in these processes, so that an order of the whole history is
//! also one of each part, and a part never fails where the whole would pass.

use std::collections::BTreeMap;

use crate::history::{ClientId, History, Outcome};

/// The process of every operation: its client, and how many of the client's earlier
/// operations (in program order) ended `unknown`.
pub(super) struct Processes(Vec<(ClientId, u32)>);

impl Processes {
    pub(super) fn new(history: &History) -> Self {
        let mut of = vec![(0, 0); history.len()];
        for (client, ops) in history.by_client() {
            let mut segment = 0;
            for i in ops {
                of[i] = (client, segment);
                if history.ops[i].outcome == Outcome::Unknown {
                    segment += 1;
                }
            }
        }
        Self(of)
    }

    /// The operations `ops` of each process that has some, in program order (by invocation
    /// time, ties by position); processes by client, then in the client's order.
    pub(super) fn split(&self, history: &History, ops: &[usize]) -> Vec<Vec<usize>> {
        let mut by_process: BTreeMap<(ClientId, u32), Vec<usize>> = BTreeMap::new();
        for &i in ops {
            by_process.entry(self.0[i]).or_default().push(i);
        }
        by_process
            .into_values()
            .map(|mut ops| {
                ops.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
                ops
            })
            .collect()
    }
}
