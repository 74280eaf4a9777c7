//! `bramble-bench report a.json b.json ...`: several runs' `--json` results
//! side by side, as a text table with ratios against the first, and
//! optionally as one HTML page with their charts overlaid.
//!
//! Results are read into [`RunResult`], which takes only the fields the
//! comparison shows and defaults the rest, so files from older versions (no
//! time series) or with other workloads' extra fields still load.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::report::{Bound, LatencyMs};
use crate::series::Interval;
use crate::stats::{Bucket, CdfPoint};

/// `report` flags.
#[derive(clap::Args, Debug)]
pub(crate) struct ReportArgs {
    /// Results of `bramble-bench --json` runs; the first is the baseline of the ratios.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also write one HTML page with every run's charts overlaid.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// Errors of a run, as `--json` writes them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorsResult {
    /// Failed requests.
    pub(crate) count: u64,
    /// Per gRPC status code.
    pub(crate) by_code: BTreeMap<String, u64>,
}

/// A measured server process, as `--json` writes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ProcessResult {
    /// Its pid.
    pub(crate) pid: u32,
    /// Its command name.
    pub(crate) name: String,
    /// Bytes written to storage per successful request.
    pub(crate) write_bytes_per_op: Option<f64>,
    /// CPU microseconds per successful request.
    pub(crate) cpu_us_per_op: Option<f64>,
    /// Resident memory after the run, KiB.
    pub(crate) rss_kib: u64,
}

/// The parts of one `--json` result the comparison and the page show.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RunResult {
    /// `put`, `range`, ...
    pub(crate) workload: String,
    /// `--label`, if given.
    pub(crate) label: Option<String>,
    /// Endpoints.
    pub(crate) endpoints: Vec<String>,
    /// Concurrent clients.
    pub(crate) clients: u64,
    /// gRPC connections.
    pub(crate) conns: u64,
    /// Requests asked for (or sent, with `--duration`).
    pub(crate) total: u64,
    /// What ended the run (absent in results from before `--duration`).
    pub(crate) bound: Option<Bound>,
    /// `--duration`.
    pub(crate) duration_s: Option<f64>,
    /// `--rate` (0: unlimited).
    pub(crate) rate: u64,
    /// The workload's own parameters.
    pub(crate) params: serde_json::Value,
    /// Requests that succeeded.
    pub(crate) ok: u64,
    /// Requests that failed.
    pub(crate) errors: ErrorsResult,
    /// True if `--timeout` cut the run short.
    pub(crate) timed_out: bool,
    /// Run time, seconds.
    pub(crate) elapsed_s: f64,
    /// Successful requests per second.
    pub(crate) throughput: f64,
    /// Latency percentiles.
    pub(crate) latency_ms: Option<LatencyMs>,
    /// Latency histogram.
    pub(crate) latency_histogram: Vec<Bucket>,
    /// Latency CDF.
    pub(crate) latency_cdf: Vec<CdfPoint>,
    /// Time series.
    pub(crate) series: Vec<Interval>,
    /// Measured processes.
    pub(crate) processes: Vec<ProcessResult>,
    /// Bytes written per request, summed over the processes.
    pub(crate) write_bytes_per_op: Option<f64>,
    /// What the endpoints' /metrics said (`--metrics`).
    pub(crate) server_metrics: Vec<crate::server_metrics::EndpointMetrics>,
}

impl RunResult {
    /// CPU per request summed over the measured processes (`None` without
    /// any), else over the endpoints' /metrics.
    pub(crate) fn cpu_us_per_op(&self) -> Option<f64> {
        if self.processes.is_empty() {
            return self.sum_of_metrics(|m| m.cpu_us_per_op);
        }
        sum(self.processes.iter().map(|p| p.cpu_us_per_op))
    }

    /// Resident memory summed over the measured processes, else over the
    /// endpoints' /metrics, MiB.
    pub(crate) fn rss_mib(&self) -> Option<f64> {
        if self.processes.is_empty() {
            return self.sum_of_metrics(|m| m.rss_bytes.map(|b| b as f64 / 1024.0 / 1024.0));
        }
        Some(self.processes.iter().map(|p| p.rss_kib as f64).sum::<f64>() / 1024.0)
    }

    /// `value` summed over the endpoints whose /metrics were read (`None`
    /// if there are none or one of them lacks it).
    fn sum_of_metrics(
        &self,
        value: impl Fn(&crate::server_metrics::EndpointMetrics) -> Option<f64>,
    ) -> Option<f64> {
        let read = self.server_metrics.iter().filter(|m| m.note.is_none());
        sum(read.map(value))
    }
}

/// Sum of the values, `None` if there are none or any is `None`.
fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut total = None;
    for v in values {
        total = Some(total.unwrap_or(0.0) + v?);
    }
    total
}

/// A result with the name it is shown under.
#[derive(Clone, Debug)]
pub(crate) struct Labelled {
    /// `--label`, else the file name.
    pub(crate) label: String,
    /// The result.
    pub(crate) run: RunResult,
}

