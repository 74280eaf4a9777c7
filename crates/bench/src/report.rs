//! The result of a run, as text for people or one JSON object for scripts.
//!
//! Both forms come from the same [`Report`], so `scripts/compare-etcd` reads
//! exactly the numbers a person sees. Per-request figures divide by the
//! requests that *succeeded*: bytes written for a failed put are overhead
//! of the successful ones.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::conn::ServerStatus;
use crate::procfs::{CpuTicks, IoCounters, Memory};
use crate::run::{ErrorLog, Outcome};
use crate::series::Interval;
use crate::stats::{cdf, histogram, ms, Bucket, CdfPoint, Summary, HISTOGRAM_BUCKETS};

/// What ended a run: its request count or its duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Bound {
    /// `--total` requests.
    Total,
    /// `--duration` seconds.
    Duration,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LatencyMs {
    /// Arithmetic mean.
    pub(crate) mean: f64,
    /// Fastest request.
    pub(crate) min: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Slowest request.
    pub(crate) max: f64,
}

impl From<&Summary> for LatencyMs {
    fn from(s: &Summary) -> Self {
        LatencyMs {
            mean: ms(s.mean),
            min: ms(s.min),
            p50: ms(s.p50),
            p90: ms(s.p90),
            p99: ms(s.p99),
            p999: ms(s.p999),
            max: ms(s.max),
        }
    }
}

/// What one measured server process did during the run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProcessReport {
    /// The process id given with `--pid`.
    pub(crate) pid: u32,
    /// Its command name, to show which process was measured.
    pub(crate) name: String,
    /// Bytes it sent (or will send) to storage during the run.
    pub(crate) write_bytes: u64,
    /// The process's absolute `write_bytes` counter when the run started, so
    /// a script can take its own later reading (e.g. across the server's
    /// shutdown flush) and compute a delta from the same start.
    pub(crate) write_bytes_start: u64,
    /// The absolute `write_bytes` counter at the end (after `settle_ms`).
    pub(crate) write_bytes_end: u64,
    /// Of those, bytes truncated before they reached the disk.
    pub(crate) cancelled_write_bytes: u64,
    /// Bytes it passed to write syscalls (files and sockets alike).
    pub(crate) wchar: u64,
    /// Write syscalls made.
    pub(crate) syscw: u64,
    /// `write_bytes` per successful request: the SD-card wear figure.
    pub(crate) write_bytes_per_op: Option<f64>,
    /// `wchar` per successful request.
    pub(crate) wchar_per_op: Option<f64>,
    /// CPU time used (user + system), milliseconds.
    pub(crate) cpu_ms: f64,
    /// Of which in the kernel, milliseconds.
    pub(crate) cpu_system_ms: f64,
    /// CPU time per successful request, microseconds.
    pub(crate) cpu_us_per_op: Option<f64>,
    /// Resident memory after the run, KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident memory over the process's life, KiB.
    pub(crate) peak_rss_kib: u64,
}

impl ProcessReport {
    /// Builds the report from the counters at the start and end of a run
    /// with `ok` successes, and CPU ticks used during it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pid: u32,
        name: String,
        io_start: &IoCounters,
        io_end: &IoCounters,
        cpu: CpuTicks,
        ticks_per_sec: u64,
        mem: Memory,
        ok: u64,
    ) -> ProcessReport {
        let io = io_end.since(io_start);
        let tick_ms = 1000.0 / ticks_per_sec.max(1) as f64;
        let cpu_ms = (cpu.user + cpu.system) as f64 * tick_ms;
        ProcessReport {
            pid,
            name,
            write_bytes: io.write_bytes,
            write_bytes_start: io_start.write_bytes,
            write_bytes_end: io_end.write_bytes,
            cancelled_write_bytes: io.cancelled_write_bytes,
            wchar: io.wchar,
            syscw: io.syscw,
            write_bytes_per_op: per_op(io.write_bytes as f64, ok),
            wchar_per_op: per_op(io.wchar as f64, ok),
            cpu_ms,
            cpu_system_ms: cpu.system as f64 * tick_ms,
            cpu_us_per_op: per_op(cpu_ms * 1000.0, ok),
            rss_kib: mem.rss_kib,
            peak_rss_kib: mem.peak_rss_kib,
        }
    }
}

