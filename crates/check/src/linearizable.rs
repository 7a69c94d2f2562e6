//! A linearizability checker for the register, over a chosen subset of a history.
//!
//! Linearizability asks for one total order of the operations in which every read returns the
//! latest write before it (or the initial value, [`History::initial`], if there is none), and
//! which respects real time: an operation that returned before another was invoked comes first.
//!
//! Deciding it is NP-complete in general, but not for a register whose written values are
//! unique, which is what ditto's workloads produce: then each read names the one write it saw,
//! and [`check`] decides in O(n log n) time with the *zones* of Gibbons and Korach (see
//! *Zones* below). Only when some value is written twice (or a write repeats the
//! initial value) does it fall back to [`search`], the Wing–Gong/Lowe search, which is
//! exponential in the worst case and gives up after [`Config::max_states`] states with
//! [`Verdict::Exhausted`]. An exhausted search decides nothing: it is neither a pass nor a
//! violation.
//!
//! # What takes part
//!
//! - Operation `a` must precede `b` if `a.return_ns < b.invoke_ns`, or if both belong to one
//!   client and `a` completed before `b` was issued (so equal timestamps never reorder a
//!   client's own operations).
//! - `fail` operations and reads that did not return `ok` are left out: they changed nothing.
//! - An `unknown` write returns at +infinity: it may take effect at any time after its
//!   invocation, or never. One whose value no selected read returned is left out: the value
//!   it would set is never read, so leaving it out changes no read.
//!
//! Choose the subset with care: every write whose value a selected read may return must be
//! selected too, or that read has nothing to read from. To check "operations made at the
//! primary" while clients also write through backups, select all writes plus the primary's reads
//! (writes through a backup take effect at the primary before they are acknowledged).
//!
//! # Zones
//!
//! With unique values, group each write with the reads of its value into a *cluster*; the
//! initial value is a cluster of its own whose write is virtual, invoked and returned at
//! −infinity. In any linearization a cluster is one contiguous block, its write first: after a
//! value is written and before it is overwritten, only reads of it can take effect, and once
//! overwritten it never comes back. So a linearization is an order of the clusters, and real
//! time constrains only that order: if some operation of cluster `C` returned before some
//! operation of cluster `D` was invoked, `C` comes before `D`. With `f(C)` the earliest return
//! and `s(C)` the latest invocation in `C`, that is `C → D` exactly when `f(C) < s(D)`.
//!
//! The history is therefore linearizable if and only if
//!
//! 1. every read has a write of its value (or reads the initial value) that was invoked before
//!    the read returned, so that the write can come first in its block, and
//! 2. the relation `→` between clusters has no cycle.
//!
//! A cycle of `→` always contains a cycle of two: take the cluster `D` of the cycle with the
//! least `s(D)` and its predecessor `C`; then `f(C) < s(D) ≤ s(E)` for every cluster `E` of the
//! cycle, so `C → E` for all of them, including `C`'s own predecessor, which points back at
//! `C`. A cycle of two, `f(C) < s(D)` and `f(D) < s(C)`, is what Gibbons and Korach and later
//! Golab, Li and Shah phrase with zones: a cluster's *forward zone* is `[f(C), s(C)]` when
//! `f(C) < s(C)`, else its *backward zone* is `[s(C), f(C)]`; two clusters form a cycle exactly
//! when their forward zones overlap, or one's backward zone lies inside the other's forward
//! zone (two backward zones never do). Sorting the forward zones by their left end finds an
//! overlap between neighbours, and a binary search among them finds a forward zone around each
//! backward one, so the whole check is a sort: O(n log n).
//!
//! - P. B. Gibbons and E. Korach, *Testing shared memories*, SIAM Journal on Computing 26(4),
//!   1997: linearizability of a register with a known read mapping (unique values) in
//!   O(n log n).
//! - W. Golab, X. Li and M. A. Shah, *Analyzing consistency properties for fun and profit*,
//!   PODC 2011: the same conditions as zones and clusters.
//!
//! Equal timestamps need one more step: the zones want every operation to be an interval on a
//! line, but "concurrent unless they are one client's" is not always such an order (two
//! clients that each return one operation and invoke the next at the same nanosecond). The
//! check orders the events of each instant so that intervals say exactly what the rule says,
//! and falls back to the search in the one case where no such order exists. Histories recorded
//! by [`Recorder`](crate::Recorder) have distinct times throughout.
//!
//! # Explanations
//!
//! A violation is reported at the earliest moment the history up to then already has one (a
//! binary search over time, each step a zone check of what had happened by then), in the
//! fewest operations that show it: a read of a value nobody wrote, a read that returned before
//! the write of its value was invoked, or two values each of which the register must have held
//! before the other, with the pair of operations that forces each order.

