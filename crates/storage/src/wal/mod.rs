//! The Raft write-ahead log: segmented, preallocated, crc32-framed,
//! group-committed.
//!
//! The WAL stores log entries (an index and opaque bytes) and a few small
//! metadata values (the raft vote, the committed log id) durably. It knows
//! nothing about raft: `bramble-raft` adapts it to openraft's log storage.
//!
//! # Using it
//!
//! [`Wal::open`] replays the directory and starts a writer thread. Every
//! change is a [`Record`]; [`Wal::submit`] queues a batch of them and calls
//! back once they are on disk. Batches submitted while the previous group
//! is syncing share the next fdatasync (group commit), so submit without
//! waiting when you can. The queue is bounded ([`WalOptions::queue_bytes`]):
//! `submit` waits for room and [`Wal::try_submit`] hands the batch back, so
//! a stalled disk holds up the submitter, not memory. The blocking helpers ([`Wal::append_sync`],
//! [`Wal::set_meta`], [`Wal::truncate_after`]) submit
//! and wait. All writes, metadata included, are applied in submission order.
//!
//! Reads ([`Wal::read`], [`Wal::meta`], [`Wal::first_index`], ...) see every
//! *submitted* change at once, durable or not, as openraft requires (an
//! appended entry must be readable when `append` returns); durability is
//! what the callback reports. Entry indexes must be contiguous: an append
//! that is not last + 1 (after any truncate or purge) is refused.
//!
//! # On disk
//!
//! A directory of segment files `<seq:016x>-<base:016x>.wal`, each
//! preallocated to [`WalOptions::segment_size`] (or, for a record larger
//! than that, to the record's size: see `writer.rs`), starting with a 32-byte
//! header (`segment.rs`), then records framed as `len u32 | crc32 u32 |
//! kind u8 | body` (`record.rs`); zeros mark the end of data. Recovery
//! (`recover.rs`) cuts a torn tail off the last segment and refuses to
//! open anything else that is damaged.
//!
//! # Layout of this module
//!
//! `record` framing, `segment` one file, `io` the file-system seam (faults
//! are injected behind it in tests), `positions` log extent and entry
//! positions, `cache` in-memory entries, `state` what handles and writer
//! share, `queue` the bound on bytes waiting for the writer, `recover` replay, `writer` the group-commit thread, `reader`
//! preads.

mod cache;
mod error;
mod io;
mod positions;
mod queue;
mod reader;
mod record;
mod recover;
mod segment;
mod state;
mod writer;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod fault;
#[cfg(test)]
mod large_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;

pub use error::{Result, WalError};

use cache::EntryCache;
pub use io::WalRelease;
use io::{OsDir, WalDir};
use queue::QueueBound;
use segment::SEGMENT_HEADER_LEN;
use state::{SegHandle, Shared, State};
use writer::{Batch, Msg, Writer};

/// Meta key under which the raft adapter stores the vote.
pub const META_VOTE: u8 = 1;
/// Meta key 2, reserved for the committed log id (the raft adapter does not store it
/// today); tests use it as a second meta key.
#[cfg(test)]
pub(crate) const META_COMMITTED: u8 = 2;

/// Called once with the outcome of a submitted batch, on the writer thread.
/// It must not block on the WAL (the blocking helpers refuse to run there).
pub type Callback = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Log entry `index`; must be the last index + 1.
    Entry {
        /// Raft log index.
        index: u64,
        /// Opaque entry bytes.
        payload: Bytes,
    },
    /// Sets meta `key` to `value` (the last one written wins).
    Meta {
        /// E.g. [`META_VOTE`].
        key: u8,
        /// Small opaque value.
        value: Bytes,
    },
    /// Drops entries `> index` (raft overwriting a conflicting suffix).
    /// Refused if `index` is below the purge point.
    TruncateAfter {
        /// Last index kept.
        index: u64,
    },
    /// Entries `<= index` are no longer needed; segments holding only such
    /// entries are deleted. Purging past the last entry empties the log and
    /// the next entry must be `index + 1` (after a snapshot install).
    PurgeUpTo {
        /// Last index dropped.
        index: u64,
    },
}

