//! Compaction: forgetting history at or below a revision, as etcd's `Compact`.
//!
//! Applying `Compaction(rev)`:
//! 1. check: `rev <= compact revision` → `Compacted`; `rev > current revision` →
//!    `FutureRevision` (etcd's order and errors). The first compaction may be at 0, as in
//!    etcd (the compact revision starts at -1).
//! 2. schedule: the compact revision is stored (`scheduled_compact_revision`) in the apply
//!    transaction, which commits; then it is published, so reads below it fail.
//! 3. the key index drops the superseded revisions; what remains at or below `rev` (each
//!    key's version visible at `rev`, unless that is a tombstone) is the keep set. The
//!    apply ends here: the deletion is a [`CompactionJob`] for later.
//! 4. physical deletion, in the background as etcd does: each
//!    [`MvccStore::compaction_step`] looks at a batch of key-table rows at or below `rev`
//!    (etcd's `--compaction-batch-limit`) and deletes those not in the keep set, in one
//!    redb transaction under the applier lock, so applies wait for one batch at most,
//!    never for the whole deletion. The last batch stores `finished_compact_revision`.
//!    The raft layer runs the steps with a pause between them (etcd's
//!    `--compaction-sleep-interval`); a Compact with `physical` set waits for the end
//!    ([`MvccStore::finished_compact_revision`]).
//!
//! Readers never see a difference: reads below the compact revision are refused from
//! step 2 on, and HashKV decides what a compaction keeps from the index, not from what
//! is deleted yet. A new compaction before the last one's deletion ended replaces it
//! (its keep set is a subset: what is superseded at `rev` is superseded at any later
//! revision) and starts its scan again from the lowest revision. A crash mid-way leaves
//! scheduled > finished in the file, and opening the store schedules the rest again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::MutexGuard;
use std::time::Instant;

use redb::{Durability, ReadableTable};

use super::compaction_hash::CompactionHasher;
use super::error::MvccError;
use super::revision::Revision;
use super::schema::{self, KEYS, META};
use super::store::{MvccStore, WriterState};
use crate::latency::{LatencyHistogram, LatencySnapshot};

/// Key-table rows looked at per deletion transaction unless told otherwise (etcd's
/// `--compaction-batch-limit` default).
pub const DEFAULT_COMPACTION_BATCH_LIMIT: usize = 1000;

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

/// The physical deletion of a scheduled compaction, as far as it got.
#[derive(Debug)]
pub(super) struct CompactionJob {
    /// The compaction revision: rows at or below it are looked at.
    rev: i64,
    /// The revisions at or below `rev` that stay (what a reader at `rev` sees).
    keep: HashSet<Revision>,
    /// The key-table key the next batch starts at (every row before it is done).
    resume: Vec<u8>,
    /// When the compaction was scheduled (etcd's total duration starts there).
    scheduled_at: Instant,
    /// The compaction's hash as far as the scan got, unless this compaction stores
    /// none (see [`super::compaction_hash`]).
    hasher: Option<CompactionHasher>,
}

/// What compactions' deletions took and removed: etcd's
/// `etcd_debugging_mvcc_db_compaction_*` metrics.
#[derive(Debug)]
pub(super) struct CompactionStats {
    /// Each batch's time under the applier lock (etcd's pause duration:
    /// `ExponentialBuckets(1, 2, 13)` milliseconds).
    pause: LatencyHistogram,
    /// Scheduling to the last batch (etcd's total duration:
    /// `ExponentialBuckets(100, 2, 14)` milliseconds).
    total: LatencyHistogram,
    /// Key-table rows deleted.
    rows_deleted: AtomicU64,
}

impl Default for CompactionStats {
    fn default() -> Self {
        CompactionStats {
            pause: LatencyHistogram::exponential(0.001, 13),
            total: LatencyHistogram::exponential(0.1, 14),
            rows_deleted: AtomicU64::new(0),
        }
    }
}

/// A copy of the compaction metrics at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactionMetrics {
    /// Each deletion batch's duration (the time applies waited for it).
    pub pause: LatencySnapshot,
    /// Each compaction's duration from scheduling to its last batch.
    pub total: LatencySnapshot,
    /// Key-table rows (revisions) deleted by compactions since the start.
    pub rows_deleted: u64,
}

/// What [`MvccStore::compaction_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionStep {
    /// No deletion was pending.
    Idle,
    /// One batch was deleted; more rows remain.
    More,
    /// The last batch of the compaction at this revision was deleted.
    Finished(i64),
}

impl MvccStore {
    /// Steps 2 (publish) and 3 of a compaction whose schedule is committed, and step 4
    /// handed to the background (see the module docs).
    pub(super) fn run_compaction(&self, w: &mut WriterState, rev: i64) -> Result<(), MvccError> {
        assert!(
            rev <= w.rev && rev <= w.compact_rev,
            "compaction at {rev} not scheduled"
        );
        let prev = self.compact_rev.load(Ordering::SeqCst);
        if prev < rev {
            self.compact_rev.store(rev, Ordering::SeqCst);
        }
        let keep = self.write_index()?.compact(rev);
        let start = Revision::new(0, 0).to_key(false).as_slice().to_vec();
        tracing::debug!(revision = rev, kept = keep.len(), "compaction scheduled");
        let mut job = self.lock_compaction_job();
        // As etcd, a hash only when the previous compaction's deletion had finished
        // (not for a resumed one, whose `prev` is itself, nor one that replaces a
        // pending deletion).
        let previous_done =
            prev < rev && job.is_none() && self.finished_compact_rev.load(Ordering::SeqCst) == prev;
        let hasher = previous_done.then(|| CompactionHasher::new(prev, rev, !keep.is_empty()));
        *job = Some(CompactionJob {
            rev,
            keep,
            resume: start,
            scheduled_at: Instant::now(),
            hasher,
        });
        drop(job);
        if let Some(wake) = self.compaction_waker.get() {
            wake();
        }
        Ok(())
    }

