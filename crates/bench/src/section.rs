//! Workload-specific parts of a report: what only one workload measures.
//!
//! The common report (report.rs) covers what every workload has: requests,
//! errors, one latency distribution, server counters. Some workloads measure
//! more: `watch` the delivery of every event to every watcher, `mixed` the
//! latency of reads and writes apart, `lease-keepalive` whether its leases
//! survived. Each such workload hands back [`Section`]s; the report puts each
//! under its own key in the JSON, prints its lines in the text, and a failed
//! check (an event never delivered, a lease that expired) makes the run
//! unclean (exit status 2) like a failed request does.

use serde::Serialize;

use crate::report::LatencyMs;
use crate::stats::Summary;

/// One workload-specific part of a report.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    /// Its key in the JSON report (`watch`, `ops`, `leases`).
    pub(crate) key: &'static str,
    /// Its JSON value.
    pub(crate) json: serde_json::Value,
    /// Its lines in the text report, already indented.
    pub(crate) text: Vec<String>,
    /// Checks that failed, one sentence each; any makes the run unclean.
    pub(crate) failed_checks: Vec<String>,
}

impl Section {
    /// A section with `json` (anything serializable; a value that cannot be
    /// serialized becomes an error string rather than a panic).
    pub(crate) fn new(key: &'static str, json: &impl Serialize) -> Section {
        let json = serde_json::to_value(json)
            .unwrap_or_else(|e| serde_json::Value::String(format!("cannot serialize: {e}")));
        Section {
            key,
            json,
            text: Vec::new(),
            failed_checks: Vec::new(),
        }
    }
}

/// Latency percentiles of `samples` (nanoseconds), `None` when there are none.
pub(crate) fn latency(mut samples: Vec<u64>) -> Option<LatencyMs> {
    samples.sort_unstable();
    Summary::from_sorted(&samples).map(|s| LatencyMs::from(&s))
}

/// One text line for a latency distribution, `label` padded to the report's
/// column (`-` when there were no samples).
pub(crate) fn latency_line(label: &str, l: Option<&LatencyMs>) -> String {
    match l {
        Some(l) => format!(
            "  {label:<11} mean {:.3}  min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.mean, l.min, l.p50, l.p90, l.p99, l.p999, l.max
        ),
        None => format!("  {label:<11} -"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lines() {
        let l = latency(vec![1_000_000, 3_000_000]).expect("samples");
        assert!((l.p50 - 1.0).abs() < 1e-9 && (l.max - 3.0).abs() < 1e-9);
        let line = latency_line("read ms", Some(&l));
        assert!(line.starts_with("  read ms     mean 2.000"), "{line}");
        assert_eq!(latency(Vec::new()).map(|l| l.p50), None);
        assert_eq!(latency_line("x", None), "  x           -");
    }

    #[test]
    fn a_report_shows_sections_and_fails_on_their_checks() {
        let outcome = crate::run::Outcome {
            latencies: vec![1_000_000],
            elapsed: std::time::Duration::from_secs(1),
            ..Default::default()
        };
        let mut r = crate::report::Report::new(
            "watch",
            vec![],
            1,
            1,
            1,
            serde_json::Value::Null,
            outcome,
            0,
        );
        assert!(r.clean());
        let mut s = Section::new("watch", &serde_json::json!({"missing": 1}));
        s.text.push("  watch       1 missing".into());
        s.failed_checks
            .push("1 of 2 watch events were never delivered".into());
        r.add_section(s);
        assert!(!r.clean(), "a failed check makes the run unclean");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid json");
        assert_eq!(json["watch"]["missing"], 1, "{json}");
        assert_eq!(
            json["failed_checks"][0],
            "1 of 2 watch events were never delivered"
        );
        let text = r.to_text();
        assert!(text.contains("  watch       1 missing\n"), "{text}");
        assert!(text.contains("  FAILED      1 of 2 watch events"), "{text}");
    }
}
