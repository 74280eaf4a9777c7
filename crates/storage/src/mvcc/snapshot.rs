//! Raft snapshots of the state machine: a consistent point-in-time copy of the whole
//! store as one byte stream ([`MvccStore::write_snapshot`]), and replacing the whole
//! store with such a stream ([`MvccStore::install_snapshot`]).
//!
//! The raft layer sends snapshots to followers too far behind to catch up from the log,
//! and purges its log up to a snapshot's applied index.
//!
//! # Format (version 1)
//!
//! Integers are big-endian.
//!
//! ```text
//! header   "BRAMSNAP" (8 bytes)  format version: u32 = 1
//! record   tag: u8  key length: u32  key  value length: u32  value      (any number)
//! trailer  0xff     row count: u64   crc32: u32
//! ```
//!
//! - A record is one row of a redb table, the tag naming the table: 1 = meta (name →
//!   u64 as 8 bytes), 2 = raft (name → bytes), 3 = lease (lease id as i64, 8 bytes →
//!   bytes), 4 = key (revision key → `KeyValue` bytes); see [`super::schema`]. Records
//!   come in tag order, each table's rows in its key order. Keys are at most 4096 bytes
//!   (`format::MAX_KEY_LEN`); values are bounded only by the u32 length.
//! - The crc32 (IEEE, as `crc32fast`) covers every byte before it, header and row count
//!   included. Nothing may follow the trailer.
//! - The meta rows carry the applied raft position, the revision, the compaction state
//!   and the schema version ([`super::schema::SCHEMA_VERSION`], checked on install): a
//!   snapshot is exactly the store's tables, nothing derived.
//!
//! # Consistency and durability
//!
//! `write_snapshot` first checkpoints, then opens one redb read transaction *before
//! releasing the applier lock*: the stream is exactly the durable, checkpointed state,
//! so its applied index is never ahead of what a restart recovers (the raft layer may
//! purge its log up to it). The stream is read from that one transaction, which does not
//! block the applier (redb readers never block its writer); while it is open, redb
//! cannot reuse the pages it holds, so the file may grow during a long stream.
//!
//! `install_snapshot` loads the stream into one redb write transaction (emptied tables
//! first), checks it completely (framing, checksum, then the content: meta table, the
//! key table rebuilt into an index) and only then commits, durably: a refused snapshot
//! aborts the transaction and leaves the store as it was. The in-memory state is then
//! rebuilt as `open` builds it. See `store`'s module docs for how concurrent readers
//! stay consistent across an install.

mod format;
mod import;
mod restore;
mod saved;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use redb::{Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use super::alarm;
use super::error::MvccError;
use super::lease;
use super::revision::Revision;
use super::schema::{self, KEYS, LEASES, META, RAFT};
use super::store::{self, Loaded, MvccStore, WriterState};
use format::{bad, Decoder, Encoder, Tag};
pub(crate) use import::{ImportWriter, ImportedCompaction};
pub(crate) use restore::restore_stream;
pub use restore::{restore_saved_snapshot, RestoreError, RestoreInfo, RestoreOptions};
pub use saved::{saved_padding, verify_saved_snapshot, SavedSnapshotInfo, SAVED_SHA256_LEN};

/// Buffer size between the snapshot stream and its reader or writer.
const IO_BUFFER: usize = 256 * 1024;

/// What a snapshot holds, as written or installed. Every field comes from the same
/// point in time as the rows of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Raft (index, term) of the last entry applied to the snapshot's state.
    pub applied: (u64, u64),
    /// The raft membership stored by the last applied membership entry, if any.
    pub membership: Option<Vec<u8>>,
    /// The store's current revision.
    pub revision: i64,
    /// The compaction revision (-1 when never compacted).
    pub compact_revision: i64,
    /// Rows (records) in the stream.
    pub rows: u64,
    /// Length of the stream in bytes.
    pub bytes: u64,
}