/// An endpoint's `Maintenance.Status` before and after the run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct EndpointReport {
    /// Before the run.
    pub(crate) before: ServerStatus,
    /// After the run (`None` if the server no longer answered).
    pub(crate) after: Option<ServerStatus>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    /// `put`, `range`, `txn-put` or `txn-cas`.
    pub(crate) workload: &'static str,
    /// What the run measured, from `--label` (e.g. `bramble` or `etcd`),
    /// for `bramble-bench report` and the HTML page.
    pub(crate) label: Option<String>,
    /// The endpoints given.
    pub(crate) endpoints: Vec<String>,
    /// Concurrent clients.
    pub(crate) clients: usize,
    /// gRPC connections they shared.
    pub(crate) conns: usize,
    /// Requests asked for; with `--duration`, the requests sent.
    pub(crate) total: u64,
    /// Whether `total` or `duration_s` bounded the run.
    pub(crate) bound: Bound,
    /// `--duration`, seconds (`None` when `--total` bounded the run).
    pub(crate) duration_s: Option<f64>,
    /// `--rate`: requests started per second across all clients, 0 for unlimited.
    pub(crate) rate: u64,
    /// The workload's own parameters (key and value sizes, ...).
    pub(crate) params: serde_json::Value,
    /// Requests that succeeded.
    pub(crate) ok: u64,
    /// Requests that failed, by code, with the first few messages.
    pub(crate) errors: ErrorLog,
    /// Requests still in flight when `--timeout` stopped the run.
    pub(crate) abandoned: u64,
    /// True if `--timeout` stopped the run before `total` requests finished.
    pub(crate) timed_out: bool,
    /// Seconds from the first request to the last response.
    pub(crate) elapsed_s: f64,
    /// Successful requests per second.
    pub(crate) throughput: f64,
    /// Latency of successful requests (`None` if none succeeded).
    pub(crate) latency_ms: Option<LatencyMs>,
    /// Their distribution: buckets with geometrically growing bounds.
    pub(crate) latency_histogram: Vec<Bucket>,
    /// Their distribution as latency at fixed percentiles.
    pub(crate) latency_cdf: Vec<CdfPoint>,
    /// Width of the intervals of `series`, seconds.
    pub(crate) interval_s: f64,
    /// Successes, failures and latency per interval (they add up to `ok`
    /// and `errors.count`).
    pub(crate) series: Vec<Interval>,
    /// txn-cas only: answered requests whose compare failed (the Else
    /// branch read the key instead of writing it). They are counted in `ok`
    /// too: the server did answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conflicts: Option<u64>,
    /// Workload-specific sections (watch delivery, per-operation latency,
    /// leases), each under its own key: see section.rs.
    #[serde(flatten)]
    pub(crate) sections: serde_json::Map<String, serde_json::Value>,
    /// The sections' text lines, printed after the latency line.
    #[serde(skip)]
    pub(crate) section_text: Vec<String>,
    /// Checks a workload made that failed (a watch event never delivered, a
    /// lease that expired); any makes the run unclean.
    pub(crate) failed_checks: Vec<String>,
    /// How long after the run the process counters were read, milliseconds
    /// (servers flush their backends on a timer: etcd every 100 ms,
    /// Bramble's checkpoint every second).
    pub(crate) settle_ms: u64,
    /// Each `--pid`'s counters.
    pub(crate) processes: Vec<ProcessReport>,
    /// Sum of `write_bytes_per_op` over all processes (a cluster's wear).
    pub(crate) write_bytes_per_op: Option<f64>,
    /// Each endpoint's status before and after.
    pub(crate) servers: Vec<EndpointReport>,
}