mod search;
mod zones;

use std::fmt;

use crate::history::{History, IndexedOp, InvalidHistory, Op, OpKind, Outcome, Value, ms};

/// Limits of the search (the zone check needs none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How many distinct (operations taken, register value) states [`search`] explores before
    /// giving up with [`Verdict::Exhausted`]. A state costs about 130 bytes (more when many
    /// operations overlap), so the default of a million bounds memory near 130 MB; a
    /// consistent run of 100 000 operations from 8 clients needs a few hundred thousand.
    pub max_states: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_states: 1_000_000,
        }
    }
}

/// Checks that the operations of `history` for which `select` is true are linearizable; see the
/// module documentation. Decides every history whose checked writes have unique values (in
/// O(n log n)); searches, within `config`, when they do not.
///
/// Returns `Err` only if the history breaks the rules in [`History::validate_structure`].
pub fn check(
    history: &History,
    select: impl Fn(&Op) -> bool,
    config: &Config,
) -> Result<Verdict, InvalidHistory> {
    history.validate_structure()?;
    let ops = participants(history, select);
    Ok(match zones::check(history, &ops) {
        Ok(verdict) => verdict,
        Err(why) => search::run(history, ops, config.max_states, why),
    })
}

/// Like [`check`], but always with the Wing–Gong/Lowe search, which copes with repeated values
/// and may give up. For comparing the two algorithms; [`check`] is the one to use.
pub fn search(
    history: &History,
    select: impl Fn(&Op) -> bool,
    config: &Config,
) -> Result<Verdict, InvalidHistory> {
    history.validate_structure()?;
    let ops = participants(history, select);
    Ok(search::run(
        history,
        ops,
        config.max_states,
        WhySearch::Requested,
    ))
}

/// The selected operations that take part (see the module documentation), in invocation order,
/// ties by position.
fn participants(history: &History, select: impl Fn(&Op) -> bool) -> Vec<usize> {
    let selected: Vec<usize> = (0..history.len())
        .filter(|&i| select(&history.ops[i]))
        .collect();
    let observed: std::collections::HashSet<Value> = selected
        .iter()
        .map(|&i| &history.ops[i])
        .filter(|op| op.is_ok_read())
        .filter_map(|op| op.value)
        .collect();
    let mut ops: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            let op = &history.ops[i];
            match (op.kind, op.outcome) {
                (_, Outcome::Ok) => true,
                (OpKind::Write, Outcome::Unknown) => {
                    op.value.is_some_and(|v| observed.contains(&v))
                }
                _ => false,
            }
        })
        .collect();
    ops.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    ops
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An order respecting real time explains every read.
    Ok(Stats),
    /// No such order exists.
    Violation(Violation),
    /// The search hit [`Config::max_states`] before deciding: nothing is known.
    Exhausted(Exhausted),
}

impl Verdict {
    /// True if the operations are linearizable.
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
        matches!(self, Verdict::Exhausted(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok(stats) => write!(f, "linearizable: {stats}"),
            Verdict::Violation(v) => write!(f, "not linearizable: {v}"),
            Verdict::Exhausted(e) => write!(
                f,
                "undecided: {}, so the exhaustive search ran, and it gave up after {} states; \
                 the longest linearizable prefix found has {} of {} ops",
                e.why, e.states, e.longest_prefix, e.ops
            ),
        }
    }
}

