//! Latency statistics: exact nearest-rank percentiles over every recorded sample.
//!
//! A run keeps every successful request's latency (20 000 puts are 160 KB of
//! `u64`s), so the percentiles are exact rather than histogram estimates: sort
//! once, then pick by rank. That keeps a reported p99 free of bucket error,
//! which matters when two servers are compared on the same numbers.

use std::time::Duration;

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
    pub(crate) fn from_samples(mut samples: Vec<u64>) -> Option<Summary> {
        samples.sort_unstable();
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
            p50: percentile(&samples, Quantile::P50)?,
            p90: percentile(&samples, Quantile::P90)?,
            p99: percentile(&samples, Quantile::P99)?,
            p999: percentile(&samples, Quantile::P999)?,
            max: last,
        })
    }
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
    fn unit_conversions() {
        assert_eq!(nanos(Duration::from_micros(1500)), 1_500_000);
        assert!((ms(1_500_000) - 1.5).abs() < 1e-12);
    }
}
