//! A run's time series: per fixed interval, the requests that finished in it
//! and their latency percentiles.
//!
//! The driver records when each request finished; cutting those records into
//! intervals afterwards (rather than rolling counters during the run) keeps
//! the clients' hot loop to one `Vec::push` and makes the series add up to
//! the run's totals exactly, which the tests check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{ms, percentile, Quantile};

/// A request that succeeded, as the driver records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When it finished, nanoseconds since the run started.
    pub(crate) end_ns: u64,
    /// How long it took, nanoseconds.
    pub(crate) latency_ns: u64,
}

/// One interval of the series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interval {
    /// Start of the interval, seconds since the run started.
    pub(crate) t_s: f64,
    /// Length of the interval, seconds (the last one is usually shorter).
    pub(crate) width_s: f64,
    /// Requests that succeeded in it.
    pub(crate) ok: u64,
    /// Requests that failed in it.
    pub(crate) errors: u64,
    /// Median latency of its successes, milliseconds (`None` if there were none).
    pub(crate) p50_ms: Option<f64>,
    /// 99th percentile latency of its successes, milliseconds.
    pub(crate) p99_ms: Option<f64>,
    /// Slowest success, milliseconds.
    pub(crate) max_ms: Option<f64>,
}

/// Cuts a run of length `elapsed` into intervals of `width` and files each
/// success (`samples`) and failure (`error_ends`, finishing times in
/// nanoseconds since the start) under the interval it finished in.
///
/// `samples` is sorted in place (by finishing time).
pub(crate) fn build(
    samples: &mut [Sample],
    error_ends: &[u64],
    width: Duration,
    elapsed: Duration,
) -> Vec<Interval> {
    let width_ns = crate::stats::nanos(width).max(1);
    let elapsed_ns = crate::stats::nanos(elapsed);
    // At least one interval, and enough to hold every record even if a
    // clock reading came out a little past `elapsed`.
    let last_end = samples
        .iter()
        .map(|s| s.end_ns)
        .chain(error_ends.iter().copied())
        .max()
        .unwrap_or(0);
    let run_ns = elapsed_ns.max(last_end);
    let count = run_ns.div_ceil(width_ns).max(1);
    let index = |end_ns: u64| (end_ns / width_ns).min(count - 1) as usize;

    let mut errors = vec![0u64; count as usize];
    for &end in error_ends {
        errors[index(end)] += 1;
    }
    samples.sort_unstable_by_key(|s| s.end_ns);
    let mut out = Vec::with_capacity(count as usize);
    let mut rest: &[Sample] = samples;
    let mut latencies = Vec::new();
    for (i, errors) in errors.into_iter().enumerate() {
        let take = rest.partition_point(|s| index(s.end_ns) <= i);
        let (these, later) = rest.split_at(take);
        rest = later;
        latencies.clear();
        latencies.extend(these.iter().map(|s| s.latency_ns));
        latencies.sort_unstable();
        let start_ns = i as u64 * width_ns;
        let end_ns = if i as u64 + 1 == count {
            run_ns.max(start_ns)
        } else {
            start_ns + width_ns
        };
        out.push(Interval {
            t_s: start_ns as f64 / 1e9,
            width_s: (end_ns - start_ns) as f64 / 1e9,
            ok: these.len() as u64,
            errors,
            p50_ms: percentile(&latencies, Quantile::P50).map(ms),
            p99_ms: percentile(&latencies, Quantile::P99).map(ms),
            max_ms: latencies.last().copied().map(ms),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(end_ms: u64, latency_ms: u64) -> Sample {
        Sample {
            end_ns: end_ms * 1_000_000,
            latency_ns: latency_ms * 1_000_000,
        }
    }

    #[test]
    fn records_land_in_the_interval_they_finished_in() {
        let mut samples = vec![s(2500, 7), s(10, 1), s(999, 3), s(1000, 5), s(1500, 9)];
        let errors = [1_999_000_000, 2_100_000_000, 400];
        let series = build(
            &mut samples,
            &errors,
            Duration::from_secs(1),
            Duration::from_millis(2600),
        );
        assert_eq!(series.len(), 3);
        assert_eq!(
            series.iter().map(|i| (i.ok, i.errors)).collect::<Vec<_>>(),
            [(2, 1), (2, 1), (1, 1)]
        );
        assert_eq!(
            (series[0].p50_ms, series[0].p99_ms, series[0].max_ms),
            (Some(1.0), Some(3.0), Some(3.0))
        );
        assert_eq!(series[1].p50_ms, Some(5.0));
        assert_eq!(series[1].max_ms, Some(9.0));
        assert_eq!(series[2].t_s, 2.0);
        assert!((series[2].width_s - 0.6).abs() < 1e-9);
        assert_eq!(series[0].width_s, 1.0);
    }

    #[test]
    fn empty_intervals_and_empty_runs() {
        let mut samples = vec![s(3100, 2)];
        let series = build(
            &mut samples,
            &[],
            Duration::from_millis(500),
            Duration::from_millis(3200),
        );
        assert_eq!(series.len(), 7);
        assert_eq!(series.iter().map(|i| i.ok).sum::<u64>(), 1);
        assert_eq!(series[6].ok, 1);
        assert_eq!(series[0].p50_ms, None);
        let none = build(&mut [], &[], Duration::from_secs(1), Duration::ZERO);
        assert_eq!(none.len(), 1);
        assert_eq!((none[0].ok, none[0].errors, none[0].width_s), (0, 0, 0.0));
    }

    #[test]
    fn a_record_past_elapsed_is_still_counted() {
        let mut samples = vec![s(1200, 1)];
        let series = build(
            &mut samples,
            &[],
            Duration::from_secs(1),
            Duration::from_millis(900),
        );
        assert_eq!(series.iter().map(|i| i.ok).sum::<u64>(), 1);
    }
}
