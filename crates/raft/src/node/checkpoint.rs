//! The checkpoint loop: makes the state machine durable now and then (a
//! redb commit), so a restart replays only the WAL written since.

use std::sync::Arc;
use std::time::Duration;

use bramble_storage::mvcc::MvccStore;
use tokio::sync::watch;

use crate::fatal::{FatalCause, FatalSignal};

/// When to checkpoint the state machine.
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckpointPolicy {
    /// At most this long between checkpoints while entries are applied.
    pub(super) every: Duration,
    /// Or after this many applied entries.
    pub(super) entries: u64,
}

/// Makes the applied state durable now and then, so a restart replays only
/// the WAL written since (and the WAL could later be trimmed up to it).
pub(super) async fn checkpoint_loop(
    store: Arc<MvccStore>,
    policy: CheckpointPolicy,
    mut stop: watch::Receiver<bool>,
    fatal: FatalSignal,
) {
    let poll = policy.every.min(Duration::from_secs(1));
    let mut last = store.applied();
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
        let now = store.applied();
        let behind = now.0.saturating_sub(last.0);
        if behind == 0 || (behind < policy.entries && last_at.elapsed() < policy.every) {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint()).await {
            Ok(Ok(())) => {
                last = now;
                last_at = tokio::time::Instant::now();
            }
            // A failed redb commit leaves the database in doubt (etcd
            // panics on a failed backend commit).
            Ok(Err(e)) => return fatal.trip(FatalCause::Checkpoint, e),
            Err(e) => return fatal.trip(FatalCause::Checkpoint, e),
        }
    }
}
