//! The hashes computed while compacting (etcd 3.6's `hashStorage` and the hasher of
//! `scheduleCompaction`), for the compact hash check between members: members that
//! compacted at the same revision from the same previous compaction must agree.
//!
//! While the background deletion of a compaction at `rev` scans the key-table rows at
//! or below `rev` (see [`super::compaction`]), it feeds each row to etcd's `kvHasher`
//! with the previous compact revision `prev`: a row above `prev` is hashed; a row at
//! or below `prev` only if the compaction keeps it (when it keeps anything at all, as
//! etcd's `len(keep) > 0`). The bytes are HashKV's (etcd's key encoding, then the
//! value), so the result is what HashKV at `rev` answered just before the compaction,
//! with `compact_revision` `prev`.
//!
//! Rows at or below `rev` change between two deletion batches only by the deletion
//! itself (applies write above the current revision) or by a raft snapshot install,
//! which drops the job and its hasher. As etcd, a hash is only stored when the previous
//! compaction had finished its deletion when this one was scheduled (etcd #15919): a
//! resumed or replaced compaction stores none. The last [`MAX_HASHES`] are kept, in
//! memory only (etcd keeps them in memory too).

use std::sync::{Mutex, MutexGuard};

use super::hash::{etcd_revision_key, KvHash};
use super::revision::Revision;
use super::schema::KEYS;
use super::store::MvccStore;

use redb::TableHandle;

/// etcd's `hashStorageMaxSize`.
pub const MAX_HASHES: usize = 10;

/// etcd's `kvHasher` of one compaction, fed row by row.
#[derive(Debug)]
pub(super) struct CompactionHasher {
    crc: u32,
    prev: i64,
    rev: i64,
    keeps_any: bool,
}

impl CompactionHasher {
    /// The hasher of a compaction at `rev` after one at `prev`; `keeps_any` says
    /// whether the compaction keeps any row.
    pub(super) fn new(prev: i64, rev: i64, keeps_any: bool) -> Self {
        CompactionHasher {
            crc: crc32c::crc32c(KEYS.name().as_bytes()),
            prev,
            rev,
            keeps_any,
        }
    }

    /// Hashes one row at or below the compaction revision, in key order; `kept`
    /// says whether the compaction keeps it.
    pub(super) fn write_row(&mut self, rev: Revision, tombstone: bool, kept: bool, value: &[u8]) {
        if rev.main > self.rev {
            return;
        }
        if rev.main <= self.prev && self.keeps_any && !kept {
            return;
        }
        // etcd skips a tombstone at the previous compact revision, which etcd
        // versions delete or keep differently.
        if rev.main == self.prev && tombstone {
            return;
        }
        let (key, len) = etcd_revision_key(rev, tombstone);
        self.crc = crc32c::crc32c_append(self.crc, &key[..len]);
        self.crc = crc32c::crc32c_append(self.crc, value);
    }

    /// The hash of every row fed.
    pub(super) fn finish(&self) -> KvHash {
        KvHash {
            hash: self.crc,
            compact_revision: self.prev,
            hash_revision: self.rev,
            current_revision: 0,
        }
    }
}

/// The last [`MAX_HASHES`] compaction hashes, sorted by revision.
#[derive(Debug, Default)]
pub(super) struct HashStorage {
    hashes: Mutex<Vec<KvHash>>,
}

impl HashStorage {
    fn lock(&self) -> MutexGuard<'_, Vec<KvHash>> {
        // Plain data: a panic cannot leave it half-changed.
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// etcd's `hashStorage.Store`.
    pub(super) fn store(&self, hash: KvHash) {
        tracing::info!(
            hash = hash.hash,
            revision = hash.hash_revision,
            compact_revision = hash.compact_revision,
            "storing new hash"
        );
        let mut hashes = self.lock();
        hashes.retain(|h| h.hash_revision != hash.hash_revision);
        hashes.push(hash);
        hashes.sort_by_key(|h| h.hash_revision);
        let excess = hashes.len().saturating_sub(MAX_HASHES);
        hashes.drain(..excess);
    }

    fn get(&self, revision: i64) -> Option<KvHash> {
        self.lock()
            .iter()
            .find(|h| h.hash_revision == revision)
            .copied()
    }

    fn all(&self) -> Vec<KvHash> {
        self.lock().clone()
    }
}

impl MvccStore {
    /// The hash stored at the compaction of `revision`, with the current revision: the
    /// first half of etcd 3.6's `HashStorage.HashByRev` ([`MvccStore::hash_kv`]).
    pub(super) fn stored_compaction_hash(&self, revision: i64) -> Option<KvHash> {
        if revision <= 0 {
            return None;
        }
        let mut h = self.compaction_hashes.get(revision)?;
        h.current_revision = self.current_revision();
        Some(h)
    }

    /// etcd's `Hashes`: the stored compaction hashes, oldest first.
    pub fn compaction_hashes(&self) -> Vec<KvHash> {
        self.compaction_hashes.all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(rev: i64) -> KvHash {
        KvHash {
            hash: rev as u32,
            compact_revision: rev - 1,
            hash_revision: rev,
            current_revision: 0,
        }
    }

    #[test]
    fn keeps_the_newest_ten_sorted() {
        let s = HashStorage::default();
        for rev in (1..=15).rev() {
            s.store(h(rev));
        }
        let all = s.all();
        assert_eq!(
            all.iter().map(|h| h.hash_revision).collect::<Vec<_>>(),
            (6..=15).collect::<Vec<_>>()
        );
        assert_eq!(s.get(15), Some(h(15)));
        assert_eq!(s.get(3), None);
    }

    #[test]
    fn hasher_skips_what_etcds_skips() {
        let value = b"v";
        let mut all = CompactionHasher::new(5, 10, true);
        let mut expected = crc32c::crc32c(b"key");
        let mut add = |rev: Revision, tomb: bool| {
            let (k, n) = etcd_revision_key(rev, tomb);
            expected = crc32c::crc32c_append(expected, &k[..n]);
            expected = crc32c::crc32c_append(expected, value);
        };
        // At or below prev: only kept rows.
        all.write_row(Revision::new(3, 0), false, false, value);
        all.write_row(Revision::new(4, 0), false, true, value);
        add(Revision::new(4, 0), false);
        // A tombstone at prev: skipped even if kept.
        all.write_row(Revision::new(5, 0), true, true, value);
        // Above prev: every row, kept or not.
        all.write_row(Revision::new(7, 0), false, false, value);
        add(Revision::new(7, 0), false);
        all.write_row(Revision::new(10, 1), true, false, value);
        add(Revision::new(10, 1), true);
        // Above the compaction: not hashed.
        all.write_row(Revision::new(11, 0), false, true, value);
        assert_eq!(all.finish().hash, expected);
        assert_eq!(all.finish().compact_revision, 5);
        assert_eq!(all.finish().hash_revision, 10);

        // A compaction that keeps nothing hashes every row at or below prev.
        let mut none = CompactionHasher::new(5, 10, false);
        none.write_row(Revision::new(3, 0), false, false, value);
        let mut one = crc32c::crc32c(b"key");
        let (k, n) = etcd_revision_key(Revision::new(3, 0), false);
        one = crc32c::crc32c_append(one, &k[..n]);
        one = crc32c::crc32c_append(one, value);
        assert_eq!(none.finish().hash, one);
    }
}
