//! Which entry indexes the log holds, and where each one is on disk.
//!
//! [`Bounds`] is the pure bookkeeping of the log's extent under append,
//! truncate-after and purge-up-to. It is used twice: for the *logical* log
//! (updated as batches are submitted, so `submit` can reject a
//! non-contiguous append on the spot) and, inside [`Positions`], for the
//! *on-disk* log (updated by the writer thread and by recovery, in log
//! order). Keeping one implementation makes replay and live operation agree
//! by construction.

use std::collections::VecDeque;

use super::{Result, WalError};

/// The extent of the log: live entries are `[first, next)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// First live entry; meaningful only once `next` is set.
    first: u64,
    /// The index the next appended entry must carry. `None` for a log that
    /// has never seen an entry or purge: its first append may start anywhere
    /// (a follower's log can begin after a snapshot).
    next: Option<u64>,
    /// Highest index ever purged.
    purged: Option<u64>,
}

impl Bounds {
    /// First live entry index, if any.
    pub(crate) fn first_index(&self) -> Option<u64> {
        match self.next {
            Some(n) if n > self.first => Some(self.first),
            _ => None,
        }
    }

    /// Last live entry index, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        match self.next {
            Some(n) if n > self.first => Some(n - 1),
            _ => None,
        }
    }

    /// Highest purged index, if any.
    pub(crate) fn purged_index(&self) -> Option<u64> {
        self.purged
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> u64 {
        self.next.map_or(0, |n| n - self.first)
    }

    /// Whether an entry with `index` may be appended now.
    pub(crate) fn check_append(&self, index: u64) -> Result<()> {
        if let Some(expected) = self.next {
            if index != expected {
                return Err(WalError::NonContiguous {
                    expected,
                    got: index,
                });
            }
        }
        if index == u64::MAX {
            return Err(WalError::InvalidRecord("entry index u64::MAX".into()));
        }
        Ok(())
    }

    /// Appends `index` (already checked).
    pub(crate) fn append(&mut self, index: u64) {
        debug_assert!(self.check_append(index).is_ok());
        if self.next.is_none() {
            self.first = index;
        }
        self.next = Some(index + 1);
    }

    /// Whether `truncate_after(index)` is allowed: it may not reach into
    /// purged entries (raft never truncates committed entries).
    pub(crate) fn check_truncate(&self, index: u64) -> Result<()> {
        match self.purged {
            Some(purged) if index < purged => Err(WalError::TruncatePurged { index, purged }),
            _ => Ok(()),
        }
    }

    /// Drops entries `> index`. Never moves `next` forward: truncating past
    /// the end is a no-op, not a hole.
    pub(crate) fn truncate_after(&mut self, index: u64) {
        if let Some(n) = self.next {
            let keep_to = index.saturating_add(1);
            if keep_to < n {
                self.next = Some(keep_to);
                // Only reachable in replay after older segments were deleted.
                self.first = self.first.min(keep_to);
            }
        }
    }

    /// Drops entries `<= index`. Purging past the end leaves an empty log
    /// whose next entry is `index + 1` (after installing a snapshot).
    pub(crate) fn purge_up_to(&mut self, index: u64) {
        self.purged = Some(self.purged.map_or(index, |p| p.max(index)));
        let from = index.saturating_add(1);
        match self.next {
            Some(n) if n > from => self.first = self.first.max(from),
            _ => {
                self.first = from;
                self.next = Some(from);
            }
        }
    }
}

/// Where one entry's record is: segment sequence number, byte offset of the
/// record and its total length. 16 bytes per entry is what bounds memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seq: u64,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

/// The on-disk log: [`Bounds`] plus one [`Loc`] per live entry.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    bounds: Bounds,
    /// `locs[i]` is entry `bounds.first + i`; always `bounds.len()` long.
    locs: VecDeque<Loc>,
}

impl Positions {
    /// The extent of the on-disk log.
    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Location of entry `index`, if live.
    pub(crate) fn get(&self, index: u64) -> Option<Loc> {
        let first = self.bounds.first_index()?;
        let i = usize::try_from(index.checked_sub(first)?).ok()?;
        self.locs.get(i).copied()
    }