    /// Sets what to call when a compaction's deletion is scheduled (the raft layer's
    /// background loop, which then calls [`MvccStore::compaction_step`]). Once only:
    /// a second call is ignored.
    pub fn set_compaction_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        if self.compaction_waker.set(wake).is_err() {
            tracing::warn!("compaction waker set twice; the first one stays");
        }
    }

    /// Whether a compaction's deletion is scheduled and not finished.
    pub fn compaction_pending(&self) -> bool {
        self.lock_compaction_job().is_some()
    }

    /// Deletes one batch of the pending compaction: looks at up to `batch_limit` rows
    /// (at least 1) in one redb transaction, under the applier lock. A storage error
    /// leaves the job where it was (the transaction is aborted).
    pub fn compaction_step(&self, batch_limit: usize) -> Result<CompactionStep, MvccError> {
        let mut w = self.lock_writer()?;
        self.compaction_step_locked(&mut w, batch_limit)
    }

    /// Runs the pending compaction's deletion to its end (before a defragmentation,
    /// and for callers without a background loop: tests and tools).
    pub fn finish_compaction(&self) -> Result<(), MvccError> {
        let mut w = self.lock_writer()?;
        self.finish_compaction_locked(&mut w)
    }

    /// [`MvccStore::finish_compaction`] by the holder of the applier lock.
    pub(super) fn finish_compaction_locked(&self, w: &mut WriterState) -> Result<(), MvccError> {
        loop {
            match self.compaction_step_locked(w, DEFAULT_COMPACTION_BATCH_LIMIT)? {
                CompactionStep::More => continue,
                CompactionStep::Idle | CompactionStep::Finished(_) => return Ok(()),
            }
        }
    }

    /// The compaction metrics so far.
    pub fn compaction_metrics(&self) -> CompactionMetrics {
        let stats = &self.compaction_stats;
        CompactionMetrics {
            pause: stats.pause.snapshot(),
            total: stats.total.snapshot(),
            rows_deleted: stats.rows_deleted.load(Ordering::Relaxed),
        }
    }

    /// The revision of the last compaction whose deletion finished (-1: none).
    pub fn finished_compact_revision(&self) -> i64 {
        self.finished_compact_rev.load(Ordering::SeqCst)
    }

    fn compaction_step_locked(
        &self,
        w: &mut WriterState,
        batch_limit: usize,
    ) -> Result<CompactionStep, MvccError> {
        let mut job_guard = self.lock_compaction_job();
        let Some(job) = job_guard.as_mut() else {
            return Ok(CompactionStep::Idle);
        };
        let started = Instant::now();
        let end = Revision::new(job.rev + 1, 0).to_key(false);
        let mut txn = self.db().begin_write()?;
        // As applies: the next checkpoint makes it durable, and a crash before that
        // only means deleting these rows again.
        txn.set_durability(Durability::None)?;
        let deleted;
        let resume = {
            let mut keys = txn.open_table(KEYS)?;
            let mut doomed: Vec<Vec<u8>> = Vec::new();
            let mut resume: Option<Vec<u8>> = None;
            let mut scanned = 0usize;
            for entry in keys.range(job.resume.as_slice()..end.as_slice())? {
                let (k, v) = entry?;
                let (r, tombstone) = Revision::from_key(k.value())?;
                let kept = job.keep.contains(&r);
                if !kept {
                    doomed.push(k.value().to_vec());
                }
                if let Some(h) = job.hasher.as_mut() {
                    h.write_row(r, tombstone, kept, v.value());
                }
                scanned += 1;
                if scanned >= batch_limit.max(1) {
                    // The smallest key after this one.
                    let mut next = k.value().to_vec();
                    next.push(0);
                    resume = Some(next);
                    break;
                }
            }
            for k in &doomed {
                keys.remove(k.as_slice())?;
            }
            deleted = doomed.len() as u64;
            if resume.is_none() {
                let mut meta = txn.open_table(META)?;
                schema::write_compact(&mut meta, schema::META_FINISHED_COMPACT, job.rev)?;
            }
            resume
        };
        txn.commit()?;
        w.dirty = true;
        let stats = &self.compaction_stats;
        stats.pause.observe(started.elapsed());
        stats.rows_deleted.fetch_add(deleted, Ordering::Relaxed);
        match resume {
            Some(next) => {
                job.resume = next;
                Ok(CompactionStep::More)
            }
            None => {
                let rev = job.rev;
                stats.total.observe(job.scheduled_at.elapsed());
                let hash = job.hasher.as_ref().map(CompactionHasher::finish);
                *job_guard = None;
                drop(job_guard);
                self.finished_compact_rev.store(rev, Ordering::SeqCst);
                if let Some(hash) = hash {
                    self.compaction_hashes.store(hash);
                }
                tracing::debug!(revision = rev, "compaction finished");
                Ok(CompactionStep::Finished(rev))
            }
        }
    }

    /// The pending deletion; taken only by the holder of the applier lock (or by
    /// `run_compaction`, which holds it too), so it never waits long.
    pub(super) fn lock_compaction_job(&self) -> MutexGuard<'_, Option<CompactionJob>> {
        // A panic mid-step leaves the job's resume point at a committed batch boundary
        // or before it: scanning rows again is harmless.
        self.compaction_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
