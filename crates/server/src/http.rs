//! The plain-HTTP endpoints etcd serves on `--listen-metrics-urls` and, next
//! to gRPC, on the client URLs (`crate::client_mux` hands them the HTTP/1.1
//! connections): `/health` (kubeadm's static-pod liveness probe), `/livez`,
//! `/readyz`, `/version` (kubeadm's preflight for an external etcd) and
//! `/metrics`.
//!
//! Probes and scrapers send one small GET and read one response, so each
//! connection carries one request (as etcd's probes expect, `Connection:
//! close`), parsed by hyper's HTTP/1.1 server with a bounded request head, a
//! deadline for slow clients and a bound on open connections: a hostile
//! client on this port must not cost the member memory, file descriptors or
//! its answers to the kubelet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bramble_tls::ServerTls;

use crate::ServerContext;

/// Largest request head (request line and headers) accepted: probes send a
/// few hundred bytes. Larger heads get `431 Request Header Fields Too Large`.
/// (hyper's smallest read buffer is 8 KiB, so this is also the buffer size.)
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all: the request head, the health
/// read and writing the response to a client that reads slowly.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further clients wait in the listen backlog
/// until one finishes (each lasts at most `CONNECTION_TIMEOUT`).
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// etcd gives the linearizable health read one second.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the HTTP endpoints on `listener` (over TLS with `tls`) until
/// `shutdown` resolves.
pub async fn serve(
    ctx: Arc<ServerContext>,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed: this function owns the semaphore.
                Err(_) => return,
            },
        };
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(ctx.clone(), stream, tls.clone(), permit));
                }
                Err(e) => {
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one request on `stream` (after a TLS handshake with `tls`, within
/// [`CONNECTION_TIMEOUT`]); `_permit` holds its connection slot.
async fn serve_connection(
    ctx: Arc<ServerContext>,
    stream: TcpStream,
    tls: Option<Arc<ServerTls>>,
    _permit: OwnedSemaphorePermit,
) {
    let Some(tls) = tls else {
        return serve_one(ctx, stream).await;
    };
    let handshake = bramble_tls::incoming::handshake(&tls, stream);
    match tokio::time::timeout(CONNECTION_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => serve_one(ctx, stream).await,
        Ok(Err(e)) => tracing::debug!("http client: TLS handshake: {e}"),
        Err(_) => tracing::debug!("http client: TLS handshake timed out"),
    }
}

/// Serves one request on `io`, within [`CONNECTION_TIMEOUT`]. The caller
/// bounds how many run at once.
pub(crate) async fn serve_one<I>(ctx: Arc<ServerContext>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(respond(&ctx, &req).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_header_size(MAX_REQUEST_HEAD)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("http client: {e}"),
        Err(_) => tracing::debug!("http client: connection timed out"),
    }
}

/// Whether the query string has `name=true` (etcd's `serializable=true`).
fn query_flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|kv| kv.split_once('=') == Some((name, "true")))
}

/// The response to one request: only `GET` is served.
async fn respond<B>(ctx: &ServerContext, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if req.method() == Method::GET {
        route(ctx, req.uri().path(), req.uri().query().unwrap_or("")).await
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Method Not Allowed\n".to_string(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The (status, content type, body) of `GET path?query`.
async fn route(ctx: &ServerContext, path: &str, query: &str) -> (StatusCode, &'static str, String) {
    match path {
        "/health" => {
            let (ok, reason) = health(ctx, query_flag(query, "serializable")).await;
            let body = format!("{{\"health\":\"{ok}\",\"reason\":\"{reason}\"}}");
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", body)
        }
        // Alive unless the member failed for good (it is about to exit).
        "/livez" => match ctx.node.fatal().get() {
            None => (StatusCode::OK, "text/plain", "ok".to_string()),
            Some(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not alive: {FATAL_REASON}"),
            ),
        },
        "/readyz" => {
            let (ok, reason) = health(ctx, query_flag(query, "serializable")).await;
            if ok {
                (StatusCode::OK, "text/plain", "ok".to_string())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {reason}"),
                )
            }
        }
        "/version" => (
            StatusCode::OK,
            "application/json",
            crate::version::versions_json(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::render(ctx).await,
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n".to_string(),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags() {
        assert!(query_flag(
            "exclude=NOSPACE&serializable=true",
            "serializable"
        ));
        assert!(!query_flag("serializable=false", "serializable"));
        assert!(!query_flag("", "serializable"));
        assert!(!query_flag("serializable", "serializable"));
    }
}