    /// Records entry `index` at `loc`. Errors with the expected index when
    /// not contiguous.
    pub(crate) fn append(&mut self, index: u64, loc: Loc) -> Result<()> {
        self.bounds.check_append(index)?;
        self.bounds.append(index);
        self.locs.push_back(loc);
        self.check();
        Ok(())
    }

    /// Drops entries `> index`.
    pub(crate) fn truncate_after(&mut self, index: u64) {
        self.bounds.truncate_after(index);
        self.locs.truncate(self.bounds.len() as usize);
        self.check();
    }

    /// Drops entries `<= index`.
    pub(crate) fn purge_up_to(&mut self, index: u64) {
        let before = self.bounds.len();
        self.bounds.purge_up_to(index);
        let drop = before.saturating_sub(self.bounds.len()) as usize;
        self.locs.drain(..drop.min(self.locs.len()));
        // Raft purges in large steps; give the memory back.
        if self.locs.capacity() > 4 * self.locs.len() + 1024 {
            self.locs.shrink_to_fit();
        }
        self.check();
    }

    fn check(&self) {
        debug_assert_eq!(self.locs.len() as u64, self.bounds.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seq: u64) -> Loc {
        Loc {
            seq,
            offset: 0,
            len: 0,
        }
    }

    #[test]
    fn fresh_log_accepts_any_start_then_requires_contiguity() {
        let mut b = Bounds::default();
        assert_eq!(b.first_index(), None);
        b.check_append(10).unwrap();
        b.append(10);
        b.append(11);
        assert!(matches!(
            b.check_append(13),
            Err(WalError::NonContiguous {
                expected: 12,
                got: 13
            })
        ));
        assert!(b.check_append(11).is_err());
        assert_eq!((b.first_index(), b.last_index()), (Some(10), Some(11)));
    }

    #[test]
    fn truncate_never_creates_a_hole() {
        let mut b = Bounds::default();
        for i in 1..=5 {
            b.append(i);
        }
        b.truncate_after(9);
        assert_eq!(b.last_index(), Some(5));
        b.truncate_after(3);
        assert_eq!(b.last_index(), Some(3));
        b.check_append(4).unwrap();
        b.truncate_after(0);
        assert_eq!(b.first_index(), None);
        b.check_append(1).unwrap();
    }

    #[test]
    fn purge_inside_and_past_the_end() {
        let mut b = Bounds::default();
        for i in 1..=5 {
            b.append(i);
        }
        b.purge_up_to(2);
        assert_eq!((b.first_index(), b.last_index()), (Some(3), Some(5)));
        assert!(matches!(
            b.check_truncate(1),
            Err(WalError::TruncatePurged {
                index: 1,
                purged: 2
            })
        ));
        b.check_truncate(2).unwrap();
        b.purge_up_to(1); // older purge: no effect on the extent
        assert_eq!(b.first_index(), Some(3));
        b.purge_up_to(100);
        assert_eq!(b.first_index(), None);
        b.check_append(101).unwrap();
        assert!(b.check_append(6).is_err());
        assert_eq!(b.purged_index(), Some(100));
    }

    #[test]
    fn positions_follow_bounds() {
        let mut p = Positions::default();
        for i in 0..10 {
            p.append(i, loc(i)).unwrap();
        }
        p.truncate_after(6);
        p.append(7, loc(70)).unwrap();
        assert_eq!(p.get(7), Some(loc(70)));
        assert_eq!(p.get(8), None);
        p.purge_up_to(3);
        assert_eq!(p.get(3), None);
        assert_eq!(p.get(4), Some(loc(4)));
        assert!(p.append(9, loc(9)).is_err());
        p.purge_up_to(20);
        assert_eq!(p.get(7), None);
        p.append(21, loc(21)).unwrap();
        assert_eq!(p.get(21), Some(loc(21)));
    }

    #[test]
    fn replay_truncate_below_first_empties_the_log() {
        // After old segments are deleted, replay may meet a truncate point
        // below the first entry it has seen.
        let mut p = Positions::default();
        p.append(50, loc(1)).unwrap();
        p.truncate_after(40);
        assert_eq!(p.bounds().first_index(), None);
        p.append(41, loc(2)).unwrap();
        assert_eq!(p.get(41), Some(loc(2)));
    }
}
