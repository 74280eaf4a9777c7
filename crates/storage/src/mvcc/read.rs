//! Range reads, as etcd's `rangeKeys` plus the filtering and sorting of its applier.
//!
//! The index gives, for each key of the range, the revision a read at revision R sees;
//! the values are then fetched from the key table by revision. Semantics are etcd's:
//!
//! - `count` is the number of keys in the range at R, before `limit` and before the
//!   min/max mod/create revision filters; with `count_only` nothing else is returned.
//! - With no sort and no filter, only `limit` values are read and `more` is
//!   `count > limit`. With filters, `more` means more than `limit` keys passed them.
//! - `sort_order == NONE` with a `sort_target` other than KEY sorts ASCEND (etcd's
//!   quirk). Keys with equal sort values come in ascending key order for both ASCEND and
//!   DESCEND (what etcd's insertion sort gives on small results; for larger ones Go's
//!   `sort.Sort` leaves their order unspecified).
//! - `keys_only` drops values after sorting (so sorting by VALUE still works).
//! - The response header carries only the revision: the store's current revision (not
//!   the read revision), as etcd.
//!
//! Memory is bounded by what is returned: the index is walked in chunks, values are
//! fetched only while needed (with a sort and a limit, a heap keeps the best `limit`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::RwLock;

use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use bramble_api::mvccpb::KeyValue;
use redb::{ReadableDatabase, ReadableTable};

use super::error::MvccError;
use super::revision::{read_revision, Revision};
use super::schema::{self, KEYS};
use super::store::MvccStore;
use super::tree_index::{KeyRange, TreeIndex};

/// Index keys looked at per hold of the index lock.
pub(super) const CHUNK_KEYS: usize = 1024;

/// A key-table view: redb read-only tables and write tables alike.
pub(super) trait KeyTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> KeyTable for T {}

impl MvccStore {
    /// A read. `revision` 0 (or negative) reads the current revision; above it fails
    /// with `FutureRevision`, below the compaction revision with `Compacted`. Handles
    /// every `RangeRequest` field; fills only `header.revision` (the current revision).
    /// Runs concurrently with applies.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        // A read of the current revision can be overtaken by a compaction past it (it is
        // slow, applies go on); it then starts again at the new current revision.
        // A read overtaken by a snapshot install starts again on the new state (always
        // right: it is the same history, further along).
        let mut attempts = 0;
        loop {
            match self.range_once(req) {
                Err(MvccError::Compacted) if req.revision <= 0 && attempts < 8 => attempts += 1,
                Err(MvccError::StoreReplaced) if attempts < 8 => attempts += 1,
                result => return result,
            }
        }
    }

    fn range_once(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        // Pin the revision first, then open the snapshot: it holds that revision.
        let pin = self.pin();
        let current = pin.current;
        let rtxn = self.db().begin_read()?;
        let table = rtxn.open_table(KEYS)?;
        let at = read_revision(req.revision, current)?;
        let still_readable = || self.check_readable(pin, at);
        range_at(&table, &self.index, req, at, current, &still_readable)
    }
}

/// Fetches the version stored at `rev` (which the index says exists).
pub(super) fn fetch(table: &impl KeyTable, rev: Revision) -> Result<KeyValue, MvccError> {
    match table.get(rev.to_key(false).as_slice())? {
        Some(v) => schema::decode_kv(v.value()),
        None => Err(MvccError::Corrupt(format!(
            "revision {rev} is in the index but not in the key table"
        ))),
    }
}

