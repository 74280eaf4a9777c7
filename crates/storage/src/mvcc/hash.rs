//! Hashes of the store, for telling whether members hold the same data: etcd's
//! `HashKV` ([`MvccStore::hash_kv`]) and the whole-store hash behind `Hash`
//! ([`MvccStore::hash_tables`]).
//!
//! # HashKV: etcd's algorithm, byte for byte
//!
//! As etcd's `HashByRev` (3.4 to 3.6: `kvstore.go`, `hash.go`): a CRC-32C (Castagnoli)
//! over the key bucket's name `key`, then over each row of the key table, in revision
//! order, whose main revision is at most the hash revision: the row's key in etcd's
//! encoding, then its value. Rows at or below the compaction revision are skipped unless
//! a compaction at the hash revision would keep them (etcd's `keep`: each key's version
//! visible at that revision), so that members that compacted at different times (or have
//! not finished deleting) agree; if that compaction would keep nothing at all, no row is
//! skipped (etcd's `len(keep) > 0` condition, reproduced because it changes the hash).
//!
//! The bytes are etcd's, so that a Bramble member and an etcd member with the same
//! history give the same hash:
//! - etcd's revision key is 17 bytes, main revision (8, big-endian), `'_'`, sub revision
//!   (8, big-endian), plus `'t'` for a tombstone; Bramble's own key has no `'_'` (see
//!   [`super::revision`]), so the hash re-encodes it ([`etcd_revision_key`]);
//! - the value is the stored `mvccpb.KeyValue`, which Bramble encodes as etcd does
//!   (prost and gogoproto both write the set fields in field order; a tombstone holds
//!   only the key).
//!
//! Errors and bounds are etcd 3.6's (`hashStorage.HashByRev`): a revision above the
//! current one is a `FutureRevision`; a positive revision below the compaction revision is
//! `Compacted`, the compaction revision itself is hashed. The revisions of the last
//! compactions are answered from the hashes computed while compacting
//! ([`super::compaction_hash`], with the previous compaction's revision), as etcd 3.5.5 and
//! later answer them (etcd 3.4 refused the compaction revision and kept no hashes).
//! Revision 0 is the current revision; a negative one hashes no row, as in etcd.
//!
//! # Concurrency and memory
//!
//! The rows are streamed from one redb read transaction (writes go on), never collected.
//! Instead of etcd's keep set (one entry per key), a row at or below the compaction
//! revision is checked against its own key's history in the index. That is sound while
//! applies go on: they only add revisions above the current revision, and a compaction at
//! or below the hash revision does not change what a compaction at the hash revision
//! keeps. A compaction past the hash revision, or a raft snapshot install, during the scan
//! is detected at the end (`Compacted`, `StoreReplaced`); a hash of the current revision
//! is then computed again, as reads are.
//!
//! # Hash: Bramble's own tables
//!
//! etcd's `Hash` is a CRC-32C over every bucket of its bbolt file; Bramble cannot
//! reproduce it (different tables). [`MvccStore::hash_tables`] is the same idea over
//! Bramble's tables: CRC-32C over, in name order, each table's name and rows (key, then
//! value; integers big-endian) of the `key`, `lease`, `meta` and `raft` tables, leaving
//! out the applied raft position (as etcd leaves out its consistent index and term). Two
//! Bramble members at the same applied state agree; it is not comparable with etcd's.

use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable, TableHandle};

use super::error::MvccError;
use super::read;
use super::revision::{Revision, MARKED_REV_BYTES_LEN, REV_BYTES_LEN, TOMBSTONE_MARK};
use super::schema::{self, KEYS, LEASES, META, RAFT};
use super::store::{MvccStore, ReadPin};

/// Length of etcd's revision key without the tombstone mark: main, `'_'`, sub.
const ETCD_REV_BYTES_LEN: usize = REV_BYTES_LEN + 1;

/// Reads that a compaction or a snapshot install overtook are retried this many times.
const MAX_ATTEMPTS: usize = 8;

/// A `HashKV` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// The CRC-32C of the key table up to `hash_revision` (see the module docs).
    pub hash: u32,
    /// The compaction revision the hash was computed with (-1 if never compacted).
    pub compact_revision: i64,
    /// The revision the hash covers (the current one for a request of revision 0).
    pub hash_revision: i64,
    /// The store's current revision when the hash was taken (the response header's).
    pub current_revision: i64,
}

