//! openraft's log storage over the WAL.
//!
//! Entries are framed by the WAL with their index; the entry bytes hold the
//! term and payload ([`crate::log_codec`]). Appends are submitted without waiting
//! and openraft is told through its callback once the group commit that
//! carries them has been fdatasync'ed: that is the moment an entry counts
//! towards a quorum, and nothing is acknowledged to a client before it.
//! When the WAL's bounded queue is full (the disk is behind), an append
//! waits for room on a blocking thread.
//!
//! Nothing here blocks a runtime worker on the disk: reads of recent entries
//! come from the WAL's memory, other reads and every synchronous WAL call
//! run on blocking threads.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use bramble_storage::wal::{Record, TrySubmit, Wal, WalError, WalOptions, META_VOTE};
use bytes::Bytes;
use futures::{stream, Stream, StreamExt};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::fatal::{FatalCause, FatalSignal};
use crate::log_codec;
use crate::network::REPLICATION_BATCH_BYTES;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Bytes of entries the state machine's stream reads from the WAL at a time.
const APPLY_CHUNK_BYTES: u64 = 4 << 20;

/// Meta key for the last purged log id (its term is needed after a purge).
const META_PURGED: u8 = 3;

fn io_error(e: WalError) -> io::Error {
    io::Error::other(e)
}

/// The entries in `range`, at most `max_bytes` of them (the first always;
/// see [`Wal::read_limited`]), decoded. Recent entries come from the WAL's
/// memory on the calling task; anything that needs a pread is read on a
/// blocking thread, since the disk (an SD card) may take long enough to
/// stall a runtime worker and the peer RPCs queued on it. The WAL makes
/// appended entries readable when `submit` returns, so either way a read
/// sees every entry appended before it.
async fn read_entries(
    wal: &Wal,
    range: (Bound<u64>, Bound<u64>),
    max_bytes: u64,
) -> io::Result<Vec<Entry>> {
    let raw = match wal.read_cached(range, max_bytes).map_err(io_error)? {
        Some(raw) => raw,
        None => {
            let wal = wal.clone();
            tokio::task::spawn_blocking(move || wal.read_limited(range, max_bytes))
                .await
                .map_err(io::Error::other)?
                .map_err(io_error)?
        }
    };
    raw.iter()
        .map(|(index, bytes)| log_codec::decode_entry(*index, bytes))
        .collect()
}

/// The Raft log, stored in the WAL. Cheap to clone: clones share the WAL.
///
/// Every error it returns stops openraft's core, so each is also reported
/// to the member's [`FatalSignal`] with its WAL cause, before openraft's
/// more generic report of the same failure.
#[derive(Clone)]
pub struct LogStore {
    wal: Wal,
    fatal: FatalSignal,
}

impl LogStore {
    /// Opens (or creates) the WAL in `dir`.
    pub(crate) fn open(dir: &Path) -> io::Result<LogStore> {
        Self::open_with(dir, WalOptions::default())
    }

    /// Opens the WAL in `dir` with explicit options.
    pub fn open_with(dir: &Path, options: WalOptions) -> io::Result<LogStore> {
        let wal = Wal::open(dir, options).map_err(io_error)?;
        Ok(LogStore {
            wal,
            fatal: FatalSignal::new(),
        })
    }

    /// Reports this log's failures to `fatal` (the member's signal).
    pub(crate) fn with_fatal(mut self, fatal: FatalSignal) -> Self {
        self.fatal = fatal;
        self
    }

    /// Reports `e` as fatal and hands it back for openraft.
    fn fail(&self, e: io::Error) -> io::Error {
        self.fatal.trip(FatalCause::Wal, &e);
        e
    }

    /// The WAL underneath (for statistics).
    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }

    fn purged_log_id(&self) -> io::Result<Option<LogId>> {
        match self.wal.meta(META_PURGED) {
            Some(bytes) => Ok(Some(decode_log_id(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Runs a blocking WAL call off the async worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Wal) -> Result<T, WalError> + Send + 'static,
    ) -> io::Result<T> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || f(wal))
            .await
            .map_err(io::Error::other)?
            .map_err(io_error)
            .map_err(|e| self.fail(e))
    }
}

/// The WAL records that purge the log up to `log_id` (remembering its term), as
/// [`RaftLogStorage::purge`] writes them.
pub(crate) fn purge_records(log_id: &LogId) -> Vec<Record> {
    vec![
        Record::Meta {
            key: META_PURGED,
            value: encode_log_id(log_id),
        },
        Record::PurgeUpTo {
            index: log_id.index,
        },
    ]
}

/// The id of the last entry in `wal`, or of the last purged one when the log is
/// empty, `None` for a log that never held anything. Blocking (may read the disk).
pub(crate) fn last_log_id_blocking(wal: &Wal) -> io::Result<Option<LogId>> {
    if let Some(last) = wal.last_index() {
        let raw = wal.read(last..=last).map_err(io_error)?;
        return match raw.first() {
            Some((index, bytes)) => Ok(Some(log_codec::decode_entry(*index, bytes)?.log_id)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("wal reports last index {last} but cannot read it"),
            )),
        };
    }
    match wal.meta(META_PURGED) {
        Some(bytes) => Ok(Some(decode_log_id(&bytes)?)),
        None => Ok(None),
    }
}

