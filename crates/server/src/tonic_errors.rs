//! Rewrites the few gRPC errors that tonic (not our services) produces into
//! the code and text grpc-go, and therefore etcd, sends.
//!
//! Today that is the message size limit: a request above it is refused by
//! tonic's decoder with `OutOfRange: Error, decoded message length too
//! large: ...`, where etcd answers `ResourceExhausted: grpc: received message
//! larger than max (N vs. M)`. Clients match on both the code (retry policy)
//! and the text, so the difference is visible.
//!
//! This is the one place that reads an error's text to decide: tonic's
//! decoder builds that status inside the generated service, and by the time
//! it reaches a layer it is only a `grpc-status` and a `grpc-message` header
//! (no error type survives). The text is pinned by the unit tests below and
//! by `tests/tests/hostile_input.rs`, which expects etcd's code for a message
//! over gRPC's limit: a tonic upgrade that changes the text fails them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::HeaderMap;

/// The tower layer applying [`RewriteTonicErrors`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RewriteTonicErrorsLayer;

impl<S> tower_layer::Layer<S> for RewriteTonicErrorsLayer {
    type Service = RewriteTonicErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RewriteTonicErrors { inner }
    }
}

/// A service wrapper that rewrites tonic-made errors in response headers.
#[derive(Debug, Clone)]
pub(crate) struct RewriteTonicErrors<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for RewriteTonicErrors<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            rewrite(resp.headers_mut());
            Ok(resp)
        })
    }
}

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";
const CODE_OUT_OF_RANGE: &str = "11";
const CODE_RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites a trailers-only error response (status in the headers) if it is
/// one tonic made up.
fn rewrite(headers: &mut HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(CODE_OUT_OF_RANGE.as_bytes()) {
        return;
    }
    let Some(message) = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
    else {
        return;
    };
    let Some((found, limit)) = parse_too_large(&message) else {
        return;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert(
            "grpc-status",
            HeaderValue::from_static(CODE_RESOURCE_EXHAUSTED),
        );
        headers.insert("grpc-message", v);
    }
}

/// `(found, limit)` from tonic's "found N bytes, the limit is: M bytes".
fn parse_too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// Decodes gRPC's percent-encoded `grpc-message`.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_size_error_becomes_grpc_go_text() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error,%20decoded message length too large: found 3145738 bytes, the limit is: 2097152 bytes",
            ),
        );
        rewrite(&mut h);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(
            h["grpc-message"],
            "grpc: received message larger than max (3145738 vs. 2097152)"
        );
    }

    #[test]
    fn other_errors_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision is a future revision"),
        );
        let before = h.clone();
        rewrite(&mut h);
        assert_eq!(h, before);
        assert_eq!(percent_decode(b"a%2"), "a%2");
        assert_eq!(percent_decode(b"%41b"), "Ab");
    }
}
