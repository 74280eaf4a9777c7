//! Server CPU, memory and disk counters read from each endpoint's Prometheus
//! `/metrics` (`--metrics`), before and after the run.
//!
//! `--pid` reads `/proc`, so it only works on the server's machine; a Pi
//! cluster is benchmarked from a laptop. etcd and Bramble both serve
//! `/metrics` on the client URL (HTTP/1.1 next to gRPC, over TLS for https
//! endpoints) with the standard process collector and etcd's disk metrics,
//! which is enough to report CPU per request, memory, fsyncs and leader
//! changes from anywhere. An endpoint whose `/metrics` cannot be read (kine
//! serves none on its client port) is reported as such: a note, not a failed
//! run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bramble_tls::ClientTls;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::section::Section;

/// Largest `/metrics` body read: etcd's is about 150 KiB; anything far past
/// that is not a metrics page.
const MAX_BODY_BYTES: usize = 16 << 20;

/// The counters of one `/metrics` scrape this report uses (`None`: the
/// server does not export that metric).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counters {
    /// `process_cpu_seconds_total`.
    pub(crate) cpu_seconds: Option<f64>,
    /// `process_resident_memory_bytes`.
    pub(crate) rss_bytes: Option<f64>,
    /// `etcd_disk_wal_fsync_duration_seconds_count` and `_sum`.
    pub(crate) wal_fsync: Option<(f64, f64)>,
    /// `etcd_disk_backend_commit_duration_seconds_count` and `_sum`.
    pub(crate) backend_commit: Option<(f64, f64)>,
    /// `etcd_mvcc_db_total_size_in_bytes`.
    pub(crate) db_size_bytes: Option<f64>,
    /// `etcd_server_leader_changes_seen_total`.
    pub(crate) leader_changes: Option<f64>,
}

/// Parses a Prometheus text exposition for the [`Counters`].
pub(crate) fn parse(text: &str) -> Result<Counters> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .context("parsing the /metrics text")?;
    // Unlabelled samples only: these metrics have no labels in etcd or
    // Bramble, and a labelled one of the same name would be another thing.
    let get = |name: &str| -> Option<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .find_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                Value::Histogram(_) | Value::Summary(_) => None,
            })
    };
    // prometheus-parse keeps a histogram's buckets but leaves its `_count`
    // and `_sum` lines as plain samples under those names.
    let histogram = |name: &str| -> Option<(f64, f64)> {
        Some((get(&format!("{name}_count"))?, get(&format!("{name}_sum"))?))
    };
    let counters = Counters {
        cpu_seconds: get("process_cpu_seconds_total"),
        rss_bytes: get("process_resident_memory_bytes"),
        wal_fsync: histogram("etcd_disk_wal_fsync_duration_seconds"),
        backend_commit: histogram("etcd_disk_backend_commit_duration_seconds"),
        db_size_bytes: get("etcd_mvcc_db_total_size_in_bytes"),
        leader_changes: get("etcd_server_leader_changes_seen_total"),
    };
    if counters == Counters::default() {
        bail!("no process or etcd metrics in the /metrics text");
    }
    Ok(counters)
}

/// What one endpoint's `/metrics` said about the run, as the report and
/// `--json` carry it (`server_metrics`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointMetrics {
    /// The endpoint scraped.
    pub(crate) endpoint: String,
    /// Why its `/metrics` could not be read (then nothing else is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    /// CPU seconds the server used during the run.
    pub(crate) cpu_s: Option<f64>,
    /// CPU microseconds per successful request.
    pub(crate) cpu_us_per_op: Option<f64>,
    /// Resident memory after the run, bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// WAL fsyncs during the run.
    pub(crate) wal_fsyncs: Option<u64>,
    /// Their mean duration, milliseconds (`None` without any).
    pub(crate) wal_fsync_mean_ms: Option<f64>,
    /// Backend commits during the run.
    pub(crate) backend_commits: Option<u64>,
    /// Their mean duration, milliseconds (`None` without any).
    pub(crate) backend_commit_mean_ms: Option<f64>,
    /// Backend database size after the run, bytes.
    pub(crate) db_size_bytes: Option<u64>,
    /// Leader changes the server saw during the run.
    pub(crate) leader_changes: Option<u64>,
}

