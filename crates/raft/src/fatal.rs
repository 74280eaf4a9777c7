//! The one path a member takes after a failure it cannot recover from.
//!
//! A failed WAL write or fdatasync, a state machine apply or checkpoint that
//! could not commit, a snapshot that could not be built or installed, or an
//! openraft core that stopped on its own: after any of them this member's
//! state on disk is unknown or frozen, so it must not go on serving reads,
//! answering health probes or acknowledging anything. As etcd (which panics),
//! each such condition is reported here, once; the first report wins and is
//! logged as one error line. Everything else (requests, `/health`, the
//! embedding API, the binary's `main`) asks [`FatalSignal`] and stops: a
//! library does not exit the process, the `bramble` binary does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::Fatal;
use openraft::metrics::RaftServerMetrics;
use openraft::type_config::alias::WatchReceiverOf;
use openraft::RaftMetrics;
use tokio::sync::watch;

use crate::types::TypeConfig;

/// openraft's metrics channel (what `Raft::metrics` returns).
pub(crate) type Metrics = WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>;

/// openraft's server metrics (state, leader, vote, membership): they change rarely.
pub(crate) type ServerMetrics = WatchReceiverOf<TypeConfig, RaftServerMetrics<TypeConfig>>;

/// Which part of the member failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalCause {
    /// A write, fdatasync or read of the write-ahead log (the Raft log and
    /// vote) failed.
    Wal,
    /// Applying committed entries to the MVCC store (a redb commit) failed.
    Apply,
    /// A checkpoint (the durable redb commit of the applied state) failed.
    Checkpoint,
    /// Building, installing or reading a snapshot failed.
    Snapshot,
    /// Deleting the rows of a compaction (a redb commit) failed.
    Compaction,
    /// openraft's core stopped without being asked to (a storage error it
    /// reported itself, or a panic).
    RaftCore,
}

impl fmt::Display for FatalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FatalCause::Wal => "write-ahead log failed",
            FatalCause::Apply => "applying to the state machine failed",
            FatalCause::Checkpoint => "state machine checkpoint failed",
            FatalCause::Snapshot => "snapshot failed",
            FatalCause::Compaction => "compaction failed",
            FatalCause::RaftCore => "raft core stopped",
        })
    }
}

/// A fatal failure: what failed and the underlying error's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause}: {detail}")]
pub struct FatalError {
    /// Which part failed.
    pub cause: FatalCause,
    /// The underlying error, as reported by the part that failed.
    pub detail: String,
}

/// Shared flag for the member's fatal failure. Cheap to clone; every clone
/// sees the same (first) failure.
#[derive(Clone)]
pub struct FatalSignal {
    tx: Arc<watch::Sender<Option<FatalError>>>,
}

impl Default for FatalSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FatalSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FatalSignal").field(&self.get()).finish()
    }
}

impl FatalSignal {
    /// A member that has not failed.
    pub fn new() -> Self {
        FatalSignal {
            tx: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Reports a fatal failure. The first report is kept and logged; later
    /// ones (usually the same failure seen by another layer) only at debug
    /// level. Never blocks: it runs on the WAL's writer thread too.
    pub(crate) fn trip(&self, cause: FatalCause, detail: impl fmt::Display) {
        let err = FatalError {
            cause,
            detail: detail.to_string(),
        };
        let first = self.tx.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            // Logged before anyone can see it: a waiter may exit the
            // process at once, and the line must be out by then.
            tracing::error!("fatal error, this member stops: {err}");
            *slot = Some(err.clone());
            true
        });
        if !first {
            tracing::debug!("after the fatal error, also: {err}");
        }
    }

    /// The failure, if there was one.
    pub fn get(&self) -> Option<FatalError> {
        self.tx.borrow().clone()
    }

