//! What the driver may read of the machine it runs, for logs and metrics.
//!
//! The driver is generic over [`Machine`](ditto_core::Machine), and a machine owes it nothing
//! beyond inputs and outputs. A machine that can say more implements [`Observe`]: the node's
//! address and view then mark every log line, and its [`NodeStats`] feed the metrics. The
//! defaults say nothing, so a machine of a test needs only `impl Observe for M {}`.

use ditto_core::{Node, NodeStats};

/// What a machine tells the driver about itself. See the module documentation.
pub trait Observe {
    /// A snapshot of the machine's state, read at most every
    /// [`SAMPLE_EVERY`](crate::telemetry::SAMPLE_EVERY) while metrics are on, and once at
    /// start-up for the log's `node=` field.
    fn stats(&self) -> Option<NodeStats> {
        None
    }

    /// The view the machine is in, read after every round of inputs to keep the log's `view=`
    /// current: it must be cheap. `None` leaves the last one shown.
    fn view(&self) -> Option<u64> {
        None
    }
}

impl Observe for Node {
    fn stats(&self) -> Option<NodeStats> {
        Some(Node::stats(self))
    }

    fn view(&self) -> Option<u64> {
        self.replica().map(ditto_core::Replica::view)
    }
}
