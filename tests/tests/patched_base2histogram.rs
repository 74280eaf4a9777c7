//! Regression tests for Bramble's patch of base2histogram 0.2.3 (third_party/base2histogram.patch,
//! see third_party/README.md): when upstream fixes both, drop the copy and keep these tests.
//!
//! Both run in one test function, so nothing else in this process builds a scale first: the
//! memory check must see the first use.

use base2histogram::{Histogram, LogScale};

/// Upstream's first use built all 16 widths' scales (~26 MB resident); the patch builds the
/// width in use (a few KB). openraft creates these histograms in every `Raft`.
const MAX_FIRST_USE_GROWTH_KIB: u64 = 8 * 1024;

/// This process's resident set size, from /proc/self/status.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status")
}

#[test]
fn first_use_builds_one_scale_and_boundaries_hold_above_u32() {
    // Memory: first use of the default width, as openraft's runtime stats do.
    let before = resident_kib();
    let mut histogram: Histogram<()> = Histogram::new();
    histogram.record(1234);
    assert_eq!(histogram.total(), 1);
    let grown = resident_kib().saturating_sub(before);
    assert!(
        grown < MAX_FIRST_USE_GROWTH_KIB,
        "the first histogram grew the process by {grown} KiB: were all scales built at once?"
    );

    // Overflow: upstream computed bucket boundaries by shifting a usize, which overflows on
    // 32-bit targets (armv7) for every boundary above u32::MAX (a panic in debug builds).
    // Each value must fall in a bucket whose boundaries contain it, up to u64::MAX.
    let scale = LogScale::get(LogScale::DEFAULT_WIDTH);
    let lefts: Vec<u64> = (0..scale.num_buckets())
        .map(|i| scale.bucket_span(i).left())
        .collect();
    assert!(
        lefts.windows(2).all(|w| w[0] < w[1]),
        "bucket boundaries must increase: {lefts:?}"
    );
    assert!(
        lefts.last().is_some_and(|&l| l > u64::from(u32::MAX)),
        "the top buckets lie above u32::MAX"
    );
    let values = (0..64).flat_map(|k| {
        let v = 1u64 << k;
        [v - 1, v, v + 1]
    });
    for value in values.chain([u64::MAX]) {
        let span = scale.bucket_span(scale.calculate_bucket(value));
        let inside = if span.is_last() {
            span.left() <= value
        } else {
            span.left() <= value && value < span.right()
        };
        assert!(
            inside,
            "{value} in bucket {} [{}, {})",
            span.index(),
            span.left(),
            span.right()
        );
    }
    assert!(scale
        .bucket_span(scale.calculate_bucket(u64::MAX))
        .is_last());
}
