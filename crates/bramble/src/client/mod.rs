//! [`Client`]: the calls of an embedded member, as a cheap, cloneable handle
//! that tasks can own. Every call goes through the same checks, Raft
//! proposals and error mapping as the gRPC service of the same name (they
//! *are* those services, called in process), so an embedded store answers
//! exactly as a `bramble` server would, errors included.
//!
//! - `options`: which keys a call covers, and the rest of its fields;
//! - `txn`: the transaction builder;
//! - `lease`: leases, and [`LeaseKeeper`] to keep one alive;
//! - `members`: cluster membership;
//! - `lock` and `election`: etcd's concurrency recipes, on a `session`
//!   lease;
//! - `watch`: watches, as streams of responses.

mod election;
mod lease;
mod lock;
mod members;
mod options;
mod session;
mod txn;
mod watch;

use std::sync::{Arc, OnceLock};

use bramble_api::etcdserverpb::kv_server::Kv;
use bramble_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use bramble_raft::FatalError;
use bramble_server::kv::KvService;
use bramble_server::lease::LeaseService;
use bramble_server::watch::WatchService;
use bramble_server::{ClusterService, ElectionService, LockService, ServerContext};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
pub use election::Leadership;
pub use lease::LeaseKeeper;
pub use lock::LockGuard;
pub use options::{DeleteOptions, PutOptions, RangeOptions};
pub use txn::{Compare, NumberCompare, Txn, TxnOp, ValueCompare};
pub use watch::{WatchOptions, WatchResponseExt, Watcher};

/// A handle on an embedded member's key-value store, leases, watches, locks,
/// elections and membership. Cloning is cheap (one reference count), and
/// every clone talks to the same member; a [`Node`](crate::Node) dereferences
/// to one, so its calls are the node's too.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bramble::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use bramble::{Node, NodeOptions, RangeOptions};
///
/// let node = Node::open(NodeOptions::new(dir.path())).await?;
/// let client = node.client();
/// let writer = tokio::spawn(async move { client.put("jobs/1", "resize").await });
/// writer.await.unwrap()?;
/// let jobs = node.range("jobs/", RangeOptions::new().prefix()).await?;
/// assert_eq!(jobs.count, 1);
/// # node.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Services>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("member_id", &self.inner.ctx.identity.member_id)
            .finish_non_exhaustive()
    }
}

/// The member's services, shared by every clone of a [`Client`].
struct Services {
    ctx: Arc<ServerContext>,
    kv: KvService,
    lease: LeaseService,
    cluster: ClusterService,
    lock: LockService,
    election: ElectionService,
    /// Made on the first watch: its hub is a task, which a member that is
    /// never watched need not run.
    watch: OnceLock<WatchService>,
    /// Ends the streams (watches, keep-alives, observes) when the member
    /// closes, as a server's shutdown does.
    stop: CancellationToken,
}

impl Client {
    /// A client of the member `ctx` serves; its streams end once `stop` is
    /// cancelled.
    pub(crate) fn new(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        Client {
            inner: Arc::new(Services {
                kv: KvService::new(ctx.clone()),
                lease: LeaseService::with_shutdown(ctx.clone(), stop.clone()),
                lock: LockService::with_shutdown(ctx.clone(), stop.clone()),
                election: ElectionService::with_shutdown(ctx.clone(), stop.clone()),
                cluster: ClusterService::new(ctx.clone()),
                watch: OnceLock::new(),
                ctx,
                stop,
            }),
        }
    }

    /// The member's fatal failure, if it had one.
    pub fn fatal_error(&self) -> Option<FatalError> {
        self.inner.ctx.node.fatal().get()
    }