impl EndpointMetrics {
    /// An endpoint whose `/metrics` could not be read, and why.
    pub(crate) fn unreadable(endpoint: &str, why: &anyhow::Error) -> EndpointMetrics {
        EndpointMetrics {
            endpoint: endpoint.to_string(),
            note: Some(format!("/metrics not readable: {why:#}")),
            ..Default::default()
        }
    }

    /// What changed from `before` to `after`, `ok` requests having succeeded.
    pub(crate) fn between(
        endpoint: &str,
        before: &Counters,
        after: &Counters,
        ok: u64,
    ) -> EndpointMetrics {
        // Counters never go down; a server restarted mid-run would make them
        // look as if they did, so a negative delta reads as zero.
        let delta = |a: Option<f64>, b: Option<f64>| Some((a? - b?).max(0.0));
        let cpu_s = delta(after.cpu_seconds, before.cpu_seconds);
        let histogram = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| {
            let (a, b) = (a?, b?);
            let count = (a.0 - b.0).max(0.0);
            let mean_ms = (count > 0.0).then(|| (a.1 - b.1).max(0.0) / count * 1e3);
            Some((count as u64, mean_ms))
        };
        let fsync = histogram(after.wal_fsync, before.wal_fsync);
        let commit = histogram(after.backend_commit, before.backend_commit);
        EndpointMetrics {
            endpoint: endpoint.to_string(),
            note: None,
            cpu_s,
            cpu_us_per_op: cpu_s.filter(|_| ok > 0).map(|s| s * 1e6 / ok as f64),
            rss_bytes: after.rss_bytes.map(|b| b as u64),
            wal_fsyncs: fsync.map(|f| f.0),
            wal_fsync_mean_ms: fsync.and_then(|f| f.1),
            backend_commits: commit.map(|c| c.0),
            backend_commit_mean_ms: commit.and_then(|c| c.1),
            db_size_bytes: after.db_size_bytes.map(|b| b as u64),
            leader_changes: delta(after.leader_changes, before.leader_changes).map(|n| n as u64),
        }
    }

    /// Its line in the text report.
    fn text(&self) -> String {
        if let Some(note) = &self.note {
            return format!("  metrics     {}: {note}", self.endpoint);
        }
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let mean = |m: Option<f64>| m.map(|m| format!(" (mean {m:.3} ms)")).unwrap_or_default();
        format!(
            "  metrics     {}: cpu {} ({} per op), rss {}, wal fsyncs {}{}, backend commits {}{}, db size {}, leader changes {}",
            self.endpoint,
            or_dash(self.cpu_s.map(|s| format!("{:.0} ms", s * 1e3))),
            or_dash(self.cpu_us_per_op.map(|u| format!("{u:.0} us"))),
            or_dash(self.rss_bytes.map(|b| crate::report::bytes(b as f64))),
            or_dash(self.wal_fsyncs.map(|n| n.to_string())),
            mean(self.wal_fsync_mean_ms),
            or_dash(self.backend_commits.map(|n| n.to_string())),
            mean(self.backend_commit_mean_ms),
            or_dash(self.db_size_bytes.map(|b| crate::report::bytes(b as f64))),
            or_dash(self.leader_changes.map(|n| n.to_string())),
        )
    }
}

/// The report's `server_metrics` section: one entry per endpoint.
pub(crate) fn section(endpoints: &[EndpointMetrics]) -> Section {
    let mut s = Section::new("server_metrics", &endpoints);
    s.text = endpoints.iter().map(EndpointMetrics::text).collect();
    s
}

/// Scrapes every endpoint (in order), each result kept apart so one
/// unreadable endpoint does not hide the others.
pub(crate) async fn scrape_all(
    endpoints: &[String],
    tls: Option<&Arc<ClientTls>>,
    timeout: Duration,
) -> Vec<Result<Counters>> {
    let mut out = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        let r = tokio::time::timeout(timeout, scrape(ep, tls))
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out after {timeout:?}")));
        out.push(r);
    }
    out
}

