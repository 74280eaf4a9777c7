//! go-grpc-prometheus' server counters, as etcd registers them:
//! `grpc_server_started_total` and `grpc_server_handled_total`, labelled by
//! `grpc_type`, `grpc_service`, `grpc_method` (and `grpc_code`), created up
//! front for each of etcd's methods and every code. Calls to any other path
//! are not counted, so that no client can grow the label sets.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// gRPC's status codes by number, with the names Go prints.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
/// Index of `Canceled`: a call whose response ended without a status (the
/// client went away, as with most watch streams).
const CANCELED: usize = 1;
/// Index of `Unknown`: a status that does not parse.
const UNKNOWN: usize = 2;

const UNARY: &str = "unary";
const SERVER_STREAM: &str = "server_stream";
const BIDI_STREAM: &str = "bidi_stream";

/// etcd's gRPC methods: (service, method, type).
const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", UNARY),
    ("etcdserverpb.KV", "Put", UNARY),
    ("etcdserverpb.KV", "DeleteRange", UNARY),
    ("etcdserverpb.KV", "Txn", UNARY),
    ("etcdserverpb.KV", "Compact", UNARY),
    ("etcdserverpb.Watch", "Watch", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseGrant", UNARY),
    ("etcdserverpb.Lease", "LeaseRevoke", UNARY),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseTimeToLive", UNARY),
    ("etcdserverpb.Lease", "LeaseLeases", UNARY),
    ("etcdserverpb.Cluster", "MemberAdd", UNARY),
    ("etcdserverpb.Cluster", "MemberRemove", UNARY),
    ("etcdserverpb.Cluster", "MemberUpdate", UNARY),
    ("etcdserverpb.Cluster", "MemberList", UNARY),
    ("etcdserverpb.Cluster", "MemberPromote", UNARY),
    ("etcdserverpb.Maintenance", "Alarm", UNARY),
    ("etcdserverpb.Maintenance", "Status", UNARY),
    ("etcdserverpb.Maintenance", "Defragment", UNARY),
    ("etcdserverpb.Maintenance", "Hash", UNARY),
    ("etcdserverpb.Maintenance", "HashKV", UNARY),
    ("etcdserverpb.Maintenance", "Snapshot", SERVER_STREAM),
    ("etcdserverpb.Maintenance", "MoveLeader", UNARY),
    ("etcdserverpb.Maintenance", "Downgrade", UNARY),
    ("etcdserverpb.Auth", "AuthEnable", UNARY),
    ("etcdserverpb.Auth", "AuthDisable", UNARY),
    ("etcdserverpb.Auth", "AuthStatus", UNARY),
    ("etcdserverpb.Auth", "Authenticate", UNARY),
    ("etcdserverpb.Auth", "UserAdd", UNARY),
    ("etcdserverpb.Auth", "UserGet", UNARY),
    ("etcdserverpb.Auth", "UserList", UNARY),
    ("etcdserverpb.Auth", "UserDelete", UNARY),
    ("etcdserverpb.Auth", "UserChangePassword", UNARY),
    ("etcdserverpb.Auth", "UserGrantRole", UNARY),
    ("etcdserverpb.Auth", "UserRevokeRole", UNARY),
    ("etcdserverpb.Auth", "RoleAdd", UNARY),
    ("etcdserverpb.Auth", "RoleGet", UNARY),
    ("etcdserverpb.Auth", "RoleList", UNARY),
    ("etcdserverpb.Auth", "RoleDelete", UNARY),
    ("etcdserverpb.Auth", "RoleGrantPermission", UNARY),
    ("etcdserverpb.Auth", "RoleRevokePermission", UNARY),
    ("v3lockpb.Lock", "Lock", UNARY),
    ("v3lockpb.Lock", "Unlock", UNARY),
    ("v3electionpb.Election", "Campaign", UNARY),
    ("v3electionpb.Election", "Proclaim", UNARY),
    ("v3electionpb.Election", "Leader", UNARY),
    ("v3electionpb.Election", "Observe", SERVER_STREAM),
    ("v3electionpb.Election", "Resign", UNARY),
];