/// Reads `range` at `at_rev` in chunks, calling `f` with each key's version; `f` returns
/// false to stop. `still_readable` runs under the index lock before each chunk (a reader
/// checks there that a compaction has not overtaken it).
pub(super) fn for_each_kv(
    table: &impl KeyTable,
    index: &RwLock<TreeIndex>,
    range: &KeyRange<'_>,
    at_rev: i64,
    still_readable: &dyn Fn() -> Result<(), MvccError>,
    mut f: impl FnMut(KeyValue) -> Result<bool, MvccError>,
) -> Result<(), MvccError> {
    let mut after: Option<Vec<u8>> = None;
    let mut revs = Vec::new();
    loop {
        revs.clear();
        let next = {
            let idx = lock(index)?;
            still_readable()?;
            idx.visit(range, at_rev, after.as_deref(), CHUNK_KEYS, |_, found| {
                revs.push(found.modified)
            })
        };
        for &rev in &revs {
            if !f(fetch(table, rev)?)? {
                return Ok(());
            }
        }
        match next {
            Some(k) => after = Some(k),
            None => return Ok(()),
        }
    }
}

pub(super) fn lock(
    index: &RwLock<TreeIndex>,
) -> Result<std::sync::RwLockReadGuard<'_, TreeIndex>, MvccError> {
    index
        .read()
        .map_err(|_| MvccError::Corrupt("key index poisoned by a panic".into()))
}

/// The range read of `req` at `at_rev` (already resolved and checked against the current
/// revision), answering with `header_rev` in the header.
pub(super) fn range_at(
    table: &impl KeyTable,
    index: &RwLock<TreeIndex>,
    req: &RangeRequest,
    at_rev: i64,
    header_rev: i64,
    still_readable: &dyn Fn() -> Result<(), MvccError>,
) -> Result<RangeResponse, MvccError> {
    let sort = SortSpec::of(req)?;
    let range = KeyRange::new(&req.key, &req.range_end);
    let limit = usize::try_from(req.limit).ok().filter(|&l| l > 0);
    let filters = RevisionFilters::of(req);
    // etcd quirk (applierV3backend.Range): with sort_order NONE, a target other
    // than KEY and a limit (and no revision filter), etcd reads only the first
    // limit + 1 keys in key order, sorts *those* by the target, then truncates.
    let window = match (limit, sort) {
        (Some(l), Some(_)) if req.sort_order == SortOrder::None as i32 && !filters.active() => {
            Some(l)
        }
        _ => None,
    };
    let mut out = Collector {
        sort: if window.is_some() { None } else { sort },
        limit: window.map(|l| l + 1).or(limit),
        filters,
        passed: 0,
        kvs: Vec::new(),
        heap: BinaryHeap::new(),
    };
    let mut count = 0i64;
    let mut after: Option<Vec<u8>> = None;
    let mut revs: Vec<Revision> = Vec::new();
    loop {
        revs.clear();
        let next = {
            let idx = lock(index)?;
            still_readable()?;
            idx.visit(&range, at_rev, after.as_deref(), CHUNK_KEYS, |_, found| {
                count += 1;
                if !req.count_only && out.wants(revs.len()) {
                    revs.push(found.modified);
                }
            })
        };
        for &rev in &revs {
            if !out.wants(0) {
                break;
            }
            out.offer(fetch(table, rev)?);
        }
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let (mut kvs, mut more) = if req.count_only {
        (Vec::new(), false)
    } else {
        out.finish(count)
    };
    if let (Some(l), Some(spec)) = (window, sort) {
        kvs.sort_by(|a, b| spec.compare(a, b));
        more = kvs.len() > l;
        kvs.truncate(l);
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: header_rev,
            ..Default::default()
        }),
        kvs,
        more,
        count,
    })
}

/// The min/max revision filters of a range request (0 = unset).
#[derive(Debug, Clone, Copy)]
struct RevisionFilters {
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl RevisionFilters {
    fn of(req: &RangeRequest) -> Self {
        RevisionFilters {
            min_mod: req.min_mod_revision,
            max_mod: req.max_mod_revision,
            min_create: req.min_create_revision,
            max_create: req.max_create_revision,
        }
    }

    fn active(&self) -> bool {
        self.min_mod != 0 || self.max_mod != 0 || self.min_create != 0 || self.max_create != 0
    }

    fn pass(&self, kv: &KeyValue) -> bool {
        !(self.max_mod != 0 && kv.mod_revision > self.max_mod
            || self.min_mod != 0 && kv.mod_revision < self.min_mod
            || self.max_create != 0 && kv.create_revision > self.max_create
            || self.min_create != 0 && kv.create_revision < self.min_create)
    }
}

/// How to order results that are not in plain ascending key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SortSpec {
    target: SortTarget,
    descend: bool,
}

