//! The in-memory index of all keys, as etcd's `treeIndex`.
//!
//! A sorted map from key to [`KeyIndex`] (the key's revisions). It answers "which
//! revision of which keys does a read at revision R see" without touching the disk; the
//! values are then fetched from the key table by revision. It is not stored: it is
//! rebuilt from the key table when the store opens.
//!
//! Ranges are visited in bounded chunks ([`TreeIndex::visit`] stops after `max_keys`
//! keys and returns where to resume), so a caller can release its lock between chunks
//! and a huge range never needs a list of every matching key.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::{KeyAt, KeyIndex};
use super::revision::Revision;

/// A set of keys as etcd's requests name them: `key` plus `range_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyRange<'a> {
    /// Exactly one key (`range_end` empty).
    Key(&'a [u8]),
    /// `[start, end)`; `end == None` means "to the last key" (`range_end == "\0"`).
    Span {
        /// First key, included.
        start: &'a [u8],
        /// First key after the range, or None for no upper bound.
        end: Option<&'a [u8]>,
    },
}

impl<'a> KeyRange<'a> {
    /// The range of a request: empty `range_end` is the single `key`, `range_end == "\0"`
    /// is every key `>= key` (so `key == "\0"` too is every key), anything else is
    /// `[key, range_end)` (empty when `range_end <= key`).
    pub(super) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Key(key),
            [0] => KeyRange::Span {
                start: key,
                end: None,
            },
            end => KeyRange::Span {
                start: key,
                end: Some(end),
            },
        }
    }

    /// True if `key` is in the range.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Key(k) => k == key,
            KeyRange::Span { start, end } => key >= start && end.is_none_or(|e| key < e),
        }
    }
}

/// One entry of the undo log of an apply in progress: the index change to revert if the
/// apply's storage transaction does not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IndexChange {
    /// A put of `key` at the revision.
    Put(Vec<u8>, Revision),
    /// A tombstone of `key` at the revision.
    Tombstone(Vec<u8>, Revision),
}

