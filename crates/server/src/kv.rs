//! The etcd KV service: Range, Put, DeleteRange, Txn, Compact (and etcd
//! 3.7's RangeStream, served by `range_stream`).
//!
//! Requests are checked as etcd checks them, writes are proposed through Raft
//! and answered once applied, and reads are served from the local MVCC store
//! (after a Raft read barrier unless the request is serializable).

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::kv_server::Kv;
use bramble_api::etcdserverpb::request_op;
use bramble_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use bramble_storage::mvcc::{is_read_only, ApplyResult, AuthError, AuthInfo, MvccError, MvccStore};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::auth::who::{self, Credentials};
use crate::errors::{self, mvcc_status};
use crate::header::Identity;
use crate::validate;
use crate::ServerContext;

/// The KV service.
#[derive(Clone)]
pub struct KvService {
    ctx: Arc<ServerContext>,
}

impl KvService {
    /// A KV service answering from `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        KvService { ctx }
    }

    fn identity(&self) -> Identity {
        self.ctx.identity
    }

    /// Proposes a write and waits for its result. The request's checks and
    /// the size limit are the proposal's (`bramble_raft::admission`, which a
    /// leader applies to forwarded commands too).
    async fn propose(&self, op: Op, who: Option<AuthInfo>) -> Result<ApplyResult, Status> {
        // etcd's quota servers check puts and txns before they are proposed.
        crate::quota::check(&self.ctx, &op).await?;
        let cmd = Command {
            auth: None,
            op: Some(op),
        };
        let result = self.ctx.propose_as(cmd, who.as_ref()).await?;
        match result {
            ApplyResult::Error(e) => Err(mvcc_status(&e)),
            ok => Ok(ok),
        }
    }

    /// Runs `read` on the local store, after a Raft read barrier unless the
    /// request is `serializable`, off the async workers (a big range is CPU
    /// and disk work). etcd's `doSerialize`: `chk` first checks the
    /// permissions of whoever `creds` name, and a read that raced an auth
    /// change is refused as made with an old revision.
    async fn local_read<T: Send + 'static>(
        &self,
        creds: Credentials,
        serializable: bool,
        chk: impl FnOnce(&MvccStore, &AuthInfo) -> Result<(), MvccError> + Send + 'static,
        read: impl FnOnce(&MvccStore) -> Result<T, MvccError> + Send + 'static,
    ) -> Result<T, Status> {
        let ai = read_access(&self.ctx, &creds, serializable).await?;
        let store = self.ctx.node.store().clone();
        tokio::task::spawn_blocking(move || {
            chk(&store, &ai)?;
            let out = read(&store)?;
            if ai.revision != 0 && ai.revision != store.auth_revision() {
                return Err(AuthError::AuthOldRevision.into());
            }
            Ok(out)
        })
        .await
        .map_err(errors::internal)?
        .map_err(|e| mvcc_status(&e))
    }

    /// A range, served locally.
    async fn range_local(
        &self,
        creds: Credentials,
        req: RangeRequest,
    ) -> Result<RangeResponse, Status> {
        validate::check_range(&req)?;
        let (key, end) = (req.key.clone(), req.range_end.clone());
        let chk = move |store: &MvccStore, ai: &AuthInfo| {
            Ok(store.auth_check_permitted(ai, &key, &end, PermType::Read)?)
        };
        let mut resp = self
            .local_read(creds, req.serializable, chk, move |store| store.range(&req))
            .await?;
        self.identity().fill(&mut resp.header, &self.ctx.node);
        Ok(resp)
    }

    /// A txn that only reads is served like a range, as etcd does: locally
    /// (linearizable unless every range is serializable), without a Raft
    /// proposal or a WAL write.
    async fn txn_read_only(
        &self,
        creds: Credentials,
        req: TxnRequest,
    ) -> Result<TxnResponse, Status> {
        let serializable = req.success.iter().chain(&req.failure).all(|op| {
            matches!(&op.request, Some(request_op::Request::RequestRange(r)) if r.serializable)
        });
        let req = Arc::new(req);
        let checked = req.clone();
        let chk = move |store: &MvccStore, ai: &AuthInfo| store.auth_check_txn(ai, &checked);
        let mut resp = self
            .local_read(creds, serializable, chk, move |store| {
                store.txn_read_only(&req)
            })
            .await?;
        self.identity().fill(&mut resp.header, &self.ctx.node);
        Ok(resp)
    }
}

/// What every local read does first: refuses reads on a member that failed for
/// good (its store no longer moves, so serializable reads too), waits for a Raft
/// read barrier unless `serializable`, and returns who `creds` name (the empty
/// user when nobody).
pub(crate) async fn read_access(
    ctx: &ServerContext,
    creds: &Credentials,
    serializable: bool,
) -> Result<AuthInfo, Status> {
    ctx.node.check_alive().map_err(crate::propose_status)?;
    if !serializable {
        ctx.node
            .read_barrier()
            .await
            .map_err(crate::propose_status)?;
    }
    ctx.settle(creds).await;
    Ok(who::or_empty(ctx.who_from(creds)?))
}

fn unexpected(what: &str) -> Status {
    errors::internal(format!("unexpected apply result for {what}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let creds = Credentials::of(&req);
        self.range_local(creds, req.into_inner())
            .await
            .map(Response::new)
    }

    type RangeStreamStream =
        Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

    /// etcd 3.7's streamed range, in chunks bounded in bytes (`range_stream`).
    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let creds = Credentials::of(&req);
        crate::range_stream::serve(self.ctx.clone(), creds, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let req = req.into_inner();
        match self.propose(Op::Put(req), who).await? {
            ApplyResult::Put(mut r) => {
                self.identity().fill(&mut r.header, &self.ctx.node);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let req = req.into_inner();
        match self.propose(Op::DeleteRange(req), who).await? {
            ApplyResult::DeleteRange(mut r) => {
                self.identity().fill(&mut r.header, &self.ctx.node);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("delete_range")),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        // Checked before the read-only test walks it (its nesting is bounded
        // here); a write is checked again as a proposal, which is cheap.
        validate::check_txn(&req, self.ctx.limits.max_txn_ops)?;
        if is_read_only(&req) {
            return self.txn_read_only(creds, req).await.map(Response::new);
        }
        self.ctx.settle(&creds).await;
        let who = self.ctx.who_from(&creds)?;
        match self.propose(Op::Txn(req), who).await? {
            ApplyResult::Txn(mut r) => {
                self.identity().fill(&mut r.header, &self.ctx.node);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // etcd 3.6: an admin only.
        self.ctx.require_admin(&req).await?;
        let who = self.ctx.who(&req).await?;
        let req = req.into_inner();
        let (rev, physical) = (req.revision, req.physical);
        match self.propose(Op::Compaction(req), who).await? {
            ApplyResult::Compaction(mut r) => {
                if physical {
                    wait_compacted(self.ctx.node.store(), rev).await;
                }
                self.identity().fill(&mut r.header, &self.ctx.node);
                Ok(Response::new(r))
            }
            _ => Err(unexpected("compact")),
        }
    }
}

/// etcd's `physical`: waits until this member's store has deleted the rows of a
/// compaction at `rev` (or a later one), which happens in the background after
/// the apply. Polls: a dropped request (the client went away) stops waiting.
async fn wait_compacted(store: &MvccStore, rev: i64) {
    const POLL: std::time::Duration = std::time::Duration::from_millis(10);
    while store.finished_compact_revision() < rev {
        tokio::time::sleep(POLL).await;
    }
}
