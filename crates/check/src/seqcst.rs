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

mod shortest_cycle;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::history::{ClientId, History, IndexedOp, InvalidHistory, Op, OpKind, Outcome, Value};

/// Checks that `history` is sequentially consistent; see the module documentation.
///
/// Returns `Err` only if the history breaks the rules in [`History::validate`].
pub fn check(history: &History) -> Result<Verdict, InvalidHistory> {
    history.validate()?;
    let writes = Writes::new(history);
    if let Some(violation) = first_bad_read(history, &writes) {
        return Ok(Verdict::Violation(violation));
    }
    let graph = ConstraintGraph::build(history, &writes);
    if let Some(violation) = graph.first_violation(history, &writes) {
        return Ok(Verdict::Violation(violation));
    }
    Ok(Verdict::Ok(Stats {
        ops: history.len(),
        writes: writes.nodes.len() - 1,
        reads: history.ops.iter().filter(|op| op.is_ok_read()).count(),
        processes: graph.processes,
        edges: graph.edges.len(),
    }))
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some single order of writes explains what every process saw.
    Ok(Stats),
    /// No order can explain the operations named in the violation.
    Violation(Violation),
}

impl Verdict {
    /// True if the history is sequentially consistent.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }

    /// The violation, if there is one.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Ok(_) => None,
            Verdict::Violation(v) => Some(v),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok(stats) => write!(f, "sequentially consistent: {stats}"),
            Verdict::Violation(v) => write!(f, "not sequentially consistent: {v}"),
        }
    }
}

/// What an accepted history contained, to show that the check had something to chew on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations in the history, whatever their outcome.
    pub ops: usize,
    /// Writes that took part: `ok` ones and `unknown` ones some read observed.
    pub writes: usize,
    /// Reads that returned a value.
    pub reads: usize,
    /// Sequential processes: one per client, plus one more after each `unknown` operation
    /// followed by others.
    pub processes: usize,
    /// Distinct ordering constraints between two writes (not counting "the initial value comes
    /// first").
    pub edges: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ({} writes, {} reads) in {} processes, {} ordering constraints",
            self.ops, self.writes, self.reads, self.processes, self.edges
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
        };
        ops.sort_unstable();
        ops.dedup();
        ops
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
                    let initial = constraints.first().map_or(0, |c| c.initial);
                    write!(f, "; the initial value {initial} precedes every write")?;
                }
                let claims = constraints.len() + usize::from(*through_initial);
                let all = if claims == 2 { "both" } else { "all of these" };
                write!(f, ": no single order of writes satisfies {all}")?;
            }
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
    /// The history's initial value, which `None` stands for.
    pub initial: Value,
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

fn value(op: &Op) -> Value {
    op.value.unwrap_or_default()
}

/// "wrote 5", "wrote 5 (outcome unknown)", "read 3".
fn did(op: &Op) -> String {
    match op.kind {
        OpKind::Read => format!("read {}", value(op)),
        OpKind::Write if op.outcome == Outcome::Unknown => {
            format!("wrote {} (outcome unknown)", value(op))
        }
        OpKind::Write => format!("wrote {}", value(op)),
    }
}

fn write_name(write: Option<&IndexedOp>, initial: Value) -> String {
    match write {
        Some(w) => format!("write {}", value(&w.op)),
        None => format!("the initial value {initial}"),
    }
}

/// Node 0 of the write-order graph is the initial write; node `n > 0` is the write op
/// `nodes[n]`.
const INITIAL: u32 = 0;

/// Which write produced each value, and which writes take part in the order.
struct Writes {
    /// Every write, whatever its outcome, by value.
    by_value: HashMap<Value, usize>,
    /// Graph node of each participating write, by value.
    node_of: HashMap<Value, u32>,
    /// Op index of each node (`None` for the initial write).
    nodes: Vec<Option<usize>>,
}

impl Writes {
    fn new(history: &History) -> Self {
        let observed: HashSet<Value> = history
            .ops
            .iter()
            .filter(|op| op.is_ok_read())
            .filter_map(|op| op.value)
            .collect();
        let mut by_value = HashMap::new();
        let mut node_of = HashMap::new();
        let mut nodes = vec![None];
        for (index, op) in history.ops.iter().enumerate() {
            let (OpKind::Write, Some(v)) = (op.kind, op.value) else {
                continue;
            };
            by_value.insert(v, index);
            let counts = match op.outcome {
                Outcome::Ok => true,
                Outcome::Unknown => observed.contains(&v),
                Outcome::Fail => false,
            };
            if counts {
                node_of.insert(v, nodes.len() as u32);
                nodes.push(Some(index));
            }
        }
        node_of.insert(history.initial, INITIAL);
        Self {
            by_value,
            node_of,
            nodes,
        }
    }
}

