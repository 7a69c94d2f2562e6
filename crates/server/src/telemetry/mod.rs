//! A server's metrics, recorded here in the shell and served by [`endpoint`].
//!
//! The core keeps no counters and reads no clock: the driver counts and times what passes
//! through it (requests, replies, connections), and reads the node's state ([`Observe`]) to set
//! gauges. Everything is recorded through the `metrics` facade, which does nothing until a
//! recorder is installed ([`endpoint::MetricsEndpoint::bind`]), and the driver keeps its own
//! bookkeeping only when [`DriverConfig::metrics`](crate::DriverConfig::metrics) is on. Every
//! metric is listed, with its labels and meaning, in `docs/operations.md`.

pub mod endpoint;
mod gauges;
pub mod labels;
mod timer;

use std::time::Duration;

use ditto_core::{ConnId, Millis};
use metrics::{counter, gauge, histogram};
use tokio::time::Instant;

use crate::observe::Observe;
use gauges::NodeGauges;
use labels::Outcome;
use timer::RequestTimer;

/// The names of the metrics.
pub mod names {
    pub const REQUESTS: &str = "ditto_requests_total";
    pub const REQUEST_DURATION: &str = "ditto_request_duration_seconds";
    pub const CONNECTIONS: &str = "ditto_connections";
    pub const CONNECTIONS_ACCEPTED: &str = "ditto_connections_accepted_total";
    pub const VIEW: &str = "ditto_view";
    pub const ROLE: &str = "ditto_role";
    pub const VIEW_CHANGES: &str = "ditto_view_changes_total";
    pub const COMMIT_INDEX: &str = "ditto_commit_index";
    pub const LAST_INDEX: &str = "ditto_last_index";
    pub const REPLICATION_LAG: &str = "ditto_replication_lag_entries";
    pub const BACKUP_LAST_HEARD: &str = "ditto_backup_last_heard_seconds";
    pub const KEYS: &str = "ditto_keys";
    pub const MEMORY_BYTES: &str = "ditto_memory_bytes";
}

/// The bounds of the request-duration histogram's buckets, in seconds: from a reply served at
/// once (tens of microseconds) to a write waiting out a view change (seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often, at most, the node's state is read into the gauges. A round of inputs that comes
/// sooner leaves the reading for later (the driver wakes for it), so the gauges are never more
/// than this out of date after a change, and a busy node is not snapshot thousands of times a
/// second.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Gives every metric its help text, shown on the scrape page.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::REQUESTS,
        "Requests answered, by command and outcome (ok, or error for an ERR reply)"
    );
    describe_histogram!(
        names::REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's arrival at the driver to its reply leaving it"
    );
    describe_gauge!(
        names::CONNECTIONS,
        "Open client connections (replication streams excluded)"
    );
    describe_counter!(
        names::CONNECTIONS_ACCEPTED,
        "Connections accepted, replication streams included"
    );
    describe_gauge!(names::VIEW, "The view this node is in");
    describe_gauge!(
        names::ROLE,
        "1 for the role this node plays now, 0 for the others"
    );
    describe_counter!(names::VIEW_CHANGES, "Times the view number changed");
    describe_gauge!(names::COMMIT_INDEX, "The highest log index known committed");
    describe_gauge!(names::LAST_INDEX, "The index of the last entry in the log");
    describe_gauge!(
        names::REPLICATION_LAG,
        "At the primary: its last index minus the highest index the backup holds"
    );
    describe_gauge!(
        names::BACKUP_LAST_HEARD,
        Unit::Seconds,
        "At the primary: seconds since the backup was last heard from"
    );
    describe_gauge!(names::KEYS, "Keys held");
    describe_gauge!(names::MEMORY_BYTES, Unit::Bytes, "Bytes of user data held");
}

/// What the driver records as it goes. See the module documentation.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// Whether metrics are recorded; the view is followed either way, for the logs.
    on: bool,
    timer: RequestTimer,
    gauges: NodeGauges,
    view: Option<u64>,
    last_sample: Option<Instant>,
    sample_due: Option<Instant>,
}

