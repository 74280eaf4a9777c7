//! `bramble-bench` (crates/bench) end to end: each workload against one real Bramble member,
//! with `--json`, checking the report (every request succeeded, no errors, ordered
//! percentiles, the `--pid` process measured) and, with the etcd-client crate, what the
//! writes did to the store: one revision per put and per txn, the keys txn-put wrote, and
//! txn-cas's keys with one version per successful compare-and-swap and no conflicts. A
//! second test runs `--duration --rate --report x.html` and renders the page in headless
//! Chromium (skipped when `chromium` is not installed; the screenshot stays under
//! `target/tmp/bench_report/`).
//!
//! The helpers (building `bramble-bench`, running it, checking a report) are in
//! bench_support/, shared with bench_watch.rs.

mod bench_support;

use std::path::Path;
use std::process::Command;

use bench_support::{assert_clean, status_revision_delta, Bench};
use etcd_client::GetOptions;

#[test]
fn every_workload_reports_and_writes_what_it_should() {
    let mut b = Bench::start();

    let (rev0, keys0) = b.revision_and_key_count();

    // put: one revision per put.
    let put = b.run(&["--clients", "2", "--total", "200", "put"]);
    assert_clean(&put, "put", 200);
    let (rev1, keys1) = b.revision_and_key_count();
    assert_eq!(rev1 - rev0, 200, "one revision per put");
    assert!(keys1 > keys0 && keys1 - keys0 <= 200, "{keys0} -> {keys1}");

    // txn-put: one revision per txn, three new keys per txn. 16-byte keys cannot be the
    // 8-byte ones put wrote, and sequential numbers 0..300 are all distinct.
    let txn_put = b.run(&[
        "--clients",
        "2",
        "--total",
        "100",
        "txn-put",
        "--txn-ops",
        "3",
        "--key-size",
        "16",
        "--key-space",
        "300",
        "--seq-keys",
    ]);
    assert_clean(&txn_put, "txn-put", 100);
    assert_eq!(txn_put["params"]["txn_ops"], 3);
    assert!(
        txn_put.get("conflicts").is_none(),
        "only txn-cas has conflicts"
    );
    let (rev2, keys2) = b.revision_and_key_count();
    assert_eq!(rev2 - rev1, 100, "one revision per txn, however many puts");
    assert_eq!(keys2 - keys1, 300, "three distinct new keys per txn");
    assert_eq!(status_revision_delta(&txn_put), 100);

    // txn-cas: 4 clients, each updating its own key, so no compare ever fails.
    let cas = b.run(&["--clients", "4", "--total", "200", "txn-cas"]);
    assert_clean(&cas, "txn-cas", 200);
    assert_eq!(cas["conflicts"], 0, "one writer per key: {cas}");
    let (rev3, _) = b.revision_and_key_count();
    assert_eq!(
        rev3 - rev2,
        4 + 200,
        "4 key-creating puts, then one revision per update"
    );
    // The keys are created before the Status the report starts from.
    assert_eq!(status_revision_delta(&cas), 200);
    let owned = b
        .runtime
        .block_on(
            b.client
                .get("bench-cas/", Some(GetOptions::new().with_prefix())),
        )
        .expect("get bench-cas/");
    let mut keys: Vec<String> = owned
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["bench-cas/0", "bench-cas/1", "bench-cas/2", "bench-cas/3"]
    );
    // Version 1 is the create; every successful compare-and-swap adds one (a conflict is an
    // answered request that wrote nothing).
    let versions: i64 = owned.kvs().iter().map(|kv| kv.version()).sum();
    let number = |field: &str| cas[field].as_i64().unwrap_or_else(|| panic!("no {field}"));
    let writes = number("ok") - number("conflicts");
    assert_eq!(versions - 4, writes, "versions {versions}");

    // range: linearizable reads of txn-cas's keys; they write nothing.
    let range = b.run(&[
        "--clients",
        "2",
        "--total",
        "200",
        "range",
        "--key",
        "bench-cas/",
        "--prefix",
        "--consistency",
        "l",
    ]);
    assert_clean(&range, "range", 200);
    let (rev4, _) = b.revision_and_key_count();
    assert_eq!(rev4, rev3, "ranges write nothing");
}

