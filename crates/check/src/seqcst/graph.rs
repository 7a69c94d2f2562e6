//! The polynomial check of one register whose written values are unique: the write-order
//! constraint graph of the parent module, built from the register's operations only.

use std::collections::{HashMap, HashSet};

use super::processes::Processes;
use super::{Constraint, Stats, Verdict, Violation, shortest_cycle};
use crate::history::{History, IndexedOp, OpKind, Outcome, Value};

/// One register's operations, as the graph check takes them.
pub(super) struct Register<'h> {
    /// What it holds at the start (`None`: nothing, as every key).
    pub(super) initial: Option<Value>,
    /// Positions in the history of its operations, reads and writes only, whose written values
    /// are unique and differ from `initial`.
    pub(super) ops: &'h [usize],
}

/// True if the graph check can take `ops`, the operations of the one register `key` holding
/// `initial` at the start: reads and writes only, every write (whatever its outcome) of a value
/// of its own that is not the initial value.
pub(super) fn applies(history: &History, initial: Option<Value>, ops: &[usize]) -> bool {
    let mut written: HashSet<Value> = HashSet::new();
    ops.iter().all(|&i| {
        let op = &history.ops[i];
        match op.kind {
            OpKind::Read => true,
            OpKind::Write => {
                let v = op.value.unwrap_or_default();
                Some(v) != initial && written.insert(v)
            }
            _ => false,
        }
    })
}

/// Checks the register, its operations in the given processes; see the parent module.
pub(super) fn check(history: &History, register: &Register<'_>, processes: &Processes) -> Verdict {
    let writes = Writes::new(history, register);
    if let Some(violation) = first_bad_read(history, register, &writes) {
        return Verdict::Violation(violation);
    }
    let graph = ConstraintGraph::build(history, &processes.split(history, register.ops), &writes);
    if let Some(violation) = graph.first_violation(history, register, &writes) {
        return Verdict::Violation(violation);
    }
    let ops = || register.ops.iter().map(|&i| &history.ops[i]);
    Verdict::Ok(Stats {
        ops: register.ops.len(),
        writes: writes.nodes.len() - 1,
        reads: ops().filter(|op| op.is_ok_read()).count(),
        processes: graph.processes,
        edges: graph.edges.len(),
        parts: 1,
    })
}

/// Node 0 of the write-order graph is the initial write; node `n > 0` is the write op
/// `nodes[n]`.
const INITIAL: u32 = 0;

/// Which write produced each value, and which writes take part in the order.
struct Writes {
    /// Every write, whatever its outcome, by value.
    by_value: HashMap<Value, usize>,
    /// Graph node of each participating write, by value (`None`: the nothing a key starts
    /// with).
    node_of: HashMap<Option<Value>, u32>,
    /// Op index of each node (`None` for the initial write).
    nodes: Vec<Option<usize>>,
}

impl Writes {
    fn new(history: &History, register: &Register<'_>) -> Self {
        let ops = || register.ops.iter().map(|&i| (i, &history.ops[i]));
        let observed: HashSet<Value> = ops()
            .filter(|(_, op)| op.is_ok_read())
            .filter_map(|(_, op)| op.value)
            .collect();
        let mut by_value = HashMap::new();
        let mut node_of = HashMap::new();
        let mut nodes = vec![None];
        for (index, op) in ops() {
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
                node_of.insert(Some(v), nodes.len() as u32);
                nodes.push(Some(index));
            }
        }
        node_of.insert(register.initial, INITIAL);
        Self {
            by_value,
            node_of,
            nodes,
        }
    }
}

/// The earliest read (by invocation) that saw a write that cannot have happened.
fn first_bad_read(
    history: &History,
    register: &Register<'_>,
    writes: &Writes,
) -> Option<Violation> {
    let mut reads: Vec<usize> = register
        .ops
        .iter()
        .copied()
        .filter(|&i| history.ops[i].is_ok_read())
        .filter(|&i| !writes.node_of.contains_key(&history.ops[i].value))
        .collect();
    reads.sort_by_key(|&i| (history.ops[i].invoke_ns, i));
    let &first = reads.first()?;
    let read = IndexedOp::new(history, first);
    let failed = read.op.value.and_then(|v| writes.by_value.get(&v));
    Some(match failed {
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
    fn build(history: &History, processes: &[Vec<usize>], writes: &Writes) -> Self {
        let mut graph = Self {
            edges: Vec::new(),
            causes: Vec::new(),
            read_before_own_write: None,
            before_initial: None,
            node_count: writes.nodes.len(),
            processes: processes.len(),
        };
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        for ops in processes {
            let mut prev: Option<Step> = None;
            for &index in ops {
                let op = &history.ops[index];
                let counts = match (op.kind, op.outcome) {
                    (_, Outcome::Ok) => true,
                    (OpKind::Write, Outcome::Unknown) => writes.node_of.contains_key(&op.value),
                    _ => false,
                };
                if counts {
                    let step = Step {
                        index,
                        kind: op.kind,
                        node: writes.node_of[&op.value],
                    };
                    if let Some(prev) = prev {
                        graph.constrain(prev, step, &mut seen);
                    }
                    prev = Some(step);
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
    fn first_violation(
        &self,
        history: &History,
        register: &Register<'_>,
        writes: &Writes,
    ) -> Option<Violation> {
        if let Some((read, write)) = self.read_before_own_write {
            return Some(Violation::ReadBeforeOwnWrite {
                read: IndexedOp::new(history, read),
                write: IndexedOp::new(history, write),
            });
        }
        let constraint = |first: usize, second: usize, from: u32, to: u32| {
            let write = |node: u32| writes.nodes[node as usize].map(|i| IndexedOp::new(history, i));
            Constraint {
                initial: register.initial,
                client: history.ops[first].client,
                first: IndexedOp::new(history, first),
                second: IndexedOp::new(history, second),
                earlier: write(from),
                later: write(to),
            }
        };
        if let Some((first, second, from)) = self.before_initial {
            return Some(Violation::Cycle {
                constraints: vec![constraint(first, second, from, INITIAL)],
                through_initial: true,
            });
        }
        let cycle = shortest_cycle::shortest_cycle(self.node_count, &self.edges)?;
        let mut constraints: Vec<Constraint> = cycle
            .iter()
            .map(|&e| {
                let (first, second) = self.causes[e];
                let (from, to) = self.edges[e];
                constraint(first, second, from, to)
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
}
