//! Latency statistics: exact nearest-rank percentiles over every recorded
//! sample, and the distribution (histogram, CDF) the reports draw.
//!
//! A run keeps every successful request's latency (20 000 puts are 160 KB of
//! `u64`s), so the percentiles are exact rather than histogram estimates: sort
//! once, then pick by rank. That keeps a reported p99 free of bucket error,
//! which matters when two servers are compared on the same numbers. The
//! histogram is only for the eye, so its buckets can be coarse.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A quantile as an exact fraction `num / den` (p99.9 is `999 / 1000`).
///
/// Integers rather than `f64` because `0.999 * n` rounds the wrong way for
/// some `n`, and an off-by-one rank at the tail moves p99.9 a lot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quantile {
    /// Numerator of the fraction.
    pub(crate) num: u64,
    /// Denominator of the fraction (never zero).
    pub(crate) den: u64,
}

impl Quantile {
    /// The median.
    pub(crate) const P50: Quantile = Quantile { num: 50, den: 100 };
    /// 90th percentile.
    pub(crate) const P90: Quantile = Quantile { num: 90, den: 100 };
    /// 99th percentile.
    pub(crate) const P99: Quantile = Quantile { num: 99, den: 100 };
    /// 99.9th percentile.
    pub(crate) const P999: Quantile = Quantile {
        num: 999,
        den: 1000,
    };
}

/// The nearest-rank percentile of `sorted` (ascending): the smallest sample
/// such that at least `q` of all samples are less than or equal to it.
/// `None` for an empty slice.
pub(crate) fn percentile(sorted: &[u64], q: Quantile) -> Option<u64> {
    debug_assert!(q.den > 0 && q.num <= q.den, "quantile out of range");
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    // rank = ceil(num * n / den), at least 1 (the minimum for q = 0).
    let rank = (q.num * n).div_ceil(q.den).max(1);
    let idx = usize::try_from(rank - 1).ok()?;
    sorted.get(idx).copied()
}

/// Summary of one run's latencies, in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Number of samples.
    pub(crate) count: u64,
    /// Smallest sample.
    pub(crate) min: u64,
    /// Arithmetic mean (rounded down).
    pub(crate) mean: u64,
    /// Median.
    pub(crate) p50: u64,
    /// 90th percentile.
    pub(crate) p90: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// 99.9th percentile.
    pub(crate) p999: u64,
    /// Largest sample.
    pub(crate) max: u64,
}

impl Summary {
    /// Summarizes `samples` (nanoseconds, any order); `None` when there are none.
    #[cfg(test)]
    pub(crate) fn from_samples(mut samples: Vec<u64>) -> Option<Summary> {
        samples.sort_unstable();
        Summary::from_sorted(&samples)
    }

    /// Summarizes `samples` (nanoseconds, ascending); `None` when there are none.
    pub(crate) fn from_sorted(samples: &[u64]) -> Option<Summary> {
        let first = *samples.first()?;
        let last = *samples.last()?;
        // u128: 20 000 samples of up to a minute each overflow no u64, but a
        // long soak run could, and the sum costs nothing extra.
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        let count = samples.len() as u64;
        let mean = u64::try_from(sum / u128::from(count)).unwrap_or(u64::MAX);
        Some(Summary {
            count,
            min: first,
            mean,
            p50: percentile(samples, Quantile::P50)?,
            p90: percentile(samples, Quantile::P90)?,
            p99: percentile(samples, Quantile::P99)?,
            p999: percentile(samples, Quantile::P999)?,
            max: last,
        })
    }
}

/// One bar of a latency histogram: the requests slower than the previous
/// bar's bound and at most as slow as this one's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bucket {
    /// Upper bound (inclusive), milliseconds.
    pub(crate) le_ms: f64,
    /// Requests in the bucket.
    pub(crate) count: u64,
}

/// Bars in the reports' latency histograms (etcd's benchmark prints 10).
pub(crate) const HISTOGRAM_BUCKETS: usize = 12;

/// A histogram of `sorted` (ascending nanoseconds) in `buckets` bars whose
/// bounds grow geometrically from the fastest sample to the slowest.
///
/// Geometric rather than etcd's linear bounds because latencies are skewed:
/// with linear bounds one slow outlier puts nearly every request in the
/// first bar. The last bound is the maximum itself, so every sample is counted.
pub(crate) fn histogram(sorted: &[u64], buckets: usize) -> Vec<Bucket> {
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let buckets = if min == max { 1 } else { buckets.max(1) };
    let lo = min.max(1) as f64;
    let ratio = max as f64 / lo;
    let mut out = Vec::with_capacity(buckets);
    let mut counted = 0;
    for k in 1..=buckets {
        let bound = if k == buckets {
            max as f64
        } else {
            lo * ratio.powf(k as f64 / buckets as f64)
        };
        let upto = sorted.partition_point(|&s| s as f64 <= bound);
        out.push(Bucket {
            le_ms: bound / 1e6,
            count: (upto - counted) as u64,
        });
        counted = upto;
    }
    out
}

/// One point of a latency CDF.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CdfPoint {
    /// Percent of requests at most this slow.
    pub(crate) percent: f64,
    /// Latency, milliseconds.
    pub(crate) ms: f64,
}

