//! etcd v3 gRPC services for Bramble: request checks, etcd's error strings,
//! response headers, and the services themselves (KV, Maintenance, Watch,
//! Lease, Lock, Election and Cluster; Auth arrives with its issue).

pub mod cluster;
pub mod election;
pub mod errors;
pub mod grpc_errors;
pub mod header;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod validate;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bramble_api::etcdserverpb::cluster_server::ClusterServer;
use bramble_api::etcdserverpb::kv_server::KvServer;
use bramble_api::etcdserverpb::lease_server::LeaseServer;
use bramble_api::etcdserverpb::maintenance_server::MaintenanceServer;
use bramble_api::etcdserverpb::watch_server::WatchServer;
use bramble_api::v3electionpb::election_server::ElectionServer;
use bramble_api::v3lockpb::lock_server::LockServer;
use bramble_raft::{ProposeError, RaftNode};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::Status;

pub use header::Identity;

/// etcd's request limits (`--max-request-bytes`, `--max-txn-ops`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request proposed through Raft (etcd default 1.5 MiB).
    pub max_request_bytes: usize,
    /// Most operations in one txn branch (etcd default 128).
    pub max_txn_ops: usize,
    /// How often watchers that asked for progress_notify get one (etcd's
    /// `--experimental-watch-progress-notify-interval`, default 10 min).
    pub watch_progress_notify_interval: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: bramble_raft::network::DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: 128,
            watch_progress_notify_interval: watch::DEFAULT_PROGRESS_NOTIFY_INTERVAL,
        }
    }
}

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
    /// The leader's lease clock and expiry loop (one per member).
    pub lessor: lease::Lessor,
}

/// Maps a Raft proposal failure to etcd's error.
pub fn propose_status(e: ProposeError) -> Status {
    match e {
        ProposeError::NoLeader => errors::no_leader(),
        ProposeError::LeaderChanged => errors::leader_changed(),
        ProposeError::Timeout => errors::timeout(),
        ProposeError::Stopped(why) => {
            tracing::error!("request failed: server stopped: {why}");
            errors::stopped()
        }
    }
}

/// The client-facing gRPC server on one listener.
pub struct ClientServer {
    ctx: Arc<ServerContext>,
}

impl ClientServer {
    /// A server for `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        ClientServer { ctx }
    }

    /// Serves clients on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
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
        let (stop_watches, stopped) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_watches.send(true);
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
        let watch_service = watch::WatchService::with_shutdown(self.ctx.clone(), stopped);
        let watch = WatchServer::new(watch_service)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        let lease = LeaseServer::new(lease_service)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX);
        tonic::transport::Server::builder()
            .layer(grpc_errors::EtcdGrpcErrorsLayer)
            .add_service(kv)
            .add_service(maintenance)
            .add_service(watch)
            .add_service(lease)
            .add_service(lock)
            .add_service(election)
            .add_service(ClusterServer::new(cluster::ClusterService::new(
                self.ctx.clone(),
            )))
            .serve_with_incoming_shutdown(incoming(listener), shutdown)
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

/// Binds a client listener for an etcd URL's host:port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
