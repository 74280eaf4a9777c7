//! Defragmentation (etcd's `Maintenance.Defragment`): gives the pages that compaction
//! and deletes freed back to the file system.
//!
//! redb reuses freed pages but never shrinks its file on its own; `Database::compact`
//! moves live pages towards the start of the file and truncates the tail. It needs the
//! database alone: no write transaction (the applier lock is held, so applies wait)
//! and no read transaction (the database lock is held exclusively, so new readers wait
//! in [`MvccStore::db`] while those already reading finish). A reader that holds a
//! long transaction (a snapshot being streamed to a client) keeps the compaction from
//! starting; it is retried, with the lock released in between so that such a reader
//! can finish, until [`DEFRAG_WAIT`] has passed. Blocking: call it off the async
//! runtime.

use std::time::{Duration, Instant};

use redb::CompactionError;

use super::error::MvccError;
use super::store::MvccStore;

/// How long a defragmentation waits for the readers in progress before giving up.
pub const DEFRAG_WAIT: Duration = Duration::from_secs(60);

/// How long the database lock is held while waiting for readers, before it is let go
/// for a moment (a reader may need a second transaction to finish its first).
const HOLD_WHILE_WAITING: Duration = Duration::from_millis(200);

/// What a defragmentation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragInfo {
    /// The file's size before, bytes.
    pub size_before: u64,
    /// The file's size after, bytes.
    pub size_after: u64,
    /// How long the database was held alone (applies and reads waited), including the
    /// wait for readers in progress.
    pub held: Duration,
}

/// Space use of the store's file (redb's own accounting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceInfo {
    /// Bytes in pages redb has allocated: what the data occupies (etcd's
    /// `db_size_in_use`); the rest of the file is free pages a defragmentation returns.
    pub in_use: u64,
}

impl MvccStore {
    /// Defragments the file at `path` (the store's own file, whose size is reported).
    /// Blocks applies and reads while it runs; see the module docs.
    pub fn defragment(&self, path: &std::path::Path) -> Result<DefragInfo, MvccError> {
        let size = |what: &str| {
            std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|e| MvccError::Storage(format!("{what} {}: {e}", path.display())))
        };
        let size_before = size("defragment: size of")?;
        let mut w = self.lock_writer()?;
        // Pending compaction deletions first, so the pages they free are reclaimed too.
        self.finish_compaction_locked(&mut w)?;
        let started = Instant::now();
        loop {
            let mut db = self.db_exclusive();
            let held_since = Instant::now();
            loop {
                match db.compact() {
                    Ok(_) => {
                        // Every commit the compaction made was durable (it uses
                        // two-phase commits with fsync), the applied position included.
                        w.dirty = false;
                        let held = started.elapsed();
                        drop(db);
                        drop(w);
                        let size_after = size("defragment: size of")?;
                        tracing::info!(
                            size_before,
                            size_after,
                            held_ms = held.as_millis() as u64,
                            "defragmented"
                        );
                        return Ok(DefragInfo {
                            size_before,
                            size_after,
                            held,
                        });
                    }
                    Err(CompactionError::TransactionInProgress) => {}
                    Err(CompactionError::Storage(e)) => return Err(e.into()),
                    Err(e) => return Err(MvccError::Storage(format!("defragment: {e}"))),
                }
                if started.elapsed() > DEFRAG_WAIT {
                    return Err(MvccError::Storage(format!(
                        "defragment: readers kept the database busy for {DEFRAG_WAIT:?}"
                    )));
                }
                if held_since.elapsed() > HOLD_WHILE_WAITING {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(db);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The bytes the data occupies in the file (see [`SpaceInfo`]). Opens a redb write
    /// transaction, so it waits for the applier and briefly blocks it; it walks every
    /// table's pages. Blocking: call it off the async runtime.
    pub fn space(&self) -> Result<SpaceInfo, MvccError> {
        let _w = self.lock_writer()?;
        let txn = self.db().begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let page = u64::try_from(stats.page_size()).unwrap_or(u64::MAX);
        Ok(SpaceInfo {
            in_use: stats.allocated_pages().saturating_mul(page),
        })
    }
}
