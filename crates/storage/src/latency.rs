//! A latency histogram the disk code fills with atomic adds, for the server
//! to export as etcd's `etcd_disk_*_duration_seconds` metrics without this
//! crate knowing about Prometheus. The buckets are etcd's for its disk
//! latencies: upper bounds of 1 ms doubling 14 times (1 ms .. 8.192 s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of finite buckets (etcd's `ExponentialBuckets(0.001, 2, 14)`).
pub const BUCKETS: usize = 14;

/// The upper bound of finite bucket `i`, in seconds: `0.001 * 2^i`.
pub fn upper_bound_seconds(i: usize) -> f64 {
    0.001 * f64::from(1u32 << i.min(31))
}

/// Observed durations: a count per bucket, their sum and number.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS + 1],
    /// Sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A copy of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Observations at or below each finite bound, cumulative as Prometheus
    /// reports them ([`upper_bound_seconds`] gives the bounds).
    pub cumulative: [u64; BUCKETS],
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// Records one duration: two relaxed atomic adds.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let secs = d.as_secs_f64();
        let slot = (0..BUCKETS)
            .find(|&i| secs <= upper_bound_seconds(i))
            .unwrap_or(BUCKETS);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current counts. Taken without a lock: a concurrent observation
    /// may show in the count but not yet in the sum, as in Prometheus'
    /// own clients.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = [0u64; BUCKETS];
        let mut running = 0u64;
        for (i, c) in cumulative.iter_mut().enumerate() {
            running += self.buckets[i].load(Ordering::Relaxed);
            *c = running;
        }
        LatencySnapshot {
            cumulative,
            count: running + self.buckets[BUCKETS].load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_etcds_and_cumulative() {
        assert_eq!(upper_bound_seconds(0), 0.001);
        assert_eq!(upper_bound_seconds(BUCKETS - 1), 8.192);
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "at or below 1 ms");
        assert_eq!(s.cumulative[1], 2);
        assert_eq!(s.cumulative[2], 3, "at or below 4 ms");
        assert_eq!(s.cumulative[BUCKETS - 1], 3);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 10.0045).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
