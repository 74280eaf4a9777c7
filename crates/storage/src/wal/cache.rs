//! Entries kept in memory: the ones submitted but not yet written, and a
//! bounded tail of recently written ones.
//!
//! Raft expects an appended entry to be readable as soon as `submit`
//! returns, before the writer thread has put it on disk, so unwritten
//! entries live here until written. Written entries stay while they fit in
//! the byte budget: the recent tail is what leaders replicate and what the
//! state machine applies next, and serving it from memory saves a pread.
//!
//! Each entry carries the `op` number of the submission that produced it, so
//! the writer only marks as written the version it actually wrote (an entry
//! may be truncated and re-appended with new contents in the meantime).

use std::collections::BTreeMap;

use bytes::Bytes;

#[derive(Debug)]
struct Cached {
    op: u64,
    data: Bytes,
    written: bool,
}

/// Submitted and recent entries by index.
#[derive(Debug)]
pub(crate) struct EntryCache {
    map: BTreeMap<u64, Cached>,
    /// Payload bytes of written (evictable) entries.
    written_bytes: usize,
    /// Budget for `written_bytes`.
    budget: usize,
}

impl EntryCache {
    /// An empty cache keeping up to `budget` bytes of written entries.
    pub(crate) fn new(budget: usize) -> EntryCache {
        EntryCache {
            map: BTreeMap::new(),
            written_bytes: 0,
            budget,
        }
    }

    /// The payload of `index`, if cached.
    pub(crate) fn get(&self, index: u64) -> Option<Bytes> {
        self.map.get(&index).map(|c| c.data.clone())
    }

    /// Adds a submitted, not yet written, entry.
    pub(crate) fn insert_pending(&mut self, index: u64, op: u64, data: Bytes) {
        let old = self.map.insert(
            index,
            Cached {
                op,
                data,
                written: false,
            },
        );
        // Submission already truncated anything at or after `index`.
        debug_assert!(old.is_none(), "entry {index} appended over a live one");
        if let Some(old) = old {
            self.forget(&old);
        }
    }

    /// Drops entries `> index`.
    pub(crate) fn truncate_after(&mut self, index: u64) {
        let Some(from) = index.checked_add(1) else {
            return;
        };
        let dropped = self.map.split_off(&from);
        for c in dropped.values() {
            self.forget(c);
        }
    }

    /// Drops entries `<= index`.
    pub(crate) fn purge_up_to(&mut self, index: u64) {
        let kept = match index.checked_add(1) {
            Some(from) => self.map.split_off(&from),
            None => BTreeMap::new(),
        };
        let dropped = std::mem::replace(&mut self.map, kept);
        for c in dropped.values() {
            self.forget(c);
        }
    }

    /// The writer put version `op` of `index` on disk: it may now be evicted.
    pub(crate) fn mark_written(&mut self, index: u64, op: u64) {
        if let Some(c) = self.map.get_mut(&index) {
            if c.op == op && !c.written {
                c.written = true;
                self.written_bytes += c.data.len();
            }
        }
    }

    /// Evicts the oldest written entries until within budget. Unwritten
    /// entries always form the newest suffix (appends are contiguous and a
    /// re-append first truncates), so eviction stops at the first one.
    pub(crate) fn evict(&mut self) {
        while self.written_bytes > self.budget {
            match self.map.first_entry() {
                Some(e) if e.get().written => {
                    let c = e.remove();
                    self.written_bytes -= c.data.len();
                }
                _ => break,
            }
        }
    }

    /// Number of cached entries (tests and debugging).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn forget(&mut self, c: &Cached) {
        if c.written {
            self.written_bytes -= c.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn pending_entries_are_never_evicted() {
        let mut c = EntryCache::new(10);
        for i in 0..5 {
            c.insert_pending(i, i, b(8));
        }
        c.evict();
        assert_eq!(c.len(), 5);
        for i in 0..3 {
            c.mark_written(i, i);
        }
        c.evict();
        // 24 written bytes, budget 10: entries 0 and 1 go, 2 stays.
        assert_eq!(c.len(), 3);
        assert!(c.get(1).is_none());
        assert!(c.get(2).is_some());
    }

    #[test]
    fn stale_version_is_not_marked_written() {
        let mut c = EntryCache::new(0);
        c.insert_pending(1, 10, b(4));
        c.truncate_after(0);
        c.insert_pending(1, 11, b(5));
        c.mark_written(1, 10);
        c.evict();
        assert_eq!(c.get(1).map(|d| d.len()), Some(5));
        c.mark_written(1, 11);
        c.evict();
        assert!(c.get(1).is_none());
    }

    #[test]
    fn purge_and_truncate_keep_accounting() {
        let mut c = EntryCache::new(100);
        for i in 0..10 {
            c.insert_pending(i, i, b(10));
            c.mark_written(i, i);
        }
        c.purge_up_to(4);
        c.truncate_after(7);
        assert_eq!(c.len(), 3);
        assert_eq!(c.written_bytes, 30);
        c.purge_up_to(u64::MAX);
        assert_eq!((c.len(), c.written_bytes), (0, 0));
    }
}
