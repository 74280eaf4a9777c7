//! What the server's `/metrics` reads from a running member beyond its
//! status: the WAL's counters and fsync latencies, the leader changes
//! this member has seen (etcd's `etcd_server_leader_changes_seen_total`)
//! and the round-trip times to its peers (`crate::peer_rtt`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bramble_storage::latency::LatencySnapshot;
use bramble_storage::wal::WalMeter;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use super::RaftNode;
use crate::fatal::ServerMetrics;

impl RaftNode {
    /// The WAL's counters (fsyncs, entries written, fsync latencies).
    pub fn wal_meter(&self) -> &WalMeter {
        &self.wal_meter
    }

    /// Leader changes this member has seen since it started, the first
    /// leader it learned of included (as etcd counts them).
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Heartbeat round-trip times to each peer this member sent heartbeats
    /// to (as leader), by member id.
    pub fn peer_round_trips(&self) -> Vec<(u64, LatencySnapshot)> {
        self.peer_rtt.snapshot()
    }
}

/// Counts each time Raft's known leader becomes a member other than the
/// last one known (etcd counts a new non-zero leader that differs from the
/// previous one, "none" included), until `stop`.
pub(super) async fn count_leader_changes(
    mut metrics: ServerMetrics,
    changes: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let leader = metrics.borrow_watched().current_leader;
        if leader.is_some() && leader != last {
            changes.fetch_add(1, Ordering::Relaxed);
        }
        last = leader;
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => {}
        }
    }
}