/// How a verdict was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The zone check: unique values, O(n log n), always decides.
    Zones,
    /// The Wing–Gong/Lowe search, for the given reason.
    Search(WhySearch),
}

/// Why [`check`] searched instead of checking zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhySearch {
    /// Two checked writes write this value, or one writes the initial value: a read of it does
    /// not say which write it saw.
    RepeatedValue {
        /// The value.
        value: Value,
    },
    /// At this instant two clients each returned an operation and invoked their next one (or
    /// one client did so twice around an unknown operation), an order of events that no set
    /// of intervals on a line reproduces.
    SimultaneousHandoffs {
        /// The instant, in nanoseconds.
        at_ns: u64,
    },
    /// [`search`] was called.
    Requested,
}

impl fmt::Display for WhySearch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WhySearch::RepeatedValue { value } => {
                write!(f, "the value {value} is written more than once")
            }
            WhySearch::SimultaneousHandoffs { at_ns } => write!(
                f,
                "two clients each finished one operation and began the next at {} ms",
                ms(*at_ns)
            ),
            WhySearch::Requested => write!(f, "the search was asked for"),
        }
    }
}

/// What an accepted check covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Operations that took part (selected, and not left out as described in the module docs).
    pub ops: usize,
    /// Distinct states the search explored; 0 for the zone check.
    pub states: usize,
    /// How the verdict was reached.
    pub method: Method,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.method {
            Method::Zones => write!(f, "{} ops, by zones", self.ops),
            Method::Search(why) => write!(
                f,
                "{} ops, by search ({why}), {} states explored",
                self.ops, self.states
            ),
        }
    }
}

/// How far an undecided search got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// Operations that took part.
    pub ops: usize,
    /// States explored before giving up.
    pub states: usize,
    /// Length of the longest linearizable prefix found.
    pub longest_prefix: usize,
    /// Why the search ran.
    pub why: WhySearch,
}

/// Why the operations cannot be linearized, in the fewest operations found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A read returned a value that no checked write wrote (and that is not the initial value).
    ReadOfUnwrittenValue {
        /// The read.
        read: IndexedOp,
        /// A write of that value that is not checked: it failed, or was not selected.
        unchecked_write: Option<IndexedOp>,
    },
    /// A read returned before the only write of its value was invoked.
    ReadBeforeWrite {
        /// The read.
        read: IndexedOp,
        /// The write.
        write: IndexedOp,
    },
    /// The register must have held each of two values before the other.
    Cycle {
        /// Why it held `first.earlier` before `first.later`.
        first: Box<Precedes>,
        /// Why it held `first.later` before `first.earlier`.
        second: Box<Precedes>,
    },
    /// Found by the search: where every attempt to linearize got stuck.
    Stuck(Stuck),
}

impl Violation {
    /// Positions in the history of the operations to highlight, sorted.
    pub fn ops(&self) -> Vec<usize> {
        let mut ops = match self {
            Violation::ReadOfUnwrittenValue {
                read,
                unchecked_write,
            } => {
                let mut ops = vec![read.index];
                ops.extend(unchecked_write.as_ref().map(|w| w.index));
                ops
            }
            Violation::ReadBeforeWrite { read, write } => vec![read.index, write.index],
            Violation::Cycle { first, second } => {
                let mut ops = first.ops();
                ops.extend(second.ops());
                ops
            }
            Violation::Stuck(stuck) => stuck.ops(),
        };
        ops.sort_unstable();
        ops.dedup();
        ops
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ReadOfUnwrittenValue {
                read,
                unchecked_write,
            } => {
                let v = read.op.value.unwrap_or_default();
                write!(f, "{read} returned {v}, but ")?;
                match unchecked_write {
                    Some(w) if w.op.outcome == Outcome::Fail => write!(
                        f,
                        "the only write of {v} failed, so it was never applied: {w}"
                    )?,
                    Some(w) => write!(f, "the only write of {v} is not among those checked: {w}")?,
                    None => write!(f, "no operation wrote {v}")?,
                }
            }
            Violation::ReadBeforeWrite { read, write } => {
                let v = read.op.value.unwrap_or_default();
                write!(
                    f,
                    "{read} returned {v} before the only write of {v} was invoked: {write}"
                )?;
            }
            Violation::Cycle { first, second } => {
                write!(
                    f,
                    "the register held {first}; and it held {second}: as each value is written \
                     once, no order of the operations explains both"
                )?;
            }
            Violation::Stuck(stuck) => return write!(f, "{stuck}"),
        }
        let ops: Vec<String> = self.ops().iter().map(|i| format!("#{i}")).collect();
        let noun = if ops.len() == 1 { "op" } else { "ops" };
        write!(f, " ({noun} {})", ops.join(", "))
    }
}