/// Reads a `--json` result; labels it with its `--label` or `path`'s file name.
pub(crate) fn load(path: &Path) -> Result<Labelled> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let run: RunResult = serde_json::from_str(text.trim())
        .with_context(|| format!("{}: not a bramble-bench --json result", path.display()))?;
    let label = run.label.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    });
    Ok(Labelled { label, run })
}

/// The `report` subcommand.
pub(crate) fn run(args: &ReportArgs) -> Result<()> {
    let runs = args
        .files
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>>>()?;
    if runs.is_empty() {
        bail!("no results given");
    }
    print!("{}", table(&runs));
    if let Some(path) = &args.html {
        let file =
            std::fs::File::create(path).with_context(|| format!("--html {}", path.display()))?;
        crate::html::write_page(&runs, file)
            .with_context(|| format!("--html {}", path.display()))?;
    }
    Ok(())
}

/// One row of the table: a name and how to read it from a result.
struct Row {
    /// Shown in the first column.
    name: &'static str,
    /// The value, if the result has it.
    value: fn(&RunResult) -> Option<f64>,
    /// Decimal places.
    precision: usize,
    /// Whether a ratio against the first run means anything.
    ratio: bool,
}

impl Row {
    /// A row named `name` showing `value` with `precision` decimals, and its
    /// ratio to the first run's if `ratio`.
    const fn new(
        name: &'static str,
        value: fn(&RunResult) -> Option<f64>,
        precision: usize,
        ratio: bool,
    ) -> Row {
        Row {
            name,
            value,
            precision,
            ratio,
        }
    }
}

/// Rows of the comparison, in order.
const ROWS: &[Row] = &[
    Row::new("throughput req/s", |r| Some(r.throughput), 1, true),
    Row::new("ok", |r| Some(r.ok as f64), 0, false),
    Row::new("errors", |r| Some(r.errors.count as f64), 0, false),
    Row::new("p50 ms", |r| r.latency_ms.as_ref().map(|l| l.p50), 3, true),
    Row::new("p90 ms", |r| r.latency_ms.as_ref().map(|l| l.p90), 3, true),
    Row::new("p99 ms", |r| r.latency_ms.as_ref().map(|l| l.p99), 3, true),
    Row::new(
        "p99.9 ms",
        |r| r.latency_ms.as_ref().map(|l| l.p999),
        3,
        true,
    ),
    Row::new("max ms", |r| r.latency_ms.as_ref().map(|l| l.max), 3, true),
    Row::new("cpu us/op", RunResult::cpu_us_per_op, 1, true),
    Row::new("write B/op", |r| r.write_bytes_per_op, 0, true),
    Row::new("rss MiB", RunResult::rss_mib, 1, true),
];

/// The cells of the comparison: a header row, then one row per metric, with
/// each value after the first followed by its ratio to the first's.
pub(crate) fn cells(runs: &[Labelled]) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(ROWS.len() + 2);
    let mut header = vec![String::new()];
    header.extend(runs.iter().map(|r| r.label.clone()));
    out.push(header);
    let mut workload = vec!["workload".to_string()];
    workload.extend(runs.iter().map(|r| r.run.workload.clone()));
    out.push(workload);
    for row in ROWS {
        let base = runs.first().and_then(|r| (row.value)(&r.run));
        let mut line = vec![row.name.to_string()];
        for (i, r) in runs.iter().enumerate() {
            let cell = match (row.value)(&r.run) {
                None => "-".to_string(),
                Some(v) => {
                    let mut c = format!("{v:.prec$}", prec = row.precision);
                    if let (true, true, Some(b)) = (row.ratio, i > 0, base) {
                        if b != 0.0 {
                            let _ = write!(c, " ({:.2}x)", v / b);
                        }
                    }
                    c
                }
            };
            line.push(cell);
        }
        out.push(line);
    }
    out
}