    /// Resolves with the failure once there is one.
    pub async fn wait(&self) -> FatalError {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            // The sender lives in `self`, so it cannot close while we wait.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// How often [`watch_raft_core`] looks at the core's running state between changes of
/// its server state.
const CORE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Reports openraft's core stopping on its own: watches its metrics until
/// `stop` turns true (a requested shutdown). Holds no `Raft` handle, so it
/// does not keep the core alive.
///
/// It wakes when the server metrics change (state, leader, vote: rarely) or
/// their channel closes (the core task ended), and once per
/// [`CORE_CHECK_EVERY`], not on every change of the full metrics, which
/// heartbeats update many times a second: an idle member's wake-ups cost a Pi
/// power. The core reports its failure in the full metrics and then ends.
pub(crate) async fn watch_raft_core(
    metrics: Metrics,
    mut server: ServerMetrics,
    fatal: FatalSignal,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let state = metrics.borrow_watched().running_state.clone();
        if let Err(e) = state {
            // Even a plain stop is a failure here: only `shutdown` may stop
            // the core, and it sets `stop` first.
            fatal.trip(FatalCause::RaftCore, e);
            return;
        }
        tokio::select! {
            changed = server.changed() => {
                if changed.is_err() {
                    // The core task ended: with its reason in the metrics, or
                    // without a last word (a panic).
                    if !*stop.borrow() {
                        match metrics.borrow_watched().running_state.clone() {
                            Err(e) => fatal.trip(FatalCause::RaftCore, e),
                            Ok(()) => fatal.trip(FatalCause::RaftCore, "raft core task ended unexpectedly"),
                        }
                    }
                    return;
                }
            }
            _ = tokio::time::sleep(CORE_CHECK_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Why openraft's core stopped, after a requested shutdown: `Stopped` is the
/// answer to the request, anything else a failure before or during it.
pub(crate) fn failure_after_shutdown(state: &Result<(), Fatal<TypeConfig>>) -> Option<String> {
    match state {
        Ok(()) | Err(Fatal::Stopped) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_failure_wins_and_wakes_waiters() {
        let fatal = FatalSignal::new();
        assert_eq!(fatal.get(), None);
        let waiter = {
            let f = fatal.clone();
            tokio::spawn(async move { f.wait().await })
        };
        fatal.trip(FatalCause::Wal, "fdatasync: Input/output error");
        fatal.trip(FatalCause::RaftCore, "when Write Log");
        let seen = waiter.await.expect("waiter task");
        assert_eq!(seen.cause, FatalCause::Wal);
        assert_eq!(fatal.get(), Some(seen.clone()));
        assert_eq!(
            seen.to_string(),
            "write-ahead log failed: fdatasync: Input/output error"
        );
        // A late waiter sees it at once.
        assert_eq!(fatal.wait().await, seen);
    }

    fn metrics_channel() -> (
        openraft::type_config::alias::WatchSenderOf<TypeConfig, RaftMetrics<TypeConfig>>,
        Metrics,
    ) {
        use openraft::async_runtime::watch::Watch;
        openraft::type_config::alias::WatchOf::<TypeConfig>::channel(RaftMetrics::new_initial(1))
    }

    fn server_channel() -> (
        openraft::type_config::alias::WatchSenderOf<TypeConfig, RaftServerMetrics<TypeConfig>>,
        ServerMetrics,
    ) {
        use openraft::async_runtime::watch::Watch;
        let m = RaftMetrics::<TypeConfig>::new_initial(1);
        openraft::type_config::alias::WatchOf::<TypeConfig>::channel(RaftServerMetrics {
            id: m.id,
            vote: m.vote,
            state: m.state,
            current_leader: None,
            membership_config: m.membership_config.clone(),
            committed_membership_config: m.membership_config,
        })
    }

    fn stopped_with(state: Fatal<TypeConfig>) -> RaftMetrics<TypeConfig> {
        let mut m = RaftMetrics::new_initial(1);
        m.running_state = Err(state);
        m
    }

    #[tokio::test]
    async fn a_core_that_stops_on_its_own_is_fatal() {
        use openraft::async_runtime::WatchSender;
        // A core that failed and is still winding down: seen at the next check.
        let (tx, rx) = metrics_channel();
        let (_server_tx, server) = server_channel();
        let (_stop_tx, stop) = watch::channel(false);
        let fatal = FatalSignal::new();
        let task = tokio::spawn(watch_raft_core(rx, server, fatal.clone(), stop));
        assert!(tx.send(stopped_with(Fatal::Panicked)).is_ok());
        task.await.expect("watcher");
        let e = fatal.get().expect("tripped");
        assert_eq!(e.cause, FatalCause::RaftCore);
        assert_eq!(e.detail, "panicked");
    }

    #[tokio::test]
    async fn a_core_task_that_ended_is_fatal_at_once() {
        use openraft::async_runtime::WatchSender;
        let (tx, rx) = metrics_channel();
        let (server_tx, server) = server_channel();
        let (_stop_tx, stop) = watch::channel(false);
        let fatal = FatalSignal::new();
        let task = tokio::spawn(watch_raft_core(rx, server, fatal.clone(), stop));
        // As the core does: the failure in the metrics, then the task ends and its
        // senders go. Without a failure reported, the end itself is the failure.
        let _ = tx.send(stopped_with(Fatal::Panicked));
        drop(server_tx);
        let t = std::time::Instant::now();
        task.await.expect("watcher");
        assert!(t.elapsed() < CORE_CHECK_EVERY, "{:?}", t.elapsed());
        assert_eq!(fatal.get().expect("tripped").detail, "panicked");

        let (_tx, rx) = metrics_channel();
        let (server_tx, server) = server_channel();
        let (_stop_tx, stop) = watch::channel(false);
        let fatal = FatalSignal::new();
        let task = tokio::spawn(watch_raft_core(rx, server, fatal.clone(), stop));
        drop(server_tx);
        task.await.expect("watcher");
        assert_eq!(
            fatal.get().expect("tripped").detail,
            "raft core task ended unexpectedly"
        );
    }

    #[tokio::test]
    async fn a_requested_shutdown_is_not_fatal() {
        use openraft::async_runtime::WatchSender;
        let (tx, rx) = metrics_channel();
        let (_server_tx, server) = server_channel();
        let (stop_tx, stop) = watch::channel(false);
        let fatal = FatalSignal::new();
        let task = tokio::spawn(watch_raft_core(rx, server, fatal.clone(), stop));
        stop_tx.send(true).expect("stop");
        task.await.expect("watcher");
        // The watcher is gone: the stop that follows is not reported (the
        // send fails for want of a receiver, which is the point).
        let _ = tx.send(stopped_with(Fatal::Stopped));
        assert_eq!(fatal.get(), None);
        assert_eq!(failure_after_shutdown(&Err(Fatal::Stopped)), None);
        assert_eq!(
            failure_after_shutdown(&Err(Fatal::Panicked)).as_deref(),
            Some("panicked")
        );
    }
}