/// Per endpoint, what changed between the two scrapes.
pub(crate) fn compare(
    endpoints: &[String],
    before: &[Result<Counters>],
    after: &[Result<Counters>],
    ok: u64,
) -> Vec<EndpointMetrics> {
    endpoints
        .iter()
        .zip(before.iter().zip(after))
        .map(|(ep, pair)| match pair {
            (Ok(b), Ok(a)) => EndpointMetrics::between(ep, b, a, ok),
            (Err(e), _) | (_, Err(e)) => EndpointMetrics::unreadable(ep, e),
        })
        .collect()
}

/// GETs `endpoint`'s `/metrics` and parses it.
async fn scrape(endpoint: &str, tls: Option<&Arc<ClientTls>>) -> Result<Counters> {
    let uri: hyper::Uri = crate::conn::endpoint_uri(endpoint)?
        .parse()
        .with_context(|| format!("bad endpoint {endpoint}"))?;
    let host = uri.host().context("endpoint has no host")?.to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    // A bracketed IPv6 literal is dialled without its brackets.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .context("connecting")?;
    let text = if https {
        let tls = tls.context("https endpoint without --cacert")?;
        // The same certificates as the gRPC connections, but offering
        // HTTP/1.1 only: the servers hand connections that agree on `h2`
        // to gRPC, which has no /metrics.
        let mut config = (*tls.current()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(bare).context("server name")?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        get(stream, &authority).await?
    } else {
        get(tcp, &authority).await?
    };
    parse(&text)
}

/// Sends `GET /metrics` over `stream` (HTTP/1.1) and returns the body.
async fn get<S>(stream: S, authority: &str) -> Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    // Drives the connection until the response is read; its own errors show
    // up as the request's.
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender.send_request(request).await.context("GET /metrics")?;
    let status = response.status();
    if !status.is_success() {
        driver.abort();
        bail!("GET /metrics: HTTP {status}");
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow!("reading /metrics: {e}"))?
        .to_bytes();
    driver.abort();
    String::from_utf8(body.to_vec()).context("/metrics is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Bramble's `/metrics`, cut to the families used here and a
    /// few others (a labelled counter, a gauge not read).
    const CAPTURED: &str = include_str!("testdata/bramble-metrics.txt");

    #[test]
    fn parses_a_captured_exposition() {
        let c = parse(CAPTURED).expect("parses");
        assert_eq!(c.cpu_seconds, Some(0.0));
        assert_eq!(c.rss_bytes, Some(35_835_904.0));
        assert_eq!(c.wal_fsync, Some((4.0, 0.089155768)));
        assert_eq!(c.backend_commit, Some((0.0, 0.0)));
        assert_eq!(c.db_size_bytes, Some(1_056_768.0));
        assert_eq!(c.leader_changes, Some(1.0));
    }

    #[test]
    fn text_without_the_metrics_is_an_error() {
        assert!(parse("").is_err());
        assert!(parse("<html>not found</html>\n").is_err());
        let other = "# TYPE foo counter\nfoo 3\n";
        assert!(parse(other).is_err());
    }

    #[test]
    fn deltas_over_a_run() {
        let before = parse(CAPTURED).expect("parses");
        // The same server after 1000 puts.
        let after_text = CAPTURED
            .replace(
                "process_cpu_seconds_total 0",
                "process_cpu_seconds_total 0.5",
            )
            .replace(
                "etcd_disk_wal_fsync_duration_seconds_sum 0.089155768",
                "etcd_disk_wal_fsync_duration_seconds_sum 2.089155768",
            )
            .replace(
                "etcd_disk_wal_fsync_duration_seconds_count 4",
                "etcd_disk_wal_fsync_duration_seconds_count 504",
            )
            .replace(
                "etcd_disk_backend_commit_duration_seconds_sum 0",
                "etcd_disk_backend_commit_duration_seconds_sum 0.03",
            )
            .replace(
                "etcd_disk_backend_commit_duration_seconds_count 0",
                "etcd_disk_backend_commit_duration_seconds_count 3",
            );
        let after = parse(&after_text).expect("parses");
        let m = EndpointMetrics::between("e:1", &before, &after, 1000);
        assert_eq!(m.cpu_s, Some(0.5));
        assert_eq!(m.cpu_us_per_op, Some(500.0));
        assert_eq!(m.rss_bytes, Some(35_835_904));
        assert_eq!(m.wal_fsyncs, Some(500));
        assert!((m.wal_fsync_mean_ms.expect("fsyncs") - 4.0).abs() < 1e-9);
        assert_eq!(m.backend_commits, Some(3));
        assert!((m.backend_commit_mean_ms.expect("commits") - 10.0).abs() < 1e-9);
        assert_eq!(m.db_size_bytes, Some(1_056_768));
        assert_eq!(m.leader_changes, Some(0));
        assert!(
            m.text().contains("cpu 500 ms (500 us per op)"),
            "{}",
            m.text()
        );
        assert!(m.text().contains("wal fsyncs 500 (mean 4.000 ms)"));

        // No requests succeeded, nothing committed: no per-op or mean values.
        let idle = EndpointMetrics::between("e:1", &before, &before, 0);
        assert_eq!((idle.cpu_us_per_op, idle.wal_fsync_mean_ms), (None, None));
        assert_eq!(idle.wal_fsyncs, Some(0));
        // A restarted server's counters went down: zero, not negative.
        let restarted = EndpointMetrics::between("e:1", &after, &before, 10);
        assert_eq!(restarted.cpu_s, Some(0.0));
        assert_eq!(restarted.wal_fsyncs, Some(0));
    }

    #[test]
    fn an_unreadable_endpoint_is_a_note_in_the_section() {
        let before = vec![Err(anyhow!("HTTP 404 Not Found")), parse(CAPTURED)];
        let after = vec![parse(CAPTURED), parse(CAPTURED)];
        let eps = ["kine:2379".to_string(), "bramble:2379".to_string()];
        let m = compare(&eps, &before, &after, 10);
        let s = section(&m);
        assert!(s.failed_checks.is_empty(), "a note, not a failure");
        assert_eq!(
            s.text[0],
            "  metrics     kine:2379: /metrics not readable: HTTP 404 Not Found"
        );
        assert!(s.text[1].contains("leader changes 0"), "{}", s.text[1]);
        assert_eq!(
            s.json[0]["note"],
            "/metrics not readable: HTTP 404 Not Found"
        );
        assert_eq!(s.json[1]["wal_fsyncs"], 0);
        assert!(s.json[1].get("note").is_none());
        let back: Vec<EndpointMetrics> = serde_json::from_value(s.json).expect("round trip");
        assert_eq!(back[1].rss_bytes, Some(35_835_904));
    }

    #[test]
    fn report_falls_back_to_metrics_without_pids() {
        let run = r#"{"workload":"put","ok":1000,"processes":[],"server_metrics":[
            {"endpoint":"a:1","cpu_us_per_op":300.0,"rss_bytes":2097152},
            {"endpoint":"b:1","cpu_us_per_op":200.0,"rss_bytes":1048576},
            {"endpoint":"kine:1","note":"/metrics not readable: HTTP 404"}]}"#;
        let r: crate::compare::RunResult = serde_json::from_str(run).expect("parses");
        assert_eq!(r.cpu_us_per_op(), Some(500.0));
        assert_eq!(r.rss_mib(), Some(3.0));
        // --pid's /proc numbers win when there are both.
        let both = run.replace(
            r#""processes":[]"#,
            r#""processes":[{"pid":1,"name":"bramble","cpu_us_per_op":7.0,"rss_kib":1024}]"#,
        );
        let r: crate::compare::RunResult = serde_json::from_str(&both).expect("parses");
        assert_eq!((r.cpu_us_per_op(), r.rss_mib()), (Some(7.0), Some(1.0)));
    }

    /// A real HTTP/1.1 server (a plain tokio listener answering once) whose
    /// /metrics is the captured text: the client half end to end.
    #[tokio::test]
    async fn scrapes_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{CAPTURED}",
                CAPTURED.len()
            );
            s.write_all(reply.as_bytes()).await.expect("write");
            request
        });
        let r = scrape_all(&[addr.to_string()], None, Duration::from_secs(5)).await;
        let c = r.into_iter().next().expect("one").expect("scraped");
        assert_eq!(c.db_size_bytes, Some(1_056_768.0));
        let request = server.await.expect("server");
        assert!(
            request.starts_with("GET /metrics HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("host: {addr}")), "{request}");

        // Nobody listening: an error for that endpoint, not a panic.
        let r = scrape_all(&[addr.to_string()], None, Duration::from_secs(5)).await;
        assert!(r[0].is_err());
    }
}