/// All keys and their revisions (see the module doc).
#[derive(Debug, Default, Clone)]
pub(super) struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    /// An empty index.
    pub(super) fn new() -> Self {
        TreeIndex::default()
    }

    /// Number of keys with history in the index (deleted keys not yet compacted count).
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// What a read at `at_rev` sees of `key`.
    pub(super) fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at_rev)
    }

    /// The history of `key` (tests only: they check what compaction leaves).
    #[cfg(test)]
    pub(super) fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// Records a put of `key` at `rev`.
    pub(super) fn put(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new();
                ki.put(rev);
                self.keys.insert(key.to_vec(), ki);
            }
        }
    }

    /// Records a delete of `key` at `rev`; false (and no change) if the key does not
    /// currently exist.
    pub(super) fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Adds a key rebuilt from disk (see [`KeyIndex::restore`]).
    pub(super) fn restore(
        &mut self,
        key: &[u8],
        created: Revision,
        modified: Revision,
        version: i64,
    ) {
        let mut ki = KeyIndex::new();
        ki.restore(created, modified, version);
        let old = self.keys.insert(key.to_vec(), ki);
        assert!(old.is_none(), "restore of a key already in the index");
    }

    /// Mutable access to a key's history (for the rebuild from disk).
    pub(super) fn key_index_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        self.keys.get_mut(key)
    }

    /// Calls `f(key, found)` for the keys of `range` that exist at `at_rev`, in key order,
    /// starting after `after` (exclusive) if given. Stops after looking at `max_keys`
    /// keys of the index (existing at `at_rev` or not) and then returns the last key
    /// looked at, to pass as `after` to continue; returns None when the range is done.
    pub(super) fn visit(
        &self,
        range: &KeyRange<'_>,
        at_rev: i64,
        after: Option<&[u8]>,
        max_keys: usize,
        mut f: impl FnMut(&[u8], KeyAt),
    ) -> Option<Vec<u8>> {
        assert!(max_keys > 0, "visit with max_keys 0 makes no progress");
        let (start, end) = match *range {
            KeyRange::Key(key) => {
                if after.is_none() {
                    if let Some(found) = self.get(key, at_rev) {
                        f(key, found);
                    }
                }
                return None;
            }
            KeyRange::Span { start, end } => (start, end),
        };
        let lower = match after {
            Some(a) if a >= start => Bound::Excluded(a),
            _ => Bound::Included(start),
        };
        // BTreeMap::range panics on inverted bounds: an empty range visits nothing.
        if let Some(e) = end {
            match lower {
                Bound::Included(l) if l >= e => return None,
                Bound::Excluded(l) if l >= e => return None,
                _ => {}
            }
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut seen = 0usize;
        for (key, ki) in self.keys.range::<[u8], _>((lower, upper)) {
            if let Some(found) = ki.get(at_rev) {
                f(key, found);
            }
            seen += 1;
            if seen == max_keys {
                return Some(key.clone());
            }
        }
        None
    }

    /// The keys of `range` that exist at `at_rev` with the revision a read there sees.
    pub(super) fn range(&self, range: &KeyRange<'_>, at_rev: i64) -> Vec<(Vec<u8>, Revision)> {
        let mut out = Vec::new();
        self.visit(range, at_rev, None, usize::MAX, |k, found| {
            out.push((k.to_vec(), found.modified))
        });
        out
    }

    /// All revisions of the keys in `range` at or after main revision `rev`, in revision
    /// order (one per key per main revision), as etcd's `RangeSince`. Tests only: watchers
    /// read their history from the key table (`events.rs`).
    #[cfg(test)]
    pub(super) fn range_since(&self, range: &KeyRange<'_>, rev: i64) -> Vec<Revision> {
        let mut revs = Vec::new();
        match *range {
            KeyRange::Key(key) => {
                if let Some(ki) = self.keys.get(key) {
                    revs = ki.since(rev);
                }
            }
            KeyRange::Span { start, end } => {
                if end.is_some_and(|e| start >= e) {
                    return revs;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for (_, ki) in self.keys.range::<[u8], _>((Bound::Included(start), upper)) {
                    revs.extend(ki.since(rev));
                }
                revs.sort_unstable();
            }
        }
        revs
    }

    /// Compacts every key at `at_rev` and drops the keys left empty. Returns the revisions
    /// at or below `at_rev` that must stay on disk; every other revision at or below
    /// `at_rev` can be deleted.
    pub(super) fn compact(&mut self, at_rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at_rev, &mut available);
            !ki.is_empty()
        });
        available
    }

    /// The revisions that [`TreeIndex::compact`] at `at_rev` would keep, without changing
    /// anything (tests only).
    #[cfg(test)]
    pub(super) fn keep(&self, at_rev: i64) -> HashSet<Revision> {
        self.keys
            .values()
            .filter_map(|ki| ki.kept_at(at_rev))
            .collect()
    }

    /// The revision of `key` that compacting at `at_rev` would keep, if any.
    pub(super) fn kept_at(&self, key: &[u8], at_rev: i64) -> Option<Revision> {
        self.keys.get(key)?.kept_at(at_rev)
    }

    /// Whether compacting at `at_rev` would keep any revision at all (etcd's
    /// `len(Keep(rev)) > 0`). Stops at the first key that has one, usually the first.
    pub(super) fn keeps_any(&self, at_rev: i64) -> bool {
        self.keys.values().any(|ki| ki.kept_at(at_rev).is_some())
    }

    /// Reverts one change of an aborted apply; changes must be undone newest first.
    pub(super) fn undo(&mut self, change: &IndexChange) {
        let (key, rev, tombstone) = match change {
            IndexChange::Put(k, r) => (k, *r, false),
            IndexChange::Tombstone(k, r) => (k, *r, true),
        };
        let Some(ki) = self.keys.get_mut(key.as_slice()) else {
            panic!("undo of {change:?} for a key not in the index");
        };
        if tombstone {
            ki.undo_tombstone(rev);
        } else {
            ki.undo_put(rev);
        }
        if ki.is_empty() {
            self.keys.remove(key.as_slice());
        }
    }

    /// True if both indexes hold the same keys with the same histories (see
    /// [`KeyIndex::same_history`]). Tests only: they compare a rebuilt index with the live one.
    #[cfg(test)]
    pub(super) fn same_as(&self, other: &TreeIndex) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|((ka, a), (kb, b))| ka == kb && a.same_history(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// foo@1, foo1@2, foo2@3, foo2@4 (put), foo deleted @5.
    fn index() -> TreeIndex {
        let mut ti = TreeIndex::new();
        ti.put(b"foo", r(1));
        ti.put(b"foo1", r(2));
        ti.put(b"foo2", r(3));
        ti.put(b"foo2", r(4));
        assert!(ti.tombstone(b"foo", r(5)));
        ti
    }

    fn keys(ti: &TreeIndex, range: KeyRange<'_>, at: i64) -> Vec<(String, i64)> {
        ti.range(&range, at)
            .into_iter()
            .map(|(k, rev)| (String::from_utf8(k).unwrap(), rev.main))
            .collect()
    }

    #[test]
    fn key_range_forms() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Key(b"a"));
        assert_eq!(
            KeyRange::new(b"a", b"\0"),
            KeyRange::Span {
                start: b"a",
                end: None
            }
        );
        assert_eq!(
            KeyRange::new(b"a", b"b"),
            KeyRange::Span {
                start: b"a",
                end: Some(b"b")
            }
        );
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"zzz") && !all.contains(b""));
        assert!(KeyRange::new(b"a", b"b").contains(b"a\xff"));
        assert!(!KeyRange::new(b"a", b"b").contains(b"b"));
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
    }

    #[test]
    fn get_and_range_at_revisions() {
        let ti = index();
        assert_eq!(ti.get(b"foo", 4).map(|k| k.modified), Some(r(1)));
        assert_eq!(ti.get(b"foo", 5), None);
        assert_eq!(ti.get(b"foo", 0), None);
        assert_eq!(ti.get(b"nope", 5), None);
        assert_eq!(ti.get(b"foo2", 3).map(|k| k.version), Some(1));
        assert_eq!(ti.get(b"foo2", 4).map(|k| k.version), Some(2));

        let s = |k: &str, m| (k.to_string(), m);
        assert_eq!(keys(&ti, KeyRange::new(b"foo", b""), 5), vec![]);
        assert_eq!(keys(&ti, KeyRange::new(b"foo", b""), 1), vec![s("foo", 1)]);
        assert_eq!(
            keys(&ti, KeyRange::new(b"foo", b"fop"), 5),
            vec![s("foo1", 2), s("foo2", 4)]
        );
        assert_eq!(
            keys(&ti, KeyRange::new(b"foo", b"fop"), 3),
            vec![s("foo", 1), s("foo1", 2), s("foo2", 3)]
        );
        assert_eq!(
            keys(&ti, KeyRange::new(b"foo1", b"\0"), 5),
            vec![s("foo1", 2), s("foo2", 4)]
        );
        assert_eq!(keys(&ti, KeyRange::new(b"\0", b"\0"), 5).len(), 2);
        // range_end <= key: empty, not a panic.
        assert_eq!(keys(&ti, KeyRange::new(b"foo2", b"foo1"), 5), vec![]);
        assert_eq!(keys(&ti, KeyRange::new(b"foo2", b"foo2"), 5), vec![]);
    }

    #[test]
    fn visit_in_chunks_resumes_where_it_stopped() {
        let mut ti = TreeIndex::new();
        for i in 0..100 {
            ti.put(format!("k{i:03}").as_bytes(), r(i + 1));
        }
        // Delete every third key: chunks count index keys, not live ones.
        for i in (0..100).step_by(3) {
            assert!(ti.tombstone(format!("k{i:03}").as_bytes(), r(200 + i)));
        }
        let range = KeyRange::new(b"k", b"l");
        let mut all = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        let mut chunks = 0;
        loop {
            let next = ti.visit(&range, 1000, after.as_deref(), 7, |k, _| {
                all.push(k.to_vec())
            });
            chunks += 1;
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert_eq!(chunks, 100 / 7 + 1);
        let want: Vec<Vec<u8>> = ti.range(&range, 1000).into_iter().map(|(k, _)| k).collect();
        assert_eq!(all, want);
        assert_eq!(all.len(), 66);
        // A cursor at the range end finishes without panicking.
        assert_eq!(
            ti.visit(
                &KeyRange::new(b"k000", b"k050"),
                1000,
                Some(b"k050"),
                5,
                |_, _| {}
            ),
            None
        );
    }

    #[test]
    fn range_since_orders_by_revision() {
        let ti = index();
        let all = KeyRange::new(b"\0", b"\0");
        assert_eq!(ti.range_since(&all, 0), vec![r(1), r(2), r(3), r(4), r(5)]);
        assert_eq!(ti.range_since(&all, 4), vec![r(4), r(5)]);
        assert_eq!(ti.range_since(&KeyRange::new(b"foo", b""), 2), vec![r(5)]);
        assert_eq!(ti.range_since(&KeyRange::new(b"foo2", b"foo1"), 0), vec![]);
    }

    #[test]
    fn compact_and_keep() {
        // As etcd's TestIndexCompactAndKeep: keep() predicts what compact() keeps.
        for at in 1..=6 {
            let mut ti = index();
            let keep = ti.keep(at);
            let before = ti.clone();
            assert!(ti.same_as(&before));
            let avail = ti.compact(at);
            assert_eq!(keep, avail, "compact({at})");
            // Reads at or after the compaction revision are unchanged.
            for rev in at..=6 {
                for k in [&b"foo"[..], b"foo1", b"foo2"] {
                    assert_eq!(
                        ti.get(k, rev),
                        before.get(k, rev),
                        "{k:?}@{rev} after compact({at})"
                    );
                }
            }
        }
        let mut ti = index();
        let avail = ti.compact(5);
        // foo's last generation ended at 5: gone with its tombstone.
        assert!(ti.key_index(b"foo").is_none());
        assert_eq!(avail, [r(2), r(4)].into_iter().collect());
        assert_eq!(ti.len(), 2);
    }

    #[test]
    fn keep_is_unchanged_by_an_earlier_compaction() {
        // HashKV computes keep(at) on an index that a compaction at or below `at` may
        // change under it: that must not change the answer.
        let mut with_deleted = index();
        with_deleted.put(b"foo1", r(6));
        assert!(with_deleted.tombstone(b"foo1", r(7)));
        assert!(with_deleted.tombstone(b"foo2", r(8)));
        for at in 1..=8 {
            let want = with_deleted.keep(at);
            assert_eq!(
                with_deleted.keeps_any(at),
                !want.is_empty(),
                "keeps_any({at})"
            );
            for c in 1..=at {
                let mut ti = with_deleted.clone();
                ti.compact(c);
                assert_eq!(ti.keep(at), want, "keep({at}) after compact({c})");
                assert_eq!(ti.keeps_any(at), !want.is_empty());
                for k in [&b"foo"[..], b"foo1", b"foo2"] {
                    let kept = with_deleted.kept_at(k, at);
                    assert_eq!(ti.kept_at(k, at), kept, "{k:?} kept at {at} after {c}");
                }
            }
        }
        // Everything deleted by revision 8: nothing is kept.
        assert!(!with_deleted.keeps_any(8));
    }

    #[test]
    fn undo_reverts_newest_first() {
        let base = index();
        let mut ti = base.clone();
        let changes = [
            IndexChange::Put(b"new".to_vec(), r(6)),
            IndexChange::Tombstone(b"foo2".to_vec(), Revision::new(6, 1)),
            IndexChange::Put(b"foo".to_vec(), Revision::new(6, 2)),
        ];
        ti.put(b"new", r(6));
        assert!(ti.tombstone(b"foo2", Revision::new(6, 1)));
        ti.put(b"foo", Revision::new(6, 2));
        assert!(!ti.same_as(&base));
        for c in changes.iter().rev() {
            ti.undo(c);
        }
        assert!(ti.same_as(&base));
        assert!(ti.key_index(b"new").is_none());
    }
}