/// The comparison as an aligned text table, plus each run's errors by code.
pub(crate) fn table(runs: &[Labelled]) -> String {
    let cells = cells(runs);
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            cells
                .iter()
                .map(|row| row.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in &cells {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:>width$}  ");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    for r in runs {
        for (code, n) in &r.run.errors.by_code {
            let _ = writeln!(s, "{}: {n} x {code}", r.label);
        }
        if r.run.timed_out {
            let _ = writeln!(s, "{}: TIMED OUT", r.label);
        }
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::procfs::{CpuTicks, IoCounters, Memory};
    use crate::report::{ProcessReport, Report};
    use crate::run::{ErrorLog, Outcome};
    use crate::series::{self, Sample};
    use std::time::Duration;

    /// A report of `n` requests of `ms` milliseconds each over 2 s, with
    /// one measured process that wrote `write_bytes`.
    pub(crate) fn report(label: &str, n: u64, ms: u64, write_bytes: u64) -> Report {
        let mut samples: Vec<Sample> = (0..n)
            .map(|i| Sample {
                end_ns: i * 2_000_000_000 / n,
                latency_ns: ms * 1_000_000,
            })
            .collect();
        let outcome = Outcome {
            latencies: samples.iter().map(|s| s.latency_ns).collect(),
            errors: ErrorLog {
                count: 1,
                by_code: [("Unavailable".to_string(), 1)].into(),
                samples: vec!["Unavailable: down".into()],
            },
            elapsed: Duration::from_secs(2),
            series: series::build(
                &mut samples,
                &[1_500_000_000],
                Duration::from_secs(1),
                Duration::from_secs(2),
            ),
            ..Default::default()
        };
        let mut r = Report::new(
            "put",
            vec!["127.0.0.1:2379".into()],
            2,
            1,
            n + 1,
            serde_json::json!({"val_size": 256}),
            outcome,
            100,
        );
        let io_end = IoCounters {
            write_bytes,
            ..Default::default()
        };
        r.set_processes(vec![ProcessReport::new(
            7,
            label.into(),
            &IoCounters::default(),
            &io_end,
            CpuTicks { user: 2, system: 0 },
            100,
            Memory {
                rss_kib: 2048,
                peak_rss_kib: 4096,
            },
            n,
        )]);
        r.label = Some(label.into());
        r.bound = Bound::Duration;
        r.duration_s = Some(2.0);
        r.rate = 50;
        r.interval_s = 1.0;
        r
    }

    #[test]
    fn json_round_trip_of_the_new_fields() {
        let r = report("bramble", 100, 2, 40_000);
        let back: RunResult = serde_json::from_str(&r.to_json()).expect("parses");
        assert_eq!(back.label.as_deref(), Some("bramble"));
        assert_eq!(back.bound, Some(Bound::Duration));
        assert_eq!((back.duration_s, back.rate), (Some(2.0), 50));
        assert_eq!(back.series, r.series);
        assert_eq!(back.latency_histogram, r.latency_histogram);
        assert_eq!(back.latency_cdf, r.latency_cdf);
        assert_eq!(back.latency_ms, r.latency_ms);
        assert_eq!(back.series.iter().map(|i| i.ok).sum::<u64>(), 100);
        assert_eq!(back.series.iter().map(|i| i.errors).sum::<u64>(), 1);
        assert_eq!(back.errors.by_code.get("Unavailable"), Some(&1));
        assert_eq!(back.processes[0].write_bytes_per_op, Some(400.0));
        // The fields scripts/compare-etcd reads with jq keep their names.
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("parses");
        for field in ["ok", "total", "throughput", "timed_out", "clients", "conns"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["processes"][0]["write_bytes_start"], 0);
        assert_eq!(json["bound"], "duration");
    }

    #[test]
    fn old_results_without_the_new_fields_load() {
        let old = r#"{"workload":"put","ok":5,"total":5,"throughput":2.5,
            "errors":{"count":0,"by_code":{},"samples":[]},"processes":[]}"#;
        let r: RunResult = serde_json::from_str(old).expect("parses");
        assert_eq!((r.ok, r.bound, r.series.len()), (5, None, 0));
        assert_eq!(r.cpu_us_per_op(), None);
    }

    #[test]
    fn comparison_shows_ratios_against_the_first() {
        let dir = std::env::temp_dir().join(format!("bench-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::fs::write(&a, report("bramble", 100, 2, 40_000).to_json()).expect("write");
        let mut unlabelled = report("etcd", 200, 4, 200_000);
        unlabelled.label = None;
        std::fs::write(&b, unlabelled.to_json()).expect("write");
        let runs = vec![load(&a).expect("a"), load(&b).expect("b")];
        assert_eq!(runs[1].label, "b.json", "unlabelled: the file name");
        let cells = cells(&runs);
        assert_eq!(cells[0], ["", "bramble", "b.json"]);
        let row = |name: &str| {
            cells
                .iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("no row {name}: {cells:?}"))
                .clone()
        };
        // 100 and 200 requests in 2 s; 2 and 4 ms; 400 and 1000 bytes each.
        assert_eq!(row("throughput req/s")[1..], ["50.0", "100.0 (2.00x)"]);
        assert_eq!(row("p99 ms")[1..], ["2.000", "4.000 (2.00x)"]);
        assert_eq!(row("write B/op")[1..], ["400", "1000 (2.50x)"]);
        // 20 ms of CPU over 100 and 200 requests.
        assert_eq!(row("cpu us/op")[1..], ["200.0", "100.0 (0.50x)"]);
        assert_eq!(row("rss MiB")[1..], ["2.0", "2.0 (1.00x)"]);
        assert_eq!(row("errors")[1..], ["1", "1"]);
        let text = table(&runs);
        assert!(text.contains("bramble: 1 x Unavailable"), "{text}");
        let header = text.lines().next().unwrap_or_default();
        assert!(
            header.contains("bramble") && header.contains("b.json"),
            "{text}"
        );
        assert!(load(&dir.join("missing.json")).is_err());
        std::fs::write(&a, "not json").expect("write");
        assert!(load(&a).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