    /// Fails if the member cannot serve any more: it failed for good, or it
    /// was closed (some calls would otherwise still work through a closed
    /// follower, e.g. a lease renewal it forwards to the leader: a closed
    /// member's [`LeaseKeeper`] must let its lease expire).
    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if let Some(e) = self.fatal_error() {
            return Err(e.into());
        }
        if self.inner.stop.is_cancelled() {
            return Err(bramble_server::errors::stopped().into());
        }
        Ok(())
    }

    /// Runs one call, unless the member failed for good or was closed; a
    /// call that fails because of such a failure reports it.
    pub(crate) async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        self.check_running()?;
        match call.await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(self.error(status)),
        }
    }

    /// The error for a failed call: the member's fatal failure if it had one
    /// since, else the service's answer.
    pub(crate) fn error(&self, status: tonic::Status) -> Error {
        match self.fatal_error() {
            Some(e) => e.into(),
            None => status.into(),
        }
    }

    /// A linearizable get of one key: its key-value pair, if it exists.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// node.put("greeting", "hello").await?;
    /// let kv = node.get("greeting").await?.expect("just put");
    /// assert_eq!(kv.value, b"hello");
    /// assert!(node.get("nothing").await?.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>, Error> {
        let resp = self.range(key, RangeOptions::new()).await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Reads the keys `opts` names, starting at `key` (etcd's Range).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::RangeOptions;
    ///
    /// for name in ["a", "b", "c"] {
    ///     node.put(format!("pis/{name}"), "up").await?;
    /// }
    /// let two = node.range("pis/", RangeOptions::new().prefix().limit(2)).await?;
    /// assert_eq!((two.kvs.len(), two.count, two.more), (2, 3, true));
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        opts: RangeOptions,
    ) -> Result<RangeResponse, Error> {
        self.range_request(opts.request(key)).await
    }

    /// etcd's Range, with every field as given.
    pub async fn range_request(&self, req: RangeRequest) -> Result<RangeResponse, Error> {
        self.call(self.inner.kv.range(tonic::Request::new(req)))
            .await
    }

    /// Puts `value` at `key`; the answer's header has the new revision.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let first = node.put("k", "1").await?;
    /// let second = node.put("k", "2").await?;
    /// assert!(second.header.unwrap().revision > first.header.unwrap().revision);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse, Error> {
        self.put_request(PutOptions::new().request(key, value))
            .await
    }

    /// Puts `value` at `key` with `opts` (a lease, the previous value, ...).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::PutOptions;
    ///
    /// node.put("k", "old").await?;
    /// let resp = node.put_with("k", "new", PutOptions::new().prev_kv()).await?;
    /// assert_eq!(resp.prev_kv.unwrap().value, b"old");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_with(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<PutResponse, Error> {
        self.put_request(opts.request(key, value)).await
    }

    /// etcd's Put, with every field as given.
    pub async fn put_request(&self, req: PutRequest) -> Result<PutResponse, Error> {
        self.call(self.inner.kv.put(tonic::Request::new(req))).await
    }

    /// Deletes one key; `deleted` in the answer is 1 if it existed.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<DeleteRangeResponse, Error> {
        self.delete_request(DeleteOptions::new().request(key)).await
    }

    /// Deletes the keys `opts` names, starting at `key`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::DeleteOptions;
    ///
    /// node.put("tmp/a", "1").await?;
    /// node.put("tmp/b", "2").await?;
    /// let gone = node.delete_with("tmp/", DeleteOptions::new().prefix()).await?;
    /// assert_eq!(gone.deleted, 2);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_with(
        &self,
        key: impl Into<Vec<u8>>,
        opts: DeleteOptions,
    ) -> Result<DeleteRangeResponse, Error> {
        self.delete_request(opts.request(key)).await
    }

    /// etcd's DeleteRange, with every field as given.
    pub async fn delete_request(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Error> {
        self.call(self.inner.kv.delete_range(tonic::Request::new(req)))
            .await
    }

    /// Runs a transaction: its compares, then its `and_then` or `or_else`
    /// operations, atomically (etcd's Txn).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::{Compare, Txn, TxnOp};
    ///
    /// let rev = node.put("counter", "1").await?.header.unwrap().revision;
    /// // Compare-and-swap: only if nobody changed it since.
    /// let cas = Txn::new()
    ///     .when([Compare::mod_revision("counter").eq(rev)])
    ///     .and_then([TxnOp::put("counter", "2")])
    ///     .or_else([TxnOp::get("counter")]);
    /// assert!(node.txn(cas.clone()).await?.succeeded);
    /// assert!(!node.txn(cas).await?.succeeded, "the revision moved on");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        self.txn_request(txn.into_request()).await
    }

    /// etcd's Txn, with every field as given.
    pub async fn txn_request(&self, req: TxnRequest) -> Result<TxnResponse, Error> {
        self.call(self.inner.kv.txn(tonic::Request::new(req))).await
    }

    /// Compacts the history before `revision`: reads at older revisions fail
    /// with [`ErrorKind::Compacted`](crate::ErrorKind::Compacted) from then
    /// on. `physical` waits until the space is reclaimed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::{ErrorKind, RangeOptions};
    ///
    /// let old = node.put("k", "1").await?.header.unwrap().revision;
    /// let new = node.put("k", "2").await?.header.unwrap().revision;
    /// node.compact(new, false).await?;
    /// let err = node.range("k", RangeOptions::new().revision(old)).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Compacted);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<CompactionResponse, Error> {
        let req = CompactionRequest { revision, physical };
        self.call(self.inner.kv.compact(tonic::Request::new(req)))
            .await
    }
}
