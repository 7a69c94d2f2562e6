//! A polynomial sequential-consistency checker for a register whose written values are unique.
//!
//! Sequential consistency asks for one total order of all operations that respects each
//! client's program order and in which every read returns the latest write before it. In
//! general that search is NP-complete, but here every written value is unique and differs from
//! the initial value, so each read names the write it saw, and the question shrinks to: is
//! there an order of the *writes* compatible with what every client saw, one step after another?
//!
//! Each pair of consecutive operations in a process says something about that order (`w_v` is
//! the write of value `v`, `w_0` the implicit write of the initial value, [`History::initial`]):
//!
//! | first, then   | constraint   |
//! |---------------|--------------|
//! | write a, write b | a < b |
//! | write a, read v  | a <= w_v |
//! | read u, write b  | w_u < b (w_u = b is a violation) |
//! | read u, read v   | w_u <= w_v |
//!
//! and `w_0` precedes every write. As written values are distinct, `x <= y` between different
//! writes means `x < y`, so the constraints form a directed graph over writes, and the history is
//! sequentially consistent exactly when that graph is acyclic and every read saw a write that may
//! have happened. Given a topological order of the writes, placing each read right after the
//! write it saw yields a valid total order (consecutive operations of a process never go
//! backwards in it), so acyclicity is also sufficient. Building the graph is linear in the
//! history and the cycle test is linear in the graph.
//!
//! Uncertain outcomes are treated as Jepsen does:
//! - a `fail` operation had no effect and imposes nothing;
//! - a read that did not return `ok` imposes nothing;
//! - after an `unknown` operation the client carries on as a *new process*, with no program
//!   order to what it did before, since the unknown operation may take effect at any later time;
//! - an `unknown` write counts only if some read saw its value; otherwise it is dropped (had it
//!   taken effect unseen, dropping it changes no read).
//!
//! # Keys, and what a per-key check proves
//!
//! A history with keys ([`Op::key`], [`OpKind::MSet`]...) is checked part by part
//! ([`History::parts`]): each part is the projection of the history onto its registers (every
//! operation that touches them, in each client's program order), and must be sequentially
//! consistent on its own. A part of one register with only reads and writes of unique values
//! takes the write-order graph above; any other (incr, cas, keys linked by mset and mget,
//! repeated values) takes a memoized search for one order of its operations that respects each
//! process's program order and the sequential model of a map of registers, which gives up after
//! [`Config::max_states`] states with [`Verdict::Undecided`].
//!
//! Checking part by part is **weaker** than checking the whole history: unlike
//! linearizability, sequential consistency does not compose. Client 1 writes `x=1` then reads
//! `y` as nothing, client 2 writes `y=1` then reads `x` as nothing: each key alone has an
//! order, but no single order of all four operations exists. Deciding sequential consistency of
//! several registers at once is NP-complete even when every value is written once (Gibbons and
//! Korach's VSC-read), so no extension of the polynomial graph check above decides it; the
//! whole-history check is kept for what it can decide, histories of the single register alone
//! (which are checked exactly as they always were), and histories with keys get the per-part
//! check. A violation in a part is a violation of the whole history; a pass is a pass of every
//! part, not a proof for the whole.

mod graph;
mod processes;
mod search;
mod shortest_cycle;

use std::fmt;

use crate::history::{
    ClientId, Held, History, IndexedOp, InvalidHistory, Key, Op, OpKind, Outcome, Value, shown,
};
use crate::partition::{self, Part, Registers};
use processes::Processes;

/// Limits of the search (the write-order graph needs none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How many distinct (position in every process, registers' values) states the search of a
    /// part explores before giving up with [`Verdict::Undecided`].
    pub max_states: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_states: 1_000_000,
        }
    }
}

/// Checks that `history` is sequentially consistent (part by part, if it has keys); see the
/// module documentation. The search for parts that need it gets [`Config::default`].
///
/// Returns `Err` only if the history breaks the rules in [`History::validate`].
pub fn check(history: &History) -> Result<Verdict, InvalidHistory> {
    check_with(history, &Config::default())
}

