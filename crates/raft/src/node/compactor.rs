//! The compaction loop: deletes the rows a compaction dropped, in the
//! background and in batches with a pause between them (etcd's
//! `--compaction-batch-limit` and `--compaction-sleep-interval`), so an apply
//! waits for one batch at most (see `bramble_storage::mvcc`'s compaction).

use std::sync::Arc;
use std::time::Duration;

use bramble_storage::mvcc::{CompactionStep, MvccStore};
use tokio::sync::{watch, Notify};

use crate::fatal::{FatalCause, FatalSignal};

/// How the deletion of a compaction is paced.
#[derive(Debug, Clone, Copy)]
pub(super) struct CompactionPacing {
    /// Key-table rows looked at per deletion transaction.
    pub(super) batch_limit: usize,
    /// Pause between two transactions, for the applies waiting on the store.
    pub(super) pause: Duration,
}

/// Runs each scheduled compaction's deletion to its end, batch by batch, until
/// `stop`. A failed deletion transaction is fatal, as a failed checkpoint: the
/// database is in doubt.
pub(super) async fn compaction_loop(
    store: Arc<MvccStore>,
    pacing: CompactionPacing,
    mut stop: watch::Receiver<bool>,
    fatal: FatalSignal,
) {
    let wake = Arc::new(Notify::new());
    {
        let wake = Arc::clone(&wake);
        // notify_one keeps a permit when nobody waits: no wake-up is lost.
        store.set_compaction_waker(Box::new(move || wake.notify_one()));
    }
    loop {
        // Whatever is pending, including a deletion scheduled before the waker was
        // set (one resumed when the store opened).
        loop {
            let s = Arc::clone(&store);
            let limit = pacing.batch_limit;
            match tokio::task::spawn_blocking(move || s.compaction_step(limit)).await {
                Ok(Ok(CompactionStep::More)) => {}
                Ok(Ok(CompactionStep::Idle | CompactionStep::Finished(_))) => break,
                Ok(Err(e)) => return fatal.trip(FatalCause::Compaction, e),
                Err(e) => return fatal.trip(FatalCause::Compaction, e),
            }
            tokio::select! {
                _ = tokio::time::sleep(pacing.pause) => {}
                _ = stop.changed() => return,
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
