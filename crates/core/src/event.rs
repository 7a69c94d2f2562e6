//! The vocabulary between a node and whatever drives it: connection ids, time, inputs, outputs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::addr::Addr;

/// Milliseconds on a monotonic clock owned by the driver.
///
/// The core never reads a clock; the driver passes the current time with every input. Tests and the
/// simulator pass whatever time they like, which is what makes runs reproducible.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    /// The instant `ms` milliseconds after `self`.
    pub fn after(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Identifies one connection for the lifetime of a node.
///
/// Connections accepted by the driver's listener are `Inbound` and numbered by the driver;
/// connections the core asks for with [`Output::Connect`] are `Outbound` and numbered by the core.
/// Keeping the two namespaces apart means neither side has to ask the other for an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnId {
    Inbound(u64),
    Outbound(u64),
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnId::Inbound(n) => write!(f, "in#{n}"),
            ConnId::Outbound(n) => write!(f, "out#{n}"),
        }
    }
}

/// Something that happened outside the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// The driver accepted `conn` from a peer at `host` (an IP address, as text). Sent before
    /// any line of `conn`: a seed `JOIN:port` names only a port, and the host comes from here.
    Accepted { conn: ConnId, host: &'a str },
    /// One complete line arrived on `conn`, without its line terminator. It may not be UTF-8.
    Line { conn: ConnId, line: &'a [u8] },
    /// The peer on `conn` sent a line longer than the driver's limit; the driver discarded it.
    LineTooLong { conn: ConnId },
    /// One RESP request arrived on `conn` (a connection whose first byte was `*`): the
    /// command's name and arguments.
    Command { conn: ConnId, args: &'a [Vec<u8>] },
    /// The RESP stream on `conn` broke its framing (see `resp::RespError`); nothing more can
    /// be read from it.
    BadFrame { conn: ConnId, why: &'a str },
    /// `conn` is gone: the peer closed it, it failed, or an outbound connect did not succeed.
    /// Nothing more will arrive on it and anything sent to it is dropped.
    Closed { conn: ConnId },
    /// Time passed. Sent at start-up and whenever [`Machine::poll_timeout`] comes due.
    Tick,
}

/// Severity of a [`Output::Log`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogLevel {
    Info,
    Warn,
}

/// Something the core wants done.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Write `line` followed by `\n` to `conn`.
    Send { conn: ConnId, line: String },
    /// Write `bytes` as they are to `conn` (RESP replies, which carry their own framing).
    Write { conn: ConnId, bytes: Vec<u8> },
    /// Open a TCP connection to the server at `addr`. Sends to `conn` issued before the
    /// connection is up are queued by the driver; a failed connect is reported as
    /// [`Input::Closed`].
    Connect { conn: ConnId, addr: Addr },
    /// `conn` carries a replication stream, not requests: its lines are not answered one for
    /// one, so the driver must not hold its reading back for unanswered requests.
    Stream { conn: ConnId },
    /// Flush what was sent to `conn`, then close it.
    Close { conn: ConnId },
    /// Something an operator should know about (a backup joined, a peer was dropped...).
    Log { level: LogLevel, message: String },
}

/// A role of the protocol, driven by a driver loop.
///
/// The driver feeds every input through [`Machine::handle`], then drains [`Machine::poll_output`]
/// until it returns `None`, then sleeps until the next input or [`Machine::poll_timeout`]. Feeding
/// several inputs before draining is allowed and is what lets many writes share one replication
/// message.
pub trait Machine {
    /// Processes one input at time `now`.
    fn handle(&mut self, now: Millis, input: Input<'_>);
    /// The next thing to do, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// The earliest time at which the machine wants an [`Input::Tick`].
    fn poll_timeout(&self) -> Option<Millis>;
}
