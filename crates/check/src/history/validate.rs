//! The rules a history must follow for a verdict to mean anything.

use std::collections::HashMap;

use super::{History, InvalidHistory, Op, OpKind, Outcome, Value};

impl History {
    /// Checks every rule the checkers rely on: [`History::validate_structure`], and values
    /// written to the single register that are unique and differ from its initial value, so
    /// that each read of it names the one write it saw. The sequential-consistency checker
    /// needs all of it for the single register; keys may repeat values, and their parts are
    /// then searched instead.
    pub fn validate(&self) -> Result<(), InvalidHistory> {
        self.validate_structure()?;
        let mut writers: HashMap<Value, usize> = HashMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            let (OpKind::Write, None, Some(value)) = (op.kind, &op.key, op.value) else {
                continue;
            };
            if value == self.initial {
                return Err(InvalidHistory::WriteOfInitialValue { index, value });
            }
            if let Some(&first) = writers.get(&value) {
                return Err(InvalidHistory::DuplicateWrite {
                    value,
                    first,
                    second: index,
                });
            }
            writers.insert(value, index);
        }
        Ok(())
    }

    /// Checks the rules without which a history means nothing: sane times, every operation
    /// carries the fields its kind needs and no other (writes a value, ok reads of the single
    /// register a value, incrs `by`, cas `new`, msets and mgets their keys and values...), and
    /// each client has one completed operation in flight at a time (after an `unknown` one it
    /// may go on at once, as it gave up waiting). Values may repeat; the linearizability
    /// checker copes with that, more slowly.
    pub fn validate_structure(&self) -> Result<(), InvalidHistory> {
        for (index, op) in self.ops.iter().enumerate() {
            match op.return_ns {
                Some(return_ns) if return_ns < op.invoke_ns => {
                    return Err(InvalidHistory::ReturnBeforeInvoke {
                        index,
                        invoke_ns: op.invoke_ns,
                        return_ns,
                    });
                }
                None if op.outcome != Outcome::Unknown => {
                    return Err(InvalidHistory::MissingReturn {
                        index,
                        outcome: op.outcome,
                    });
                }
                _ => {}
            }
            fields(index, op)?;
        }
        for ops in self.by_client().values() {
            for pair in ops.windows(2) {
                let (first, second) = (&self.ops[pair[0]], &self.ops[pair[1]]);
                if first.outcome != Outcome::Unknown && first.end_ns() > second.invoke_ns {
                    return Err(InvalidHistory::ClientOverlap {
                        client: first.client,
                        first: pair[0],
                        second: pair[1],
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks that `op` has the fields its kind needs and none it does not use.
fn fields(index: usize, op: &Op) -> Result<(), InvalidHistory> {
    let kind = op.kind;
    let ok = op.outcome == Outcome::Ok;
    let missing = |field| Err(InvalidHistory::MissingField { index, kind, field });
    let unused = |field| Err(InvalidHistory::FieldNotUsed { index, kind, field });
    let multi = kind.is_multi_key();
    if multi && op.key.is_some() {
        return unused("key");
    }
    if !multi && !op.keys.is_empty() {
        return unused("keys");
    }
    if !multi && !op.values.is_empty() {
        return unused("values");
    }
    if multi && op.value.is_some() {
        return unused("value");
    }
    if kind != OpKind::Incr && op.by.is_some() {
        return unused("by");
    }
    if kind != OpKind::Cas && op.expected.is_some() {
        return unused("expected");
    }
    if kind != OpKind::Cas && op.new.is_some() {
        return unused("new");
    }
    match kind {
        OpKind::Write if op.value.is_none() => Err(InvalidHistory::WriteWithoutValue { index }),
        // A key may hold nothing, and a read of it returns nothing; the single register always
        // holds a value.
        OpKind::Read if ok && op.key.is_none() && op.value.is_none() => {
            Err(InvalidHistory::ReadWithoutValue { index })
        }
        OpKind::Incr if op.by.is_none() => missing("by"),
        OpKind::Cas if op.new.is_none() => missing("new"),
        OpKind::Incr | OpKind::Cas if ok && op.value.is_none() => missing("value"),
        OpKind::Cas => match op.value {
            Some(value) if ok && value != 0 && value != 1 => {
                Err(InvalidHistory::CasAnswer { index, value })
            }
            _ => Ok(()),
        },
        OpKind::MSet | OpKind::MGet if op.keys.is_empty() => missing("keys"),
        OpKind::MSet | OpKind::MGet => {
            let nulls = op.values.iter().filter(|v| v.is_none()).count();
            let checked = kind == OpKind::MSet || ok;
            let nulls_allowed = kind == OpKind::MGet;
            if checked && (op.values.len() != op.keys.len() || (nulls > 0 && !nulls_allowed)) {
                return Err(InvalidHistory::ValuesDoNotMatchKeys {
                    index,
                    kind,
                    keys: op.keys.len(),
                    values: op.values.len(),
                    nulls,
                });
            }
            Ok(())
        }
        OpKind::Read | OpKind::Write | OpKind::Incr => Ok(()),
    }
}
