//! etcd v3 gRPC services for Bramble: request checks, etcd's error strings,
//! response headers, and the services themselves (KV, Maintenance, Watch,
//! Lease, Lock, Election, Cluster and Auth, each checking etcd's
//! permissions, see [`auth`]).

#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod auto_compaction;
pub mod backpressure;
mod client_mux;
mod cluster;
pub mod corruption;
pub mod defaults;
mod election;
pub mod errors;
mod hash;
mod header;
pub mod http;
pub mod kv;
pub mod lease;
mod lock;
pub mod maintenance;
pub mod metrics;
pub mod quota;
mod range_stream;
pub mod space;
mod tonic_errors;
mod validate;
pub mod version;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::auth_server::AuthServer;
use bramble_api::etcdserverpb::cluster_server::ClusterServer;
use bramble_api::etcdserverpb::kv_server::KvServer;
use bramble_api::etcdserverpb::lease_server::LeaseServer;
use bramble_api::etcdserverpb::maintenance_server::MaintenanceServer;
use bramble_api::etcdserverpb::watch_server::WatchServer;
use bramble_api::v3electionpb::election_server::ElectionServer;
use bramble_api::v3lockpb::lock_server::LockServer;
use bramble_raft::{ProposeError, RaftNode};
use bramble_storage::mvcc::ApplyResult;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tonic::Status;

pub use cluster::ClusterService;
pub use election::ElectionService;
pub use header::Identity;
pub use lock::LockService;

/// etcd's request limits (`--max-request-bytes`, `--max-txn-ops`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request proposed through Raft (default
    /// [`defaults::MAX_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
    /// Most operations in one txn branch (default [`defaults::MAX_TXN_OPS`]).
    pub max_txn_ops: usize,
    /// How often watchers that asked for progress_notify get one (etcd's
    /// `--experimental-watch-progress-notify-interval`, default
    /// [`defaults::WATCH_PROGRESS_NOTIFY_INTERVAL`]).
    pub watch_progress_notify_interval: std::time::Duration,
    /// etcd's `--quota-backend-bytes`: 0 for the default (2 GiB), negative for no
    /// quota (see [`quota`]).
    pub quota_backend_bytes: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: defaults::MAX_REQUEST_BYTES,
            max_txn_ops: defaults::MAX_TXN_OPS,
            watch_progress_notify_interval: defaults::WATCH_PROGRESS_NOTIFY_INTERVAL,
            quota_backend_bytes: 0,
        }
    }
}

/// etcd's gRPC keepalive flags for client connections, and the TCP
/// keepalive Go gives every accepted connection. Together they let the
/// server notice a client whose host vanished (a half-open connection) and
/// free its streams and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// etcd's `--grpc-keepalive-min-time`: etcd answers client
    /// pings more frequent than this with GOAWAY `too_many_pings`. Not
    /// enforced: hyper's HTTP/2 server has no ping rate limit and answers
    /// every ping. A client pinging too often costs a small frame each time,
    /// nothing a client could not cost with requests.
    pub min_time: Duration,
    /// etcd's `--grpc-keepalive-interval`: the server pings a
    /// connection it has heard nothing from for this long. Zero disables
    /// HTTP/2 pings, as in etcd.
    pub interval: Duration,
    /// etcd's `--grpc-keepalive-timeout`: a connection whose
    /// ping is not answered within this is closed. Zero disables HTTP/2
    /// pings, as in etcd.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            min_time: defaults::GRPC_KEEPALIVE_MIN_TIME,
            interval: defaults::GRPC_KEEPALIVE_INTERVAL,
            timeout: defaults::GRPC_KEEPALIVE_TIMEOUT,
        }
    }
}

impl Keepalive {
    /// The HTTP/2 ping interval and timeout, or `None` when disabled (etcd
    /// pings only when both are positive).
    fn http2(&self) -> Option<(Duration, Duration)> {
        (!self.interval.is_zero() && !self.timeout.is_zero())
            .then_some((self.interval, self.timeout))
    }
}

/// TCP keepalive on accepted client connections, as Go's listeners set it
/// (etcd's too): probes after 15 s idle, every 15 s, 9 unanswered probes
/// close the connection. It catches a vanished peer of an idle connection
/// even when HTTP/2 pings are disabled or far apart.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// Unanswered TCP keepalive probes before the kernel drops the connection.
const TCP_KEEPALIVE_RETRIES: u32 = 9;