/// A `Hash` answer: Bramble's own whole-store hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHash {
    /// The CRC-32C of the store's tables (see the module docs).
    pub hash: u32,
    /// The current revision of the hashed state.
    pub revision: i64,
}

/// etcd's key-table key of revision `rev`: main, `'_'`, sub (big-endian), and `'t'` for a
/// tombstone. Returns the buffer and the number of bytes used.
pub(super) fn etcd_revision_key(
    rev: Revision,
    tombstone: bool,
) -> ([u8; MARKED_REV_BYTES_LEN + 1], usize) {
    let mut bytes = [0u8; MARKED_REV_BYTES_LEN + 1];
    let own = rev.to_key(false);
    bytes[..8].copy_from_slice(&own.as_slice()[..8]);
    bytes[8] = b'_';
    bytes[9..ETCD_REV_BYTES_LEN].copy_from_slice(&own.as_slice()[8..]);
    if tombstone {
        bytes[ETCD_REV_BYTES_LEN] = TOMBSTONE_MARK;
        (bytes, ETCD_REV_BYTES_LEN + 1)
    } else {
        (bytes, ETCD_REV_BYTES_LEN)
    }
}

/// etcd's `kvHasher`: the CRC over the rows that pass its bounds.
struct KvHasher {
    crc: u32,
}

impl KvHasher {
    /// Starts with the key bucket's name, as etcd.
    fn new() -> Self {
        KvHasher {
            crc: crc32c::crc32c(KEYS.name().as_bytes()),
        }
    }

    fn write_row(&mut self, rev: Revision, tombstone: bool, value: &[u8]) {
        let (key, len) = etcd_revision_key(rev, tombstone);
        self.crc = crc32c::crc32c_append(self.crc, &key[..len]);
        self.crc = crc32c::crc32c_append(self.crc, value);
    }
}

