//! Restoring a saved snapshot file (`etcdctl snapshot save`) into the database of a
//! member of a NEW cluster, as etcdutl's `snapshot restore` does for etcd's bbolt file.
//!
//! The keys, their history, the leases, the auth state (users, roles) and the
//! compaction state are kept; the rest of the raft
//! state the file carries (its applied position and the old cluster's membership) is
//! dropped and replaced by what the caller gives: the new cluster's membership and the
//! raft position every restored member starts from, so that all of them agree.
//!
//! `bump_revision` raises the current revision (etcdutl's `--bump-revision`), and
//! `mark_compacted` makes that new revision the compaction point (`--mark-compacted`):
//! a watcher or reader from before the restore then gets "required revision has been
//! compacted" instead of silently missing the events of revisions the snapshot did
//! not hold. The compaction is completed (history deleted) before this returns.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use redb::{Durability, ReadableTable};

use super::format::{bad, Decoder, Padding, PADDING_ALIGN};
use super::{verify_saved_snapshot, verify_stream, SnapshotInfo, IO_BUFFER, SAVED_SHA256_LEN};
use crate::mvcc::error::MvccError;
use crate::mvcc::schema::{self, META, RAFT};
use crate::mvcc::store::{MvccOptions, MvccStore};

/// What to restore and how (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Accept a file whose SHA-256 trailer is missing or wrong (etcdutl's
    /// `--skip-hash-check`); the stream's own crc32 is still checked.
    pub skip_hash_check: bool,
    /// The raft (index, term) stored as the last applied position, in the store's
    /// numbering (see [`MvccStore::applied`]).
    pub applied: (u64, u64),
    /// The raft membership stored in place of the snapshot's (opaque bytes).
    pub membership: Vec<u8>,
    /// How much to raise the current revision (0: not at all).
    pub bump_revision: u64,
    /// Make the (bumped) current revision the compaction revision.
    pub mark_compacted: bool,
}

