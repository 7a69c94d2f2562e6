//! Proves or refutes ditto's consistency claims from a recorded history.
//!
//! ditto is a replicated register holding one integer (initially 0) on one primary and several
//! backups; clients `READ` the value of the replica they talk to and `WRITE:v` through any
//! server. It claims **sequential consistency** for clients that each stick to one server, and
//! **linearizability** for every write and for the reads the primary answers under its lease. This crate checks both claims
//! against what clients actually observed.
//!
//! # The model
//!
//! A [`History`] lists operations ([`Op`]): who issued it (a sequential client), what it asked
//! (read, or write of a value), when it was invoked and returned, and its [`Outcome`]: `ok`,
//! `fail` (definitely not applied) or `unknown` (may or may not have been applied, e.g. after a
//! timeout; its effect may land at any later time). The register starts at
//! [`History::initial`] (0 unless the history says otherwise). The workload makes every written
//! value unique and different from the initial value, so each read names the one write it saw
//! (or the initial value). A [`Recorder`] builds a history from a running workload.
//!
//! # The checks
//!
//! - [`seqcst::check`]: sequential consistency. Checking it is NP-complete for arbitrary
//!   histories, but with unique values each read pins down its write, and only the order of
//!   writes is unknown. Every two consecutive operations of a process constrain that order
//!   (e.g. "wrote 5 then read 3" means write 3 comes after write 5), so the history is
//!   sequentially consistent exactly when the constraint graph over writes is acyclic and every
//!   read saw a write that may have happened. Building the graph is linear in the number of
//!   operations and the cycle test is linear in the graph (Kahn's algorithm), so a 100 000
//!   operation history takes tens of milliseconds in a release build. A violation is explained
//!   by the shortest cycle: the fewest constraints, hence operations, that no order satisfies.
//! - [`linearizable::check`]: linearizability of a chosen subset (e.g. the primary's
//!   operations). With unique values it is decidable in O(n log n) (Gibbons and Korach): group
//!   each write with the reads of its value, and the history is linearizable exactly when every
//!   read's write began before the read ended and no two groups must each come before the
//!   other, which sorting their "zones" reveals. A million operations take well under a second
//!   in a release build. Only histories whose values repeat fall back to the Wing–Gong/Lowe
//!   search with memoization, as in Porcupine, which may give up (an *undecided* verdict).
//! - [`timeline::render_html`]: a standalone HTML page drawing the history, with the operations
//!   of a violation outlined.
//!
//! Both checkers treat uncertain outcomes as Jepsen does: failed operations and reads without a
//! value impose nothing, an `unknown` write counts only if a read saw its value, and after an
//! `unknown` operation its client continues as a new process.
//!
//! # The history file format
//!
//! JSON lines, one operation per line (see [`History::from_jsonl`] and
//! [`History::write_jsonl`]), after an optional first line `{"initial":5}` that gives the
//! register's initial value when it is not 0:
//!
//! ```json
//! {"client":3,"server":7001,"op":"write","value":5,"invoke_ns":120,"return_ns":480,"outcome":"ok"}
//! {"client":4,"server":7002,"op":"read","value":5,"invoke_ns":500,"return_ns":650,"outcome":"ok"}
//! {"client":3,"server":7001,"op":"write","value":6,"invoke_ns":700,"return_ns":null,"outcome":"unknown"}
//! ```
//!
//! - `client`: the client id; each client has one operation in flight at a time.
//! - `server`: the port the client talked to (may be null or absent).
//! - `op`: `"read"` or `"write"`.
//! - `value`: for a write the value written; for a read the value read, null unless `ok`.
//! - `invoke_ns`, `return_ns`: nanoseconds since the start of the run; `return_ns` may be null
//!   only for an `unknown` operation, meaning it never returned.
//! - `outcome`: `"ok"`, `"fail"` or `"unknown"`.
//! - `linearizable`: `true` for a read the primary answered under its lease
//!   (`READ:linearizable`), which the linearizability check takes with the writes; absent
//!   (false) otherwise, and in files recorded before reads were marked.
//!
//! Verdicts name operations by their 0-based position in the history (`#0` is the first
//! operation's line).
//!
//! ```
//! use ditto_check::{History, Op, seqcst};
//! // Client 1 wrote 5 then read 3; client 2 wrote 3 then read 5: each saw the other's write
//! // last, so no single order of the two writes explains both.
//! let history = History::new(vec![
//!     Op::write(1, 5, 0, 10),
//!     Op::read(1, 3, 20, 30),
//!     Op::write(2, 3, 0, 10),
//!     Op::read(2, 5, 20, 30),
//! ]);
//! let verdict = seqcst::check(&history).unwrap();
//! assert_eq!(verdict.violation().unwrap().ops(), vec![0, 1, 2, 3]);
//! println!("{verdict}");
//! ```

pub mod history;
pub mod linearizable;
mod model;
pub mod partition;
pub mod seqcst;
pub mod timeline;

pub use history::{History, Key, Op, OpKind, Outcome, Recorder};
pub use partition::Part;