/// `--duration 2 --rate 100 --report x.html` against a real Bramble: the run is bounded by time
/// and rate, its JSON time series and histogram add up to the requests counted (which match the
/// revisions the server made), the page holds its SVG charts, `bramble-bench report` reads the
/// JSON back, and headless Chromium renders the page (skipped, saying so, without `chromium`).
#[test]
fn duration_rate_and_html_report() {
    let b = Bench::start();
    // Kept after the test (under target/tmp) so a person can look at the page and screenshot.
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_report");
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let html = out_dir.join("x.html");
    let html_arg = html.to_str().expect("a UTF-8 path");
    let report = b.run(&[
        "--clients",
        "8",
        "--duration",
        "2",
        "--rate",
        "100",
        "--label",
        "bramble",
        "--report",
        html_arg,
        "put",
    ]);
    assert_eq!(report["bound"], "duration", "{report}");
    assert_eq!(report["duration_s"], 2.0);
    assert_eq!(report["rate"], 100);
    // 100/s for 2 s: request i is due at i * 10 ms, so 200 are due before the end and no more
    // are ever sent. Fewer go when the clients fall behind: a server stall blocks all 8 (on
    // this machine at load 11 one stalled 0.9 s and the run sent 110), and requests not started
    // by the end are not sent, so only "some" is certain; run.rs's unit tests check the pacing
    // itself closely.
    let ok = report["ok"].as_u64().expect("ok");
    assert!((1..=200).contains(&ok), "{ok} puts: {report}");
    assert_eq!(
        report["total"], ok,
        "with --duration, total is the requests sent"
    );
    assert_eq!(
        status_revision_delta(&report),
        ok as i64,
        "one revision per put"
    );
    let series = report["series"].as_array().expect("a time series");
    let sum = |field: &str| -> u64 { series.iter().filter_map(|i| i[field].as_u64()).sum() };
    assert_eq!(sum("ok"), ok, "the series adds up to the requests counted");
    assert_eq!(sum("errors"), 0);
    // One interval per second, a third if the last requests finished after 2 s.
    assert!((2..=3).contains(&series.len()), "{series:?}");
    let histogram: u64 = report["latency_histogram"]
        .as_array()
        .expect("a histogram")
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .sum();
    assert_eq!(histogram, ok);

    let page = std::fs::read_to_string(&html).expect("read the HTML report");
    assert!(page.starts_with("<!DOCTYPE html>"));
    for chart in [
        "latency-over-time",
        "throughput-over-time",
        "latency-histogram",
        "latency-cdf",
        "bytes-per-op",
    ] {
        let at = page
            .find(&format!("<figure id=\"{chart}\">\n<svg"))
            .unwrap_or_else(|| panic!("no SVG chart {chart} in {}", html.display()));
        assert!(page[at..].contains("</svg>"));
    }
    assert_eq!(page.matches("<svg").count(), 5);

    // `report` reads the JSON back: two copies side by side, ratios 1.00x.
    let json = out_dir.join("x.json");
    std::fs::write(&json, report.to_string()).expect("write the JSON");
    let compared = Command::new(&b.bin)
        .arg("report")
        .args([&json, &json])
        .arg("--html")
        .arg(out_dir.join("compare.html"))
        .output()
        .expect("run bramble-bench report");
    let table = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{table}");
    assert!(
        table.contains("throughput req/s") && table.contains("(1.00x)"),
        "{table}"
    );

    screenshot(&html, &out_dir.join("x.png"));
}