impl MvccStore {
    /// Checkpoints, then writes a consistent copy of the whole store to `out` (see the
    /// module docs for the format). Applies go on while it streams. The stream's applied
    /// position is the checkpointed one: never ahead of what a restart recovers.
    pub fn write_snapshot(&self, out: &mut impl Write) -> Result<SnapshotInfo, MvccError> {
        let info = self.begin_snapshot()?.write_to(out)?;
        tracing::info!(
            applied_index = info.applied.0,
            revision = info.revision,
            rows = info.rows,
            bytes = info.bytes,
            "mvcc snapshot written"
        );
        Ok(info)
    }

    /// Checkpoints, then opens a consistent point-in-time view of the whole store that
    /// can be streamed, as often as needed, with [`StoreSnapshot::write_to`] (the
    /// Maintenance service streams it once to learn its length, then to the client).
    pub fn begin_snapshot(&self) -> Result<StoreSnapshot, MvccError> {
        let rtxn = {
            let mut w = self.lock_writer()?;
            self.checkpoint_locked(&mut w)?;
            // Opened before the applier may commit again (without an fsync): the read
            // transaction sees exactly what the checkpoint made durable.
            self.db().begin_read()?
        };
        Ok(StoreSnapshot { rtxn })
    }

    /// [`MvccStore::write_snapshot`] into a new file at `path` (replaced if it exists),
    /// fsynced before returning. Not atomic: write to a temporary name and rename.
    pub fn write_snapshot_file(&self, path: &Path) -> Result<SnapshotInfo, MvccError> {
        let file_err =
            |e: std::io::Error| MvccError::Storage(format!("snapshot {}: {e}", path.display()));
        let mut file = File::create(path).map_err(file_err)?;
        let info = self.write_snapshot(&mut file)?;
        file.sync_all().map_err(file_err)?;
        Ok(info)
    }

    /// Replaces the whole store with the snapshot read from `input`, durably, and
    /// rebuilds the in-memory state as [`MvccStore::open`] does. A truncated, corrupt
    /// or foreign snapshot is refused with [`MvccError::BadSnapshot`] and the store is
    /// left unchanged. Applies wait for the install (it holds the applier lock); reads
    /// go on, and see either the old state or the new one (see `store`'s docs).
    ///
    /// The snapshot is the same history as the store, further along (the raft layer
    /// installs only snapshots newer than its applied position): the current revision
    /// jumps forward, and watchers catch up from the key table as after any apply.
    pub fn install_snapshot(&self, input: &mut impl Read) -> Result<SnapshotInfo, MvccError> {
        let mut w = self.lock_writer()?;
        let before = w.applied;
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        // As checkpoints: reopening after a crash must not walk the whole file.
        txn.set_quick_repair(true);
        // On error `txn` is dropped without a commit: redb aborts it, nothing changed.
        let (info, loaded) = load(&txn, input)?;
        let Loaded {
            meta,
            index,
            leases,
            alarms,
            auth,
        } = loaded;
        assert_eq!(
            (info.applied, info.revision),
            (meta.applied, meta.current_rev),
            "snapshot info disagrees with its meta table"
        );
        {
            // Held across the commit and the swap: a reader checks the install epoch
            // under the index lock after opening its redb snapshot, so it either opened
            // the old file content and checks before this block (old index, old epoch),
            // or it checks after it (new index, new epoch) and fails with
            // `StoreReplaced` unless it also pinned the new epoch, which is stored after
            // the commit, so its snapshot is the new content. (Lock order as the
            // applier's: index, then leases.)
            let mut index_guard = self.write_index()?;
            let mut lease_guard = lease::lock_write(&self.leases)?;
            txn.commit()?;
            *index_guard = index;
            *lease_guard = leases;
            *alarm::lock_write(&self.alarms) = alarms;
            *super::auth::lock_write(&self.auth) = auth;
            self.compact_rev
                .store(meta.scheduled_compact, Ordering::SeqCst);
            self.publish(meta.current_rev, meta.applied);
            // Last: a reader that pins the new epoch also loads the new revision.
            self.install_epoch.fetch_add(1, Ordering::SeqCst);
        }
        *w = WriterState::committed(&meta);
        self.resume_compaction(&mut w, &meta)?;
        tracing::info!(
            applied_index = meta.applied.0,
            previous_applied_index = before.0,
            revision = meta.current_rev,
            rows = info.rows,
            bytes = info.bytes,
            "mvcc snapshot installed"
        );
        Ok(info)
    }