/// The earliest read (by invocation) that saw a write that cannot have happened.
fn first_bad_read(history: &History, writes: &Writes) -> Option<Violation> {
    let mut reads: Vec<usize> = (0..history.len())
        .filter(|&i| history.ops[i].is_ok_read())
        .filter(|&i| !writes.node_of.contains_key(&value(&history.ops[i])))
        .collect();
    reads.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    let &first = reads.first()?;
    let read = IndexedOp::new(history, first);
    Some(match writes.by_value.get(&value(&read.op)) {
        Some(&w) => Violation::ReadOfFailedWrite {
            read,
            write: IndexedOp::new(history, w),
        },
        None => Violation::ReadOfUnwrittenValue { read },
    })
}

/// An operation of a process that constrains the write order, with the write it names.
#[derive(Clone, Copy)]
struct Step {
    index: usize,
    kind: OpKind,
    node: u32,
}

/// The ordering constraints between writes, each kept with the first pair of operations that
/// imposed it (its "cause").
struct ConstraintGraph {
    edges: Vec<(u32, u32)>,
    causes: Vec<(usize, usize)>,
    /// A process that read a value and then wrote it.
    read_before_own_write: Option<(usize, usize)>,
    /// A constraint "x precedes the initial write": a cycle with "initial precedes x".
    before_initial: Option<(usize, usize, u32)>,
    node_count: usize,
    processes: usize,
}

impl ConstraintGraph {
    fn build(history: &History, writes: &Writes) -> Self {
        let mut graph = Self {
            edges: Vec::new(),
            causes: Vec::new(),
            read_before_own_write: None,
            before_initial: None,
            node_count: writes.nodes.len(),
            processes: 0,
        };
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        let by_client: BTreeMap<ClientId, Vec<usize>> = history.by_client().into_iter().collect();
        for ops in by_client.values() {
            let mut new_process = true;
            let mut prev: Option<Step> = None;
            for &index in ops {
                let op = &history.ops[index];
                if new_process {
                    graph.processes += 1;
                    prev = None;
                    new_process = false;
                }
                let counts = match (op.kind, op.outcome) {
                    (_, Outcome::Ok) => true,
                    (OpKind::Write, Outcome::Unknown) => writes.node_of.contains_key(&value(op)),
                    _ => false,
                };
                if counts {
                    let step = Step {
                        index,
                        kind: op.kind,
                        node: writes.node_of[&value(op)],
                    };
                    if let Some(prev) = prev {
                        graph.constrain(prev, step, &mut seen);
                    }
                    prev = Some(step);
                }
                if op.outcome == Outcome::Unknown {
                    new_process = true;
                }
            }
        }
        graph
    }

    /// Records what `first` then `second` in one process imply for the write order.
    fn constrain(&mut self, first: Step, second: Step, seen: &mut HashSet<(u32, u32)>) {
        let (from, to) = (first.node, second.node);
        if from == to {
            // Two writes always differ, and a write then a read of it, or two reads of one
            // write, are fine. A read then a write of the value read is not.
            if first.kind == OpKind::Read && second.kind == OpKind::Write {
                self.read_before_own_write
                    .get_or_insert((first.index, second.index));
            }
            return;
        }
        if to == INITIAL {
            self.before_initial
                .get_or_insert((first.index, second.index, from));
        } else if from != INITIAL && seen.insert((from, to)) {
            // Constraints from the initial write are implied: it precedes every write.
            self.edges.push((from, to));
            self.causes.push((first.index, second.index));
        }
    }

    /// The simplest violation the constraints contain, if any: a read of one's own future
    /// write (two operations), then a write that must precede the initial one, then the
    /// shortest cycle.
    fn first_violation(&self, history: &History, writes: &Writes) -> Option<Violation> {
        if let Some((read, write)) = self.read_before_own_write {
            return Some(Violation::ReadBeforeOwnWrite {
                read: IndexedOp::new(history, read),
                write: IndexedOp::new(history, write),
            });
        }
        if let Some((first, second, from)) = self.before_initial {
            let constraint = self.constraint(history, writes, first, second, from, INITIAL);
            return Some(Violation::Cycle {
                constraints: vec![constraint],
                through_initial: true,
            });
        }
        let cycle = shortest_cycle::shortest_cycle(self.node_count, &self.edges)?;
        let mut constraints: Vec<Constraint> = cycle
            .iter()
            .map(|&e| {
                let (first, second) = self.causes[e];
                let (from, to) = self.edges[e];
                self.constraint(history, writes, first, second, from, to)
            })
            .collect();
        // Start where the history starts, so that the story reads in time order.
        if let Some(start) = (0..constraints.len()).min_by_key(|&i| {
            let op = &constraints[i].first;
            (op.op.invoke_ns, op.index)
        }) {
            constraints.rotate_left(start);
        }
        Some(Violation::Cycle {
            constraints,
            through_initial: false,
        })
    }

    fn constraint(
        &self,
        history: &History,
        writes: &Writes,
        first: usize,
        second: usize,
        from: u32,
        to: u32,
    ) -> Constraint {
        let write = |node: u32| writes.nodes[node as usize].map(|i| IndexedOp::new(history, i));
        Constraint {
            initial: history.initial,
            client: history.ops[first].client,
            first: IndexedOp::new(history, first),
            second: IndexedOp::new(history, second),
            earlier: write(from),
            later: write(to),
        }
    }
}
