//! Migration from etcd: `bramble snapshot restore` of a file that `etcdctl snapshot save`
//! wrote from etcd 3.4, 3.5 or 3.6 (a bbolt database followed by its SHA-256).
//!
//! The file is recognised by content (bbolt's magic in the first meta page), its
//! SHA-256 trailer checked as etcdutl checks it, and its database read with a reader
//! made for untrusted files (`bbolt`). etcd's buckets (`schema`) are converted
//! into a Bramble snapshot stream (every revision row of every key, tombstones
//! included, the current and compacted revisions, the leases) that is installed by the
//! same checked path as a Bramble snapshot (`mvcc::restore_stream`): the converter
//! writes into a pipe on its own thread while the store reads the other end, so the
//! file is read once and never held in memory. Revisions are kept as they are, so
//! clients of the old cluster (kube-apiserver's resource versions) stay valid.

mod bbolt;
mod schema;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::mvcc::{
    restore_stream, MvccError, RestoreError, RestoreInfo, RestoreOptions, SAVED_SHA256_LEN,
};
pub use schema::EtcdContent;

/// etcdctl only saves a file whose length modulo this is [`SAVED_SHA256_LEN`].
const HASH_ALIGN: u64 = 512;

/// Why an etcd snapshot file could not be read or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdImportError {
    /// Reading the file failed.
    #[error("reading the etcd snapshot: {0}")]
    Io(String),
    /// No bbolt magic number: not an etcd database.
    #[error("not an etcd snapshot (no bbolt magic number)")]
    NotBbolt,
    /// The file ends before a part it must hold.
    #[error("etcd snapshot truncated: {needed} bytes needed, the database has {len}")]
    Truncated {
        /// Bytes the part needs from the start of the database.
        needed: u64,
        /// Length of the database.
        len: u64,
    },
    /// Neither meta page is valid (magic, version, checksum).
    #[error("etcd snapshot: no valid bbolt meta page (bad magic, version or checksum)")]
    NoValidMeta,
    /// The chosen meta page holds an impossible value.
    #[error("etcd snapshot: bad bbolt meta page: {0}")]
    BadMeta(String),
    /// A page id outside the database's pages.
    #[error("etcd snapshot: page {page} is outside the database's {high_water} pages")]
    PageOutOfRange {
        /// The page id.
        page: u64,
        /// The database's page count (bbolt's high water mark).
        high_water: u64,
    },
    /// A page that is not what the tree needs there.
    #[error("etcd snapshot: bad page {page}: {why}")]
    BadPage {
        /// The page id (0 for an inline bucket page).
        page: u64,
        /// What is wrong.
        why: String,
    },
    /// A page reached twice in one tree.
    #[error("etcd snapshot: page {page} is reached twice (a cycle in the tree)")]
    Cycle {
        /// The page id.
        page: u64,
    },
    /// A tree deeper than any real one.
    #[error(
        "etcd snapshot: tree deeper than {} levels at page {page}",
        bbolt::MAX_DEPTH
    )]
    TooDeep {
        /// The page where the limit was reached.
        page: u64,
    },
    /// A bucket value that is not a bucket.
    #[error("etcd snapshot: bad bucket {name:?}: {why}")]
    BadBucket {
        /// The bucket's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A row of etcd's schema that is not what etcd writes.
    #[error("etcd snapshot: {0}")]
    Schema(String),
    /// Writing the converted stream failed (the store stopped reading it).
    #[error("writing the converted stream: {0}")]
    Write(String),
    /// The SHA-256 trailer is not the database's (etcdutl's words).
    #[error("expected sha256 {expected}, got {got}")]
    HashMismatch {
        /// The trailer, hex.
        expected: String,
        /// The database's SHA-256, hex.
        got: String,
    },
}

/// Whether the file at the start of `file` is a bbolt database (etcd's snapshot), by
/// its first meta page's magic number. Leaves the position at the start.
pub fn is_etcd_snapshot(file: &mut File) -> std::io::Result<bool> {
    let mut head = [0u8; 20];
    file.seek(SeekFrom::Start(0))?;
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(bbolt::has_magic(&head[..got]))
}

