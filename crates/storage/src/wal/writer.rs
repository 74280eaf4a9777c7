//! The writer thread: group commit.
//!
//! One dedicated OS thread owns the active segment. It blocks for a batch,
//! then takes every batch already queued behind it, writes them all, issues
//! ONE fdatasync and only then completes their callbacks. While that sync
//! runs (5-50 ms on an SD card), new batches queue up and ride the next one:
//! that is what turns tens of writes per second into thousands. There is no
//! timer: an idle WAL syncs a lone batch at once.
//!
//! It also rolls segments over (syncing the full one first, which is what
//! lets recovery treat an invalid record in any non-last segment as
//! corruption) and deletes purged segments once the purge record is durable.
//!
//! A record larger than a fresh segment of the configured size gets a
//! segment of its own, preallocated to exactly the record's size, and the
//! next record rolls to a normal segment. The alternative, refusing such
//! records, would leave a `--max-request-bytes` above the segment size (etcd
//! allows 32 MiB and more) accepting a request the log cannot store, which
//! stops Raft on the leader; splitting records across segments would
//! complicate recovery. Recovery already takes each segment's size from its
//! file, so oversized segments need nothing there.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;

/// An fdatasync slower than this is logged (etcd's `warnSyncDuration`).
const SLOW_SYNC_WARNING: std::time::Duration = std::time::Duration::from_secs(1);

use super::io::{WalDir, WalFile};
use super::positions::Loc;
use super::queue::CloseOnDrop;
use super::record;
use super::recover::Recovered;
use super::segment::{self, SegmentId, SEGMENT_HEADER_LEN};
use super::state::{Counters, SegHandle, Shared};
use super::{Callback, Record, Result, WalError};

/// Stop pulling queued batches into a group beyond this many bytes, to bound
/// memory and the latency of the first batch in the group. A group always
/// takes its first batch, so a batch larger than this (one entry of a 32 MiB
/// `--max-request-bytes`) is committed alone, never refused.
pub(crate) const MAX_GROUP_BYTES: u64 = 8 << 20;
/// Hand buffered bytes to the kernel once this many accumulate.
const FLUSH_BYTES: usize = 1 << 20;
/// Capacity kept by the write buffer between groups: one huge record grows
/// it, and it is given back afterwards rather than held for good.
const BUF_KEEP: usize = 4 * FLUSH_BYTES;

thread_local! {
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the caller runs on a WAL writer thread (inside a callback).
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(Cell::get)
}

/// A message to the writer thread.
pub(crate) enum Msg {
    Batch(Batch),
    /// Sent when the last handle is dropped: finish what is queued, exit.
    Shutdown,
}

/// One submission.
pub(crate) struct Batch {
    pub(crate) records: Vec<Record>,
    /// Op number of the first entry in `records` (see `cache.rs`).
    pub(crate) first_op: u64,
    pub(crate) callback: Callback,
    /// Bytes of the queue bound this batch holds (see `queue.rs`), given
    /// back once its group is done.
    pub(crate) reserved: u64,
}

/// A change to the on-disk positions, applied after encoding a batch.
enum PosOp {
    Append(u64, Loc),
    Truncate(u64),
    /// Purge index and the segment holding the purge record.
    Purge(u64, u64),
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    dir: Arc<dyn WalDir>,
    shared: Arc<Shared>,
    segment_size: u64,
    sync: bool,
    /// Live segments, oldest first; the back one is active.
    segments: VecDeque<SegmentId>,
    active: Arc<dyn WalFile>,
    active_path: PathBuf,
    capacity: u64,
    /// Offset of the next record, buffered bytes included.
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_off: u64,
    /// Segment holding the latest record of each meta key, and its value:
    /// a purge must copy it forward before deleting that segment.
    meta_loc: BTreeMap<u8, (u64, Bytes)>,
    /// Written since the last fdatasync.
    dirty: bool,
    /// Next entry index, used only to name new segments.
    next_hint: u64,
}

impl Writer {
    /// Takes over the active segment found by recovery.
    pub(crate) fn new(
        dir: Arc<dyn WalDir>,
        shared: Arc<Shared>,
        segment_size: u64,
        sync: bool,
        rec: &Recovered,
    ) -> Result<Writer> {
        let active = rec
            .segments
            .last()
            .ok_or_else(|| WalError::Internal("recovery returned no segment".into()))?;
        Ok(Writer {
            dir,
            shared,
            segment_size,
            sync,
            segments: rec.segments.iter().map(|s| s.id).collect(),
            active: active.file.clone(),
            active_path: active.path.clone(),
            capacity: rec.capacity,
            pos: rec.write_offset,
            buf: Vec::with_capacity(64 * 1024),
            buf_off: rec.write_offset,
            meta_loc: rec.metas.clone(),
            dirty: false,
            next_hint: rec.positions.bounds().last_index().map_or(0, |l| l + 1),
        })
    }