fn encode_log_id(id: &LogId) -> Bytes {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&log_codec::log_term(id).to_le_bytes());
    b.extend_from_slice(&id.index.to_le_bytes());
    Bytes::from(b)
}

fn decode_log_id(b: &[u8]) -> io::Result<LogId> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "purged log id: bad length");
    let term: [u8; 8] = b.get(0..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
    let index: [u8; 8] = b
        .get(8..16)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    Ok(log_codec::log_id(
        u64::from_le_bytes(term),
        u64::from_le_bytes(index),
    ))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        read_entries(&self.wal, range, u64::MAX)
            .await
            .map_err(|e| self.fail(e))
    }

    /// What replication sends in one AppendEntries: at most
    /// `REPLICATION_BATCH_BYTES` of entries, or one larger entry alone.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = (Bound::Included(start), Bound::Excluded(end));
        read_entries(&self.wal, range, REPLICATION_BATCH_BYTES)
            .await
            .map_err(|e| self.fail(e))
    }

    /// The entries the state machine applies, read lazily
    /// `APPLY_CHUNK_BYTES` at a time: after a restart everything committed
    /// since the last checkpoint is applied in one go, and openraft's default
    /// reads it all into memory first.
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl Stream<Item = Result<Entry, io::Error>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let from = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => s.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = range.end_bound().cloned();
        let wal = self.wal.clone();
        let fatal = self.fatal.clone();
        stream::unfold(from, move |next| {
            let wal = wal.clone();
            let fatal = fatal.clone();
            async move {
                let from = next?;
                let range = (Bound::Included(from), end);
                let entries = match read_entries(&wal, range, APPLY_CHUNK_BYTES).await {
                    Ok(entries) => entries,
                    Err(e) => {
                        fatal.trip(FatalCause::Wal, &e);
                        return Some((vec![Err(e)], None));
                    }
                };
                let after = entries.last()?.log_id.index.checked_add(1);
                Some((entries.into_iter().map(Ok).collect(), after))
            }
        })
        .flat_map(stream::iter)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        match self.wal.meta(META_VOTE) {
            Some(bytes) => Ok(Some(
                log_codec::decode_vote(&bytes).map_err(|e| self.fail(e))?,
            )),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.log_state().await.map_err(|e| self.fail(e))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be durable before it is sent: Raft's safety depends on
        // never voting twice in a term, across crashes.
        let value = Bytes::from(log_codec::encode_vote(vote));
        self.blocking(move |wal| wal.set_meta(META_VOTE, value))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<Record> = entries
            .into_iter()
            .map(|e| Record::Entry {
                index: e.log_id.index,
                payload: Bytes::from(log_codec::encode_entry(&e)),
            })
            .collect();
        // Submit and return: the WAL's writer thread groups this with other
        // appends into one fdatasync and then completes the callback. A failed
        // sync is fatal before openraft hears of it, so nothing after it is
        // acknowledged or served.
        let fatal = self.fatal.clone();
        let callback = Box::new(move |result: Result<(), WalError>| {
            let result = result.map_err(io_error);
            if let Err(e) = &result {
                fatal.trip(FatalCause::Wal, e);
            }
            callback.io_completed(result)
        });
        match self.wal.try_submit(records, callback) {
            Ok(TrySubmit::Queued) => Ok(()),
            // The disk is behind and the WAL's queue is full: wait for room on
            // a blocking thread. openraft awaits each append before the next
            // one (`&mut self`), so the log order is kept, and while this
            // waits Raft stops handing over more: a stalled disk holds up
            // Raft, not memory.
            Ok(TrySubmit::Full { records, callback }) => {
                self.blocking(move |wal| wal.submit(records, callback))
                    .await
            }
            Err(e) => Err(self.fail(io_error(e))),
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let keep = match last_log_id {
            Some(id) => id.index,
            None => match self.purged_log_id().map_err(|e| self.fail(e))? {
                Some(p) => p.index,
                // The WAL can drop entries after an index, not entry 0 itself.
                // openraft's entry 0 is the initial membership, the same on
                // every member that has it, so Raft never asks to replace it;
                // refuse loudly rather than keep it silently.
                None if self.wal.first_index() == Some(0) => {
                    return Err(self.fail(io::Error::other(
                        "truncating the whole log (entry 0 included) is not supported",
                    )))
                }
                None => 0,
            },
        };
        self.blocking(move |wal| wal.truncate_after(keep)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let records = purge_records(&log_id);
        self.blocking(move |wal| wal.append_sync(records)).await
    }
}

impl LogStore {
    /// The log's extent, for [`RaftLogStorage::get_log_state`].
    async fn log_state(&self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id = self.purged_log_id()?;
        let last_log_id = match self.wal.last_index() {
            Some(last) => {
                let range = (Bound::Included(last), Bound::Included(last));
                match read_entries(&self.wal, range, u64::MAX).await?.first() {
                    Some(entry) => Some(entry.log_id),
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("wal reports last index {last} but cannot read it"),
                        ))
                    }
                }
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_id_roundtrip_and_garbage() {
        let id = log_codec::log_id(5, 77);
        assert_eq!(decode_log_id(&encode_log_id(&id)).expect("decodes"), id);
        assert!(decode_log_id(&[1, 2, 3]).is_err());
    }
}