/// The longest a request waits for this member to apply the entry that issued
/// its token (see [`ServerContext::settle`]).
const TOKEN_INDEX_WAIT: Duration = Duration::from_secs(5);

/// gRPC's own message limit sits above the request limit by etcd's margin,
/// so that a slightly too large request gets etcd's "request is too large"
/// error rather than a transport error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Everything the services share.
pub struct ServerContext {
    /// The Raft member that serves requests.
    pub node: Arc<RaftNode>,
    /// Cluster and member ids for response headers.
    pub identity: Identity,
    /// Request limits.
    pub limits: Limits,
    /// The MVCC database file (for its size in Status).
    pub db_path: PathBuf,
    /// The database's space in use (Status, metrics), measured in the background.
    pub space_in_use: Arc<space::SpaceInUse>,
    /// The space quota (`--quota-backend-bytes`); start its monitor with
    /// [`quota::start_monitor`].
    pub quota: quota::Quota,
    /// The leader's lease clock and expiry loop (one per member).
    pub lessor: lease::Lessor,
    /// The gate every client write passes before Raft (build it with
    /// `ProposalGate::new(limits.max_request_bytes)`).
    pub gate: backpressure::ProposalGate,
    /// The member's background tasks that hold this context or its Raft
    /// node (the lease expiry loop and its revocations, backpressure tickets
    /// waiting to retire). Each ends once Raft stops; whoever stops the
    /// member closes the tracker and waits for them, so that the data dir is
    /// released (`bramble::Node::close`).
    pub tasks: TaskTracker,
    /// The member's live Prometheus collectors (`/metrics`).
    pub metrics: metrics::Metrics,
    /// Auth options, tokens and the bcrypt bound (the users and roles are in
    /// the store).
    pub auth: auth::Auth,
}

impl ServerContext {
    /// The size of the MVCC database file, 0 if it cannot be read. The
    /// `stat` runs on a blocking thread, as all file I/O does.
    pub async fn db_file_size(&self) -> u64 {
        tokio::fs::metadata(&self.db_path)
            .await
            .map_or(0, |m| m.len())
    }

    /// Proposes a client's command through Raft and waits for its result,
    /// after the backpressure checks (etcd's `too many requests`).
    pub(crate) async fn propose(self: &Arc<Self>, cmd: Command) -> Result<ApplyResult, Status> {
        let ticket = self.gate.admit(&self.node, cmd.encoded_len())?;
        let pending = self.metrics.pending_proposal();
        let result = self.node.propose(cmd).await;
        drop(pending);
        if result.is_err() {
            self.metrics.proposals_failed.inc();
        }
        self.gate
            .release(&self.node, &self.tasks, ticket, result.as_ref().map(|_| ()));
        result.map_err(propose_status)
    }
}

impl ServerContext {
    /// Who made `req` (see [`auth::who`]), once the token's Authenticate entry
    /// is applied here ([`ServerContext::settle`]).
    pub(crate) async fn who<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<Option<bramble_storage::mvcc::AuthInfo>, Status> {
        let creds = auth::who::Credentials::of(req);
        self.settle(&creds).await;
        self.who_from(&creds)
    }