/// Why a restore failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The file has no SHA-256 trailer (its length modulo 512 is not 32) and
    /// `skip_hash_check` was not given (etcdutl's words).
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// The file is not a whole, intact snapshot, or the database could not be written.
    #[error(transparent)]
    Store(#[from] MvccError),
    /// The file is an etcd snapshot that could not be read or converted.
    #[error(transparent)]
    Etcd(#[from] crate::etcd_import::EtcdImportError),
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The snapshot stream inside the file, as it was saved.
    pub snapshot: SnapshotInfo,
    /// Whether the SHA-256 trailer was checked.
    pub hash_checked: bool,
    /// The restored store's current revision.
    pub revision: i64,
    /// The restored store's compaction revision (-1 when never compacted).
    pub compact_revision: i64,
}

/// Restores the saved snapshot file at `snapshot` into a new database at `db_path`
/// (which must not exist), durably. On error `db_path` may be left half written: the
/// caller restores into a temporary directory and removes it on failure.
pub fn restore_saved_snapshot(
    snapshot: &Path,
    db_path: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreInfo, RestoreError> {
    refuse_existing(db_path)?;
    let file_err = |e: std::io::Error| bad(format!("{}: {e}", snapshot.display()));
    let mut file = File::open(snapshot).map_err(file_err)?;
    if crate::etcd_import::is_etcd_snapshot(&mut file).map_err(file_err)? {
        // etcd's own snapshot file (bbolt): converted as it is installed.
        return crate::etcd_import::restore_etcd_snapshot(snapshot, file, db_path, opts);
    }
    let len = file.metadata().map_err(file_err)?.len();
    let (stream, hash_checked) = check_file(&mut file, len, opts.skip_hash_check)?;
    file.seek(SeekFrom::Start(0)).map_err(file_err)?;
    let installed = restore_stream(&mut (&mut file).take(stream.bytes), db_path, opts)?;
    if installed.snapshot.rows != stream.rows || installed.snapshot.revision != stream.revision {
        // The file changed between the check and the install.
        return Err(bad(format!(
            "{}: changed while it was restored",
            snapshot.display()
        ))
        .into());
    }
    Ok(RestoreInfo {
        snapshot: stream,
        hash_checked,
        ..installed
    })
}

/// Refuses a database path that exists: a restore writes a new database.
fn refuse_existing(db_path: &Path) -> Result<(), RestoreError> {
    if db_path.exists() {
        return Err(MvccError::Storage(format!(
            "{}: exists; a restore writes a new database",
            db_path.display()
        ))
        .into());
    }
    Ok(())
}

/// Installs the snapshot stream read from `input` into a new database at `db_path`,
/// then applies `opts` (new raft state, bumped revision, compaction mark), durably.
/// The returned info's `snapshot` is the stream as installed, `hash_checked` false.
pub(crate) fn restore_stream(
    input: &mut impl Read,
    db_path: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreInfo, RestoreError> {
    refuse_existing(db_path)?;
    let store = MvccStore::open(db_path, MvccOptions::default())?;
    let installed = store.install_snapshot(input)?;
    let revision = bumped(installed.revision, opts.bump_revision)?;
    let compact_revision = if opts.mark_compacted {
        revision
    } else {
        installed.compact_revision
    };
    rewrite_raft_state(&store, opts, revision, compact_revision)?;
    drop(store);
    // Opening completes a scheduled compaction (scheduled > finished), as after a
    // crash in the middle of one; the checkpoint makes its deletions durable.
    let store = MvccStore::open(db_path, MvccOptions::default())?;
    store.checkpoint()?;
    Ok(RestoreInfo {
        snapshot: installed,
        hash_checked: false,
        revision: store.current_revision(),
        compact_revision: store.compact_revision(),
    })
}

/// Checks the whole file before anything is written; returns the stream's info and
/// whether the SHA-256 trailer was checked.
///
/// As etcdutl: a file whose length modulo 512 is 32 carries a trailer (checked unless
/// `skip_hash_check`); any other file is refused unless `skip_hash_check`, and is then
/// read as a bare stream (a raft snapshot file of a data dir, `member/snap/*.snap`).
fn check_file(
    file: &mut File,
    len: u64,
    skip_hash_check: bool,
) -> Result<(SnapshotInfo, bool), RestoreError> {
    let has_hash = len % PADDING_ALIGN == SAVED_SHA256_LEN as u64;
    match (has_hash, skip_hash_check) {
        (false, false) => Err(RestoreError::MissingHash),
        (true, false) => Ok((verify_saved_snapshot(file, len)?.stream, true)),
        (true, true) => {
            let payload = len - SAVED_SHA256_LEN as u64;
            let dec = Decoder::new(BufReader::with_capacity(IO_BUFFER, file.take(payload)))?
                .with_padding(Padding::Zeros);
            Ok((verify_stream(dec)?, false))
        }
        (false, true) => {
            let dec = Decoder::new(BufReader::with_capacity(IO_BUFFER, file))?;
            Ok((verify_stream(dec)?, false))
        }
    }
}

/// The current revision raised by `by`.
fn bumped(revision: i64, by: u64) -> Result<i64, MvccError> {
    i64::try_from(by)
        .ok()
        .and_then(|by| revision.checked_add(by))
        .ok_or_else(|| {
            MvccError::Storage(format!(
                "--bump-revision {by}: revision {revision} would overflow"
            ))
        })
}

/// Replaces the raft table with the new membership and stores the new applied
/// position, revision and compaction schedule, in one durable transaction.
fn rewrite_raft_state(
    store: &MvccStore,
    opts: &RestoreOptions,
    revision: i64,
    compact_revision: i64,
) -> Result<(), MvccError> {
    let mut txn = store.db().begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        // The old cluster's raft rows go, except the auth state: users and roles
        // are data, kept by a restore as etcdutl keeps etcd's auth buckets.
        let auth = {
            let raft = txn.open_table(RAFT)?;
            let row = raft.get(schema::RAFT_AUTH)?.map(|v| v.value().to_vec());
            row
        };
        txn.delete_table(RAFT)?;
        let mut raft = txn.open_table(RAFT)?;
        raft.insert(schema::RAFT_MEMBERSHIP, opts.membership.as_slice())?;
        if let Some(auth) = auth {
            raft.insert(schema::RAFT_AUTH, auth.as_slice())?;
        }
        let mut meta = txn.open_table(META)?;
        let before = schema::read_meta(&meta)?;
        schema::write_progress(&mut meta, opts.applied, revision)?;
        if compact_revision > before.scheduled_compact {
            schema::write_compact(&mut meta, schema::META_SCHEDULED_COMPACT, compact_revision)?;
        }
        // Checked as `open` will check it.
        schema::read_meta(&meta)?;
        if meta.get(schema::META_CURRENT_REV)?.map(|v| v.value()) != u64::try_from(revision).ok() {
            return Err(MvccError::Corrupt("restored revision not stored".into()));
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumping_past_i64_is_refused() {
        assert_eq!(bumped(5, 3).expect("small"), 8);
        assert!(bumped(5, u64::MAX).is_err());
        assert!(bumped(i64::MAX, 1).is_err());
    }
}
