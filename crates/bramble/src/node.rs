//! The embedding API: a Bramble member inside your own Rust program, with
//! typed get/range/put/delete/txn/compact calls that need no gRPC.
//!
//! Calls go through the same checks, Raft proposals and error mapping as the
//! gRPC KV service (they *are* the KV service, called in process), so an
//! embedded store behaves exactly like a `bramble` server, errors included.
//!
//! A member whose disk or Raft core fails for good (see
//! [`bramble_raft::fatal`]) does not exit the embedding process: every later
//! call fails with an [`Error`] whose `fatal` says why, and [`Node::fatal`]
//! resolves, so the program can stop or restart the member (the `bramble`
//! binary exits with a non-zero status).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bramble_raft::{FatalError, MemberAttributes, NodeConfig, RaftNode};
use bramble_server::backpressure::ProposalGate;
use bramble_server::corruption::peer::CorruptionPeerService;
use bramble_server::corruption::CorruptionChecks;
use bramble_server::lease::expiry::min_lease_ttl;
use bramble_server::lease::forward::LeaderLeaseService;
use bramble_server::lease::{LeaseService, Lessor};
use bramble_server::{Limits, ServerContext};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::client::Client;
use crate::defaults;
use crate::error::{Error, ErrorKind};

/// How long [`Node::close`] lets a peer server drain before cutting it.
const CLOSE_TASK_GRACE: Duration = Duration::from_millis(500);
/// How long [`Node::close`] waits for the member's background tasks, which
/// end on their own once Raft has stopped.
const CLOSE_TASKS_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open a member.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// etcd's `--name`.
    pub name: String,
    /// Where the data lives (etcd's `--data-dir`).
    pub data_dir: PathBuf,
    /// This member's peer URLs (they determine its id, as in etcd).
    pub peer_urls: Vec<String>,
    /// This member's advertised client URLs.
    pub client_urls: Vec<String>,
    /// etcd's `--initial-cluster-token`.
    pub cluster_token: String,
    /// Request limits.
    pub limits: Limits,
    /// Raft heartbeat interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Raft election timeout in milliseconds.
    pub election_timeout_ms: u64,
    /// etcd's `--snapshot-count`: applied entries between snapshots, after
    /// which the WAL before the snapshot is removed.
    pub snapshot_count: u64,
    /// etcd's `--experimental-snapshot-catchup-entries`: entries kept in the
    /// WAL behind a snapshot, so a follower a little behind needs no snapshot.
    pub snapshot_catchup_entries: u64,
    /// etcd's `--compaction-batch-limit`: key-table rows a compaction's
    /// background deletion looks at per transaction.
    pub compaction_batch_limit: usize,
    /// etcd's `--compaction-sleep-interval`: the pause between two of those
    /// transactions, so applies are not held up.
    pub compaction_sleep_interval: std::time::Duration,
    /// etcd's `--initial-cluster`: every initial member's name and peer URLs.
    /// Empty means a one-member cluster of this member alone.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// etcd's `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// Where to serve the peer protocol (etcd's `--listen-peer-urls`); empty
    /// for a one-member store that never talks to peers.
    pub listen_peer_addrs: Vec<ListenAddr>,
    /// The peer port's TLS, both sides: required by a TLS listen address, and
    /// used to dial `https://` peer URLs.
    pub peer_tls: Option<PeerTls>,
    /// etcd's corruption checks (`--feature-gates=InitialCorruptCheck=true`,
    /// `--corrupt-check-time`, `--feature-gates=CompactHashCheck=true`); all off
    /// by default, as in etcd.
    pub corruption_checks: CorruptionChecks,
    /// etcd's `--force-new-cluster`: a member whose cluster lost its quorum for
    /// good restarts as the only member of it, keeping its data, cluster id and
    /// member id (see [`bramble_raft::force_new_cluster`]). No effect on a data
    /// dir that holds no cluster yet. Not with [`ClusterState::Existing`].
    pub force_new_cluster: bool,
    /// etcd's `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`.
    pub auth: bramble_server::auth::AuthOptions,
    /// Where to serve etcd's gRPC API (and its `/health`, `/metrics`, ...
    /// endpoints) to clients over the network, as etcd's
    /// `--listen-client-urls`: any etcd client or `etcdctl` can then use
    /// the member. Empty (the default): only this program's calls. Port 0
    /// picks a free port; [`Node::client_addrs`] says which.
    pub listen_client_addrs: Vec<ListenAddr>,
    /// The client port's TLS: required by a TLS listen address.
    pub client_tls: Option<Arc<bramble_tls::ServerTls>>,
    /// etcd's `--grpc-keepalive-*` for client connections.
    pub client_keepalive: bramble_server::Keepalive,
}