impl MvccStore {
    /// etcd 3.6's `HashKV` at `revision` (0: the current revision): the hash stored at the
    /// compaction of `revision` if there is one (with the current revision), else computed
    /// (see the module docs). What clients get, and what members answer each other for the
    /// corruption checks. Runs concurrently with applies; reads the whole key table up to
    /// `revision` when computing, so callers run it on a blocking thread.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, MvccError> {
        if let Some(stored) = self.stored_compaction_hash(revision) {
            return Ok(stored);
        }
        let mut attempts = 0;
        loop {
            match self.hash_kv_once(revision) {
                Err(MvccError::Compacted) if revision == 0 && attempts < MAX_ATTEMPTS => {
                    attempts += 1
                }
                Err(MvccError::StoreReplaced) if attempts < MAX_ATTEMPTS => attempts += 1,
                result => return result,
            }
        }
    }

    fn hash_kv_once(&self, revision: i64) -> Result<KvHash, MvccError> {
        // Pin the revision first, then open the snapshot: it holds that revision.
        let pin = self.pin();
        let rtxn = self.db().begin_read()?;
        let table = rtxn.open_table(KEYS)?;
        if revision > pin.current {
            return Err(MvccError::FutureRevision);
        }
        let at = if revision == 0 { pin.current } else { revision };
        // Read after the snapshot is open: a compaction publishes its revision before it
        // deletes, so the snapshot holds every row this compaction revision keeps.
        let compact = {
            let _index = read::lock(&self.index)?;
            self.check_same_store(pin)?;
            self.compact_revision()
        };
        if revision > 0 && revision < compact {
            return Err(MvccError::Compacted);
        }
        if revision == 0 && at < compact {
            // Writes and a compaction past the pinned revision came in between (the
            // caller hashes again, at the new current revision).
            return Err(MvccError::Compacted);
        }

        let mut hasher = KvHasher::new();
        // etcd's `len(keep) > 0`, looked up at the first row that needs it.
        let mut keeps_any: Option<bool> = None;
        let end = Revision::new(at.saturating_add(1).max(0), 0).to_key(false);
        for entry in table.range(..end.as_slice())? {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_key(k.value())?;
            if rev.main <= compact {
                let keeps_any = match keeps_any {
                    Some(any) => any,
                    None => {
                        let index = read::lock(&self.index)?;
                        self.check_same_store(pin)?;
                        *keeps_any.insert(index.keeps_any(at))
                    }
                };
                if keeps_any && !self.is_kept(pin, at, rev, v.value())? {
                    continue;
                }
            }
            hasher.write_row(rev, tombstone, v.value());
        }

        // The keep checks above were only right if no compaction passed `at` meanwhile
        // (a negative `at` is below any compaction, and checked nothing).
        {
            let _index = read::lock(&self.index)?;
            self.check_same_store(pin)?;
            if self.compact_revision() > at.max(compact) {
                return Err(MvccError::Compacted);
            }
        }
        Ok(KvHash {
            hash: hasher.crc,
            compact_revision: compact,
            hash_revision: at,
            current_revision: pin.current,
        })
    }

    /// Whether a compaction at `at` keeps the row at `rev` whose value is `value`: the
    /// row's key (from the value) and that key's history in the index say.
    fn is_kept(
        &self,
        pin: ReadPin,
        at: i64,
        rev: Revision,
        value: &[u8],
    ) -> Result<bool, MvccError> {
        let key = schema::decode_kv_head(value)?.key;
        let index = read::lock(&self.index)?;
        self.check_same_store(pin)?;
        Ok(index.kept_at(&key, at) == Some(rev))
    }

    /// `StoreReplaced` if a raft snapshot install replaced the store since `pin`; called
    /// under the index lock, which installs hold.
    fn check_same_store(&self, pin: ReadPin) -> Result<(), MvccError> {
        if self.install_epoch.load(Ordering::SeqCst) != pin.epoch {
            return Err(MvccError::StoreReplaced);
        }
        Ok(())
    }

    /// Bramble's whole-store hash, behind `Hash` (see the module docs). Reads every
    /// table, so callers run it on a blocking thread.
    pub fn hash_tables(&self) -> Result<StoreHash, MvccError> {
        let rtxn = self.db().begin_read()?;
        let mut crc = 0u32;
        let mut write = |bytes: &[u8]| crc = crc32c::crc32c_append(crc, bytes);

        let keys = rtxn.open_table(KEYS)?;
        write(KEYS.name().as_bytes());
        for entry in keys.iter()? {
            let (k, v) = entry?;
            write(k.value());
            write(v.value());
        }

        // Files written before leases have no lease table: nothing to hash.
        match rtxn.open_table(LEASES) {
            Ok(leases) => {
                write(LEASES.name().as_bytes());
                for entry in leases.iter()? {
                    let (k, v) = entry?;
                    write(&k.value().to_be_bytes());
                    write(v.value());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }

        let meta = rtxn.open_table(META)?;
        write(META.name().as_bytes());
        for entry in meta.iter()? {
            let (k, v) = entry?;
            // The raft position differs between members whose data is the same (entries
            // that change no key: lease keepalives, membership); etcd leaves it out too.
            if [schema::META_APPLIED_INDEX, schema::META_APPLIED_TERM].contains(&k.value()) {
                continue;
            }
            write(k.value().as_bytes());
            write(&v.value().to_be_bytes());
        }
        let revision = schema::read_meta(&meta)?.current_rev;

        let raft = rtxn.open_table(RAFT)?;
        write(RAFT.name().as_bytes());
        for entry in raft.iter()? {
            let (k, v) = entry?;
            write(k.value().as_bytes());
            write(v.value());
        }
        Ok(StoreHash {
            hash: crc,
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_revision_keys() {
        let (k, n) = etcd_revision_key(Revision::new(0x0102, 3), false);
        assert_eq!(
            &k[..n],
            &[0, 0, 0, 0, 0, 0, 1, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 3]
        );
        let (k, n) = etcd_revision_key(Revision::new(5, 0), true);
        assert_eq!(
            &k[..n],
            &[0, 0, 0, 0, 0, 0, 0, 5, b'_', 0, 0, 0, 0, 0, 0, 0, 0, b't']
        );
    }

    #[test]
    fn crc32c_is_castagnoli_and_appends() {
        // The check value of CRC-32C (RFC 3720).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let whole = crc32c::crc32c(b"keyvalue");
        assert_eq!(
            crc32c::crc32c_append(crc32c::crc32c(b"key"), b"value"),
            whole
        );
    }
}