/// Like [`check`], with the given limits for the search.
pub fn check_with(history: &History, config: &Config) -> Result<Verdict, InvalidHistory> {
    history.validate()?;
    if partition::single_register(history) {
        let ops: Vec<usize> = (0..history.len()).collect();
        let register = graph::Register {
            initial: Some(history.initial),
            ops: &ops,
        };
        return Ok(graph::check(history, &register, &Processes::new(history)));
    }
    let processes = Processes::new(history);
    let (linking, attached): (Vec<usize>, Vec<usize>) =
        (0..history.len()).partition(|&i| partition::counts(history, i));
    let verdicts: Vec<Verdict> = partition::split(history, &linking, &attached)
        .iter()
        .map(|part| check_part(history, part, &processes, config))
        .collect();
    Ok(sum_up(history, verdicts))
}

/// Checks one part: by the write-order graph if it can, else by the search.
fn check_part(history: &History, part: &Part, processes: &Processes, config: &Config) -> Verdict {
    if part.is_single_key() {
        let initial = part.initial(history)[0];
        if graph::applies(history, initial, &part.ops) {
            let register = graph::Register {
                initial,
                ops: &part.ops,
            };
            return graph::check(history, &register, processes);
        }
    }
    search::run(history, part, processes, config.max_states)
}

/// The verdict of the history from those of its parts: the smallest violation (fewest
/// operations, then the earliest part), else the first part left undecided, else every part's
/// statistics together.
fn sum_up(history: &History, verdicts: Vec<Verdict>) -> Verdict {
    if let Some(smallest) = verdicts
        .iter()
        .filter_map(Verdict::violation)
        .min_by_key(|v| v.ops().len())
    {
        return Verdict::Violation(smallest.clone());
    }
    if let Some(undecided) = verdicts.iter().find(|v| v.is_undecided()) {
        return undecided.clone();
    }
    let mut total = Stats {
        ops: history.len(),
        parts: verdicts.len(),
        ..Stats::default()
    };
    for verdict in &verdicts {
        if let Verdict::Ok(stats) = verdict {
            total.writes += stats.writes;
            total.reads += stats.reads;
            total.processes += stats.processes;
            total.edges += stats.edges;
        }
    }
    Verdict::Ok(total)
}

/// The answer of [`check`].
// A verdict is made once per check and read by people: boxing its violation would save
// nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some single order of writes explains what every process saw (for a history with keys:
    /// of every part, each on its own).
    Ok(Stats),
    /// No order can explain the operations named in the violation.
    Violation(Violation),
    /// The search of a part hit [`Config::max_states`] before deciding: nothing is known.
    Undecided(Undecided),
}

impl Verdict {
    /// True if the history is sequentially consistent.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }

    /// The violation, if there is one.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Violation(v) => Some(v),
            _ => None,
        }
    }

    /// True if the check gave up without deciding.
    pub fn is_undecided(&self) -> bool {
        matches!(self, Verdict::Undecided(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok(stats) => write!(f, "sequentially consistent: {stats}"),
            Verdict::Violation(v) => write!(f, "not sequentially consistent: {v}"),
            Verdict::Undecided(u) => write!(f, "undecided: {u}"),
        }
    }
}

/// What an accepted history contained, to show that the check had something to chew on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations in the history, whatever their outcome.
    pub ops: usize,
    /// Writes that took part: `ok` ones and `unknown` ones some read observed (in searched
    /// parts, every `ok` or `unknown` operation that may change something: writes, incrs, cas
    /// and msets).
    pub writes: usize,
    /// Reads that returned a value (in searched parts, mgets too).
    pub reads: usize,
    /// Sequential processes: one per client, plus one more after each `unknown` operation
    /// followed by others (for a history with keys, counted in each part).
    pub processes: usize,
    /// Distinct ordering constraints between two writes (not counting "the initial value comes
    /// first"); the search of a part counts none.
    pub edges: usize,
    /// Parts checked one by one (see [`History::parts`]): 1 for a history of the single
    /// register, which is checked whole.
    pub parts: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ({} writes, {} reads) in {} processes, {} ordering constraints",
            self.ops, self.writes, self.reads, self.processes, self.edges
        )?;
        if self.parts > 1 {
            write!(f, "; each of {} parts on its own", self.parts)?;
        }
        Ok(())
    }
}