/// One half of a [`Violation::Cycle`]: the register held `earlier` before `later`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precedes {
    /// The value held first.
    pub earlier: Value,
    /// The write of `earlier`, or `None` if it is the initial value.
    pub earlier_write: Option<IndexedOp>,
    /// The value held later.
    pub later: Value,
    /// The reason: an operation writing or reading `earlier` that returned before an operation
    /// writing or reading `later` was invoked; `None` if `earlier` is the initial value, which
    /// the register holds before any write.
    pub because: Option<(IndexedOp, IndexedOp)>,
}

impl Precedes {
    fn ops(&self) -> Vec<usize> {
        let mut ops: Vec<usize> = self.earlier_write.iter().map(|w| w.index).collect();
        if let Some((returned, invoked)) = &self.because {
            ops.extend([returned.index, invoked.index]);
        }
        ops
    }
}

impl fmt::Display for Precedes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} before {}, as ", self.earlier, self.later)?;
        match &self.because {
            Some((returned, invoked)) => {
                write!(f, "{returned} returned before {invoked} was invoked")
            }
            None => write!(f, "{} is the initial value", self.earlier),
        }
    }
}

/// Where every attempt of the search to linearize got stuck.
///
/// The search found an order for the operations in `prefix` and then none of the operations
/// that could take effect next (those invoked before the earliest pending return) fits the
/// register's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// Operations that took part.
    pub checked: usize,
    /// Positions in the history of the longest linearizable prefix found, in linearization
    /// order.
    pub prefix: Vec<usize>,
    /// The register's value after `prefix`.
    pub register: Value,
    /// The write in `prefix` that set that value, or `None` if it is the initial value.
    pub last_write: Option<IndexedOp>,
    /// The operations that could take effect after `prefix`, none of which fits.
    pub stuck: Vec<IndexedOp>,
    /// The pending operation that returned first: one of the stuck operations had to take effect
    /// before it returned.
    pub deadline: IndexedOp,
}

impl Stuck {
    /// Positions in the history of the operations to highlight: the write that set the
    /// register and the operations that could not follow it.
    pub fn ops(&self) -> Vec<usize> {
        let mut ops: Vec<usize> = self.stuck.iter().map(|op| op.index).collect();
        ops.extend(self.last_write.as_ref().map(|w| w.index));
        ops.push(self.deadline.index);
        ops.sort_unstable();
        ops.dedup();
        ops
    }
}

/// How many stuck operations to list in words; the rest are counted.
const LISTED: usize = 8;

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "only {} of the {} operations can be linearized; after them the register holds {}",
            self.prefix.len(),
            self.checked,
            self.register
        )?;
        match &self.last_write {
            Some(w) => write!(f, " (set by {w})")?,
            None => write!(f, " (the initial value)")?,
        }
        write!(f, ", and no operation that could take effect next fits: ")?;
        for (i, op) in self.stuck.iter().take(LISTED).enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{op}")?;
        }
        if self.stuck.len() > LISTED {
            write!(f, "; and {} more", self.stuck.len() - LISTED)?;
        }
        let returned = self.deadline.op.return_ns.unwrap_or(u64::MAX);
        write!(
            f,
            ". One of them had to take effect before #{} returned at {} ms",
            self.deadline.index,
            ms(returned)
        )
    }
}
