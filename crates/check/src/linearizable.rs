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

use std::collections::HashSet;
use std::fmt;

use crate::history::{
    Held, History, IndexedOp, InvalidHistory, Key, Op, OpKind, Outcome, Value, ms, shown,
};
use crate::partition::{self, Part, Registers};

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

/// Checks that the operations of `history` for which `select` is true are linearizable, part by
/// part (see the module documentation). Decides every part of one register whose checked
/// writes have unique values and that has only reads and writes (in O(n log n)); searches,
/// within `config` for each part, the others.
///
/// Returns `Err` only if the history breaks the rules in [`History::validate_structure`].
pub fn check(
    history: &History,
    select: impl Fn(&Op) -> bool,
    config: &Config,
) -> Result<Verdict, InvalidHistory> {
    history.validate_structure()?;
    let ops = participants(history, select);
    Ok(by_parts(
        history,
        &ops,
        Method::Zones,
        |part| match zone_check(history, part) {
            Ok(verdict) => verdict,
            Err(why) => search::run(history, part, config.max_states, why),
        },
    ))
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
    let requested = WhySearch::Requested;
    Ok(by_parts(history, &ops, Method::Search(requested), |part| {
        search::run(history, part, config.max_states, requested)
    }))
}

/// The zone check of `part`, or why it cannot take it.
fn zone_check(history: &History, part: &Part) -> Result<Verdict, WhySearch> {
    if !part.is_single_key() {
        return Err(WhySearch::MultiKey {
            keys: part.keys.len(),
        });
    }
    let ops = || part.ops.iter().map(|&i| &history.ops[i]);
    if let Some(op) = ops().find(|op| !matches!(op.kind, OpKind::Read | OpKind::Write)) {
        return Err(WhySearch::NotReadWrite { kind: op.kind });
    }
    let initial = part.initial(history)[0];
    zones::check(history, part.keys[0].as_ref(), initial, &part.ops)
}

/// Splits the operations `ops` into parts, each with its operations in invocation order (ties
/// by position), checks each with `check_part`, and sums up: the smallest violation found in
/// any part (fewest operations, then the earliest part), else the first part left undecided,
/// else every part's statistics together (`empty` is the method an empty history reports).
fn by_parts(
    history: &History,
    ops: &[usize],
    empty: Method,
    mut check_part: impl FnMut(&Part) -> Verdict,
) -> Verdict {
    let mut verdicts: Vec<Verdict> = partition::split(history, ops, &[])
        .into_iter()
        .map(|mut part| {
            part.ops.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
            check_part(&part)
        })
        .collect();
    if verdicts.len() == 1 {
        return verdicts.remove(0);
    }
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
        ops: 0,
        states: 0,
        method: empty,
        parts: verdicts.len(),
        searched: 0,
    };
    for verdict in &verdicts {
        if let Verdict::Ok(stats) = verdict {
            total.ops += stats.ops;
            total.states += stats.states;
            total.searched += stats.searched;
            if total.method == empty && stats.method != Method::Zones {
                total.method = stats.method;
            }
        }
    }
    if total.searched == 0 && !verdicts.is_empty() {
        total.method = Method::Zones;
    }
    Verdict::Ok(total)
}

