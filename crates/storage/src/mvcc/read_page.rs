//! Paged range reads at one revision, for streamed ranges (etcd 3.7's `KV.RangeStream`).
//!
//! A streamed range is read one page at a time, each page resuming after the last key of
//! the one before, all at the same revision, as etcd 3.7 does (a `txn.Range` per chunk
//! pinned to the first chunk's revision). Each page opens its own redb snapshot and holds
//! the index lock only while it visits the index, so a client that reads slowly pins
//! neither the store's memory nor old pages of its file; a compaction past the revision
//! between two pages fails the next one with `Compacted`, as in etcd.
//!
//! A page is bounded in bytes (the encoded size of its key-values in a `RangeResponse`),
//! always holding at least one key-value so a page makes progress. `keys_only` pages are
//! built from the index alone, as etcd 3.7's "fast keys only" range: key, create and mod
//! revision and version, without value and without lease.

use bramble_api::mvccpb::KeyValue;
use prost::Message;
use redb::ReadableDatabase;

use super::error::MvccError;
use super::key_index::KeyAt;
use super::read::{fetch, lock, CHUNK_KEYS};
use super::revision::read_revision;
use super::schema::KEYS;
use super::store::MvccStore;
use super::tree_index::KeyRange;

/// What one page of a streamed range reads.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// The range, as a `RangeRequest`'s `key` and `range_end`.
    pub key: &'a [u8],
    /// See `key`.
    pub range_end: &'a [u8],
    /// The revision to read; 0 (the first page) reads the current one.
    pub revision: i64,
    /// The last key of the previous page: this page starts after it.
    pub after: Option<&'a [u8]>,
    /// Key-values without values (and without leases), from the index alone.
    pub keys_only: bool,
    /// The most key-values to return (at least 1).
    pub max_keys: usize,
    /// The most bytes of encoded key-values to return, unless the first one alone is
    /// bigger.
    pub max_bytes: usize,
}

/// One page of a streamed range.
#[derive(Debug, Clone, PartialEq)]
pub struct RangePage {
    /// The key-values, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether the range has keys after the last of `kvs` at `revision`.
    pub more: bool,
    /// The revision read (the current one when the request asked for 0).
    pub revision: i64,
    /// The store's current revision when the page was read.
    pub current: i64,
}

/// The bytes `kv` takes in a `RangeResponse`: its field tag, length and message.
pub fn kv_encoded_len(kv: &KeyValue) -> usize {
    let len = kv.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

impl MvccStore {
    /// Reads one page of a streamed range. Fails as [`MvccStore::range`] does: with
    /// `FutureRevision` above the current revision, `Compacted` below the compaction
    /// revision.
    pub fn range_page(&self, req: &PageRequest<'_>) -> Result<RangePage, MvccError> {
        // As `range`: a read of the current revision overtaken by a compaction starts
        // again at the new current revision; one overtaken by a snapshot install starts
        // again on the new state (the same history, further along).
        let mut attempts = 0;
        loop {
            match self.range_page_once(req) {
                Err(MvccError::Compacted) if req.revision <= 0 && attempts < 8 => attempts += 1,
                Err(MvccError::StoreReplaced) if attempts < 8 => attempts += 1,
                result => return result,
            }
        }
    }

    fn range_page_once(&self, req: &PageRequest<'_>) -> Result<RangePage, MvccError> {
        if req.max_keys == 0 {
            return Err(MvccError::Corrupt("range_page with max_keys 0".into()));
        }
        // Pin the revision first, then open the snapshot: it holds that revision.
        let pin = self.pin();
        let current = pin.current;
        let rtxn = self.db().begin_read()?;
        let table = rtxn.open_table(KEYS)?;
        let at = read_revision(req.revision, current)?;
        let range = KeyRange::new(req.key, req.range_end);
        let mut page = RangePage {
            kvs: Vec::new(),
            more: false,
            revision: at,
            current,
        };
        let mut bytes = 0usize;
        let mut after = req.after.map(<[u8]>::to_vec);
        let mut found: Vec<(Vec<u8>, KeyAt)> = Vec::new();
        loop {
            found.clear();
            let next = {
                let idx = lock(&self.index)?;
                self.check_readable(pin, at)?;
                idx.visit(&range, at, after.as_deref(), CHUNK_KEYS, |k, at| {
                    found.push((k.to_vec(), at))
                })
            };
            for (key, at) in found.drain(..) {
                if page.kvs.len() == req.max_keys {
                    page.more = true;
                    return Ok(page);
                }
                let kv = if req.keys_only {
                    KeyValue {
                        key,
                        create_revision: at.created.main,
                        mod_revision: at.modified.main,
                        version: at.version,
                        ..Default::default()
                    }
                } else {
                    fetch(&table, at.modified)?
                };
                let len = kv_encoded_len(&kv);
                if !page.kvs.is_empty() && bytes + len > req.max_bytes {
                    page.more = true;
                    return Ok(page);
                }
                bytes += len;
                page.kvs.push(kv);
            }
            match next {
                Some(k) => after = Some(k),
                None => return Ok(page),
            }
        }
    }
}