/// How far an undecided search got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    /// Operations of the part that took part.
    pub ops: usize,
    /// States explored before giving up.
    pub states: usize,
    /// Length of the longest order found.
    pub longest_prefix: usize,
    /// The registers of the part (`None`: the single register).
    pub keys: Vec<Option<Key>>,
}

impl fmt::Display for Undecided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the search of {} gave up after {} states; the longest order found explains {} of \
             {} ops",
            Registers(&self.keys),
            self.states,
            self.longest_prefix,
            self.ops
        )
    }
}

/// The smallest set of operations found that no order of writes can explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A read returned a value that no operation wrote.
    ReadOfUnwrittenValue {
        /// The read.
        read: IndexedOp,
    },
    /// A read returned the value of a write that definitely failed.
    ReadOfFailedWrite {
        /// The read.
        read: IndexedOp,
        /// The failed write.
        write: IndexedOp,
    },
    /// A process read a value before it wrote that value itself.
    ReadBeforeOwnWrite {
        /// The read.
        read: IndexedOp,
        /// The later write of the same process.
        write: IndexedOp,
    },
    /// Constraints that chain into a cycle: each says a write follows another, and the last one
    /// leads back to the first.
    Cycle {
        /// The constraints, in cycle order.
        constraints: Vec<Constraint>,
        /// True if the cycle is closed by "the initial value precedes every write" (then
        /// `constraints` holds one constraint, whose later write is the initial one).
        through_initial: bool,
    },
    /// Found by the search of a part: where every attempt to order its operations got stuck.
    /// The only kind of violation for parts with incr, cas, mset or mget.
    Stuck(Stuck),
}

impl Violation {
    /// Positions in the history of the operations involved, sorted, for highlighting.
    pub fn ops(&self) -> Vec<usize> {
        let mut ops = match self {
            Violation::ReadOfUnwrittenValue { read } => vec![read.index],
            Violation::ReadOfFailedWrite { read, write }
            | Violation::ReadBeforeOwnWrite { read, write } => vec![read.index, write.index],
            Violation::Cycle { constraints, .. } => constraints
                .iter()
                .flat_map(|c| {
                    [
                        Some(&c.first),
                        Some(&c.second),
                        c.earlier.as_ref(),
                        c.later.as_ref(),
                    ]
                })
                .flatten()
                .map(|op| op.index)
                .collect(),
            Violation::Stuck(stuck) => stuck.ops(),
        };
        ops.sort_unstable();
        ops.dedup();
        ops
    }

    /// The key the violation is about, for the write-order graph's violations of a key; `None`
    /// for the single register (and for the search's, which name their own part).
    fn key(&self) -> Option<&Key> {
        match self {
            Violation::ReadOfUnwrittenValue { read }
            | Violation::ReadOfFailedWrite { read, .. }
            | Violation::ReadBeforeOwnWrite { read, .. } => read.op.key.as_ref(),
            Violation::Cycle { constraints, .. } => {
                constraints.first().and_then(|c| c.first.op.key.as_ref())
            }
            Violation::Stuck(_) => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(key) = self.key() {
            write!(f, "key {key}: ")?;
        }
        match self {
            Violation::ReadOfUnwrittenValue { read } => {
                let v = value(&read.op);
                write!(
                    f,
                    "client {} read {v}, but no operation wrote {v}",
                    read.op.client
                )?;
            }
            Violation::ReadOfFailedWrite { read, write } => {
                let v = value(&read.op);
                write!(
                    f,
                    "client {} read {v}, but client {}'s write of {v} failed, so it was never applied",
                    read.op.client, write.op.client
                )?;
            }
            Violation::ReadBeforeOwnWrite { read, .. } => {
                let v = value(&read.op);
                write!(
                    f,
                    "client {} read {v} and only then wrote {v} itself: \
                     it saw a write it had not issued yet",
                    read.op.client
                )?;
            }
            Violation::Cycle {
                constraints,
                through_initial,
            } => {
                for (i, c) in constraints.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{c}")?;
                }
                if *through_initial {
                    let initial = constraints.first().and_then(|c| c.initial);
                    write!(f, "; {} precedes every write", write_name(None, initial))?;
                }
                let claims = constraints.len() + usize::from(*through_initial);
                let all = if claims == 2 { "both" } else { "all of these" };
                write!(f, ": no single order of writes satisfies {all}")?;
            }
            Violation::Stuck(stuck) => write!(f, "{stuck}")?,
        }
        let ops: Vec<String> = self.ops().iter().map(|i| format!("#{i}")).collect();
        let noun = if ops.len() == 1 { "op" } else { "ops" };
        write!(f, " ({noun} {})", ops.join(", "))
    }
}