/// Checks `file` (an etcd snapshot of `len` bytes) as etcdutl does: a length modulo
/// 512 of 32 means a SHA-256 trailer, checked unless `skip_hash_check`; no trailer is
/// refused unless `skip_hash_check`. Returns the database's length and whether the
/// hash was checked.
fn check_hash(
    file: &mut File,
    len: u64,
    skip_hash_check: bool,
) -> Result<(u64, bool), RestoreError> {
    let has_hash = len % HASH_ALIGN == SAVED_SHA256_LEN as u64;
    if !has_hash {
        if skip_hash_check {
            return Ok((len, false));
        }
        return Err(RestoreError::MissingHash);
    }
    let db_len = len - SAVED_SHA256_LEN as u64;
    if skip_hash_check {
        return Ok((db_len, false));
    }
    let io = |e: std::io::Error| EtcdImportError::Io(e.to_string());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut sha = Sha256::new();
    let copied = std::io::copy(&mut (&mut *file).take(db_len), &mut sha).map_err(io)?;
    let mut stored = [0u8; SAVED_SHA256_LEN];
    file.read_exact(&mut stored).map_err(io)?;
    if copied != db_len {
        return Err(EtcdImportError::Truncated {
            needed: db_len,
            len: copied,
        }
        .into());
    }
    let computed: [u8; SAVED_SHA256_LEN] = sha.finalize().into();
    if computed != stored {
        return Err(EtcdImportError::HashMismatch {
            expected: hex(&stored),
            got: hex(&computed),
        }
        .into());
    }
    Ok((db_len, true))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads an etcd database held in memory (tests, fuzzing): what it holds, every row
/// converted and checked as a restore would write it (into `out`, a snapshot stream).
pub fn convert_bytes(db: &[u8], out: impl std::io::Write) -> Result<EtcdContent, EtcdImportError> {
    let db = bbolt::Db::open(Box::<[u8]>::from(db))?;
    schema::convert(&db, out)
}

/// Restores the etcd snapshot `file` (at `path`) into a new Bramble database at
/// `db_path`, as [`crate::mvcc::restore_saved_snapshot`] restores a Bramble one.
pub fn restore_etcd_snapshot(
    path: &Path,
    mut file: File,
    db_path: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreInfo, RestoreError> {
    let len = file
        .metadata()
        .map_err(|e| EtcdImportError::Io(format!("{}: {e}", path.display())))?
        .len();
    let (db_len, hash_checked) = check_hash(&mut file, len, opts.skip_hash_check)?;
    let db = bbolt::Db::open(Box::new(bbolt::FileSource { file, len: db_len }))?;
    let meta = db.meta();
    tracing::info!(
        path = %path.display(),
        page_size = meta.page_size,
        pages = meta.high_water,
        txid = meta.txid,
        hash_checked,
        "restoring an etcd snapshot"
    );
    let (mut reader, writer) =
        std::io::pipe().map_err(|e| EtcdImportError::Io(format!("creating a pipe: {e}")))?;
    let converter = std::thread::Builder::new()
        .name("etcd-import".into())
        .spawn(move || schema::convert(&db, writer))
        .map_err(|e| EtcdImportError::Io(format!("starting the converter: {e}")))?;
    let installed = restore_stream(&mut reader, db_path, opts);
    // The converter may be blocked writing into a full pipe: closing the read end
    // ends it with a broken pipe.
    drop(reader);
    let converted = converter
        .join()
        .map_err(|_| EtcdImportError::Io("the converter panicked".into()))?;
    // The converter's error says what is wrong with the file (the store's then only
    // says the stream ended early), unless the store stopped reading first.
    let (content, mut info) = match (converted, installed) {
        (Ok(content), Ok(info)) => (content, info),
        (Err(EtcdImportError::Write(_)), Err(store)) | (Ok(_), Err(store)) => return Err(store),
        (Err(convert), _) => return Err(convert.into()),
    };
    if info.snapshot.revision != content.revision {
        return Err(MvccError::BadSnapshot(format!(
            "converted revision {} installed as {}",
            content.revision, info.snapshot.revision
        ))
        .into());
    }
    info.hash_checked = hash_checked;
    tracing::info!(
        revision = content.revision,
        compact_revision = content.compact_revision,
        key_rows = content.key_rows,
        leases = content.leases,
        auth_users = content.auth_users,
        auth_roles = content.auth_roles,
        "etcd snapshot converted"
    );
    Ok(info)
}
