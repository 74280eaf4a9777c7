//! The embedding API: a Bramble member inside your own Rust program, with
//! typed get/range/put/delete/txn/compact calls that need no gRPC.
//!
//! Calls go through the same checks, Raft proposals and error mapping as the
//! gRPC KV service (they *are* the KV service, called in process), so an
//! embedded store behaves exactly like a `bramble` server, errors included.

use std::path::PathBuf;
use std::sync::Arc;

use bramble_api::etcdserverpb::kv_server::Kv;
use bramble_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use bramble_raft::{Member, NodeConfig, RaftNode};
use bramble_server::kv::KvService;
use bramble_server::lease::expiry::min_lease_ttl;
use bramble_server::lease::Lessor;
use bramble_server::{Identity, Limits, ServerContext};

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
}

impl NodeOptions {
    /// etcd's defaults for a member named `default`, data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeOptions {
            name: "default".into(),
            data_dir: data_dir.into(),
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
            cluster_token: "etcd-cluster".into(),
            limits: Limits::default(),
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
        }
    }
}

/// An error from the store, with etcd's gRPC code and message
/// (e.g. `etcdserver: mvcc: required revision has been compacted`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The gRPC status code etcd would answer with.
    pub code: tonic::Code,
    /// etcd's error text.
    pub message: String,
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// A running member of a Bramble cluster, opened in process.
pub struct Node {
    ctx: Arc<ServerContext>,
    kv: KvService,
}

impl Node {
    /// Opens the store in `opts.data_dir` (creating a one-member cluster the
    /// first time) and starts Raft. Returns when it is ready to serve.
    pub async fn open(opts: NodeOptions) -> Result<Node, Error> {
        let (member_id, cluster_id) = crate::identity_file::load_or_create(&opts)?;
        let member = Member {
            name: opts.name.clone(),
            peer_urls: opts.peer_urls.clone(),
            client_urls: opts.client_urls.clone(),
        };
        let mut cfg = NodeConfig::new(&opts.data_dir, member_id, member);
        cfg.heartbeat_interval_ms = opts.heartbeat_interval_ms;
        cfg.election_timeout_ms = opts.election_timeout_ms;
        let db_path = cfg.db_path();
        let node = RaftNode::start(cfg).await.map_err(|e| Error {
            code: tonic::Code::Unavailable,
            message: e.to_string(),
        })?;
        let ctx = Arc::new(ServerContext {
            node: Arc::new(node),
            identity: Identity {
                cluster_id,
                member_id,
            },
            limits: opts.limits,
            db_path,
            lessor: Lessor::new(
                member_id,
                min_lease_ttl(opts.heartbeat_interval_ms, opts.election_timeout_ms),
                std::time::Duration::from_millis(opts.election_timeout_ms),
            ),
        });
        Lessor::start(&ctx);
        let kv = KvService::new(ctx.clone());
        Ok(Node { ctx, kv })
    }

    /// The shared server state, for serving gRPC clients too.
    pub fn context(&self) -> &Arc<ServerContext> {
        &self.ctx
    }

    /// A linearizable get of one key.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, Error> {
        let resp = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// etcd's Range, with every field.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        Ok(self.kv.range(tonic::Request::new(req)).await?.into_inner())
    }

    /// Puts `value` at `key`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse, Error> {
        self.put_request(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }

    /// etcd's Put, with every field.
    pub async fn put_request(&self, req: PutRequest) -> Result<PutResponse, Error> {
        Ok(self.kv.put(tonic::Request::new(req)).await?.into_inner())
    }

    /// Deletes one key.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<DeleteRangeResponse, Error> {
        self.delete_range(DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await
    }

    /// etcd's DeleteRange, with every field.
    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Error> {
        Ok(self
            .kv
            .delete_range(tonic::Request::new(req))
            .await?
            .into_inner())
    }

    /// etcd's Txn: compares, then the success or failure ops, atomically.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Error> {
        Ok(self.kv.txn(tonic::Request::new(req)).await?.into_inner())
    }

    /// Compacts history before `revision`.
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<CompactionResponse, Error> {
        let req = CompactionRequest { revision, physical };
        Ok(self
            .kv
            .compact(tonic::Request::new(req))
            .await?
            .into_inner())
    }

    /// Stops Raft and makes the state machine durable.
    pub async fn close(&self) {
        self.ctx.node.shutdown().await;
    }
}