impl SortSpec {
    /// The sort of `req`, None for ascending key order (the index's own order). Fails on
    /// values outside the protocol's enums.
    pub(super) fn of(req: &RangeRequest) -> Result<Option<SortSpec>, MvccError> {
        let order =
            SortOrder::try_from(req.sort_order).map_err(|_| MvccError::InvalidSortOption)?;
        let target =
            SortTarget::try_from(req.sort_target).map_err(|_| MvccError::InvalidSortOption)?;
        // etcd: a target other than KEY with order NONE sorts ASCEND.
        let order = if target != SortTarget::Key && order == SortOrder::None {
            SortOrder::Ascend
        } else {
            order
        };
        Ok(match (order, target) {
            (SortOrder::None, _) | (SortOrder::Ascend, SortTarget::Key) => None,
            (order, target) => Some(SortSpec {
                target,
                descend: order == SortOrder::Descend,
            }),
        })
    }

    fn compare(&self, a: &KeyValue, b: &KeyValue) -> Ordering {
        let by_target = match self.target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        let by_target = if self.descend {
            by_target.reverse()
        } else {
            by_target
        };
        by_target.then_with(|| a.key.cmp(&b.key))
    }
}

/// A value ordered by a [`SortSpec`], for the top-`limit` heap.
struct Sorted(SortSpec, KeyValue);

impl PartialEq for Sorted {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Sorted {}
impl PartialOrd for Sorted {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sorted {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.compare(&self.1, &other.1)
    }
}

/// Gathers the values of a range: filters, keeps at most what the response needs.
struct Collector {
    sort: Option<SortSpec>,
    limit: Option<usize>,
    filters: RevisionFilters,
    /// Values that passed the filters so far.
    passed: usize,
    /// Key-ordered results (no sort, or a sort without limit before sorting).
    kvs: Vec<KeyValue>,
    /// Sorted with a limit: the best `limit` so far (the worst on top).
    heap: BinaryHeap<Sorted>,
}

impl Collector {
    /// Whether to fetch one more value, given `pending` already queued for fetching.
    fn wants(&self, pending: usize) -> bool {
        match (self.sort, self.limit) {
            (_, None) | (Some(_), Some(_)) => true,
            // Key order without filters: `limit` values; `more` comes from the count.
            (None, Some(l)) if !self.filters.active() => self.kvs.len() + pending < l,
            // Key order with filters: until one past the limit has passed them.
            (None, Some(l)) => self.passed <= l,
        }
    }

    fn offer(&mut self, kv: KeyValue) {
        if !self.filters.pass(&kv) {
            return;
        }
        self.passed += 1;
        match (self.sort, self.limit) {
            (None, Some(l)) => {
                if self.kvs.len() < l {
                    self.kvs.push(kv);
                }
            }
            (None, None) | (Some(_), None) => self.kvs.push(kv),
            (Some(spec), Some(l)) => {
                self.heap.push(Sorted(spec, kv));
                if self.heap.len() > l {
                    self.heap.pop();
                }
            }
        }
    }

    /// The values to return and the `more` flag; `count` is the range's key count.
    fn finish(self, count: i64) -> (Vec<KeyValue>, bool) {
        let Some(limit) = self.limit else {
            let mut kvs = self.kvs;
            if let Some(spec) = self.sort {
                kvs.sort_by(|a, b| spec.compare(a, b));
            }
            return (kvs, false);
        };
        let more = if self.sort.is_none() && !self.filters.active() {
            count > limit as i64
        } else {
            self.passed > limit
        };
        match self.sort {
            None => (self.kvs, more),
            Some(_) => (
                self.heap
                    .into_sorted_vec()
                    .into_iter()
                    .map(|s| s.1)
                    .collect(),
                more,
            ),
        }
    }
}