/// The selected operations that take part (see the module documentation), in invocation order,
/// ties by position.
fn participants(history: &History, select: impl Fn(&Op) -> bool) -> Vec<usize> {
    let selected: Vec<usize> = (0..history.len())
        .filter(|&i| select(&history.ops[i]))
        .collect();
    // What selected reads and mgets returned, register by register.
    let mut observed: HashSet<(Option<&str>, Value)> = HashSet::new();
    // Registers that a selected incr or cas, not failed, may have read: there a write nobody
    // read may still show, through a sum or a swap.
    let mut computed: HashSet<Option<&str>> = HashSet::new();
    for &i in &selected {
        let op = &history.ops[i];
        let key = op.key.as_deref();
        match (op.kind, op.outcome) {
            (OpKind::Read, Outcome::Ok) => observed.extend(op.value.map(|v| (key, v))),
            (OpKind::MGet, Outcome::Ok) => observed.extend(
                op.keys
                    .iter()
                    .zip(&op.values)
                    .filter_map(|(k, v)| v.map(|v| (Some(k.as_str()), v))),
            ),
            (OpKind::Incr | OpKind::Cas, Outcome::Ok | Outcome::Unknown) => {
                computed.insert(key);
            }
            _ => {}
        }
    }
    let shows = |key: Option<&str>, value: Option<Value>| {
        computed.contains(&key) || value.is_some_and(|v| observed.contains(&(key, v)))
    };
    let mut ops: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            let op = &history.ops[i];
            match (op.kind, op.outcome) {
                (_, Outcome::Ok) => true,
                (OpKind::Write, Outcome::Unknown) => shows(op.key.as_deref(), op.value),
                (OpKind::MSet, Outcome::Unknown) => op
                    .keys
                    .iter()
                    .zip(&op.values)
                    .any(|(k, &v)| shows(Some(k), v)),
                (OpKind::Incr | OpKind::Cas, Outcome::Unknown) => true,
                _ => false,
            }
        })
        .collect();
    ops.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    ops
}

/// The answer of [`check`].
// A verdict is made once per check and read by people: boxing its violation would save
// nothing that matters.
#[allow(clippy::large_enum_variant)]
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
            Verdict::Exhausted(e) => {
                write!(f, "undecided")?;
                if e.keys.iter().any(Option::is_some) {
                    write!(f, " on {}", Registers(&e.keys))?;
                }
                write!(
                    f,
                    ": {}, so the exhaustive search ran, and it gave up after {} states; \
                     the longest linearizable prefix found has {} of {} ops",
                    e.why, e.states, e.longest_prefix, e.ops
                )
            }
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
    /// The part has operations of this kind (incr, cas, mset or mget), which read and write at
    /// once or several keys at once: a value read no longer names the one write it saw.
    NotReadWrite {
        /// The first such kind found.
        kind: OpKind,
    },
    /// Multi-key operations link this many keys into one part, checked as one map of
    /// registers.
    MultiKey {
        /// How many keys the part has.
        keys: usize,
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
            WhySearch::NotReadWrite { kind } => {
                write!(f, "{kind} operations read and write at once")
            }
            WhySearch::MultiKey { keys } => {
                write!(f, "multi-key operations link {keys} keys")
            }
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
    /// How the verdict was reached: by zones if every part was; else by search, for the reason
    /// of the first part searched.
    pub method: Method,
    /// Parts checked one by one (see [`History::parts`]): 1 for a history of the single
    /// register; 0 if no operation took part.
    pub parts: usize,
    /// How many of those parts the search decided.
    pub searched: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts > 1 {
            let zones = self.parts - self.searched;
            write!(
                f,
                "{} ops in {} parts, {zones} by zones",
                self.ops, self.parts
            )?;
            return match self.method {
                Method::Search(why) if self.searched > 0 => write!(
                    f,
                    " and {} by search (first because {why}), {} states explored",
                    self.searched, self.states
                ),
                _ => Ok(()),
            };
        }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// Operations that took part.
    pub ops: usize,
    /// States explored before giving up.
    pub states: usize,
    /// Length of the longest linearizable prefix found.
    pub longest_prefix: usize,
    /// Why the search ran.
    pub why: WhySearch,
    /// The registers of the part it searched (`None`: the single register).
    pub keys: Vec<Option<Key>>,
}

/// Why the operations cannot be linearized, in the fewest operations found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A read returned a value that no checked write (or mset) wrote (and that is not the
    /// initial value).
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
    /// The register (or key) must have held each of two values before the other.
    Cycle {
        /// Why it held `first.earlier` before `first.later`.
        first: Box<Precedes>,
        /// Why it held `first.later` before `first.earlier`.
        second: Box<Precedes>,
    },
    /// Found by the search: where every attempt to linearize got stuck. The only kind of
    /// violation for parts with incr, cas, mset or mget.
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