    fn active_seq(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.seq)
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The thread body: commit groups until shutdown.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        ON_WRITER.with(|f| f.set(true));
        // However this thread ends, submitters waiting for room must not
        // wait forever.
        let shared = self.shared.clone();
        let _close = CloseOnDrop(&shared.queue);
        loop {
            let first = match rx.recv() {
                Ok(Msg::Batch(b)) => b,
                Ok(Msg::Shutdown) | Err(_) => break,
            };
            let mut bytes = batch_bytes(&first);
            let mut group = vec![first];
            let mut stop = false;
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(Msg::Batch(b)) => {
                        bytes += batch_bytes(&b);
                        group.push(b);
                    }
                    Ok(Msg::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
            if stop {
                break;
            }
        }
    }

    /// Writes and syncs one group, then completes its callbacks.
    fn commit(&mut self, group: Vec<Batch>) {
        let result = self.write_and_publish(&group);
        // The group is done with the disk: its room in the queue goes to the
        // next batches before the callbacks run (one of them may submit).
        let reserved: u64 = group.iter().map(|b| b.reserved).sum();
        self.shared.queue.release(reserved);
        for b in group {
            complete(b.callback, result.clone());
        }
    }

    /// Writes and syncs one group and publishes the outcome to readers; a
    /// failure poisons the WAL.
    fn write_and_publish(&mut self, group: &[Batch]) -> Result<()> {
        if let Some(e) = self.shared.lock().poisoned.clone() {
            return Err(WalError::Poisoned(Box::new(e)));
        }
        let mut written = Vec::new();
        let mut doomed = Vec::new();
        match self.write_group(group, &mut written, &mut doomed) {
            Ok(()) => {
                {
                    let mut st = self.shared.lock();
                    for &(index, op) in &written {
                        st.cache.mark_written(index, op);
                    }
                    st.cache.evict();
                }
                Counters::add(&self.counters().groups, 1);
                Counters::add(&self.counters().entries_written, written.len() as u64);
                self.delete_segments(&doomed);
                Ok(())
            }
            Err(e) => {
                // After a failed write or fsync the kernel may have dropped
                // the dirty pages; retrying could acknowledge lost data.
                tracing::error!(error = %e, "wal: write failed, refusing further writes");
                self.shared.lock().poisoned = Some(e.clone());
                Err(e)
            }
        }
    }

