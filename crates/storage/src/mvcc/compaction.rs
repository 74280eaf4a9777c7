//! Compaction: forgetting history at or below a revision, as etcd's `Compact`.
//!
//! Applying `Compaction(rev)`:
//! 1. check: `rev <= compact revision` → `Compacted`; `rev > current revision` →
//!    `FutureRevision` (etcd's order and errors). The first compaction may be at 0, as in
//!    etcd (the compact revision starts at -1).
//! 2. schedule: the compact revision is stored (`scheduled_compact_revision`) in the apply
//!    transaction, which commits; then it is published, so reads below it fail.
//! 3. the key index drops the superseded revisions; what remains at or below `rev` (each
//!    key's version visible at `rev`, unless that is a tombstone) is the keep set;
//! 4. physical deletion: every key-table row at or below `rev` not in the keep set is
//!    deleted, in chunks of [`DELETE_CHUNK`] rows per redb transaction (bounded memory),
//!    the last of which stores `finished_compact_revision`.
//!
//! `physical` in the request makes no difference: the deletion always completes before
//! the apply returns (etcd runs it in the background and `physical` waits for it). If
//! the deletion fails (a storage error) it is retried by the next apply or checkpoint,
//! and on open (scheduled > finished).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use redb::{Durability, ReadableTable};

use super::error::MvccError;
use super::revision::Revision;
use super::schema::{self, KEYS, META};
use super::store::{MvccStore, WriterState};

/// Key-table rows looked at per deletion transaction.
pub(super) const DELETE_CHUNK: usize = 4096;

/// Whether a compaction at `rev` may run, given the current and compact revisions.
pub(super) fn check(rev: i64, current_rev: i64, compact_rev: i64) -> Result<(), MvccError> {
    if rev <= compact_rev {
        return Err(MvccError::Compacted);
    }
    if rev > current_rev {
        return Err(MvccError::FutureRevision);
    }
    Ok(())
}

impl MvccStore {
    /// Steps 2 (publish) to 4 of a compaction whose schedule is committed. A deletion
    /// error leaves it pending (retried later) and is only logged: the compaction is
    /// already in effect for readers.
    pub(super) fn run_compaction(&self, w: &mut WriterState, rev: i64) -> Result<(), MvccError> {
        assert!(
            rev <= w.rev && rev <= w.compact_rev,
            "compaction at {rev} not scheduled"
        );
        w.pending_compaction = Some(rev);
        if self.compact_rev.load(Ordering::SeqCst) < rev {
            self.compact_rev.store(rev, Ordering::SeqCst);
        }
        let keep = self.write_index()?.compact(rev);
        match self.delete_compacted(rev, &keep) {
            Ok(deleted) => {
                tracing::debug!(revision = rev, deleted, kept = keep.len(), "compacted");
                w.pending_compaction = None;
                w.dirty = true;
            }
            Err(e) => {
                tracing::warn!(revision = rev, error = %e, "compaction deletion failed; will retry");
            }
        }
        Ok(())
    }

    /// Retries an interrupted compaction deletion, if any.
    pub(super) fn finish_pending_compaction(&self, w: &mut WriterState) {
        if let Some(rev) = w.pending_compaction {
            if let Err(e) = self.run_compaction(w, rev) {
                tracing::warn!(revision = rev, error = %e, "compaction retry failed");
            }
        }
    }

    /// Deletes the rows at or below `rev` that are not in `keep`; returns how many.
    fn delete_compacted(&self, rev: i64, keep: &HashSet<Revision>) -> Result<u64, MvccError> {
        let end = Revision::new(rev + 1, 0).to_key(false);
        let mut start: Vec<u8> = Revision::new(0, 0).to_key(false).as_slice().to_vec();
        let mut deleted = 0u64;
        loop {
            let mut txn = self.db().begin_write()?;
            txn.set_durability(Durability::None)?;
            let done = {
                let mut keys = txn.open_table(KEYS)?;
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                let mut resume: Option<Vec<u8>> = None;
                let mut scanned = 0usize;
                for entry in keys.range(start.as_slice()..end.as_slice())? {
                    let (k, _) = entry?;
                    let (r, _) = Revision::from_key(k.value())?;
                    if !keep.contains(&r) {
                        doomed.push(k.value().to_vec());
                    }
                    scanned += 1;
                    if scanned == DELETE_CHUNK {
                        resume = Some(k.value().to_vec());
                        break;
                    }
                }
                for k in &doomed {
                    keys.remove(k.as_slice())?;
                }
                deleted += doomed.len() as u64;
                match resume {
                    Some(mut k) => {
                        // The smallest key after `k`.
                        k.push(0);
                        start = k;
                        false
                    }
                    None => {
                        let mut meta = txn.open_table(META)?;
                        schema::write_compact(&mut meta, schema::META_FINISHED_COMPACT, rev)?;
                        true
                    }
                }
            };
            txn.commit()?;
            if done {
                return Ok(deleted);
            }
        }
    }
}