/// One method's counters, resolved up front so a call costs a map lookup
/// and two atomic adds.
struct MethodCounters {
    started: IntCounter,
    handled: [IntCounter; CODES.len()],
}

/// Every etcd method's counters, and where each request path's are.
struct Methods {
    counters: Vec<MethodCounters>,
    by_path: HashMap<String, usize>,
}

/// The counters of every etcd method, by request path.
#[derive(Clone)]
pub(crate) struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    methods: Arc<Methods>,
}

impl GrpcMetrics {
    /// The two counter families with every method and code at zero.
    pub(crate) fn new() -> GrpcMetrics {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )
        .expect("valid metric options");
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )
        .expect("valid metric options");
        let counters = METHODS
            .iter()
            .map(|&(service, method, kind)| MethodCounters {
                started: started.with_label_values(&[kind, service, method]),
                handled: CODES
                    .map(|code| handled.with_label_values(&[kind, service, method, code])),
            })
            .collect();
        let by_path = METHODS
            .iter()
            .enumerate()
            .map(|(i, (service, method, _))| (format!("/{service}/{method}"), i))
            .collect();
        GrpcMetrics {
            started,
            handled,
            methods: Arc::new(Methods { counters, by_path }),
        }
    }

    /// Adds both families to `registry`.
    pub(crate) fn register(&self, registry: &Registry) {
        // Distinct names in a fresh registry: cannot fail.
        let _ = registry.register(Box::new(self.started.clone()));
        let _ = registry.register(Box::new(self.handled.clone()));
    }
}

/// The tower layer that counts the calls of a tonic server.
#[derive(Clone)]
pub(crate) struct CountLayer(pub(crate) GrpcMetrics);

impl<S> tower_layer::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Count {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// [`CountLayer`]'s service.
#[derive(Clone)]
pub(crate) struct Count<S> {
    inner: S,
    metrics: GrpcMetrics,
}

/// Counts one call as handled, once, with the status it ended with.
struct Handled {
    methods: Arc<Methods>,
    method: usize,
}

impl Handled {
    fn finish(self, code: usize) {
        if let Some(m) = self.methods.counters.get(self.method) {
            m.handled[code.min(CODES.len() - 1)].inc();
        }
    }
}

/// The index in [`CODES`] of a `grpc-status` value.
fn code_index(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&c| c < CODES.len())
        .unwrap_or(UNKNOWN)
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Count<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let methods = &self.metrics.methods;
        let handled = methods.by_path.get(req.uri().path()).map(|&method| {
            methods.counters[method].started.inc();
            Handled {
                methods: Arc::clone(methods),
                method,
            }
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let mut handled = handled;
            // A trailers-only response (most errors) has its status here.
            if let Some(code) = resp.headers().get("grpc-status") {
                if let Some(h) = handled.take() {
                    h.finish(code_index(code.as_bytes()));
                }
            }
            Ok(resp.map(|inner| CountedBody { inner, handled }))
        })
    }
}

/// A response body that counts its call as handled when the trailers with
/// the status pass, or as `Canceled` if it is dropped before.
pub(crate) struct CountedBody<B> {
    inner: B,
    handled: Option<Handled>,
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(h) = self.handled.take() {
            h.finish(CANCELED);
        }
    }
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                if let Some(h) = self.handled.take() {
                    h.finish(code_index(code.as_bytes()));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_as_go_names() {
        assert_eq!(CODES[code_index(b"0")], "OK");
        assert_eq!(CODES[code_index(b"8")], "ResourceExhausted");
        assert_eq!(CODES[code_index(b"16")], "Unauthenticated");
        assert_eq!(CODES[code_index(b"17")], "Unknown");
        assert_eq!(CODES[code_index(b"x")], "Unknown");
    }

    #[test]
    fn every_method_and_code_is_there_at_zero() {
        let m = GrpcMetrics::new();
        let r = Registry::new();
        m.register(&r);
        let families = r.gather();
        let handled = families
            .iter()
            .find(|f| f.name() == "grpc_server_handled_total")
            .expect("handled");
        assert_eq!(handled.get_metric().len(), METHODS.len() * CODES.len());
    }
}