    /// etcd's `isValidSimpleToken`: a token names the raft index of the entry
    /// that issued it; a member that has not applied that index yet (the token
    /// was issued through another member a moment ago) waits for it, at most
    /// [`TOKEN_INDEX_WAIT`] (etcd waits as long as the request may).
    pub(crate) async fn settle(&self, creds: &auth::who::Credentials) {
        let Some(index) = creds.token_index() else {
            return;
        };
        let store = self.node.store();
        if !store.auth_enabled() {
            return;
        }
        let deadline = tokio::time::Instant::now() + TOKEN_INDEX_WAIT;
        while store.applied().0 < index && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Who the credentials `creds` name (see [`auth::who`]).
    pub(crate) fn who_from(
        &self,
        creds: &auth::who::Credentials,
    ) -> Result<Option<bramble_storage::mvcc::AuthInfo>, Status> {
        auth::who::auth_info(
            self.node.store(),
            creds,
            self.auth.options().client_cert_auth,
        )
        .map_err(errors::auth_status)
    }

    /// etcd's `AuthAdmin.isPermitted` and `checkMembershipOperationPermission`:
    /// with auth enabled, only a user with role root.
    pub(crate) async fn require_admin<T>(&self, req: &tonic::Request<T>) -> Result<(), Status> {
        let who = self.who(req).await?;
        self.node
            .store()
            .auth_is_admin(who.as_ref())
            .map_err(errors::auth_status)
    }

    /// [`ServerContext::propose`] of a client's command made as `who`: the
    /// command carries them for the permission checks at apply.
    pub(crate) async fn propose_as(
        self: &Arc<Self>,
        mut cmd: Command,
        who: Option<&bramble_storage::mvcc::AuthInfo>,
    ) -> Result<ApplyResult, Status> {
        cmd.auth = Some(auth::who::header(who));
        self.propose(cmd).await
    }
}

/// Maps a Raft proposal failure to etcd's error.
pub(crate) fn propose_status(e: ProposeError) -> Status {
    match e {
        ProposeError::NoLeader => errors::no_leader(),
        ProposeError::LeaderChanged => errors::leader_changed(),
        ProposeError::Timeout => errors::timeout(),
        ProposeError::Refused(r) => validate::refusal_status(r),
        ProposeError::Stopped(why) => {
            tracing::error!("request failed: server stopped: {why}");
            errors::stopped()
        }
        // Logged once, when it happened (bramble_raft::fatal).
        ProposeError::Fatal(_) => errors::stopped(),
    }
}

/// The client-facing gRPC server on one listener.
pub struct ClientServer {
    ctx: Arc<ServerContext>,
    keepalive: Keepalive,
}

impl ClientServer {
    /// A server for `ctx`, with etcd's default keepalives.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        ClientServer {
            ctx,
            keepalive: Keepalive::default(),
        }
    }

    /// Uses `keepalive` instead of etcd's defaults.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Serves clients on `listener` (over TLS with `tls`) until `shutdown`
    /// resolves: gRPC, and etcd's HTTP endpoints (`/health`, `/version`,
    /// `/metrics`, ...) on the same port.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<bramble_tls::ServerTls>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let max = self.ctx.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let kv = KvServer::new(kv::KvService::new(self.ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let maintenance =
            MaintenanceServer::new(maintenance::MaintenanceService::new(self.ctx.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX);
        // Open watch streams end (with etcd's "server stopped") when the
        // server stops, instead of holding the graceful shutdown.
        let stopped = CancellationToken::new();
        let stop_streams = stopped.clone();
        let shutdown = async move {
            shutdown.await;
            stop_streams.cancel();
        };
        // Keep-alive streams end the same way.
        let lease_service = lease::LeaseService::with_shutdown(self.ctx.clone(), stopped.clone());
        let lock = LockServer::new(lock::LockService::with_shutdown(
            self.ctx.clone(),
            stopped.clone(),
        ))
        .max_decoding_message_size(max);
        let election = ElectionServer::new(election::ElectionService::with_shutdown(
            self.ctx.clone(),
            stopped.clone(),
        ))
        .max_decoding_message_size(max);
        let watch_service = watch::WatchService::with_shutdown(self.ctx.clone(), stopped.clone());
        let watch = WatchServer::new(watch_service)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let lease = LeaseServer::new(lease_service)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let (ping_interval, ping_timeout) = self.keepalive.http2().unzip();
        tonic::transport::Server::builder()
            .http2_keepalive_interval(ping_interval)
            .http2_keepalive_timeout(ping_timeout)
            .layer(metrics::grpc::CountLayer(self.ctx.metrics.grpc.clone()))
            .layer(tonic_errors::RewriteTonicErrorsLayer)
            .add_service(kv)
            .add_service(maintenance)
            .add_service(watch)
            .add_service(lease)
            .add_service(lock)
            .add_service(election)
            .add_service(ClusterServer::new(cluster::ClusterService::new(
                self.ctx.clone(),
            )))
            .add_service(
                AuthServer::new(auth::AuthService::new(self.ctx.clone()))
                    .max_decoding_message_size(max),
            )
            .serve_with_incoming_shutdown(
                client_mux::split(self.ctx.clone(), client_incoming(listener), tls, stopped),
                shutdown,
            )
            .await
    }
}

/// Accepted connections (clients' or peers'), with Nagle off: gRPC writes
/// small frames and waits for answers, so delayed ACKs would add ~40 ms to
/// some requests. (tonic's `Server::tcp_nodelay` applies only to listeners it
/// binds itself.)
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Accepted client connections: [`incoming`] with Go's TCP keepalive.
fn client_incoming(listener: TcpListener) -> TcpIncoming {
    incoming(listener)
        .with_keepalive(Some(TCP_KEEPALIVE))
        .with_keepalive_interval(Some(TCP_KEEPALIVE))
        .with_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
}
