//! The sans-IO core of ditto.
//!
//! Everything that decides *what* a replica does lives here; nothing here decides *how* bytes move.
//! There are no sockets, threads or clocks in this crate: a node is a deterministic state machine
//! that is fed [`Input`]s (a line that arrived on a connection, a connection that closed, the passing
//! of time) together with the current time, and that yields [`Output`]s (a line to send, a connection
//! to open or close, a log event) and the next instant it wants to be woken at.
//!
//! The same machine therefore runs in three places: under the tokio shell in the real `ditto`
//! binary, under a simulated network in deterministic tests, and under a model checker that explores
//! every interleaving of a small configuration.
//!
//! A server runs one [`Node`]: the view-based [`Replica`] (primary or backup by status, not by
//! type) behind the text protocols, with the wire codec ([`wire`]), the replicated state
//! machine ([`keyspace`]), the per-connection reply ordering ([`session`]) and the adapters for
//! seed-only peers ([`seed`]).

pub mod addr;
pub mod blob;
pub mod command;
pub mod event;
pub mod keyspace;
pub mod node;
pub mod peer_auth;
pub mod replica;
pub mod resp;
pub mod seed;
pub mod session;
pub mod stats;
pub mod wire;

pub use addr::Addr;
pub use event::{ConnId, Input, LogLevel, Machine, Millis, Output};
pub use node::{Node, NodeConfig};
pub use replica::{
    Bugs, Effect, JoinAnswer, Replica, ReplicaConfig, Status, Timeouts, WriteOutcome,
};
pub use stats::{BackupStats, NodeStats, Role};
pub use wire::Seq;