/// How to open a WAL.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size each segment is preallocated to: 4 KiB to 4 GiB. Default 16 MiB.
    /// A record too large for a fresh segment gets a segment of its own,
    /// sized for it: every entry the server accepts (up to etcd's
    /// `--max-request-bytes`, which may exceed this) can be stored.
    pub segment_size: u64,
    /// fdatasync before acknowledging. Default `true`; turn off in tests only.
    pub sync: bool,
    /// Bytes of recently written entry payloads kept in memory for reads.
    /// Default 4 MiB.
    pub cache_bytes: usize,
    /// Bytes (encoded records) submitted but not yet durable, at most; a
    /// submission beyond it waits (see [`Wal::submit`]). A batch larger than
    /// this is taken alone when nothing else is queued. Default 16 MiB
    /// (`DEFAULT_QUEUE_BYTES` says why).
    pub queue_bytes: u64,
}

/// The default [`WalOptions::queue_bytes`]: 16 MiB, two of the writer's
/// commit groups (a group takes up to 8 MiB of queued batches into one
/// fdatasync). One group can sync while the next fills, so on a working disk
/// group commit never waits on the bound; Raft hands the log at most 1 MiB of
/// replicated entries per AppendEntries (`REPLICATION_BATCH_BYTES` in
/// bramble-raft) and a client batch of proposals is smaller still, so 16 MiB
/// is 16 of the largest appends in flight. On a stalled disk the bound is
/// reached within those 16 MiB, appends stop being acknowledged, and Raft
/// stops accepting more instead of the queue growing without limit.
pub(crate) const DEFAULT_QUEUE_BYTES: u64 = 2 * writer::MAX_GROUP_BYTES;

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 16 << 20,
            sync: true,
            cache_bytes: 4 << 20,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        if !(4096..=u64::from(u32::MAX)).contains(&self.segment_size) {
            return Err(WalError::InvalidOptions(format!(
                "segment_size {} is outside 4096..=4294967295",
                self.segment_size
            )));
        }
        if self.queue_bytes == 0 {
            return Err(WalError::InvalidOptions(
                "queue_bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Counters since open. `bytes_written / entries_written` is the SD-card
/// wear per entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fdatasync calls (one per commit group, plus one per segment rollover).
    pub syncs: u64,
    /// Bytes handed to write(2): records, segment headers, zero-filling.
    pub bytes_written: u64,
    /// Batches accepted by [`Wal::submit`].
    pub submissions: u64,
    /// Commit groups written (each ends with one fdatasync).
    pub groups: u64,
    /// Entry records written.
    pub entries_written: u64,
    /// Segments created after open.
    pub segments_created: u64,
    /// Segments deleted by purges.
    pub segments_deleted: u64,
}

/// What [`Wal::try_submit`] did with a batch.
pub enum TrySubmit {
    /// Queued, as by [`Wal::submit`]: the callback will be called.
    Queued,
    /// Not queued, the queue being full: the batch, handed back.
    Full {
        /// The records, untouched.
        records: Vec<Record>,
        /// The callback, not called.
        callback: Callback,
    },
}

impl fmt::Debug for TrySubmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmit::Queued => f.write_str("Queued"),
            TrySubmit::Full { records, .. } => f
                .debug_struct("Full")
                .field("records", &records.len())
                .finish_non_exhaustive(),
        }
    }
}

/// The bytes `records` take in the writer's queue (their encoded size);
/// refuses a record no segment can hold.
fn queued_bytes(records: &[Record]) -> Result<u64> {
    let mut total: u64 = 0;
    for r in records {
        let len = record::encoded_len(r);
        if len > MAX_RECORD_LEN {
            return Err(WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_LEN,
            });
        }
        total = total.saturating_add(len);
    }
    Ok(total)
}