/// `--metrics` without `--pid`, as from a laptop: the server's own /metrics (read over the
/// client URL before and after a put run) show CPU used, memory, at least one WAL fsync and no
/// leader change; the text report has the line, and an endpoint that serves no /metrics is a
/// note in an otherwise clean run.
#[test]
fn server_metrics_from_the_client_url() {
    let b = Bench::start();
    let endpoint = b.endpoint.clone();
    let run = |endpoints: &str, total: &str, extra: &[&str]| {
        Command::new(&b.bin)
            .args([
                "--endpoints",
                endpoints,
                "--timeout",
                "60",
                "--settle-ms",
                "100",
            ])
            // 3000 puts (below): Bramble's process_cpu_seconds_total counts whole seconds (the
            // prometheus crate's process collector), so the run must use well over 1 s of
            // server CPU (about 1 ms per put in a debug build) for the delta to show it.
            .args(["--metrics", "--clients", "8", "--total", total])
            .args(extra)
            .arg("put")
            .output()
            .expect("run bramble-bench")
    };
    let out = run(&endpoint, "3000", &["--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_clean(&report, "put", 3000);
    assert_eq!(report["processes"].as_array().map(Vec::len), Some(0));
    let m = &report["server_metrics"][0];
    println!("server_metrics: {m}");
    assert_eq!(m["endpoint"], endpoint.as_str(), "{report}");
    assert!(m.get("note").is_none(), "{m}");
    let number = |field: &str| {
        m[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field}: {m}"))
    };
    assert!(number("cpu_s") > 0.0, "{m}");
    assert!(number("cpu_us_per_op") > 0.0, "{m}");
    assert!(number("rss_bytes") > 0.0, "{m}");
    assert!(number("wal_fsyncs") >= 1.0, "{m}");
    assert!(number("wal_fsync_mean_ms") > 0.0, "{m}");
    assert!(number("db_size_bytes") > 0.0, "{m}");
    assert_eq!(m["leader_changes"], 0, "{m}");

    // Text, with a second endpoint where nothing listens: with one connection it gets no
    // load, but --metrics asks every endpoint, and that one's failure is a note.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let both = format!("{endpoint},{closed_addr}");
    let out = run(&both, "100", &["--conns", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a note, not a failure: {text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("metrics "))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(&endpoint) && lines[0].contains("leader changes 0"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&closed_addr) && lines[1].contains("/metrics not readable"),
        "{}",
        lines[1]
    );
}

/// Renders `html` in headless Chromium into `png` and checks the browser drew the page: its DOM
/// holds the five SVG charts and the screenshot is a 1200x2000 PNG with far more in it than a
/// blank page. Skips, saying so, when Chromium is not installed.
fn screenshot(html: &Path, png: &Path) {
    if Command::new("chromium").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: rendering the HTML report: chromium is not installed \
             (apt-get install chromium; scripts/test installs it)"
        );
        return;
    }
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    let url = format!("file://{}", html.display());
    let chromium = |extra: &[String]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,2000",
        ]);
        cmd.arg(format!("--user-data-dir={}", profile.path().display()));
        cmd.args(extra).arg(&url);
        run_with_timeout(cmd, std::time::Duration::from_secs(120))
    };

    let dom = chromium(&["--dump-dom".to_string()]);
    assert_eq!(
        dom.matches("<svg").count(),
        5,
        "Chromium's DOM of the page lacks the charts"
    );
    let _ = std::fs::remove_file(png);
    chromium(&[format!("--screenshot={}", png.display())]);
    let image = std::fs::read(png).expect("Chromium wrote no screenshot");
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let dimension =
        |at: usize| u32::from_be_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]);
    assert_eq!(
        (dimension(16), dimension(20)),
        (1200, 2000),
        "IHDR width, height"
    );
    // A blank white page of this size compresses to under 10 KB; tables and charts to ~150 KB.
    assert!(image.len() > 40_000, "{} bytes: a blank page?", image.len());
    println!("screenshot of the HTML report: {}", png.display());
}

/// Runs `cmd`, failing the test if it does not exit successfully within `limit`; returns its
/// stdout.
fn run_with_timeout(mut cmd: Command, limit: std::time::Duration) -> String {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => {
            assert!(out.status.success(), "chromium: {}", out.status);
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Ok(Err(e)) => panic!("chromium: {e}"),
        Err(_) => {
            // Only the process this test started.
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("chromium did not finish within {limit:?}");
        }
    }
}