    fn write_group(
        &mut self,
        group: &[Batch],
        written: &mut Vec<(u64, u64)>,
        doomed: &mut Vec<SegmentId>,
    ) -> Result<()> {
        for b in group {
            let mut op = b.first_op;
            let mut ops = Vec::with_capacity(b.records.len());
            for r in &b.records {
                let loc = self.put(r)?;
                match r {
                    Record::Entry { index, .. } => {
                        ops.push(PosOp::Append(*index, loc));
                        written.push((*index, op));
                        op += 1;
                    }
                    Record::Meta { key, value } => {
                        self.meta_loc.insert(*key, (loc.seq, value.clone()));
                    }
                    Record::TruncateAfter { index } => ops.push(PosOp::Truncate(*index)),
                    Record::PurgeUpTo { index } => ops.push(PosOp::Purge(*index, loc.seq)),
                }
            }
            // Publish positions; work out which segments a purge frees.
            let mut cutoff = None;
            {
                let mut st = self.shared.lock();
                for o in ops {
                    match o {
                        PosOp::Append(index, loc) => {
                            let res = st.positions.append(index, loc);
                            // Submission checked contiguity in the same order.
                            debug_assert!(res.is_ok(), "{res:?}");
                            res?;
                        }
                        PosOp::Truncate(index) => st.positions.truncate_after(index),
                        PosOp::Purge(index, rec_seq) => {
                            st.positions.purge_up_to(index);
                            // Every segment before the one holding the first
                            // live entry (and before the purge record
                            // itself) holds only purged or dead entries.
                            let first_seq = st
                                .positions
                                .bounds()
                                .first_index()
                                .and_then(|i| st.positions.get(i))
                                .map_or(rec_seq, |l| l.seq);
                            cutoff = Some(first_seq.min(rec_seq));
                        }
                    }
                }
            }
            if let Some(cutoff) = cutoff {
                self.schedule_deletions(cutoff, doomed)?;
            }
        }
        self.flush()?;
        if self.dirty && self.sync {
            self.sync_active()?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Marks segments `< cutoff` for deletion after the coming sync, first
    /// copying forward any meta value whose latest record lives in them.
    fn schedule_deletions(&mut self, cutoff: u64, doomed: &mut Vec<SegmentId>) -> Result<()> {
        let moving: Vec<(u8, Bytes)> = self
            .meta_loc
            .iter()
            .filter(|(_, (seq, _))| *seq < cutoff)
            .map(|(k, (_, v))| (*k, v.clone()))
            .collect();
        for (key, value) in moving {
            let loc = self.put(&Record::Meta {
                key,
                value: value.clone(),
            })?;
            debug_assert!(loc.seq >= cutoff);
            self.meta_loc.insert(key, (loc.seq, value));
        }
        for id in self.segments.iter().take_while(|s| s.seq < cutoff) {
            if !doomed.contains(id) {
                doomed.push(*id);
            }
        }
        Ok(())
    }

    /// Deletes purged segments, oldest first, syncing the directory after
    /// each so a crash can only leave a contiguous run of segments.
    /// Failure is logged, not fatal: the next purge tries again.
    fn delete_segments(&mut self, doomed: &[SegmentId]) {
        for id in doomed {
            if self.segments.front() != Some(id) || id.seq >= self.active_seq() {
                debug_assert!(false, "deleting {id:?} out of order");
                return;
            }
            let name = id.file_name();
            let res = self.dir.remove(&name).and_then(|()| self.dir.sync_dir());
            if let Err(e) = res {
                tracing::warn!(file = %self.dir.path_of(&name).display(), error = %e, "wal: cannot delete purged segment");
                return;
            }
            self.segments.pop_front();
            self.shared.lock().files.remove(&id.seq);
            Counters::add(&self.counters().segments_deleted, 1);
        }
    }

    /// Encodes `r` at the write position, rolling over when it does not fit
    /// (to a segment sized for it if it is larger than a normal one).
    fn put(&mut self, r: &Record) -> Result<Loc> {
        let len = record::encoded_len(r);
        if self.pos + len > self.capacity {
            let base = match r {
                Record::Entry { index, .. } => *index,
                _ => self.next_hint,
            };
            let size = self.segment_size.max(SEGMENT_HEADER_LEN + len);
            if size > u64::from(u32::MAX) {
                // Submission refuses records above MAX_RECORD_LEN.
                return Err(WalError::RecordTooLarge {
                    len,
                    max: super::MAX_RECORD_LEN,
                });
            }
            self.roll(base, size)?;
        }
        assert!(
            self.pos + len <= self.capacity,
            "a fresh segment is sized for the record"
        );
        let offset = self.pos;
        let n = record::encode(r, &mut self.buf) as u64;
        debug_assert_eq!(n, len);
        self.pos += len;
        self.dirty = true;
        if let Record::Entry { index, .. } = r {
            self.next_hint = index + 1;
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(Loc {
            seq: self.active_seq(),
            offset: offset as u32,
            len: len as u32,
        })
    }

    /// Hands buffered bytes to the kernel.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.active
            .write_all_at(&self.buf, self.buf_off)
            .map_err(|e| {
                WalError::io(
                    format!("writing {} at {}", self.active_path.display(), self.buf_off),
                    e,
                )
            })?;
        Counters::add(&self.counters().bytes_written, self.buf.len() as u64);
        self.buf_off += self.buf.len() as u64;
        self.buf.clear();
        self.buf.shrink_to(BUF_KEEP);
        debug_assert_eq!(self.buf_off, self.pos);
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        self.active
            .sync_data()
            .map_err(|e| WalError::io(format!("fdatasync {}", self.active_path.display()), e))?;
        let took = started.elapsed();
        // etcd's warning at etcd's threshold: a disk this slow delays every
        // write this member acknowledges.
        if took >= SLOW_SYNC_WARNING {
            tracing::warn!(
                took = ?took,
                expected = ?SLOW_SYNC_WARNING,
                path = %self.active_path.display(),
                "slow fdatasync"
            );
        }
        Counters::add(&self.counters().syncs, 1);
        self.counters().fsync_latency.observe(took);
        self.dirty = false;
        Ok(())
    }

    /// Seals the active segment (durable before anything lands in the next
    /// one) and starts a new one of `size` bytes.
    fn roll(&mut self, base: u64, size: u64) -> Result<()> {
        self.flush()?;
        if self.dirty && self.sync {
            self.sync_active()?;
        }
        let id = SegmentId {
            seq: self.active_seq() + 1,
            base,
        };
        let (file, bytes) = segment::create(&*self.dir, id, size)?;
        Counters::add(&self.counters().bytes_written, bytes);
        Counters::add(&self.counters().segments_created, 1);
        let path = self.dir.path_of(&id.file_name());
        self.shared.lock().files.insert(
            id.seq,
            SegHandle {
                file: file.clone(),
                path: path.clone(),
            },
        );
        self.segments.push_back(id);
        self.active = file;
        self.active_path = path;
        self.capacity = size;
        self.pos = SEGMENT_HEADER_LEN;
        self.buf_off = SEGMENT_HEADER_LEN;
        Ok(())
    }
}

fn batch_bytes(b: &Batch) -> u64 {
    b.records.iter().map(record::encoded_len).sum()
}

/// Runs a callback; a panicking callback must not take the writer down.
fn complete(cb: Callback, result: Result<()>) {
    if catch_unwind(AssertUnwindSafe(move || cb(result))).is_err() {
        tracing::error!("wal: completion callback panicked");
    }
}