/// The CDF of `sorted` (ascending nanoseconds) at fixed percentiles, dense
/// in the tail where servers differ.
pub(crate) fn cdf(sorted: &[u64]) -> Vec<CdfPoint> {
    // In hundredths of a percent, so p99.99 is exact (see `Quantile`).
    const AT: [u64; 22] = [
        0, 100, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 7500, 8000, 8500, 9000, 9500, 9750,
        9900, 9950, 9990, 9995, 9999, 10000,
    ];
    let mut out: Vec<CdfPoint> = Vec::with_capacity(AT.len());
    for num in AT {
        let q = Quantile { num, den: 10_000 };
        let Some(v) = percentile(sorted, q) else {
            break;
        };
        out.push(CdfPoint {
            percent: num as f64 / 100.0,
            ms: ms(v),
        });
    }
    out
}

/// Nanoseconds of a duration, saturating (a run never lasts 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds as fractional milliseconds, for reports.
pub(crate) fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(num: u64, den: u64) -> Quantile {
        Quantile { num, den }
    }

    #[test]
    fn empty_has_no_percentile_or_summary() {
        assert_eq!(percentile(&[], Quantile::P50), None);
        assert_eq!(Summary::from_samples(Vec::new()), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        for quant in [q(0, 100), Quantile::P50, Quantile::P999, q(1, 1)] {
            assert_eq!(percentile(&[7], quant), Some(7));
        }
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, Quantile::P50), Some(50));
        assert_eq!(percentile(&v, Quantile::P90), Some(90));
        // 0.99 * 100 is 99 exactly with integer math (f64 gives 99.000...01
        // for some n, whose ceiling would be 100).
        assert_eq!(percentile(&v, Quantile::P99), Some(99));
        assert_eq!(percentile(&v, Quantile::P999), Some(100));
        assert_eq!(percentile(&v, q(0, 1)), Some(1));
        assert_eq!(percentile(&v, q(1, 1)), Some(100));
    }

    #[test]
    fn nearest_rank_rounds_up_between_samples() {
        // 10 samples: p50 is rank 5, p90 rank 9, p99 rank ceil(9.9) = 10.
        let v: Vec<u64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&v, Quantile::P50), Some(50));
        assert_eq!(percentile(&v, Quantile::P90), Some(90));
        assert_eq!(percentile(&v, Quantile::P99), Some(100));
        // 3 samples: p50 is rank ceil(1.5) = 2.
        assert_eq!(percentile(&[1, 2, 3], Quantile::P50), Some(2));
    }

    #[test]
    fn p999_of_twenty_thousand() {
        let v: Vec<u64> = (1..=20_000).collect();
        assert_eq!(percentile(&v, Quantile::P999), Some(19_980));
        assert_eq!(percentile(&v, Quantile::P99), Some(19_800));
    }

    #[test]
    fn summary_sorts_and_averages() {
        let s = Summary::from_samples(vec![5, 1, 4, 2, 3]).expect("non-empty");
        assert_eq!(
            s,
            Summary {
                count: 5,
                min: 1,
                mean: 3,
                p50: 3,
                p90: 5,
                p99: 5,
                p999: 5,
                max: 5
            }
        );
    }

    #[test]
    fn summary_mean_does_not_overflow() {
        let s = Summary::from_samples(vec![u64::MAX, u64::MAX]).expect("non-empty");
        assert_eq!(s.mean, u64::MAX);
    }

    #[test]
    fn histogram_counts_every_sample_once() {
        assert!(histogram(&[], 10).is_empty());
        assert_eq!(
            histogram(&[5_000_000, 5_000_000], 10),
            [Bucket {
                le_ms: 5.0,
                count: 2
            }]
        );
        // 1 ms to 1024 ms in 10 buckets: bounds 2, 4, ... 1024 ms (up to
        // float rounding, so no sample sits on an inner bound here).
        let v = [
            1_000_000,
            1_500_000,
            3_000_000,
            3_900_000,
            400_000_000,
            1_024_000_000,
        ];
        let h = histogram(&v, 10);
        assert_eq!(h.len(), 10);
        assert_eq!(
            h.iter().map(|b| b.count).collect::<Vec<_>>(),
            [2, 2, 0, 0, 0, 0, 0, 0, 1, 1]
        );
        assert!((h[0].le_ms - 2.0).abs() < 1e-9);
        assert!((h[4].le_ms - 32.0).abs() < 1e-9);
        assert_eq!(h[9].le_ms, 1024.0);
        assert!(h.windows(2).all(|w| w[0].le_ms < w[1].le_ms));
    }

    #[test]
    fn cdf_is_monotonic_and_ends_at_the_maximum() {
        let v: Vec<u64> = (1..=10_000).map(|i| i * 1000).collect();
        let c = cdf(&v);
        assert_eq!(
            c[0],
            CdfPoint {
                percent: 0.0,
                ms: 0.001
            }
        );
        let last = c.last().expect("points");
        assert_eq!((last.percent, last.ms), (100.0, 10.0));
        assert!(c.iter().any(|p| p.percent == 99.99 && p.ms == 9.999));
        assert!(c
            .windows(2)
            .all(|w| w[0].percent < w[1].percent && w[0].ms <= w[1].ms));
        assert!(cdf(&[]).is_empty());
    }

    #[test]
    fn unit_conversions() {
        assert_eq!(nanos(Duration::from_micros(1500)), 1_500_000);
        assert!((ms(1_500_000) - 1.5).abs() < 1e-12);
    }
}
