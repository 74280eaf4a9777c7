//! The checker's entry point: split a history by key, search each key, and report the first
//! key with no linearization in terms of the operations a person needs to see to debug it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::history::{Bytes, History, Input, Key, Maybe, Operation, Outcome, Value};
use super::register::{self, step, Values};
use super::search::{self, frontier, KeyOp, Meter};

/// How much searching a [`check`] may do before answering [`Verdict::Timeout`]. Both limits
/// cover the whole check, all keys together; `None` is no limit.
///
/// Steps also bound memory: each step memoizes at most one configuration, about 100 bytes
/// with one bit per operation of the key. Ten million steps (seconds of search) is about 1 GiB
/// for keys of a few thousand operations; a time limit alone on a fast machine may be more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Search steps: one per event the search looks at.
    pub max_steps: Option<u64>,
    /// Wall-clock time.
    pub max_time: Option<Duration>,
}

impl Budget {
    /// No limit: a pathological history can then take exponential time (tests only).
    #[cfg(test)]
    pub(crate) fn unlimited() -> Budget {
        Budget::default()
    }

    /// At most `max_time` of wall-clock time.
    pub fn time(max_time: Duration) -> Budget {
        Budget {
            max_time: Some(max_time),
            ..Budget::default()
        }
    }

    /// At most `max_steps` search steps; deterministic, unlike a time limit.
    pub fn steps(max_steps: u64) -> Budget {
        Budget {
            max_steps: Some(max_steps),
            ..Budget::default()
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a linearization.
    Linearizable,
    /// A key's operations have none. Boxed: it carries operations.
    NotLinearizable(Box<Violation>),
    /// The budget ran out before every key was decided; no key decided so far is bad.
    Timeout {
        /// The key being searched when the budget ran out.
        key: Key,
        /// Keys found linearizable before it (smallest histories first).
        keys_checked: usize,
        /// Keys in the history.
        keys_total: usize,
        /// Search steps taken.
        steps: u64,
        /// Wall-clock time taken.
        elapsed: Duration,
    },
}

impl Verdict {
    /// Whether the history is known to be linearizable (not bad, not timed out).
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The violation, if the history is known not to be linearizable (tests only).
    #[cfg(test)]
    pub(crate) fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::NotLinearizable(violation) => Some(violation),
            _ => None,
        }
    }
}

/// Why one key's operations have no linearization: the longest linearizable prefix the search
/// found, and the operations real time allows next, none of which fits the state after it (one
/// that fitted would make a longer prefix).
///
/// The bug is almost always among the last operations of the prefix and the next ones: a read
/// that saw a value the register cannot hold at that point, a write that was lost, a
/// compare-and-set that succeeded twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// How many operations the key has (unknown-outcome gets excluded: they say nothing).
    pub ops_on_key: usize,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<Linearized>,
    /// The operations that could come next by real time (called before the first return
    /// among the operations not in the prefix), by call time.
    pub next: Vec<Operation>,
}

/// One operation of a [`Violation::prefix`], with the register after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linearized {
    /// The operation as recorded.
    pub op: Operation,
    /// The key's value after the operation (`None`: absent).
    pub after: Option<Value>,
}

impl Violation {
    /// The key's value after the prefix (`None`: absent).
    pub fn state(&self) -> Option<&Value> {
        self.prefix.last().and_then(|l| l.after.as_ref())
    }
}

/// How many prefix operations a report shows: the ones before are rarely the story.
const SHOWN_PREFIX: usize = 10;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {} is not linearizable: the longest linearizable prefix has {} of its {} operations",
            Bytes(&self.key),
            self.prefix.len(),
            self.ops_on_key
        )?;
        let skipped = self.prefix.len().saturating_sub(SHOWN_PREFIX);
        if skipped > 0 {
            writeln!(f, "  ... {skipped} earlier operations")?;
        }
        for l in &self.prefix[skipped..] {
            writeln!(f, "  {}  => {}", l.op, Maybe(l.after.as_deref()))?;
        }
        writeln!(
            f,
            "then, with the key {}, none of these can come next:",
            Maybe(self.state().map(Vec::as_slice))
        )?;
        for op in &self.next {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(violation) => violation.fmt(f),
            Verdict::Timeout {
                key,
                keys_checked,
                keys_total,
                steps,
                elapsed,
            } => write!(
                f,
                "undecided: the budget ran out on key {} after {keys_checked} of {keys_total} keys \
                 were found linearizable ({steps} steps, {elapsed:?})",
                Bytes(key)
            ),
        }
    }
}

/// Checks whether `history` is linearizable with respect to a register per key that starts
/// absent, within `budget`.
///
/// Gets with an unknown outcome are dropped first: they changed nothing and told nothing. Keys
/// are searched smallest history first, so a bad small key is found even when a big one would
/// spend the budget; the first bad key ends the check.
pub fn check(history: &History, budget: Budget) -> Verdict {
    let started = Instant::now();
    let mut meter = Meter::new(budget.max_steps, budget.max_time);
    let mut by_key: BTreeMap<&Key, Vec<&Operation>> = BTreeMap::new();
    for op in history.ops() {
        if op.input == Input::Get && op.outcome == Outcome::Unknown {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut keys: Vec<(&Key, Vec<&Operation>)> = by_key.into_iter().collect();
    keys.sort_by_key(|(key, ops)| (ops.len(), *key));

    let keys_total = keys.len();
    for (keys_checked, (key, ops)) in keys.into_iter().enumerate() {
        let mut values = Values::default();
        let key_ops: Vec<KeyOp> = ops
            .iter()
            .map(|op| {
                let (call, ret) = register::intern(&op.input, &op.outcome, &mut values);
                KeyOp {
                    call_time: op.call,
                    ret_time: ret.and(op.ret),
                    call,
                    ret,
                }
            })
            .collect();
        match search::search(&key_ops, &mut meter) {
            search::Outcome::Linearizable => {}
            search::Outcome::Exhausted => {
                return Verdict::Timeout {
                    key: key.clone(),
                    keys_checked,
                    keys_total,
                    steps: meter.steps,
                    elapsed: started.elapsed(),
                }
            }
            search::Outcome::NotLinearizable { prefix } => {
                let state = prefix.last().map_or(register::ABSENT, |&(_, s)| s);
                let next = frontier(&key_ops, &prefix)
                    .into_iter()
                    .map(|i| {
                        // The search tried each of these right after the prefix; one that fit
                        // would have made the prefix longer.
                        let fits = step(state, key_ops[i].call, key_ops[i].ret).is_some();
                        assert!(!fits, "search missed a continuation: {}", ops[i]);
                        ops[i].clone()
                    })
                    .collect();
                let prefix = prefix
                    .into_iter()
                    .map(|(i, after)| Linearized {
                        op: ops[i].clone(),
                        after: values.value(after).cloned(),
                    })
                    .collect();
                return Verdict::NotLinearizable(Box::new(Violation {
                    key: key.clone(),
                    ops_on_key: ops.len(),
                    prefix,
                    next,
                }));
            }
        }
    }
    Verdict::Linearizable
}
