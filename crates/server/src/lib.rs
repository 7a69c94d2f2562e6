//! The tokio shell around ditto's sans-IO core.
//!
//! The core ([`ditto_core`]) decides everything; this crate only moves bytes and time. One
//! [`driver`] loop per node owns the core's state machine, feeds it the lines that connection tasks
//! read, and carries out what it asks: send a line, open or close a connection, wake it at a time.
//! Sockets are reached through the [`Net`] trait so that the same code runs over real TCP
//! ([`TokioNet`]) and over a simulated network in tests.
//!
//! Two clients live here as well: [`GroupClient`] (and the single-connection [`Client`]) for
//! ditto's line protocol, and [`RespClient`] for anything that speaks RESP, Redis included.

pub mod client;
pub mod codec;
mod conn;
pub mod driver;
pub mod group;
pub mod net;
mod observe;
pub mod resp_client;
pub mod telemetry;

pub use client::{Client, ClientError, Conclusion};
pub use driver::{DriverConfig, run_node};
pub use group::{GroupClient, GroupError, GroupOptions, Move, ReadPolicy};
pub use net::{Listener, Net, TokioNet};
pub use observe::Observe;
pub use resp_client::{RespClient, RespClientError};
pub use telemetry::endpoint::MetricsEndpoint;