/// One address to listen on, and whether it speaks TLS (an `https://` URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Whether connections there speak TLS.
    pub tls: bool,
}

impl From<SocketAddr> for ListenAddr {
    /// A plain-text listen address.
    fn from(addr: SocketAddr) -> Self {
        ListenAddr { addr, tls: false }
    }
}

/// The peer port's TLS: how this member accepts peers, and how it dials them.
#[derive(Debug, Clone)]
pub struct PeerTls {
    /// The accepting side (the peer listeners).
    pub server: Arc<bramble_tls::ServerTls>,
    /// The dialling side (connections to other members).
    pub client: Arc<bramble_tls::ClientTls>,
}

/// etcd's `--initial-cluster-state`: whether the first start creates a
/// cluster or joins one (after `member add`). Ignored once the data dir exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster with the initial members.
    New,
    /// Join a running cluster that already lists this member.
    Existing,
}

impl NodeOptions {
    /// How this member dials its peers.
    pub(crate) fn peer_connector(&self) -> bramble_tls::Connector {
        bramble_tls::Connector::new(self.peer_tls.as_ref().map(|t| t.client.clone()))
    }

    /// etcd's defaults for a member named `default`, data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeOptions {
            name: defaults::NAME.into(),
            data_dir: data_dir.into(),
            peer_urls: vec![defaults::PEER_URL.into()],
            client_urls: vec![defaults::CLIENT_URL.into()],
            cluster_token: defaults::INITIAL_CLUSTER_TOKEN.into(),
            limits: Limits::default(),
            heartbeat_interval_ms: defaults::HEARTBEAT_INTERVAL_MS,
            election_timeout_ms: defaults::ELECTION_TIMEOUT_MS,
            snapshot_count: defaults::SNAPSHOT_COUNT,
            snapshot_catchup_entries: defaults::SNAPSHOT_CATCHUP_ENTRIES,
            compaction_batch_limit: defaults::COMPACTION_BATCH_LIMIT,
            compaction_sleep_interval: defaults::COMPACTION_SLEEP_INTERVAL,
            initial_cluster: Vec::new(),
            initial_cluster_state: ClusterState::New,
            listen_peer_addrs: Vec::new(),
            peer_tls: None,
            corruption_checks: CorruptionChecks::default(),
            force_new_cluster: false,
            auth: Default::default(),
            listen_client_addrs: Vec::new(),
            client_tls: None,
            client_keepalive: Default::default(),
        }
    }

    /// The initial members (name, peer URLs): `--initial-cluster`, or this
    /// member alone.
    pub(crate) fn initial_members(&self) -> Vec<(String, Vec<String>)> {
        if self.initial_cluster.is_empty() {
            vec![(self.name.clone(), self.peer_urls.clone())]
        } else {
            self.initial_cluster.clone()
        }
    }
}

/// A running member of a Bramble cluster, opened in process.
pub struct Node {
    ctx: Arc<ServerContext>,
    /// The member's calls; [`Node`] dereferences to it.
    client: Client,
    /// Stops the peer listeners and the publish task: cancelled by
    /// [`Node::close`], or when the `Node` is dropped (`_stop_on_drop`).
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    peer_servers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The client listeners' addresses, as bound.
    client_addrs: Vec<ListenAddr>,
    /// Stops serving clients: cancelled first by [`Node::close`], so their
    /// requests drain while the member still runs.
    stop_clients: CancellationToken,
    client_servers: std::sync::Mutex<Vec<crate::client_listeners::ServerTask>>,
    /// Becomes true once the cluster removed this member.
    removed: watch::Receiver<bool>,
    /// Becomes true once this member published its name and client URLs.
    published: watch::Receiver<bool>,
}

