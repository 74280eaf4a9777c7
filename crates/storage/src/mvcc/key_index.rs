//! The history of one key: its generations, as etcd's `keyIndex`.
//!
//! A key's life is a list of *generations*. A generation runs from the put that creates
//! the key to the delete (tombstone) that ends it; a tombstone closes the current
//! generation and opens a new, empty one. Each generation lists the revisions of the
//! versions it holds, oldest first; the version number of a revision is its position in
//! the generation, counted from 1.
//!
//! For example put(2), put(4), delete(6), put(8), put(10), delete(12), put(14.0),
//! put(14.1), delete(16) gives:
//!
//! ```text
//!   {empty}
//!   {14.0, 14.1, 16.0(t)}
//!   {8.0, 10.0, 12.0(t)}
//!   {2.0, 4.0, 6.0(t)}
//! ```
//!
//! Compacting at `rev` drops, in each generation, the revisions at or below `rev` except
//! the newest of them (the version a reader at `rev` sees), and whole generations whose
//! tombstone is at or below `rev`. A key left with a single empty generation is gone and
//! the caller removes it from the index.

use std::collections::HashSet;

use super::revision::Revision;

/// One life of a key: from its creation to its deletion (or to now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Generation {
    /// Number of revisions ever added to this generation, compacted ones included (the
    /// tombstone counts too). The version of `revs[i]` is `ver - (len - 1 - i)`.
    pub ver: i64,
    /// Revision of the put that created the key in this generation. After a rebuild from
    /// disk only `created.main` is known (sub is 0), as in etcd.
    pub created: Revision,
    /// Revisions of this generation, oldest first; the last one of a closed generation is
    /// its tombstone.
    pub revs: Vec<Revision>,
}

impl Generation {
    /// True if the generation holds no revision.
    pub(super) fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Position of the newest revision for which `keep_walking` is false, walking from the
    /// newest to the oldest.
    fn walk(&self, mut keep_walking: impl FnMut(Revision) -> bool) -> Option<usize> {
        (0..self.revs.len())
            .rev()
            .find(|&i| !keep_walking(self.revs[i]))
    }
}

/// The revisions of one key (see the module doc).
#[derive(Debug, Clone, Default)]
pub(super) struct KeyIndex {
    /// The newest revision of the key (the last put or tombstone).
    modified: Revision,
    generations: Vec<Generation>,
}

/// What a read at some revision finds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyAt {
    /// Revision of the version visible at the read revision.
    pub modified: Revision,
    /// Revision that created the key's current generation.
    pub created: Revision,
    /// Version number of that version (1 for the creating put).
    pub version: i64,
}

impl KeyIndex {
    /// A key with no history yet; the first call must be [`KeyIndex::put`] or
    /// [`KeyIndex::restore`].
    pub(super) fn new() -> Self {
        KeyIndex::default()
    }

    /// The newest revision of the key (tests only).
    #[cfg(test)]
    pub(super) fn modified(&self) -> Revision {
        self.modified
    }

