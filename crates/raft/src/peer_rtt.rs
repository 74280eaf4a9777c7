//! Round-trip times to each peer, for etcd's
//! `etcd_network_peer_round_trip_time_seconds{To}`. etcd times a probe
//! request without disk work; the closest Bramble has is the leader's
//! heartbeat, an AppendEntries without entries, which the follower answers
//! without writing its WAL. Appends that carry entries include the
//! follower's fsync and are not counted. One histogram per peer this member
//! has sent to: bounded by the members the cluster ever had while this
//! process runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bramble_storage::latency::{LatencyHistogram, LatencySnapshot};

/// The histograms by peer id, shared by the Raft network clients that fill
/// them and the node that reports them.
#[derive(Clone, Default)]
pub(crate) struct PeerRtt(Arc<Mutex<BTreeMap<u64, Arc<LatencyHistogram>>>>);

impl PeerRtt {
    /// The histogram of peer `id`, created on first use.
    pub(crate) fn for_peer(&self, id: u64) -> Arc<LatencyHistogram> {
        let mut peers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .entry(id)
            .or_insert_with(|| Arc::new(LatencyHistogram::peer_round_trip()))
            .clone()
    }

    /// Every peer's histogram now, by peer id.
    pub(crate) fn snapshot(&self) -> Vec<(u64, LatencySnapshot)> {
        let peers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        peers.iter().map(|(id, h)| (*id, h.snapshot())).collect()
    }
}