impl Node {
    /// Opens the store in `opts.data_dir` (bootstrapping or joining a cluster
    /// the first time, as `initial_cluster_state` says), serves the peer
    /// protocol and starts Raft. Returns when it is ready to serve clients.
    pub async fn open(opts: NodeOptions) -> Result<Node, Error> {
        bramble_raft::network::check_max_request_bytes(opts.limits.max_request_bytes)
            .map_err(|e| Error::invalid_argument(format!("max request bytes: {e}")))?;
        // Bind first: a port in use should fail before any data is touched.
        let peer_server_tls = opts.peer_tls.as_ref().map(|t| t.server.clone());
        let peer_listeners =
            crate::client_listeners::bind(&opts.listen_peer_addrs, &peer_server_tls, "peers")
                .await?;
        let client_listeners =
            crate::client_listeners::bind(&opts.listen_client_addrs, &opts.client_tls, "clients")
                .await?;
        let client_addrs = client_listeners
            .iter()
            .map(|(l, tls)| {
                let addr = l
                    .local_addr()
                    .map_err(|e| Error::unavailable(format!("client listener's address: {e}")))?;
                Ok(ListenAddr {
                    addr,
                    tls: tls.is_some(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if opts.force_new_cluster && opts.initial_cluster_state == ClusterState::Existing {
            // Joining a cluster and making one of this member alone contradict
            // each other; etcd would silently pick one.
            return Err(Error::invalid_argument(
                "--force-new-cluster cannot be used with --initial-cluster-state existing: it \
                 makes this member a cluster of its own",
            ));
        }
        let ids = crate::identity_file::load_or_create(&opts).await?;
        let member = MemberAttributes {
            name: opts.name.clone(),
            peer_urls: opts.peer_urls.clone(),
            client_urls: opts.client_urls.clone(),
        };
        let mut cfg = NodeConfig::new(&opts.data_dir, ids.member_id, member);
        cfg.heartbeat_interval_ms = opts.heartbeat_interval_ms;
        cfg.election_timeout_ms = opts.election_timeout_ms;
        cfg.cluster_id = ids.cluster_id;
        cfg.peer_connector = opts.peer_connector();
        cfg.snapshot_count = opts.snapshot_count;
        cfg.snapshot_catchup_entries = opts.snapshot_catchup_entries;
        cfg.compaction_batch_limit = opts.compaction_batch_limit;
        cfg.compaction_sleep_interval = opts.compaction_sleep_interval;
        cfg.limits = bramble_raft::admission::Limits {
            max_request_bytes: opts.limits.max_request_bytes,
            max_txn_ops: opts.limits.max_txn_ops,
        };
        cfg.bootstrap = match opts.initial_cluster_state {
            ClusterState::New => Some(crate::identity_file::initial_members(&opts)?),
            ClusterState::Existing => None,
        };
        cfg.force_new_cluster = opts.force_new_cluster;
        // A forced member is a one-member cluster too.
        let single = opts.force_new_cluster || cfg.bootstrap.as_ref().is_some_and(|m| m.len() == 1);
        let db_path = cfg.db_path();
        // etcd's `memberInitialized`: a new member has nothing to check yet.
        let initialized = db_path.exists();
        let node = RaftNode::start(cfg).await.map_err(Error::unavailable)?;

        let stop = CancellationToken::new();
        // An error below drops it, which stops what was started.
        let stop_on_drop = stop.clone().drop_guard();
        let mut peer_servers = Vec::new();
        // Followers' lease renewals reach the leader's clock through this.
        let leader_lease = Arc::new(OnceLock::new());
        for (l, tls) in peer_listeners {
            let service = node.peer_service();
            let lease_service = LeaderLeaseService::new(leader_lease.clone());
            let hash_service = CorruptionPeerService::new(&node);
            let stopped = stop.clone().cancelled_owned();
            peer_servers.push(tokio::spawn(async move {
                let incoming = bramble_tls::incoming::incoming(bramble_server::incoming(l), tls);
                let result = tonic::transport::Server::builder()
                    .add_service(service)
                    .add_service(lease_service)
                    .add_service(hash_service)
                    .serve_with_incoming_shutdown(incoming, stopped)
                    .await;
                if let Err(e) = result {
                    tracing::error!("peer server: {e}");
                }
            }));
        }
        // A one-member cluster recovers from its own WAL: wait, so the first
        // client sees everything it saw before a restart. A member of a larger
        // cluster needs a quorum, which may be starting right now too; it
        // serves at once, as etcd does, and requests wait for a leader.
        if single {
            node.wait_recovered(Duration::from_secs(60))
                .await
                .map_err(Error::unavailable)?;
        }
        // etcd checks before it serves peers too; here the peer listener is up
        // (peers checking at the same time must get an answer), and clients are
        // served only once this passed.
        if initialized && opts.corruption_checks.initial {
            if let Err(why) = bramble_server::corruption::initial_check(&node).await {
                node.shutdown().await;
                return Err(Error::new(
                    ErrorKind::CorruptCluster,
                    tonic::Code::DataLoss,
                    why,
                ));
            }
        }

        // Auth enabled in the data (only possible by a raft entry this build never
        // proposes) would be served without any permission check: refuse instead.
        if node.store().auth_enabled() && !bramble_server::auth::ENFORCEMENT_IMPLEMENTED {
            node.shutdown().await;
            return Err(Error::new(
                ErrorKind::Other,
                tonic::Code::FailedPrecondition,
                "authentication is enabled in this data dir, and this build does not enforce \
                 permissions: refusing to serve it unauthenticated",
            ));
        }
        node.store().auth_set_token_ttl(opts.auth.token_ttl);
        let space_in_use = bramble_server::space::SpaceInUse::new(node.store().clone());
        let ctx = Arc::new(ServerContext {
            node: Arc::new(node),
            identity: ids,
            limits: opts.limits,
            gate: ProposalGate::new(opts.limits.max_request_bytes),
            tasks: TaskTracker::new(),
            metrics: bramble_server::metrics::Metrics::new(),
            auth: bramble_server::auth::Auth::new(opts.auth.clone()),
            db_path,
            space_in_use,
            quota: bramble_server::quota::Quota::from_flag(opts.limits.quota_backend_bytes),
            lessor: Lessor::new(
                ids.member_id,
                min_lease_ttl(opts.heartbeat_interval_ms, opts.election_timeout_ms),
                std::time::Duration::from_millis(opts.election_timeout_ms),
            ),
        });
        Lessor::start(&ctx);
        bramble_server::quota::start_monitor(&ctx);
        bramble_server::corruption::start(&ctx, opts.corruption_checks);
        let _ = leader_lease.set(LeaseService::new(ctx.clone()));
        let (removed_tx, removed) = watch::channel(false);
        let (published_tx, published) = watch::channel(false);
        ctx.tasks.spawn(crate::publish::publish_and_watch(
            ctx.node.clone(),
            opts.name.clone(),
            opts.client_urls.clone(),
            stop.clone(),
            crate::publish::Signals {
                published: published_tx,
                removed: removed_tx,
            },
        ));
        let client = Client::new(ctx.clone(), stop.child_token());
        let stop_clients = stop.child_token();
        let client_servers = client_listeners
            .into_iter()
            .map(|l| {
                crate::client_listeners::serve_when_published(
                    ctx.clone(),
                    opts.client_keepalive,
                    l,
                    published.clone(),
                    stop_clients.clone(),
                )
            })
            .collect();
        Ok(Node {
            ctx,
            client,
            stop,
            _stop_on_drop: stop_on_drop,
            peer_servers: std::sync::Mutex::new(peer_servers),
            client_addrs,
            stop_clients,
            client_servers: std::sync::Mutex::new(client_servers),
            removed,
            published,
        })
    }

    /// Resolves once the cluster removed this member (etcd's member then
    /// stops: it may not serve or vote any more).
    pub async fn removed(&self) {
        let mut rx = self.removed.clone();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Turns true once this member's name and client URLs are in the
    /// membership (etcd's publish); the gRPC server serves clients from then
    /// on, as etcd does. A restarted member that published before is
    /// published at once.
    pub fn published(&self) -> watch::Receiver<bool> {
        self.published.clone()
    }

    /// Where this member serves gRPC clients
    /// ([`NodeOptions::listen_client_addrs`], with the ports actually bound).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use bramble::{Node, NodeOptions};
    ///
    /// let mut opts = NodeOptions::new(dir.path());
    /// opts.listen_client_addrs = vec!["127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()];
    /// let node = Node::open(opts).await?;
    /// let addr = node.client_addrs()[0].addr;
    /// assert_ne!(addr.port(), 0);
    /// // `etcdctl --endpoints http://{addr} get ...` works from here on.
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn client_addrs(&self) -> &[ListenAddr] {
        &self.client_addrs
    }

    /// The shared server state, for serving gRPC clients too.
    pub fn context(&self) -> &Arc<ServerContext> {
        &self.ctx
    }

    /// Resolves once this member failed for good: a WAL write or fdatasync,
    /// a state machine apply or checkpoint, a snapshot, or the Raft core
    /// itself. From then on every call fails with this error; close the node.
    pub async fn fatal(&self) -> FatalError {
        self.ctx.node.fatal().wait().await
    }

    /// A handle on this member's calls that tasks can own (cheap to clone;
    /// the node's own calls are the same, through `Deref`). Once the node is
    /// closed or dropped, its calls fail with
    /// [`ErrorKind::Stopped`](crate::ErrorKind::Stopped).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Stops serving clients (their requests get 2 seconds to finish), stops
    /// Raft and the peer listeners and makes the state machine durable
    /// (unless the member failed for good: then its disk is left alone). A
    /// failure of that last checkpoint makes [`Client::fatal_error`] report it.
    ///
    /// Returns once no task of this member holds its Raft node any more, so
    /// dropping the `Node` releases the data dir (the WAL lock and the
    /// database) and the peer port: the same dir can be opened again at once.
    /// Services built on [`Self::context`] hold the member too: stop serving
    /// and drop them first.
    pub async fn close(&self) {
        // Clients first: their requests drain while the member still runs.
        self.stop_clients.cancel();
        let client_servers = self
            .client_servers
            .lock()
            .map(|mut s| s.drain(..).collect())
            .unwrap_or_default();
        crate::client_listeners::drain(client_servers).await;
        self.ctx.node.shutdown().await;
        self.stop.cancel();
        let servers: Vec<_> = self
            .peer_servers
            .lock()
            .map(|mut s| s.drain(..).collect())
            .unwrap_or_default();
        for mut server in servers {
            // A peer server drains its connections gracefully; a peer that
            // keeps a stream open must not hold the close up: cut it.
            if tokio::time::timeout(CLOSE_TASK_GRACE, &mut server)
                .await
                .is_err()
            {
                tracing::debug!("peer server did not stop in time: aborting it");
                server.abort();
                let _ = server.await;
            }
        }
        // Every background task of the member ends once Raft has stopped.
        self.ctx.tasks.close();
        if tokio::time::timeout(CLOSE_TASKS_TIMEOUT, self.ctx.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "close: {} background tasks still hold the member; its data dir stays \
                 locked until they end",
                self.ctx.tasks.len()
            );
        }
    }
}

impl std::ops::Deref for Node {
    type Target = Client;

    /// Every call of [`Client`] is a call of the node.
    fn deref(&self) -> &Client {
        &self.client
    }
}