    /// The generations, oldest first (tests only).
    #[cfg(test)]
    pub(super) fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// Records a put at `rev`. Panics unless `rev` is newer than every revision of the
    /// key: revisions only grow.
    pub(super) fn put(&mut self, rev: Revision) {
        assert!(
            rev > self.modified,
            "put at {rev} is not after the key's last revision {}",
            self.modified
        );
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[last];
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Starts a key rebuilt from disk whose oldest surviving version is `modified`, with
    /// creation revision `created` and version `ver` (as etcd's `restore`).
    pub(super) fn restore(&mut self, created: Revision, modified: Revision, ver: i64) {
        assert!(
            self.generations.is_empty(),
            "restore on a key that already has history"
        );
        self.modified = modified;
        self.generations.push(Generation {
            ver,
            created,
            revs: vec![modified],
        });
    }

    /// Records a delete at `rev`: appends the tombstone to the current generation and
    /// opens a new empty one. Returns false (and changes nothing) if the key does not
    /// currently exist.
    pub(super) fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last() {
            None => return false,
            Some(g) if g.is_empty() => return false,
            Some(_) => {}
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// True if the key has no revision left (a single empty generation, or none).
    pub(super) fn is_empty(&self) -> bool {
        self.generations.iter().all(Generation::is_empty)
    }

    /// The version visible to a read at main revision `at_rev`, or None if the key did not
    /// exist then.
    pub(super) fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(at_rev)?;
        let n = g.walk(|rev| rev.main > at_rev)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// The generation that holds the version visible at `rev`, or None if `rev` falls
    /// between two generations (the key was deleted then) or before the first.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && tomb.main <= rev {
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// Revisions at or after main revision `rev`, oldest first; of several revisions with
    /// the same main revision only the last one (highest sub) is returned, as a watcher
    /// sees one event per key per revision. Tests only (through `TreeIndex::range_since`).
    #[cfg(test)]
    pub(super) fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        let mut gi = self.generations.len().saturating_sub(1);
        while gi > 0 {
            let g = &self.generations[gi];
            if !g.is_empty() && since > g.created {
                break;
            }
            gi -= 1;
        }
        let mut revs: Vec<Revision> = Vec::new();
        let mut last = 0i64;
        for g in &self.generations[gi..] {
            for &r in &g.revs {
                if since > r {
                    continue;
                }
                if r.main == last {
                    if let Some(l) = revs.last_mut() {
                        *l = r;
                    }
                    continue;
                }
                revs.push(r);
                last = r.main;
            }
        }
        revs
    }

    /// Compacts the history at main revision `at_rev` and adds to `available` the
    /// revision that must stay on disk for this key (if any). May leave the key empty
    /// (see [`KeyIndex::is_empty`]): the caller then drops it.
    pub(super) fn compact(&mut self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.generations.is_empty() {
            return;
        }
        let (mut gen_idx, rev_idx) = self.compaction_point(at_rev);
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if let Some(ri) = rev_idx {
            available.insert(g.revs[ri]);
        }
        if !g.is_empty() {
            if let Some(ri) = rev_idx {
                g.revs.drain(..ri);
            }
            // A generation reduced to its tombstone is dropped, tombstone included.
            if g.revs.len() == 1 && gen_idx != last {
                available.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }

    /// The revision that compacting at `at_rev` would keep on disk for this key, if any,
    /// without changing anything (etcd's `keyIndex.keep`, which HashKV uses).
    pub(super) fn kept_at(&self, at_rev: i64) -> Option<Revision> {
        if self.is_empty() {
            return None;
        }
        let (gen_idx, rev_idx) = self.compaction_point(at_rev);
        let g = &self.generations[gen_idx];
        let ri = rev_idx?;
        // The tombstone that closes its generation is not kept.
        if ri == g.revs.len() - 1 && gen_idx != self.generations.len() - 1 {
            return None;
        }
        Some(g.revs[ri])
    }

    /// Finds the first generation that is not entirely at or below `at_rev` and, in it, the
    /// position of the newest revision at or below `at_rev`.
    fn compaction_point(&self, at_rev: i64) -> (usize, Option<usize>) {
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            match self.generations[gen_idx].revs.last() {
                Some(tomb) if tomb.main > at_rev => break,
                _ => gen_idx += 1,
            }
        }
        let rev_idx = self.generations[gen_idx].walk(|rev| rev.main > at_rev);
        (gen_idx, rev_idx)
    }

    /// Undoes the put at `rev`, which must be the key's newest revision (used to roll back
    /// an aborted apply).
    pub(super) fn undo_put(&mut self, rev: Revision) {
        let g = self
            .generations
            .last_mut()
            .filter(|g| g.revs.last() == Some(&rev));
        let Some(g) = g else {
            panic!("undo of put {rev} that is not the key's newest revision");
        };
        g.revs.pop();
        g.ver -= 1;
        if g.revs.is_empty() {
            g.created = Revision::default();
            g.ver = 0;
        }
        self.modified = self
            .generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
            .unwrap_or_default();
    }

    /// Undoes the tombstone at `rev`, which must be the key's newest revision.
    pub(super) fn undo_tombstone(&mut self, rev: Revision) {
        let open = self.generations.pop();
        assert!(
            matches!(open, Some(ref g) if g.is_empty()),
            "undo of tombstone {rev} without the generation it opened"
        );
        self.undo_put(rev);
    }

    /// Equality as etcd's `keyIndex.equal`: same newest revision and generations with the
    /// same versions and revisions. `created` is not compared, as a rebuild from disk
    /// only knows its main revision. Tests only.
    #[cfg(test)]
    pub(super) fn same_history(&self, other: &KeyIndex) -> bool {
        self.modified == other.modified
            && self.generations.len() == other.generations.len()
            && self
                .generations
                .iter()
                .zip(&other.generations)
                .all(|(a, b)| {
                    a.ver == b.ver && a.revs == b.revs && a.created.main == b.created.main
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// etcd's newTestKeyIndex: put 2, put 4, del 6, put 8, put 10, del 12, put 14.0,
    /// put 14.1, del 16.
    fn test_key_index() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        ki.put(r(10));
        assert!(ki.tombstone(r(12)));
        ki.put(r(14));
        ki.put(Revision::new(14, 1));
        assert!(ki.tombstone(r(16)));
        ki
    }

    #[test]
    fn get_at_revisions() {
        // As etcd's TestKeyIndexGet (compacted at 4 first).
        let mut ki = test_key_index();
        ki.compact(4, &mut HashSet::new());
        let found = |m: Revision, c: Revision, v| {
            Some(KeyAt {
                modified: m,
                created: c,
                version: v,
            })
        };
        let cases: Vec<(i64, Option<KeyAt>)> = vec![
            (17, None),
            (16, None),
            (15, found(Revision::new(14, 1), r(14), 2)),
            (14, found(Revision::new(14, 1), r(14), 2)),
            (13, None),
            (12, None),
            (11, found(r(10), r(8), 2)),
            (10, found(r(10), r(8), 2)),
            (9, found(r(8), r(8), 1)),
            (8, found(r(8), r(8), 1)),
            (7, None),
            (6, None),
            (5, found(r(4), r(2), 2)),
            (4, found(r(4), r(2), 2)),
            (3, None),
            (2, None),
            (1, None),
            (0, None),
        ];
        for (at, want) in cases {
            assert_eq!(ki.get(at), want, "get({at})");
        }
    }

    #[test]
    fn since() {
        // As etcd's TestKeyIndexSince.
        let mut ki = test_key_index();
        ki.compact(4, &mut HashSet::new());
        let all = [r(4), r(6), r(8), r(10), r(12), Revision::new(14, 1), r(16)];
        let cases: Vec<(i64, &[Revision])> = vec![
            (17, &[]),
            (16, &all[6..]),
            (15, &all[6..]),
            (14, &all[5..]),
            (13, &all[5..]),
            (12, &all[4..]),
            (11, &all[4..]),
            (10, &all[3..]),
            (9, &all[3..]),
            (8, &all[2..]),
            (7, &all[2..]),
            (6, &all[1..]),
            (5, &all[1..]),
            (4, &all[..]),
            (3, &all[..]),
            (0, &all[..]),
        ];
        for (rev, want) in cases {
            assert_eq!(ki.since(rev), want.to_vec(), "since({rev})");
        }
    }

    #[test]
    fn put_restore_tombstone() {
        let mut ki = KeyIndex::new();
        ki.put(r(5));
        assert_eq!(ki.generations()[0].created, r(5));
        assert_eq!(ki.generations()[0].ver, 1);
        assert_eq!(ki.modified(), r(5));

        let mut ki = KeyIndex::new();
        ki.restore(r(5), r(7), 2);
        assert_eq!(
            ki.generations(),
            &[Generation {
                ver: 2,
                created: r(5),
                revs: vec![r(7)]
            }]
        );

        let mut ki = KeyIndex::new();
        ki.put(r(5));
        assert!(ki.tombstone(r(7)));
        assert_eq!(ki.generations().len(), 2);
        assert!(ki.generations()[1].is_empty());
        assert_eq!(ki.generations()[0].revs, vec![r(5), r(7)]);
        // Tombstone of a key that does not exist: nothing happens.
        assert!(!ki.tombstone(r(8)));
        assert_eq!(ki.modified(), r(7));
        ki.put(r(9));
        ki.put(r(11));
        assert!(ki.tombstone(r(15)));
        assert_eq!(ki.generations().len(), 3);
        assert_eq!(ki.generations()[1].revs, vec![r(9), r(11), r(15)]);
        assert_eq!(ki.generations()[1].ver, 3);
        assert!(!KeyIndex::new().tombstone(r(1)));
    }

    #[test]
    #[should_panic]
    fn put_must_increase() {
        let mut ki = KeyIndex::new();
        ki.put(r(5));
        ki.put(r(5));
    }

    fn gen(created: i64, ver: i64, revs: &[Revision]) -> Generation {
        Generation {
            ver,
            created: r(created),
            revs: revs.to_vec(),
        }
    }

    /// etcd's TestKeyIndexCompactAndKeep table: (compact rev, generations, kept).
    fn compact_table() -> Vec<(i64, Vec<Generation>, Vec<Revision>)> {
        let g1 = |revs: &[Revision]| gen(2, 3, revs);
        let g2 = |revs: &[Revision]| gen(8, 3, revs);
        let g3 = |revs: &[Revision]| gen(14, 3, revs);
        let s14 = Revision::new(14, 1);
        let full1 = [r(2), r(4), r(6)];
        let full2 = [r(8), r(10), r(12)];
        let full3 = [r(14), s14, r(16)];
        let e = Generation::default();
        vec![
            (
                1,
                vec![g1(&full1), g2(&full2), g3(&full3), e.clone()],
                vec![],
            ),
            (
                2,
                vec![g1(&full1), g2(&full2), g3(&full3), e.clone()],
                vec![r(2)],
            ),
            (
                3,
                vec![g1(&full1), g2(&full2), g3(&full3), e.clone()],
                vec![r(2)],
            ),
            (
                4,
                vec![g1(&[r(4), r(6)]), g2(&full2), g3(&full3), e.clone()],
                vec![r(4)],
            ),
            (
                5,
                vec![g1(&[r(4), r(6)]), g2(&full2), g3(&full3), e.clone()],
                vec![r(4)],
            ),
            (6, vec![g2(&full2), g3(&full3), e.clone()], vec![]),
            (7, vec![g2(&full2), g3(&full3), e.clone()], vec![]),
            (8, vec![g2(&full2), g3(&full3), e.clone()], vec![r(8)]),
            (9, vec![g2(&full2), g3(&full3), e.clone()], vec![r(8)]),
            (
                10,
                vec![g2(&[r(10), r(12)]), g3(&full3), e.clone()],
                vec![r(10)],
            ),
            (
                11,
                vec![g2(&[r(10), r(12)]), g3(&full3), e.clone()],
                vec![r(10)],
            ),
            (12, vec![g3(&full3), e.clone()], vec![]),
            (13, vec![g3(&full3), e.clone()], vec![]),
            (14, vec![g3(&[s14, r(16)]), e.clone()], vec![s14]),
            (15, vec![g3(&[s14, r(16)]), e.clone()], vec![s14]),
            (16, vec![e], vec![]),
        ]
    }

    fn check_step(ki: &mut KeyIndex, at: i64, want_gens: &[Generation], want_keep: &[Revision]) {
        let want_keep: HashSet<Revision> = want_keep.iter().copied().collect();
        let before = ki.clone();
        let kept: HashSet<Revision> = ki.kept_at(at).into_iter().collect();
        assert!(ki.same_history(&before), "keep({at}) changed the key");
        assert_eq!(kept, want_keep, "keep({at})");
        let mut avail = HashSet::new();
        ki.compact(at, &mut avail);
        assert_eq!(ki.generations(), want_gens, "compact({at})");
        assert_eq!(ki.modified(), r(16));
        assert_eq!(avail, want_keep, "compact({at}) available");
    }

    #[test]
    fn compact_and_keep_continuous() {
        let mut ki = test_key_index();
        for (at, gens, keep) in compact_table() {
            check_step(&mut ki, at, &gens, &keep);
        }
        assert!(ki.is_empty());
    }

    #[test]
    fn compact_and_keep_jumps() {
        let mut ki = test_key_index();
        for (i, (at, gens, keep)) in compact_table().into_iter().enumerate() {
            if (i % 2 == 0 && i < 6) || (i % 2 == 1 && i > 6) {
                check_step(&mut ki, at, &gens, &keep);
            }
        }
    }

    #[test]
    fn compact_and_keep_once() {
        for (at, gens, keep) in compact_table() {
            let mut ki = test_key_index();
            check_step(&mut ki, at, &gens, &keep);
        }
    }

    #[test]
    fn compact_beyond_last_revision_keeps_the_live_version() {
        let mut ki = KeyIndex::new();
        ki.put(r(1));
        ki.put(r(2));
        let mut avail = HashSet::new();
        ki.compact(3, &mut avail);
        assert_eq!(ki.generations(), &[gen(1, 2, &[r(2)])]);
        assert_eq!(avail, [r(2)].into_iter().collect());
        assert_eq!(ki.get(3).map(|k| k.version), Some(2));
    }

    #[test]
    fn is_empty_and_find_generation() {
        assert!(KeyIndex::new().is_empty());
        let mut ki = KeyIndex::new();
        ki.put(r(1));
        assert!(!ki.is_empty());
        assert!(ki.tombstone(r(2)));
        assert!(!ki.is_empty());
        ki.compact(2, &mut HashSet::new());
        assert!(ki.is_empty());

        let ki = test_key_index();
        // As etcd's TestKeyIndexFindGeneration: which generation answers each revision.
        let want: [(i64, Option<i64>); 17] = [
            (0, None),
            (1, None),
            (2, Some(2)),
            (3, Some(2)),
            (4, Some(2)),
            (5, Some(2)),
            (6, None),
            (7, None),
            (8, Some(8)),
            (9, Some(8)),
            (10, Some(8)),
            (11, Some(8)),
            (12, None),
            (13, None),
            (14, Some(14)),
            (15, Some(14)),
            (16, None),
        ];
        for (rev, created) in want {
            assert_eq!(
                ki.find_generation(rev).map(|g| g.created.main),
                created,
                "find_generation({rev})"
            );
        }
    }

    #[test]
    fn undo_restores_the_previous_history() {
        let base = test_key_index();
        let mut ki = base.clone();
        ki.put(r(17));
        ki.undo_put(r(17));
        assert!(ki.same_history(&base));
        assert_eq!(ki.generations(), base.generations());

        let mut ki = KeyIndex::new();
        ki.put(r(3));
        let one = ki.clone();
        ki.put(r(4));
        assert!(ki.tombstone(Revision::new(4, 1)));
        ki.put(Revision::new(4, 2));
        ki.undo_put(Revision::new(4, 2));
        ki.undo_tombstone(Revision::new(4, 1));
        ki.undo_put(r(4));
        assert!(ki.same_history(&one));
        ki.undo_put(r(3));
        assert!(ki.is_empty());
    }

    #[test]
    #[should_panic]
    fn undo_of_an_older_revision_panics() {
        let mut ki = KeyIndex::new();
        ki.put(r(3));
        ki.put(r(4));
        ki.undo_put(r(3));
    }
}
