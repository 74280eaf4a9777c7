//! etcd's id generator (`pkg/idutil`), for the ids a member hands out: the
//! request ids of forwarded proposals ([`crate::forwarded_proposals::Waiters`]) and the
//! ids of leases granted with id 0.
//!
//! An id is the member id's low 16 bits, then 40 bits of the generator's
//! start time in milliseconds, then an 8-bit counter that carries into the
//! time bits: ids differ across members and across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits below the member prefix: start time and counter.
const SUFFIX_BITS: u32 = 48;
/// Bits of the counter, below the start time.
const COUNT_BITS: u32 = 8;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

/// etcd's id generator for one member.
#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    /// A generator for `member_id`, started now.
    pub fn new(member_id: u64) -> Self {
        // A clock before 1970 only costs uniqueness across restarts.
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::at(member_id, ms)
    }

    /// A generator for `member_id` started at `unix_ms`.
    pub(crate) fn at(member_id: u64, unix_ms: u64) -> Self {
        let time_bits = SUFFIX_BITS - COUNT_BITS;
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((unix_ms & ((1 << time_bits) - 1)) << COUNT_BITS),
        }
    }

    /// The next id (etcd's `Generator.Next`): never 0.
    pub(crate) fn next(&self) -> u64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = self.prefix | (suffix & SUFFIX_MASK);
            if id != 0 {
                return id;
            }
        }
    }

    /// The next lease id: an id with the sign bit cleared, as etcd makes
    /// them; positive, never 0.
    pub fn next_lease_id(&self) -> i64 {
        loop {
            let id = self.next() & (i64::MAX as u64);
            if let Ok(id @ 1..) = i64::try_from(id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_member_prefixed_and_count_up() {
        let g = IdGenerator::at(0x1234_5678_9abc_def0, 1_700_000_000_000);
        let a = g.next();
        let b = g.next();
        assert_eq!(b, a + 1);
        assert_eq!(a >> 48, 0xdef0);
        // The start time sits above the 8-bit counter.
        assert_eq!(
            (a & SUFFIX_MASK) >> COUNT_BITS,
            1_700_000_000_000 & 0xff_ffff_ffff
        );
    }

    #[test]
    fn lease_ids_are_positive_unique_and_member_prefixed() {
        let g = IdGenerator::at(0x8e9e05c52164694d, 1_700_000_000_000);
        let a = g.next_lease_id();
        let b = g.next_lease_id();
        assert!(a > 0 && b == a + 1);
        assert_eq!((a as u64) >> 48, 0x694d);
        let g = IdGenerator::at(0xffff, u64::MAX);
        for _ in 0..1000 {
            assert!(g.next_lease_id() > 0);
        }
    }

    #[test]
    fn zero_is_skipped() {
        // Member prefix 0 and a counter about to wrap to 0.
        let g = IdGenerator::at(0, 0);
        g.suffix.store(SUFFIX_MASK, Ordering::Relaxed);
        assert_eq!(g.next(), 1);
    }
}