    /// [`MvccStore::install_snapshot`] from the file at `path`.
    pub fn install_snapshot_file(&self, path: &Path) -> Result<SnapshotInfo, MvccError> {
        let mut file = File::open(path)
            .map_err(|e| MvccError::BadSnapshot(format!("{}: {e}", path.display())))?;
        self.install_snapshot(&mut file)
    }
}

/// A consistent point-in-time view of the whole store (one redb read transaction),
/// from [`MvccStore::begin_snapshot`]. While it lives, redb cannot reuse the pages it
/// holds; it never blocks the applier.
pub struct StoreSnapshot {
    rtxn: ReadTransaction,
}

impl StoreSnapshot {
    /// Writes the view to `out` as one snapshot stream (see the module docs). Every
    /// call writes the same bytes.
    pub fn write_to(&self, out: &mut impl Write) -> Result<SnapshotInfo, MvccError> {
        let rtxn = &self.rtxn;
        let meta = schema::read_meta(&rtxn.open_table(META)?)?;
        let mut membership = None;
        let mut enc = Encoder::new(BufWriter::with_capacity(IO_BUFFER, out))?;
        for entry in rtxn.open_table(META)?.iter()? {
            let (k, v) = entry?;
            enc.row(Tag::Meta, k.value().as_bytes(), &v.value().to_be_bytes())?;
        }
        if let Some(raft) = open_optional(rtxn, RAFT)? {
            for entry in raft.iter()? {
                let (k, v) = entry?;
                if k.value() == schema::RAFT_MEMBERSHIP {
                    membership = Some(v.value().to_vec());
                }
                enc.row(Tag::Raft, k.value().as_bytes(), v.value())?;
            }
        }
        if let Some(leases) = open_optional(rtxn, LEASES)? {
            for entry in leases.iter()? {
                let (k, v) = entry?;
                enc.row(Tag::Lease, &k.value().to_be_bytes(), v.value())?;
            }
        }
        for entry in rtxn.open_table(KEYS)?.iter()? {
            let (k, v) = entry?;
            enc.row(Tag::Key, k.value(), v.value())?;
        }
        let (rows, bytes) = enc.finish()?;
        Ok(SnapshotInfo {
            applied: meta.applied,
            membership,
            revision: meta.current_rev,
            compact_revision: meta.scheduled_compact,
            rows,
            bytes,
        })
    }
}

/// Reads and checks a whole snapshot without installing it (its framing and checksum;
/// the content is only checked by an install). Returns what it holds.
pub fn verify_snapshot(input: &mut impl Read) -> Result<SnapshotInfo, MvccError> {
    verify_stream(Decoder::new(BufReader::with_capacity(IO_BUFFER, input))?)
}

/// Reads `dec` to its end, checking it; returns what the stream holds.
fn verify_stream(mut dec: Decoder<impl Read>) -> Result<SnapshotInfo, MvccError> {
    let mut meta = BTreeMap::new();
    let mut membership = None;
    while let Some((tag, key, value)) = dec.next_row()? {
        match tag {
            Tag::Meta => {
                meta.insert(meta_name(key)?.to_owned(), u64_value(value)?);
            }
            Tag::Raft if key == schema::RAFT_MEMBERSHIP.as_bytes() => {
                membership = Some(value.to_vec());
            }
            _ => {}
        }
    }
    let get = |name: &str| meta.get(name).copied();
    let rev = |name: &str, default: i64| {
        get(name).map_or(Ok(default), |v| {
            i64::try_from(v).map_err(|_| bad(format!("meta {name} = {v} is out of range")))
        })
    };
    Ok(SnapshotInfo {
        applied: (
            get(schema::META_APPLIED_INDEX).unwrap_or(0),
            get(schema::META_APPLIED_TERM).unwrap_or(0),
        ),
        membership,
        revision: rev(schema::META_CURRENT_REV, 1)?,
        compact_revision: rev(schema::META_SCHEDULED_COMPACT, -1)?,
        rows: dec.rows(),
        bytes: dec.bytes(),
    })
}