impl Telemetry {
    pub fn new(on: bool, view: Option<u64>) -> Telemetry {
        Telemetry {
            on,
            timer: RequestTimer::default(),
            gauges: NodeGauges::default(),
            view,
            last_sample: None,
            sample_due: None,
        }
    }

    pub fn accepted(&mut self, conn: ConnId) {
        if self.on {
            counter!(names::CONNECTIONS_ACCEPTED).increment(1);
            self.timer.opened(conn);
            self.set_connections();
        }
    }

    /// A request line arrived on `conn`.
    pub fn request(&mut self, conn: ConnId, line: &[u8]) {
        if self.on {
            self.timer
                .request(conn, labels::line_command(line), Instant::now());
        }
    }

    /// A RESP request arrived on `conn`.
    pub fn command(&mut self, conn: ConnId, args: &[Vec<u8>]) {
        if self.on {
            let name = args.first().map_or(labels::OTHER, |n| labels::command(n));
            self.timer.request(conn, name, Instant::now());
        }
    }

    /// A line too long to read arrived on `conn`: it is answered (refused) like a request.
    pub fn overlong(&mut self, conn: ConnId) {
        if self.on {
            self.timer.request(conn, labels::OTHER, Instant::now());
        }
    }

    /// The core declared `conn` a replication stream.
    pub fn stream(&mut self, conn: ConnId) {
        if self.on {
            self.timer.stream(conn);
            self.set_connections();
        }
    }

    /// `line` leaves on `conn`: if it answers a request, the request is counted and timed.
    pub fn reply(&mut self, conn: ConnId, line: &str) {
        self.answered(conn, || Outcome::of_line(line.as_bytes()));
    }

    /// A RESP reply leaves on `conn`.
    pub fn resp_reply(&mut self, conn: ConnId, bytes: &[u8]) {
        self.answered(conn, || Outcome::of_resp(bytes));
    }

    fn answered(&mut self, conn: ConnId, outcome: impl FnOnce() -> Outcome) {
        if !self.on {
            return;
        }
        if let Some((command, arrived)) = self.timer.reply(conn) {
            let outcome = outcome().as_str();
            counter!(names::REQUESTS, "command" => command, "outcome" => outcome).increment(1);
            histogram!(names::REQUEST_DURATION, "command" => command)
                .record(arrived.elapsed().as_secs_f64());
        }
    }

    pub fn closed(&mut self, conn: ConnId) {
        if self.on {
            self.timer.closed(conn);
            self.set_connections();
        }
    }

    fn set_connections(&self) {
        gauge!(names::CONNECTIONS).set(self.timer.clients() as f64);
    }

    /// Follows the machine's view; returns the new one when it changed.
    pub fn view(&mut self, view: Option<u64>) -> Option<u64> {
        let view = view.filter(|v| self.view != Some(*v))?;
        if self.on && self.view.is_some() {
            counter!(names::VIEW_CHANGES).increment(1);
        }
        self.view = Some(view);
        Some(view)
    }

    /// After a round of inputs: reads the machine's state into the gauges, unless that was
    /// done less than [`SAMPLE_EVERY`] ago (then [`Telemetry::sample_due`] says when).
    pub fn sample(&mut self, machine: &impl Observe, now: Instant, node_now: Millis) {
        if !self.on {
            return;
        }
        if let Some(last) = self.last_sample
            && now < last + SAMPLE_EVERY
        {
            self.sample_due = Some(last + SAMPLE_EVERY);
            return;
        }
        self.last_sample = Some(now);
        self.sample_due = None;
        if let Some(stats) = machine.stats() {
            self.gauges.set(&stats, node_now);
        }
    }

    /// When the driver must wake to take a reading it put off.
    pub fn sample_due(&self) -> Option<Instant> {
        self.sample_due
    }
}
