//! The k8s workload's own part of the report: what the simulated cluster did, each
//! operation kind's numbers, and each watched prefix's writes and deliveries, as JSON,
//! text, and the checks that make a run unclean.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::ops::{OpKind, OpReport};
use super::watch::PrefixReport;
use crate::section::Section;

/// The k8s workload's own section of the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct K8sReport {
    /// Seconds setup took (creating the nodes and the first pods; not timed per request).
    pub(crate) setup_s: f64,
    /// Objects setup created: two per node, then the pods.
    pub(crate) setup_objects: u64,
    /// Pods that exist at the end (this run's).
    pub(crate) pods_at_end: u64,
    /// Pods created during the run (after setup).
    pub(crate) pods_created: u64,
    /// Pods deleted during the run.
    pub(crate) pods_deleted: u64,
    /// Events created.
    pub(crate) events_created: u64,
    /// Leases the lease manager granted for them.
    pub(crate) leases_granted: u64,
    /// Churn ticks skipped because 1000 pod creations or deletions were still in flight.
    pub(crate) churn_skipped: u64,
    /// Compactions done.
    pub(crate) compactions: u64,
    /// The last revision compacted to (0: none).
    pub(crate) compact_revision: i64,
    /// The revision the watches started after (the initial LIST's).
    pub(crate) watch_start_revision: i64,
    /// The last write's revision.
    pub(crate) last_write_revision: i64,
    /// True if a progress notification showed the watches caught up with the last write.
    pub(crate) watch_caught_up: bool,
    /// Each watched prefix's writes and delivered events.
    pub(crate) watch: Vec<PrefixReport>,
    /// Each kind of operation.
    pub(crate) ops: BTreeMap<&'static str, OpReport>,
}

impl K8sReport {
    /// The report's `k8s` section: this report, its text, and a failed check for any
    /// watch that missed events or never caught up.
    pub(crate) fn section(&self) -> Section {
        let mut section = Section::new("k8s", self);
        section.text = self.to_text().lines().map(str::to_string).collect();
        for p in &self.watch {
            if p.events != p.writes + p.expired {
                section.failed_checks.push(format!(
                    "the watch on {} delivered {} events for {} writes and {} expiries",
                    p.prefix, p.events, p.writes, p.expired
                ));
            }
        }
        if !self.watch_caught_up {
            section.failed_checks.push(format!(
                "the watches did not catch up with the last write (revision {})",
                self.last_write_revision
            ));
        }
        section
    }

    /// The section as text, one line per operation kind.
    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  k8s         setup {} objects in {:.1} s; pods created {}, deleted {}, at end {}; events {} on {} leases; {} compactions (to revision {}){}",
            self.setup_objects,
            self.setup_s,
            self.pods_created,
            self.pods_deleted,
            self.pods_at_end,
            self.events_created,
            self.leases_granted,
            self.compactions,
            self.compact_revision,
            if self.churn_skipped > 0 {
                format!("; {} churn ticks SKIPPED (server too slow)", self.churn_skipped)
            } else {
                String::new()
            },
        );
        let _ = writeln!(
            s,
            "  {:<14}{:>8}{:>7}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "op (ms)", "count", "errors", "conflicts", "p50", "p90", "p99", "max"
        );
        for kind in OpKind::ALL {
            let Some(op) = self.ops.get(kind.name()) else {
                continue;
            };
            if op.count == 0 && op.errors == 0 {
                continue;
            }
            let (p50, p90, p99, max) = op
                .latency_ms
                .as_ref()
                .map_or((0.0, 0.0, 0.0, 0.0), |l| (l.p50, l.p90, l.p99, l.max));
            let _ = writeln!(
                s,
                "  {:<14}{:>8}{:>7}{:>10}{p50:>10.2}{p90:>10.2}{p99:>10.2}{max:>10.2}",
                kind.name(),
                op.count,
                op.errors,
                op.conflicts,
            );
        }
        for p in &self.watch {
            let _ = writeln!(
                s,
                "  watch       {:<20} writes {:>7}  events {:>7}{}",
                p.prefix,
                p.writes,
                p.events,
                if p.expired > 0 {
                    format!("  (of which {} lease expiries)", p.expired)
                } else {
                    String::new()
                },
            );
        }
        if !self.watch_caught_up {
            let _ = writeln!(
                s,
                "  watch       DID NOT CATCH UP with the last write (revision {})",
                self.last_write_revision
            );
        }
        s
    }
}
