//! The plain-HTTP endpoints etcd serves on `--listen-metrics-urls`: `/health`
//! (kubeadm's static-pod liveness probe), `/livez`, `/readyz` and a first
//! `/metrics`.
//!
//! Probes and scrapers send one small GET and read one response, so this is
//! a deliberately small HTTP/1.1 responder (one request per connection,
//! bounded request size and time) rather than a web framework.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ServerContext;

/// Largest request head accepted: probes send a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd gives the linearizable health read one second.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the HTTP endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    ctx: Arc<ServerContext>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(ctx, stream).await {
                            tracing::debug!("http client: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct RequestLine {
    method: String,
    path: String,
    query: String,
}

fn parse_request_line(head: &str) -> Option<RequestLine> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(RequestLine {
        method,
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// Whether the query string has `name=true` (etcd's `serializable=true`).
fn query_flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv.split_once('=') == Some((name, "true")))
}

async fn handle(ctx: Arc<ServerContext>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 || buf.len() + n > MAX_REQUEST {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(true)
    };
    let complete = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or(Ok(false))?;
    let head = String::from_utf8_lossy(&buf);
    let (status, content_type, body) = match (complete, parse_request_line(&head)) {
        (true, Some(req)) if req.method == "GET" => route(&ctx, &req).await,
        (true, Some(_)) => (405, "text/plain", "Method Not Allowed\n".to_string()),
        _ => (400, "text/plain", "Bad Request\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn route(ctx: &ServerContext, req: &RequestLine) -> (u16, &'static str, String) {
    match req.path.as_str() {
        "/health" => {
            let (ok, reason) = health(ctx, query_flag(&req.query, "serializable")).await;
            let body = format!("{{\"health\":\"{ok}\",\"reason\":\"{reason}\"}}");
            (if ok { 200 } else { 503 }, "application/json", body)
        }
        // Alive unless the member failed for good (it is about to exit).
        "/livez" => match ctx.node.fatal().get() {
            None => (200, "text/plain", "ok".to_string()),
            Some(_) => (503, "text/plain", format!("not alive: {FATAL_REASON}")),
        },
        "/readyz" => {
            let (ok, reason) = health(ctx, query_flag(&req.query, "serializable")).await;
            if ok {
                (200, "text/plain", "ok".to_string())
            } else {
                (503, "text/plain", format!("not ready: {reason}"))
            }
        }
        "/metrics" => (200, "text/plain; version=0.0.4", metrics(ctx)),
        _ => (404, "text/plain", "404 page not found\n".to_string()),
    }
}

/// The health reason of a member that hit a fatal failure: its store no
/// longer moves, whatever its last known leader.
const FATAL_REASON: &str = "FATAL ERROR";

/// etcd's checkHealth: a leader must be known, and unless `serializable`,
/// a linearizable read must complete within a second. A member that hit a
/// fatal failure is never healthy, serializable or not.
async fn health(ctx: &ServerContext, serializable: bool) -> (bool, &'static str) {
    if ctx.node.fatal().get().is_some() {
        return (false, FATAL_REASON);
    }
    if ctx.node.status().leader == 0 {
        return (false, "RAFT NO LEADER");
    }
    if !serializable {
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, ctx.node.read_barrier()).await {
            Ok(Ok(())) => {}
            _ => return (false, "QGET ERROR"),
        }
    }
    // The failure may have come while the read above waited.
    if ctx.node.fatal().get().is_some() {
        return (false, FATAL_REASON);
    }
    (true, "")
}

/// A first set of etcd's Prometheus metrics, with etcd's names so existing
/// dashboards find them. (The full set is future work.)
fn metrics(ctx: &ServerContext) -> String {
    let s = ctx.node.status();
    let db_size = std::fs::metadata(&ctx.db_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let store = ctx.node.store();
    let gauges = [
        (
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            u64::from(s.leader != 0) as f64,
        ),
        (
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            u64::from(s.leader == ctx.identity.member_id) as f64,
        ),
        (
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            u64::from(s.is_learner) as f64,
        ),
        (
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size as f64,
        ),
        (
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            store.current_revision() as f64,
        ),
        (
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            store.compact_revision() as f64,
        ),
        (
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            s.commit_index as f64,
        ),
        (
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            s.applied_index as f64,
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_request_line("GET /health?exclude=NOSPACE&serializable=true HTTP/1.1\r\n")
            .expect("parses");
        assert_eq!(r.path, "/health");
        assert!(query_flag(&r.query, "serializable"));
        assert!(!query_flag("serializable=false", "serializable"));
        assert_eq!(parse_request_line("garbage"), None);
        assert_eq!(parse_request_line("GET / SMTP\r\n"), None);
    }
}