/// Empties the store's tables in `txn` and loads the snapshot into them, checking the
/// stream and then the content. Returns what the snapshot holds and the state to
/// install; on error the caller drops (aborts) `txn`.
fn load(
    txn: &WriteTransaction,
    input: &mut impl Read,
) -> Result<(SnapshotInfo, Loaded), MvccError> {
    txn.delete_table(KEYS)?;
    txn.delete_table(META)?;
    txn.delete_table(RAFT)?;
    txn.delete_table(LEASES)?;
    let mut keys = txn.open_table(KEYS)?;
    let mut meta = txn.open_table(META)?;
    let mut raft = txn.open_table(RAFT)?;
    let mut leases = txn.open_table(LEASES)?;
    let mut dec = Decoder::new(BufReader::with_capacity(IO_BUFFER, input))?;
    let mut membership = None;
    while let Some((tag, key, value)) = dec.next_row()? {
        let duplicate = match tag {
            Tag::Meta => meta.insert(meta_name(key)?, u64_value(value)?)?.is_some(),
            Tag::Raft => {
                let name = meta_name(key)?;
                if name == schema::RAFT_MEMBERSHIP {
                    membership = Some(value.to_vec());
                }
                raft.insert(name, value)?.is_some()
            }
            Tag::Lease => {
                let id = i64::from_be_bytes(
                    key.try_into()
                        .map_err(|_| bad(format!("lease key of {} bytes", key.len())))?,
                );
                leases.insert(id, value)?.is_some()
            }
            Tag::Key => {
                check_key_row(key, value)?;
                keys.insert(key, value)?.is_some()
            }
        };
        if duplicate {
            return Err(bad(format!("{tag:?} row stored twice")));
        }
    }
    // The stream is intact; now its content must be a store's. The same checks as
    // `open` (which would otherwise refuse the file on the next start).
    let content = |e: MvccError| match e {
        MvccError::Corrupt(m) => bad(format!("content: {m}")),
        other => other,
    };
    let lease_rows = lease::read_lease_rows(&leases).map_err(content)?;
    let alarms = alarm::read(&raft).map_err(content)?;
    let auth = super::auth::read(&raft).map_err(content)?;
    let loaded = store::load_state(&keys, &meta, lease_rows, alarms, auth).map_err(content)?;
    let info = SnapshotInfo {
        applied: loaded.meta.applied,
        membership,
        revision: loaded.meta.current_rev,
        compact_revision: loaded.meta.scheduled_compact,
        rows: dec.rows(),
        bytes: dec.bytes(),
    };
    Ok((info, loaded))
}

/// Checks one key-table row whole: its key is a revision, its value a `KeyValue` that
/// decodes completely (the index rebuild reads only its head, so a row whose value
/// field is damaged would be installed and then fail every range over its key), and
/// a put's mod revision is the row's revision (a tombstone stores none, as etcd's).
fn check_key_row(key: &[u8], value: &[u8]) -> Result<(), MvccError> {
    let (rev, tombstone) = Revision::from_key(key).map_err(|e| bad(e.to_string()))?;
    let kv = schema::decode_kv(value).map_err(|e| bad(format!("key row {rev}: {e}")))?;
    let expected = if tombstone {
        [0, rev.main]
    } else {
        [rev.main; 2]
    };
    if !expected.contains(&kv.mod_revision) {
        return Err(bad(format!(
            "key row {rev}: mod revision {} is not the row's",
            kv.mod_revision
        )));
    }
    Ok(())
}

/// A table that files written by older builds may lack.
fn open_optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    rtxn: &ReadTransaction,
    def: redb::TableDefinition<'_, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, MvccError> {
    match rtxn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A meta or raft table key.
fn meta_name(key: &[u8]) -> Result<&str, MvccError> {
    std::str::from_utf8(key).map_err(|_| bad("meta or raft row name is not UTF-8"))
}

/// A meta table value.
fn u64_value(value: &[u8]) -> Result<u64, MvccError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| bad(format!("meta value of {} bytes", value.len())))?;
    Ok(u64::from_be_bytes(bytes))
}