impl Report {
    /// Fills in the run's outcome; the caller adds processes and servers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        workload: &'static str,
        endpoints: Vec<String>,
        clients: usize,
        conns: usize,
        total: u64,
        params: serde_json::Value,
        outcome: Outcome,
        settle_ms: u64,
    ) -> Report {
        let ok = outcome.ok();
        let elapsed_s = outcome.elapsed.as_secs_f64();
        let mut sorted = outcome.latencies;
        sorted.sort_unstable();
        let latency_ms = Summary::from_sorted(&sorted).map(|s| LatencyMs::from(&s));
        Report {
            workload,
            label: None,
            endpoints,
            clients,
            conns,
            total,
            bound: Bound::Total,
            duration_s: None,
            rate: 0,
            params,
            ok,
            errors: outcome.errors,
            abandoned: outcome.abandoned,
            timed_out: outcome.timed_out,
            elapsed_s,
            throughput: if elapsed_s > 0.0 {
                ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency_ms,
            latency_histogram: histogram(&sorted, HISTOGRAM_BUCKETS),
            latency_cdf: cdf(&sorted),
            interval_s: 0.0,
            series: outcome.series,
            conflicts: None,
            sections: serde_json::Map::new(),
            section_text: Vec::new(),
            failed_checks: Vec::new(),
            settle_ms,
            processes: Vec::new(),
            write_bytes_per_op: None,
            servers: Vec::new(),
        }
    }

    /// Adds the measured processes and their summed bytes per request.
    pub(crate) fn set_processes(&mut self, processes: Vec<ProcessReport>) {
        self.write_bytes_per_op = if processes.is_empty() {
            None
        } else {
            per_op(
                processes.iter().map(|p| p.write_bytes as f64).sum(),
                self.ok,
            )
        };
        self.processes = processes;
    }

    /// Adds a workload-specific section (section.rs).
    pub(crate) fn add_section(&mut self, section: crate::section::Section) {
        self.sections.insert(section.key.to_string(), section.json);
        self.section_text.extend(section.text);
        self.failed_checks.extend(section.failed_checks);
    }

    /// True if every request asked for succeeded (and every workload check held).
    pub(crate) fn clean(&self) -> bool {
        self.errors.count == 0
            && !self.timed_out
            && self.ok == self.total
            && self.failed_checks.is_empty()
    }

    /// The report as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail;
        // fall back to an error object rather than panic if it ever does.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize report: {e}\"}}"))
    }

    /// The report as text for a terminal.
    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let versions: Vec<String> = self
            .servers
            .iter()
            .map(|e| format!("{} {}", e.before.endpoint, e.before.version))
            .collect();
        let bound = match (self.bound, self.duration_s) {
            (Bound::Duration, Some(d)) => format!("{d} s"),
            _ => format!("{} requests", self.total),
        };
        let _ = writeln!(
            s,
            "{}{}: {bound}{}, {} clients over {} connections to {} (version {})",
            self.label
                .as_deref()
                .map(|l| format!("[{l}] "))
                .unwrap_or_default(),
            self.workload,
            if self.rate > 0 {
                format!(" at {} req/s", self.rate)
            } else {
                String::new()
            },
            self.clients,
            self.conns,
            self.endpoints.join(","),
            if versions.is_empty() {
                "unknown".to_string()
            } else {
                versions.join(", ")
            }
        );
        let _ = writeln!(s, "  params      {}", self.params);
        let _ = writeln!(
            s,
            "  result      {} ok, {} errors{}, {:.2} s, {:.1} req/s (bound: {})",
            self.ok,
            self.errors.count,
            if self.timed_out {
                format!(", TIMED OUT ({} abandoned in flight)", self.abandoned)
            } else {
                String::new()
            },
            self.elapsed_s,
            self.throughput,
            match self.bound {
                Bound::Total => "--total",
                Bound::Duration => "--duration",
            }
        );
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                s,
                "  latency ms  mean {:.3}  min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.mean, l.min, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        s.push_str(&histogram_text(&self.latency_histogram));
        if let Some(n) = self.conflicts {
            let _ = writeln!(
                s,
                "  conflicts   {n} (failed compares: the key was read, not written)"
            );
        }
        for line in &self.section_text {
            let _ = writeln!(s, "{line}");
        }
        for check in &self.failed_checks {
            let _ = writeln!(s, "  FAILED      {check}");
        }
        for (code, n) in &self.errors.by_code {
            let _ = writeln!(s, "  errors      {n} x {code}");
        }
        for e in &self.errors.samples {
            let _ = writeln!(s, "    e.g. {e}");
        }
        for p in &self.processes {
            let _ = writeln!(
                s,
                "  pid {} ({}): write_bytes {} ({} per op), wchar {} ({} per op), cpu {:.0} ms ({} per op), rss {} (peak {})",
                p.pid,
                p.name,
                bytes(p.write_bytes as f64),
                opt(p.write_bytes_per_op, bytes),
                bytes(p.wchar as f64),
                opt(p.wchar_per_op, bytes),
                p.cpu_ms,
                opt(p.cpu_us_per_op, |v| format!("{v:.0} us")),
                bytes(p.rss_kib as f64 * 1024.0),
                bytes(p.peak_rss_kib as f64 * 1024.0),
            );
            if p.cancelled_write_bytes > 0 {
                let _ = writeln!(
                    s,
                    "    of which {} cancelled (truncated before writeback)",
                    bytes(p.cancelled_write_bytes as f64)
                );
            }
        }
        if self.processes.len() > 1 {
            let _ = writeln!(
                s,
                "  all pids    write_bytes {} per op",
                opt(self.write_bytes_per_op, bytes)
            );
        }
        for e in &self.servers {
            let after = e
                .after
                .as_ref()
                .map(|a| format!("{} (revision {})", bytes(a.db_size as f64), a.revision))
                .unwrap_or_else(|| "unknown".to_string());
            let _ = writeln!(
                s,
                "  db size     {}: {} (revision {}) -> {}",
                e.before.endpoint,
                bytes(e.before.db_size as f64),
                e.before.revision,
                after
            );
        }
        s
    }
}

