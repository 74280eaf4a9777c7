//! Per-operation bookkeeping of the k8s workload: latencies, errors and conflicts for each
//! kind of request apiserver sends, and watch delivery, merged into the run's totals at
//! the end.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tokio::time::Instant;

use crate::report::LatencyMs;
use crate::run::ErrorLog;
use crate::series::Sample;
use crate::stats::{self, Summary};

/// The kinds of operation reported separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum OpKind {
    /// A node's Lease object renewed by compare-and-swap (the heartbeat).
    LeaseUpdate,
    /// A node's status written by compare-and-swap.
    NodeUpdate,
    /// A pod created (`If mod_revision == 0`).
    PodCreate,
    /// A pod updated (binding, status) by compare-and-swap.
    PodUpdate,
    /// A pod deleted by compare-and-swap.
    PodDelete,
    /// An event created with a lease.
    EventCreate,
    /// A lease granted by the lease manager for events.
    LeaseGrant,
    /// One page of a paged LIST.
    List,
    /// A count-only range (storage stats).
    Count,
    /// The compactor's Txn on compact_rev_key.
    CompactTxn,
    /// The Compact call.
    Compact,
    /// A watch event, from the write's acknowledgement to its arrival at the watcher.
    WatchEvent,
    /// A progress request on the watch stream, until its progress notification.
    Progress,
}

impl OpKind {
    /// Every kind, in report order.
    pub(crate) const ALL: [OpKind; 13] = [
        OpKind::LeaseUpdate,
        OpKind::NodeUpdate,
        OpKind::PodCreate,
        OpKind::PodUpdate,
        OpKind::PodDelete,
        OpKind::EventCreate,
        OpKind::LeaseGrant,
        OpKind::List,
        OpKind::Count,
        OpKind::CompactTxn,
        OpKind::Compact,
        OpKind::WatchEvent,
        OpKind::Progress,
    ];

    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKind::LeaseUpdate => "lease-update",
            OpKind::NodeUpdate => "node-update",
            OpKind::PodCreate => "pod-create",
            OpKind::PodUpdate => "pod-update",
            OpKind::PodDelete => "pod-delete",
            OpKind::EventCreate => "event-create",
            OpKind::LeaseGrant => "lease-grant",
            OpKind::List => "list",
            OpKind::Count => "count",
            OpKind::CompactTxn => "compact-txn",
            OpKind::Compact => "compact",
            OpKind::WatchEvent => "watch-event",
            OpKind::Progress => "progress",
        }
    }

    /// True for requests (counted in the run's totals); watch deliveries are not.
    fn is_request(self) -> bool {
        self != OpKind::WatchEvent
    }
}

/// One kind's raw numbers.
#[derive(Debug, Default)]
struct OpLog {
    /// Each success: when it finished and its latency.
    samples: Vec<Sample>,
    /// Failures.
    errors: ErrorLog,
    /// When each failure happened, nanoseconds since the run started.
    error_ends: Vec<u64>,
    /// Answered requests whose compare failed (nothing written).
    conflicts: u64,
}

/// Every kind's numbers, shared by the workload's tasks.
#[derive(Debug)]
pub(crate) struct Recorder {
    /// Indexed by `OpKind as usize`.
    logs: Mutex<Vec<OpLog>>,
    /// Don't print errors as they happen.
    quiet: bool,
    /// When the timed run started (the time series' zero; setup's requests are at 0).
    start: OnceLock<Instant>,
}

impl Recorder {
    /// An empty recorder.
    pub(crate) fn new(quiet: bool) -> Recorder {
        Recorder {
            logs: Mutex::new(OpKind::ALL.iter().map(|_| OpLog::default()).collect()),
            quiet,
            start: OnceLock::new(),
        }
    }

    /// Sets the time series' zero: the timed run's start.
    pub(crate) fn start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    /// Nanoseconds from the run's start until now (0 before it).
    fn now_ns(&self) -> u64 {
        self.start.get().map_or(0, |s| {
            stats::nanos(Instant::now().saturating_duration_since(*s))
        })
    }

    /// Runs `f` on `kind`'s log.
    fn with(&self, kind: OpKind, f: impl FnOnce(&mut OpLog)) {
        // A poisoned lock only means another task panicked mid-record; the counts are
        // still usable.
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get_mut(kind as usize) {
            f(log);
        }
    }

    /// Records a success that started at `t0`.
    pub(crate) fn ok(&self, kind: OpKind, t0: Instant) {
        self.latency(kind, stats::nanos(t0.elapsed()));
    }

    /// Records a success that took `nanos`.
    pub(crate) fn latency(&self, kind: OpKind, nanos: u64) {
        let sample = Sample {
            end_ns: self.now_ns(),
            latency_ns: nanos,
        };
        self.with(kind, |log| log.samples.push(sample));
    }

    /// Records a success whose compare failed.
    pub(crate) fn conflict(&self, kind: OpKind, t0: Instant) {
        let sample = Sample {
            end_ns: self.now_ns(),
            latency_ns: stats::nanos(t0.elapsed()),
        };
        self.with(kind, |log| {
            log.samples.push(sample);
            log.conflicts += 1;
        });
    }

    /// Records a failure.
    pub(crate) fn error(&self, kind: OpKind, status: &tonic::Status) {
        let (quiet, end) = (self.quiet, self.now_ns());
        self.with(kind, |log| {
            log.errors.record(status, quiet);
            log.error_ends.push(end);
        });
    }

    /// The run's totals (requests only: every success, when each failure happened, the
    /// errors) and the per-kind report.
    pub(crate) fn finish(&self) -> Finished {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = Vec::new();
        let mut error_ends = Vec::new();
        let mut errors = ErrorLog::default();
        let mut ops = BTreeMap::new();
        for (kind, log) in OpKind::ALL.iter().zip(logs.iter_mut()) {
            let samples = std::mem::take(&mut log.samples);
            if kind.is_request() {
                all.extend_from_slice(&samples);
                error_ends.extend_from_slice(&log.error_ends);
                errors.count += log.errors.count;
                for (code, n) in &log.errors.by_code {
                    *errors.by_code.entry(code.clone()).or_insert(0) += n;
                }
                for s in &log.errors.samples {
                    if errors.samples.len() < 5 {
                        errors.samples.push(format!("{}: {s}", kind.name()));
                    }
                }
            }
            let count = samples.len() as u64;
            let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_ns).collect();
            latencies.sort_unstable();
            ops.insert(
                kind.name(),
                OpReport {
                    count,
                    errors: log.errors.count,
                    errors_by_code: log.errors.by_code.clone(),
                    conflicts: log.conflicts,
                    latency_ms: Summary::from_sorted(&latencies).map(|s| LatencyMs::from(&s)),
                },
            );
        }
        (all, error_ends, errors, ops)
    }
}

/// What [`Recorder::finish`] returns: the requests' successes, their failures' times,
/// their errors, and each kind's report.
pub(crate) type Finished = (
    Vec<Sample>,
    Vec<u64>,
    ErrorLog,
    BTreeMap<&'static str, OpReport>,
);

/// One kind's numbers in the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OpReport {
    /// Successes (for watch-event: events delivered whose write this run made).
    pub(crate) count: u64,
    /// Failures.
    pub(crate) errors: u64,
    /// Failures by gRPC code.
    pub(crate) errors_by_code: BTreeMap<String, u64>,
    /// Successes whose compare failed (counted in `count` too).
    pub(crate) conflicts: u64,
    /// Latency of the successes (`None` if there were none).
    pub(crate) latency_ms: Option<LatencyMs>,
}
