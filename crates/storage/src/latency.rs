//! A latency histogram that the disk and network code fill with atomic
//! adds, for the server to export as etcd's `*_duration_seconds` and
//! `*_time_seconds` metrics without the lower crates knowing about
//! Prometheus. Buckets are exponential with factor 2, as all of etcd's
//! latency histograms: [`LatencyHistogram::disk`] has etcd's disk buckets
//! (1 ms .. 8.192 s), [`LatencyHistogram::peer_round_trip`] its network
//! round-trip buckets (0.1 ms .. 3.2768 s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Observed durations: a count per bucket and their sum.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Upper bound of the first bucket, in seconds; each next one doubles.
    first_bound: f64,
    /// Observations per finite bucket (not cumulative), then one for `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// Sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A copy of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// The finite buckets' upper bounds, in seconds.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound, cumulative as Prometheus
    /// reports them.
    pub cumulative: Vec<u64>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::disk()
    }
}

impl LatencyHistogram {
    /// `finite` buckets whose upper bounds are `first_bound * 2^i` seconds
    /// (Prometheus' `ExponentialBuckets(first_bound, 2, finite)`).
    pub fn exponential(first_bound: f64, finite: usize) -> Self {
        LatencyHistogram {
            first_bound,
            buckets: (0..=finite).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// etcd's buckets for disk latencies (WAL fsync, backend commit).
    pub fn disk() -> Self {
        Self::exponential(0.001, 14)
    }

    /// etcd's buckets for the round-trip time to a peer.
    pub fn peer_round_trip() -> Self {
        Self::exponential(0.0001, 16)
    }

    fn finite(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The upper bound of finite bucket `i`, in seconds. (Doubling is exact
    /// in binary floating point: these equal Go's iterated products.)
    fn bound(&self, i: usize) -> f64 {
        self.first_bound * f64::from(1u32 << i.min(31))
    }

    /// Records one duration: two relaxed atomic adds.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let secs = d.as_secs_f64();
        let slot = (0..self.finite())
            .find(|&i| secs <= self.bound(i))
            .unwrap_or(self.finite());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current counts. Taken without a lock: a concurrent observation
    /// may show in its bucket but not yet in the sum, as in Prometheus' own
    /// clients.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0u64;
        let cumulative = (0..self.finite())
            .map(|i| {
                running += self.buckets[i].load(Ordering::Relaxed);
                running
            })
            .collect();
        LatencySnapshot {
            bounds: (0..self.finite()).map(|i| self.bound(i)).collect(),
            cumulative,
            count: running + self.buckets[self.finite()].load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl LatencySnapshot {
    /// The same histogram in milliseconds (bounds and sum), for etcd's
    /// `*_duration_milliseconds` metrics.
    pub fn in_milliseconds(&self) -> LatencySnapshot {
        LatencySnapshot {
            bounds: self.bounds.iter().map(|b| b * 1000.0).collect(),
            cumulative: self.cumulative.clone(),
            count: self.count,
            sum_seconds: self.sum_seconds * 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_etcds_and_cumulative() {
        let h = LatencyHistogram::disk();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.bounds.len(), 14);
        assert_eq!(s.bounds[0], 0.001);
        assert_eq!(s.bounds[13], 8.192);
        assert_eq!(s.cumulative[0], 2, "at or below 1 ms");
        assert_eq!(s.cumulative[1], 2);
        assert_eq!(s.cumulative[2], 3, "at or below 4 ms");
        assert_eq!(s.cumulative[13], 3);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 10.0045).abs() < 1e-9, "{}", s.sum_seconds);

        let rtt = LatencyHistogram::peer_round_trip().snapshot();
        assert_eq!(rtt.bounds.len(), 16);
        assert_eq!(rtt.bounds[0], 0.0001);
        assert_eq!(rtt.bounds[15], 3.2768);
    }
}