/// Widest bar of the text histogram, in `∎`s (etcd's benchmark uses 40).
const BAR_WIDTH: u64 = 40;

/// A latency histogram as etcd's benchmark prints it: one line per bucket,
/// its upper bound, count and a bar of `∎` scaled to the fullest bucket.
pub(crate) fn histogram_text(buckets: &[Bucket]) -> String {
    let mut s = String::new();
    let Some(most) = buckets.iter().map(|b| b.count).max() else {
        return s;
    };
    let _ = writeln!(s, "  latency histogram (ms, upper bound [count]):");
    for b in buckets {
        let bar = (b.count * BAR_WIDTH).div_ceil(most.max(1));
        let _ = writeln!(
            s,
            "    {:>10.3} [{}]\t|{}",
            b.le_ms,
            b.count,
            "∎".repeat(usize::try_from(bar).unwrap_or(0))
        );
    }
    s
}

/// `total / ok`, or `None` when nothing succeeded.
fn per_op(total: f64, ok: u64) -> Option<f64> {
    (ok > 0).then(|| total / ok as f64)
}

/// Formats an optional number, `-` for none.
fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_string())
}

/// A byte count in B, KiB, MiB or GiB.
pub(crate) fn bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(latencies: Vec<u64>, errors: u64) -> Outcome {
        Outcome {
            latencies,
            errors: ErrorLog {
                count: errors,
                ..Default::default()
            },
            elapsed: Duration::from_secs(2),
            ..Default::default()
        }
    }

    #[test]
    fn text_has_the_histogram_and_the_bound() {
        let mut r = Report::new(
            "put",
            vec![],
            1,
            1,
            4,
            serde_json::Value::Null,
            outcome(vec![1_000_000, 2_000_000, 2_000_000, 8_000_000], 0),
            0,
        );
        assert_eq!(r.latency_histogram.iter().map(|b| b.count).sum::<u64>(), 4);
        let text = r.to_text();
        assert!(text.contains("latency histogram"), "{text}");
        // The fullest bucket (the two 2 ms requests) gets the full 40-bar width.
        let full = format!("|{}\n", "∎".repeat(40));
        assert!(text.contains(&full), "{text}");
        assert!(text.contains("put: 4 requests, 1 clients"), "{text}");
        r.bound = Bound::Duration;
        r.duration_s = Some(2.0);
        r.rate = 100;
        r.label = Some("etcd".into());
        let text = r.to_text();
        assert!(
            text.starts_with("[etcd] put: 2 s at 100 req/s, 1 clients"),
            "{text}"
        );
        assert!(text.contains("(bound: --duration)"), "{text}");
    }

    #[test]
    fn throughput_and_per_op_use_successes() {
        let mut r = Report::new(
            "put",
            vec!["127.0.0.1:2379".into()],
            4,
            1,
            5,
            serde_json::json!({"val_size": 256}),
            outcome(vec![1_000_000, 2_000_000, 3_000_000, 4_000_000], 1),
            0,
        );
        assert_eq!(r.ok, 4);
        assert!((r.throughput - 2.0).abs() < 1e-9);
        assert!(!r.clean());
        let io = IoCounters {
            write_bytes: 14_096,
            wchar: 400,
            ..Default::default()
        };
        let cpu = CpuTicks { user: 3, system: 1 };
        let start = IoCounters {
            write_bytes: 10_000,
            ..Default::default()
        };
        let p = ProcessReport::new(
            7,
            "etcd".into(),
            &start,
            &io,
            cpu,
            100,
            Memory::default(),
            r.ok,
        );
        assert_eq!((p.write_bytes_start, p.write_bytes_end), (10_000, 14_096));
        assert_eq!(p.write_bytes_per_op, Some(1024.0));
        assert_eq!(p.wchar_per_op, Some(100.0));
        assert!((p.cpu_ms - 40.0).abs() < 1e-9);
        assert_eq!(p.cpu_us_per_op, Some(10_000.0));
        r.set_processes(vec![p.clone(), p]);
        assert_eq!(r.write_bytes_per_op, Some(2048.0));
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid json");
        assert_eq!(json["latency_ms"]["p50"], 2.0);
        assert_eq!(json["processes"][0]["name"], "etcd");
        assert!(r.to_text().contains("2048 B per op") || r.to_text().contains("2.0 KiB per op"));
    }

    #[test]
    fn nothing_succeeded_has_no_per_op_figures() {
        let mut r = Report::new(
            "put",
            vec![],
            1,
            1,
            3,
            serde_json::Value::Null,
            outcome(vec![], 3),
            0,
        );
        assert!(r.latency_ms.is_none());
        let p = ProcessReport::new(
            1,
            "x".into(),
            &IoCounters::default(),
            &IoCounters::default(),
            CpuTicks::default(),
            100,
            Memory::default(),
            r.ok,
        );
        assert_eq!(p.write_bytes_per_op, None);
        r.set_processes(vec![p]);
        assert_eq!(r.write_bytes_per_op, None);
        assert!(r.to_text().contains("3 errors"));
    }

    #[test]
    fn conflicts_are_shown_only_for_txn_cas() {
        let mut r = Report::new(
            "put",
            vec![],
            1,
            1,
            1,
            serde_json::Value::Null,
            outcome(vec![1_000_000], 0),
            0,
        );
        assert!(!r.to_json().contains("conflicts"));
        assert!(!r.to_text().contains("conflicts"));
        r.workload = "txn-cas";
        r.conflicts = Some(0);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid json");
        assert_eq!(json["conflicts"], 0);
        assert!(r.to_text().contains("conflicts   0"));
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(5.0 * 1024.0 * 1024.0), "5.0 MiB");
    }
}