/// An open write-ahead log. Cheap to clone; all clones share one writer
/// thread, which is flushed and joined when the last clone is dropped.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    release: WalRelease,
}

/// The largest encoded record: a record's length field is a u32, and a
/// segment (which a record never spans) is at most 4 GiB, the size recovery
/// accepts and [`positions::Loc`]'s u32 offsets address.
pub(crate) const MAX_RECORD_LEN: u64 = u32::MAX as u64 - SEGMENT_HEADER_LEN;

impl Wal {
    /// Whether `dir` holds a WAL (at least one segment file), as etcd's
    /// `wal.Exist`: a missing directory holds none. A member that had one and
    /// lost it must not start afresh (it would forget its vote).
    pub fn exists(dir: impl AsRef<Path>) -> std::io::Result<bool> {
        let entries = match std::fs::read_dir(dir.as_ref()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if segment::SegmentId::is_segment_name(&name.to_string_lossy()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Opens (creating if needed) the WAL in directory `dir`, replaying it.
    /// Fails on corruption other than a torn tail, and if another `Wal`
    /// holds the directory.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        options.validate()?;
        let os = OsDir::open(dir.as_ref())?;
        let release = os.release();
        Wal::open_on(Arc::new(os), options, release)
    }

    /// Opens the WAL on any directory backend (fault injection in tests).
    #[cfg(test)]
    pub(crate) fn open_in(dir: Arc<dyn WalDir>, options: WalOptions) -> Result<Wal> {
        Wal::open_on(dir, options, WalRelease::default())
    }

    fn open_on(dir: Arc<dyn WalDir>, options: WalOptions, release: WalRelease) -> Result<Wal> {
        options.validate()?;
        let rec = recover::recover(&*dir, options.segment_size)?;
        let files = rec
            .segments
            .iter()
            .map(|s| {
                let h = SegHandle {
                    file: s.file.clone(),
                    path: s.path.clone(),
                };
                (s.id.seq, h)
            })
            .collect();
        let state = State {
            bounds: *rec.positions.bounds(),
            cache: EntryCache::new(options.cache_bytes),
            metas: rec
                .metas
                .iter()
                .map(|(k, (_, v))| (*k, v.clone()))
                .collect(),
            positions: Default::default(),
            files,
            next_op: 0,
            poisoned: None,
        };
        let shared = Arc::new(Shared::new(
            state,
            dir.path_of(""),
            QueueBound::new(options.queue_bytes),
        ));
        let writer = Writer::new(
            dir,
            shared.clone(),
            options.segment_size,
            options.sync,
            &rec,
        )?;
        state::Counters::add(&shared.counters.bytes_written, rec.bytes_written);
        shared.lock().positions = rec.positions;
        // Unbounded as a channel, bounded in bytes: every batch reserves its
        // size in `shared.queue` before it is sent (see `queue.rs` for why
        // the bound is not the channel's).
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bramble-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| WalError::io("spawning the wal writer thread", e))?;
        Ok(Wal {
            inner: Arc::new(Inner {
                shared,
                tx,
                thread: Mutex::new(Some(thread)),
                release,
            }),
        })
    }

    /// Reports when the directory lock is released, after the last handle
    /// on this WAL is dropped.
    pub fn release(&self) -> WalRelease {
        self.inner.release.clone()
    }

    /// Queues `records` to be written in order; `callback` is called once
    /// they are durable (or failed). If this returns `Err` nothing was
    /// queued and `callback` is dropped uncalled; if `Ok`, it is called
    /// exactly once. The batch is all-or-nothing: it is checked (contiguous
    /// indexes, truncation above the purge point, sizes) before anything is
    /// applied. Its effects are visible to reads on return.
    ///
    /// Blocks while [`WalOptions::queue_bytes`] are waiting for the disk
    /// (use [`Wal::try_submit`] where blocking is not allowed). From a
    /// completion callback it never waits (the writer thread it runs on is
    /// what makes room): such a batch is queued over the bound.
    pub fn submit(&self, records: Vec<Record>, callback: Callback) -> Result<()> {
        let bytes = queued_bytes(&records)?;
        let queue = &self.inner.shared.queue;
        if writer::on_writer_thread() {
            queue.reserve_now(bytes)?;
        } else {
            queue.reserve(bytes)?;
        }
        self.enqueue(records, callback, bytes)
    }

    /// [`Wal::submit`] without waiting: if the queue is full the batch is
    /// handed back untouched ([`TrySubmit::Full`]), for the caller to submit
    /// where it may block.
    pub fn try_submit(&self, records: Vec<Record>, callback: Callback) -> Result<TrySubmit> {
        let bytes = queued_bytes(&records)?;
        if !self.inner.shared.queue.try_reserve(bytes)? {
            return Ok(TrySubmit::Full { records, callback });
        }
        self.enqueue(records, callback, bytes)?;
        Ok(TrySubmit::Queued)
    }

    /// Queues a batch for which `reserved` bytes of the queue bound are held;
    /// gives them back if the batch is refused.
    fn enqueue(&self, records: Vec<Record>, callback: Callback, reserved: u64) -> Result<()> {
        let queued = self.validate_and_send(records, callback, reserved);
        if queued.is_err() {
            self.inner.shared.queue.release(reserved);
        }
        queued
    }

    fn validate_and_send(
        &self,
        records: Vec<Record>,
        callback: Callback,
        reserved: u64,
    ) -> Result<()> {
        let mut st = self.inner.shared.lock();
        if let Some(e) = &st.poisoned {
            return Err(WalError::Poisoned(Box::new(e.clone())));
        }
        let mut bounds = st.bounds;
        for r in &records {
            match r {
                Record::Entry { index, .. } => {
                    bounds.check_append(*index)?;
                    bounds.append(*index);
                }
                Record::TruncateAfter { index } => {
                    bounds.check_truncate(*index)?;
                    bounds.truncate_after(*index);
                }
                Record::PurgeUpTo { index } => bounds.purge_up_to(*index),
                Record::Meta { .. } => {}
            }
        }
        let first_op = st.next_op;
        for r in &records {
            match r {
                Record::Entry { index, payload } => {
                    let op = st.next_op;
                    st.cache.insert_pending(*index, op, payload.clone());
                    st.next_op += 1;
                }
                Record::Meta { key, value } => {
                    st.metas.insert(*key, value.clone());
                }
                Record::TruncateAfter { index } => st.cache.truncate_after(*index),
                Record::PurgeUpTo { index } => st.cache.purge_up_to(*index),
            }
        }
        st.bounds = bounds;
        // Sent under the lock: channel order is validation order.
        let sent = self.inner.tx.send(Msg::Batch(Batch {
            records,
            first_op,
            callback,
            reserved,
        }));
        if sent.is_err() {
            st.poisoned = Some(WalError::Closed);
            return Err(WalError::Closed);
        }
        state::Counters::add(&self.inner.shared.counters.submissions, 1);
        Ok(())
    }

    /// Submits `records` and waits until they are durable. An empty batch is
    /// a barrier: it returns once everything submitted before it is durable.
    pub fn append_sync(&self, records: Vec<Record>) -> Result<()> {
        if writer::on_writer_thread() {
            return Err(WalError::CalledFromWriter);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            records,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        // A dropped callback (writer thread gone) closes the channel.
        rx.recv().unwrap_or(Err(WalError::Closed))
    }

    /// Durably sets meta `key` to `value`.
    pub fn set_meta(&self, key: u8, value: Bytes) -> Result<()> {
        self.append_sync(vec![Record::Meta { key, value }])
    }

    /// Durably drops entries `> index`.
    pub fn truncate_after(&self, index: u64) -> Result<()> {
        self.append_sync(vec![Record::TruncateAfter { index }])
    }

    /// Durably drops entries `<= index` and deletes the segments that only
    /// held such entries. Tests only: the raft adapter submits [`Record::PurgeUpTo`] without
    /// waiting.
    #[cfg(test)]
    pub(crate) fn purge_up_to(&self, index: u64) -> Result<()> {
        self.append_sync(vec![Record::PurgeUpTo { index }])
    }

    /// The live entries in `range`, in order, clipped to
    /// `first_index()..=last_index()`. Reads from the page cache or disk
    /// with `pread` (recent entries come from memory) and checks each
    /// record's crc.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(u64, Bytes)>> {
        reader::read(&self.inner.shared, range, u64::MAX)
    }

    /// Like [`Wal::read`], but only the longest prefix of the range whose
    /// payloads add up to at most `max_bytes`, and always the first entry
    /// (an entry larger than `max_bytes` comes alone). Bounds the memory
    /// and message size of one replication batch however large entries are.
    pub fn read_limited(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(u64, Bytes)>> {
        reader::read(&self.inner.shared, range, max_bytes)
    }

    /// [`Wal::read_limited`] from memory alone: `Some` if every entry it
    /// would return is cached (recent ones usually are), `None` if one would
    /// have to be read from disk. Never waits for I/O, so async code can call
    /// it directly and take the blocking path only on `None`.
    pub fn read_cached(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Option<Vec<(u64, Bytes)>>> {
        reader::read_cached(&self.inner.shared, range, max_bytes)
    }

    /// Index of the first live entry, `None` if the log is empty.
    pub fn first_index(&self) -> Option<u64> {
        self.inner.shared.lock().bounds.first_index()
    }

    /// Index of the last live entry, `None` if the log is empty.
    pub fn last_index(&self) -> Option<u64> {
        self.inner.shared.lock().bounds.last_index()
    }

    /// Highest index ever purged, `None` if never purged.
    pub fn purged_index(&self) -> Option<u64> {
        self.inner.shared.lock().bounds.purged_index()
    }

    /// The latest value of meta `key`.
    pub fn meta(&self, key: u8) -> Option<Bytes> {
        self.inner.shared.lock().metas.get(&key).cloned()
    }

    /// All meta values.
    pub fn metas(&self) -> BTreeMap<u8, Bytes> {
        self.inner.shared.lock().metas.clone()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.inner.shared.counters.snapshot()
    }

    /// The WAL's counters, readable after the WAL is closed: holding it
    /// does not keep the WAL (or its directory lock) open.
    pub fn meter(&self) -> WalMeter {
        WalMeter(self.inner.shared.counters.clone())
    }
}

/// A reader of one WAL's counters for metrics ([`Wal::meter`]).
#[derive(Clone)]
pub struct WalMeter(std::sync::Arc<state::Counters>);

impl WalMeter {
    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.0.snapshot()
    }

    /// How long the fdatasyncs of segments took since open (etcd's
    /// `etcd_disk_wal_fsync_duration_seconds`).
    pub fn fsync_latency(&self) -> crate::latency::LatencySnapshot {
        self.0.fsync_latency.snapshot()
    }
}

impl fmt::Debug for WalMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WalMeter").field(&self.stats()).finish()
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.shared.lock();
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.dir_path)
            .field("first_index", &st.bounds.first_index())
            .field("last_index", &st.bounds.last_index())
            .field("segments", &st.files.len())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Everything submitted so far is ahead of this in the channel, so the
        // writer completes it before exiting.
        let _ = self.tx.send(Msg::Shutdown);
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            if writer::on_writer_thread() {
                // Last handle dropped inside a callback: the thread cannot
                // join itself; it exits after this callback returns.
                return;
            }
            if handle.join().is_err() {
                tracing::error!("wal writer thread panicked");
            }
        }
    }
}