impl Violation {
    /// The register the violation is about, as named in messages: `None` for the single
    /// register (and for the search's explanations, which name their own).
    fn key(&self) -> Option<&Key> {
        match self {
            Violation::ReadOfUnwrittenValue { read, .. }
            | Violation::ReadBeforeWrite { read, .. } => read.op.key.as_ref(),
            Violation::Cycle { first, .. } => first.key.as_ref(),
            Violation::Stuck(_) => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "to key k1" where a key is meant; nothing for the single register, as ever.
        let to = self
            .key()
            .map(|k| format!(" to key {k}"))
            .unwrap_or_default();
        match self {
            Violation::ReadOfUnwrittenValue {
                read,
                unchecked_write,
            } => {
                let v = shown(read.op.value);
                write!(f, "{read} returned {v}, but ")?;
                match unchecked_write {
                    Some(w) if w.op.outcome == Outcome::Fail => write!(
                        f,
                        "the only write of {v}{to} failed, so it was never applied: {w}"
                    )?,
                    Some(w) => write!(
                        f,
                        "the only write of {v}{to} is not among those checked: {w}"
                    )?,
                    None => write!(f, "no operation wrote {v}{to}")?,
                }
            }
            Violation::ReadBeforeWrite { read, write } => {
                let v = shown(read.op.value);
                write!(
                    f,
                    "{read} returned {v} before the only write of {v}{to} was invoked: {write}"
                )?;
            }
            Violation::Cycle { first, second } => {
                let register = std::slice::from_ref(&first.key);
                write!(
                    f,
                    "{} held {first}; and it held {second}: as each value is written \
                     once, no order of the operations explains both",
                    Registers(register)
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
    /// The register: a key, or `None` for the single register.
    pub key: Option<Key>,
    /// The value held first (`None`: nothing, as a key holds before it is written).
    pub earlier: Option<Value>,
    /// The write of `earlier`, or `None` if it is the initial value.
    pub earlier_write: Option<IndexedOp>,
    /// The value held later.
    pub later: Option<Value>,
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
        write!(
            f,
            "{} before {}, as ",
            shown(self.earlier),
            shown(self.later)
        )?;
        match (&self.because, self.earlier) {
            (Some((returned, invoked)), _) => {
                write!(f, "{returned} returned before {invoked} was invoked")
            }
            (None, Some(initial)) => write!(f, "{initial} is the initial value"),
            (None, None) => write!(f, "a key holds nothing until it is written"),
        }
    }
}

/// Where every attempt of the search to linearize got stuck.
///
/// The search found an order for the operations in `prefix` and then none of the operations
/// that could take effect next (those invoked before the earliest pending return) fits what the
/// registers hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// Operations that took part.
    pub checked: usize,
    /// Positions in the history of the longest linearizable prefix found, in linearization
    /// order.
    pub prefix: Vec<usize>,
    /// What the registers the stuck operations touch held after `prefix`, and the operations of
    /// `prefix` that set them.
    pub registers: Vec<Held>,
    /// Every register of the part searched (`None`: the single register).
    pub part: Vec<Option<Key>>,
    /// The operations that could take effect after `prefix`, none of which fits.
    pub stuck: Vec<IndexedOp>,
    /// The pending operation that returned first: one of the stuck operations had to take effect
    /// before it returned.
    pub deadline: IndexedOp,
}

impl Stuck {
    /// Positions in the history of the operations to highlight: the operations that set the
    /// registers in question and the operations that could not follow them.
    pub fn ops(&self) -> Vec<usize> {
        let mut ops: Vec<usize> = self.stuck.iter().map(|op| op.index).collect();
        ops.extend(
            self.registers
                .iter()
                .filter_map(|held| held.set_by.as_ref().map(|w| w.index)),
        );
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
            "only {} of the {} operations",
            self.prefix.len(),
            self.checked
        )?;
        if self.part.iter().any(Option::is_some) {
            write!(f, " on {}", Registers(&self.part))?;
        }
        write!(f, " can be linearized; after them ")?;
        for (i, held) in self.registers.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{held}")?;
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
