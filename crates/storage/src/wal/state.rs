//! State shared between the [`Wal`](super::Wal) handles and the writer
//! thread, behind one mutex, plus lock-free statistics counters.
//!
//! Two views of the log live here. The *logical* view (`bounds`, `cache`,
//! `metas`) changes when a batch is submitted, under the same lock that
//! orders batches into the writer's channel, so the writer sees batches in
//! exactly the order they were validated. The *on-disk* view (`positions`,
//! `files`) is changed only by the writer thread. A read takes an entry from
//! the cache if it is there (always true until the writer has written it),
//! otherwise from its on-disk position, which by then is the current
//! version of that entry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::cache::EntryCache;
use super::io::WalFile;
use super::positions::{Bounds, Positions};
use super::queue::QueueBound;
use super::{WalError, WalStats};

/// An open segment as readers need it.
#[derive(Clone)]
pub(crate) struct SegHandle {
    pub(crate) file: Arc<dyn WalFile>,
    pub(crate) path: PathBuf,
}

/// Everything behind the lock.
pub(crate) struct State {
    /// Logical extent: includes submitted, not yet written, entries.
    pub(crate) bounds: Bounds,
    /// Unwritten and recent entries.
    pub(crate) cache: EntryCache,
    /// Latest submitted value of each meta key.
    pub(crate) metas: BTreeMap<u8, Bytes>,
    /// Where written entries are.
    pub(crate) positions: Positions,
    /// Live segments by sequence number.
    pub(crate) files: BTreeMap<u64, SegHandle>,
    /// Number given to the next submitted entry (see `cache.rs`).
    pub(crate) next_op: u64,
    /// Set after a failed write or sync; every later write is refused.
    pub(crate) poisoned: Option<WalError>,
}

/// Counters behind [`WalStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) submissions: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) entries_written: AtomicU64,
    pub(crate) segments_created: AtomicU64,
    pub(crate) segments_deleted: AtomicU64,
    /// How long each fdatasync of a segment took.
    pub(crate) fsync_latency: crate::latency::LatencyHistogram,
}

impl Counters {
    /// Adds `n` to `c`.
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of all counters.
    pub(crate) fn snapshot(&self) -> WalStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WalStats {
            syncs: g(&self.syncs),
            bytes_written: g(&self.bytes_written),
            submissions: g(&self.submissions),
            groups: g(&self.groups),
            entries_written: g(&self.entries_written),
            segments_created: g(&self.segments_created),
            segments_deleted: g(&self.segments_deleted),
        }
    }
}

/// The shared part of an open WAL.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) counters: std::sync::Arc<Counters>,
    /// The WAL directory, for messages.
    pub(crate) dir_path: PathBuf,
    /// Bytes submitted and not yet durable, against their bound.
    pub(crate) queue: QueueBound,
}

impl Shared {
    pub(crate) fn new(state: State, dir_path: PathBuf, queue: QueueBound) -> Shared {
        Shared {
            state: Mutex::new(state),
            counters: Default::default(),
            dir_path,
            queue,
        }
    }

    /// Locks the state. Nothing under the lock does I/O or calls user code,
    /// so only a failed assertion (a bug) can poison it; carrying on and
    /// letting later calls report errors beats panicking every thread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