/// One step of a cycle: `client` did `first` then `second`, so the write `later` must follow
/// the write `earlier` (`None` stands for the implicit write of the initial value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// The register's initial value, which `None` stands for: the history's initial value for
    /// the single register, and `None` (nothing) for a key.
    pub initial: Option<Value>,
    /// The client whose program order imposes the constraint.
    pub client: ClientId,
    /// Its earlier operation.
    pub first: IndexedOp,
    /// Its next operation (that counts) in the same process.
    pub second: IndexedOp,
    /// The write that must come first, or `None` for the initial value.
    pub earlier: Option<IndexedOp>,
    /// The write that must come after it, or `None` for the initial value.
    pub later: Option<IndexedOp>,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} {} then {}, so {} follows {}",
            self.client,
            did(&self.first.op),
            did(&self.second.op),
            write_name(self.later.as_ref(), self.initial),
            write_name(self.earlier.as_ref(), self.initial),
        )
    }
}

/// Where every attempt of the search to order a part's operations got stuck.
///
/// The search found an order for the operations in `prefix` that keeps every process's program
/// order, and then the next operation of every process that has one left does not fit what the
/// registers hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// Operations of the part that took part.
    pub checked: usize,
    /// Positions in the history of the longest order found.
    pub prefix: Vec<usize>,
    /// What the registers the next operations touch held after `prefix`, and the operations of
    /// `prefix` that set them.
    pub registers: Vec<Held>,
    /// Every register of the part (`None`: the single register).
    pub part: Vec<Option<Key>>,
    /// The next operation of each process, none of which fits.
    pub next: Vec<IndexedOp>,
}

impl Stuck {
    /// Positions in the history of the operations to highlight: the operations that set the
    /// registers in question and the operations that could not follow them.
    pub fn ops(&self) -> Vec<usize> {
        let mut ops: Vec<usize> = self.next.iter().map(|op| op.index).collect();
        ops.extend(
            self.registers
                .iter()
                .filter_map(|held| held.set_by.as_ref().map(|w| w.index)),
        );
        ops.sort_unstable();
        ops.dedup();
        ops
    }
}

/// How many next operations to list in words; the rest are counted.
const LISTED: usize = 8;

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on {}, only {} of the {} operations fit one order that keeps every process's \
             program order; after them ",
            Registers(&self.part),
            self.prefix.len(),
            self.checked
        )?;
        for (i, held) in self.registers.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{held}")?;
        }
        write!(f, ", and the next operation of no process fits: ")?;
        for (i, op) in self.next.iter().take(LISTED).enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{op}")?;
        }
        if self.next.len() > LISTED {
            write!(f, "; and {} more", self.next.len() - LISTED)?;
        }
        Ok(())
    }
}

fn value(op: &Op) -> String {
    shown(op.value)
}

/// "wrote 5", "wrote 5 (outcome unknown)", "read 3", "read nothing".
fn did(op: &Op) -> String {
    match op.kind {
        OpKind::Write if op.outcome == Outcome::Unknown => {
            format!("wrote {} (outcome unknown)", value(op))
        }
        OpKind::Write => format!("wrote {}", value(op)),
        _ => format!("read {}", value(op)),
    }
}

fn write_name(write: Option<&IndexedOp>, initial: Option<Value>) -> String {
    match (write, initial) {
        (Some(w), _) => format!("write {}", value(&w.op)),
        (None, Some(initial)) => format!("the initial value {initial}"),
        (None, None) => "the key's empty start".to_owned(),
    }
}
