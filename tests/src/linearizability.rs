//! Linearizability checking for histories recorded against a cluster under faults.
//!
//! Concurrent clients do get / put / compare-and-set / delete against a cluster while a nemesis
//! kills, pauses and partitions nodes; each client records what it asked, when, and what came
//! back (or that it never found out). [`check`] then decides whether some total order of those
//! operations both respects real time (an operation that returned before another was called
//! comes first) and explains every observed result with a plain register per key. If none does,
//! the cluster lost a write, served a stale read, or applied something twice.
//!
//! The algorithm is Wing & Gong's search with Lowe's improvements, as in Knossos and Porcupine:
//! the history is split by key first (a register per key is independent of the others, so the
//! history is linearizable iff each key's sub-history is: P-compositionality), and each key is
//! searched depth-first over its call/return events with a memo of (operations linearized so
//! far, register state) that prunes every configuration already known to lead nowhere. The
//! search is exponential in the worst case, so it runs under a [`Budget`] and reports
//! [`Verdict::Timeout`] instead of spinning.
//!
//! - `history`: operations, outcomes, and the thread-safe [`Recorder`] clients share.
//! - `register`: the sequential specification, one etcd key as an optional value.
//! - `search`: the depth-first search over one key's events.
//! - `verdict`: [`check`], its [`Budget`], and the [`Verdict`] with what to debug.
//!
//! ```no_run
//! use bramble_tests::linearizability::{check, Budget, Input, Outcome, Output, Recorder};
//! use std::time::Duration;
//!
//! let recorder = Recorder::new();
//! let op = recorder.invoke(1, "k", Input::Put(b"v1".to_vec()));
//! // ... send the Put; on a response:
//! recorder.complete(op, Outcome::Ok(Output::Put));
//! let op = recorder.invoke(2, "k", Input::Get);
//! // ... on a timeout or a lost connection instead:
//! recorder.complete(op, Outcome::Unknown);
//! let verdict = check(&recorder.history(), Budget::time(Duration::from_secs(60)));
//! assert!(verdict.is_linearizable(), "{verdict}");
//! ```

mod history;
mod register;
mod search;
mod verdict;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use history::{History, Input, Key, OpHandle, Operation, Outcome, Output, Recorder, Value};
pub use verdict::{check, Budget, Linearized, Verdict, Violation};
