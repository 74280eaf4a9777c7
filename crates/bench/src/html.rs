//! The HTML report (`--report out.html`, `report --html`): one self-contained
//! page with the runs' parameters, a summary table and the SVG charts.
//!
//! Self-contained means no scripts, stylesheets or fonts from elsewhere: the
//! page is copied off Pi clusters and opened offline. Everything taken from
//! the input (labels, endpoints, parameters, error codes) is HTML-escaped;
//! the charts' SVG comes from plotters, which escapes its own text.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result};

use crate::charts;
use crate::compare::{self, Labelled, RunResult};
use crate::report::{bytes, Bound, Report};

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the page of one run's report.
pub(crate) fn write_run(report: &Report, out: impl Write) -> Result<()> {
    // Through the JSON form, so a run's page and `report --html` of its
    // `--json` output are the same page.
    let value = serde_json::to_value(report).context("serializing the report")?;
    let run: RunResult = serde_json::from_value(value).context("reading the report back")?;
    let label = run.label.clone().unwrap_or_else(|| run.endpoints.join(","));
    write_page(&[Labelled { label, run }], out)
}

/// Writes the page of `runs` (one, or several to compare).
pub(crate) fn write_page(runs: &[Labelled], mut out: impl Write) -> Result<()> {
    let page = page(runs)?;
    out.write_all(page.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the page")
}

/// The page's HTML.
pub(crate) fn page(runs: &[Labelled]) -> Result<String> {
    let title = match runs {
        [one] => format!("bramble-bench {}: {}", one.run.workload, one.label),
        _ => format!(
            "bramble-bench: {}",
            runs.iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(" vs ")
        ),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    // Charts first: they are what the page is for, and then a 1200x2000
    // screenshot shows them all.
    s.push_str("<div class=\"charts\">\n");
    let sections = [
        ("latency-over-time", charts::latency_over_time(runs)?),
        ("throughput-over-time", charts::throughput_over_time(runs)?),
        ("latency-histogram", charts::latency_histogram(runs)?),
        ("latency-cdf", charts::latency_cdf(runs)?),
        ("bytes-per-op", charts::bytes_per_op(runs)?),
    ];
    for (id, chart) in sections {
        let _ = writeln!(s, "<figure id=\"{id}\">");
        match chart {
            Some(svg) => s.push_str(&svg),
            None => s.push_str(&no_data(id)),
        }
        s.push_str("\n</figure>\n");
    }
    s.push_str("</div>\n");
    s.push_str("<h2>Summary</h2>\n");
    s.push_str("<p>Ratios are against the first run.</p>\n");
    s.push_str(&table(&compare::cells(runs)));
    s.push_str("<h2>Runs</h2>\n");
    s.push_str(&table(&parameters(runs)));
    let processes = processes(runs);
    if processes.len() > 1 {
        s.push_str("<h2>Server processes</h2>\n");
        s.push_str(&table(&processes));
    }
    let errors = errors(runs);
    if errors.len() > 1 {
        s.push_str("<h2>Errors by code</h2>\n");
        s.push_str(&table(&errors));
    }
    s.push_str("</body>\n</html>\n");
    Ok(s)
}

/// What a chart without data says instead.
fn no_data(id: &str) -> String {
    let why = match id {
        "bytes-per-op" => "no server process was measured (give --pid)",
        "latency-histogram" | "latency-cdf" => "no request succeeded",
        _ => "no time series in the results (older bramble-bench?)",
    };
    format!("<p class=\"none\">{}: {why}</p>", escape(id))
}

/// The page's stylesheet.
const STYLE: &str = "body{font-family:sans-serif;margin:1em;color:#222}\
h1{font-size:1.5em;margin:0 0 0.5em}\
.charts{display:flex;flex-wrap:wrap;gap:8px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;\
max-width:30em;overflow-wrap:anywhere}\
tr:first-child td{font-weight:bold;background:#f2f2f2}\
td:first-child{text-align:left;font-weight:bold}\
figure{margin:0}svg{max-width:100%;height:auto}.none{color:#888;width:570px}";

/// Cells as an HTML table (the first row as the header), escaped.
fn table(cells: &[Vec<String>]) -> String {
    let mut s = String::from("<table>\n");
    for row in cells {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{}</td>", escape(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

/// How a table cell is read from a result.
type Cell = fn(&RunResult) -> String;

/// One column per run: what it was and how it was bounded.
fn parameters(runs: &[Labelled]) -> Vec<Vec<String>> {
    let rows: [(&str, Cell); 9] = [
        ("workload", |r| r.workload.clone()),
        ("endpoints", |r| r.endpoints.join(", ")),
        ("clients / conns", |r| {
            format!("{} / {}", r.clients, r.conns)
        }),
        ("bound", |r| match (r.bound, r.duration_s) {
            (Some(Bound::Duration), Some(d)) => format!("--duration {d} s"),
            _ => format!("--total {}", r.total),
        }),
        ("rate", |r| match r.rate {
            0 => "unlimited".to_string(),
            n => format!("{n} req/s"),
        }),
        ("elapsed", |r| format!("{:.2} s", r.elapsed_s)),
        ("requests ok / sent", |r| {
            format!("{} / {}", r.ok, r.ok + r.errors.count)
        }),
        ("timed out", |r| r.timed_out.to_string()),
        ("params", |r| r.params.to_string()),
    ];
    let mut out = vec![std::iter::once(String::new())
        .chain(runs.iter().map(|r| r.label.clone()))
        .collect::<Vec<_>>()];
    for (name, f) in rows {
        out.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|r| f(&r.run)))
                .collect(),
        );
    }
    out
}

/// One row per measured process of each run.
fn processes(runs: &[Labelled]) -> Vec<Vec<String>> {
    let mut out = vec![["run", "process", "write/op", "cpu us/op", "rss"]
        .map(String::from)
        .to_vec()];
    for r in runs {
        for p in &r.run.processes {
            out.push(vec![
                r.label.clone(),
                format!("{} (pid {})", p.name, p.pid),
                p.write_bytes_per_op.map_or("-".into(), bytes),
                p.cpu_us_per_op.map_or("-".into(), |v| format!("{v:.1}")),
                bytes(p.rss_kib as f64 * 1024.0),
            ]);
        }
    }
    out
}

/// One row per (run, error code).
fn errors(runs: &[Labelled]) -> Vec<Vec<String>> {
    let mut out = vec![["run", "code", "count"].map(String::from).to_vec()];
    for r in runs {
        for (code, n) in &r.run.errors.by_code {
            out.push(vec![r.label.clone(), code.clone(), n.to_string()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::tests::report;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<b a="1">&'x'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;x&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn a_run_page_has_every_chart_and_escapes_input() {
        let mut r = report("<script>alert(1)</script>", 100, 2, 40_000);
        r.endpoints = vec!["a&b:1".into()];
        let mut page = Vec::new();
        write_run(&r, &mut page).expect("writes");
        let page = String::from_utf8(page).expect("utf-8");
        assert!(!page.contains("<script>"), "unescaped label");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&amp;b:1"));
        for id in [
            "latency-over-time",
            "throughput-over-time",
            "latency-histogram",
            "latency-cdf",
            "bytes-per-op",
        ] {
            let at = page
                .find(&format!("<figure id=\"{id}\">"))
                .unwrap_or_else(|| panic!("no {id}"));
            assert!(
                page[at..]
                    .trim_start_matches(|c| c != '\n')
                    .trim_start()
                    .starts_with("<svg"),
                "{id} has no SVG"
            );
        }
        // Self-contained: nothing fetched from elsewhere.
        assert!(!page.contains("src="));
        assert!(!page.contains("href="));
        assert!(page.contains("--duration 2 s"));
    }

    #[test]
    fn a_comparison_overlays_runs_and_says_what_is_missing() {
        let a = Labelled {
            label: "bramble".into(),
            run: serde_json::from_str(&report("bramble", 100, 2, 40_000).to_json()).expect("a"),
        };
        let mut b = Labelled {
            label: "etcd".into(),
            run: serde_json::from_str(&report("etcd", 200, 4, 200_000).to_json()).expect("b"),
        };
        b.run.processes.clear();
        let page = page(&[a, b]).expect("page");
        assert!(page.contains("<title>bramble-bench: bramble vs etcd</title>"));
        // Legends name both runs in the time-series charts.
        let latency = &page[page.find("latency-over-time").expect("chart")..];
        assert!(latency.contains("bramble\n</text>") && latency.contains("etcd\n</text>"));
        assert!(page.contains("4.000 (2.00x)"));
        // Only the first run measured a process.
        assert!(page.contains("bramble: bramble (pid 7)"));
        let old = Labelled {
            label: "old".into(),
            run: RunResult::default(),
        };
        let page = super::page(&[old]).expect("page");
        assert!(page.contains("no time series"));
        assert!(page.contains("no server process was measured"));
    }
}
