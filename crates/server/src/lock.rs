//! etcd's `v3lock` service (Lock, Unlock), built as etcd builds it: its
//! client-side mutex recipe (`clientv3/concurrency/mutex.go`) run inside the
//! server, here on Bramble's own KV service in process instead of a loopback
//! client.
//!
//! A lock `name` is the set of keys under `name/`; each contender puts
//! `name/<lease hex>` attached to its lease, and the contender whose key has
//! the smallest create revision holds the lock. Waiting is "no key under the
//! prefix with a smaller create revision is left", re-checked on every applied
//! revision ([`RaftNode::subscribe_revisions`](bramble_raft::RaftNode)).
//!
//! [`Recipe`] holds the pieces the election service shares with the lock.

use std::sync::Arc;

use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::kv_server::Kv;
use bramble_api::etcdserverpb::lease_server::Lease;
use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use bramble_api::v3lockpb::lock_server::Lock;
use bramble_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::errors;
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::ServerContext;

/// TTL of the lease a session grants when the request names none (etcd's
/// `concurrency` default session TTL, seconds).
const DEFAULT_SESSION_TTL: i64 = 60;

/// The concurrency recipes' building blocks on top of the in-process KV and
/// Lease services.
#[derive(Clone)]
pub(crate) struct Recipe {
    ctx: Arc<ServerContext>,
    kv: KvService,
    /// Cancelled when the server stops: waits end with `server stopped`.
    stop: CancellationToken,
    /// The credentials of the client the recipe runs for: its requests are
    /// checked as that user's, as etcd's v3lock and v3election make theirs
    /// through a client carrying the caller's token.
    creds: Option<(MetadataMap, Option<bramble_tls::ConnInfo>)>,
}

impl Recipe {
    /// Recipes over `ctx`; waits end when `stop` is cancelled.
    pub(crate) fn new(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        Recipe {
            kv: KvService::new(ctx.clone()),
            ctx,
            stop,
            creds: None,
        }
    }

    /// This recipe, run as the client that made `req`.
    pub(crate) fn as_caller<T>(&self, req: &Request<T>) -> Recipe {
        let mut metadata = MetadataMap::new();
        for key in crate::auth::who::CREDENTIAL_KEYS {
            if let Some(v) = req.metadata().get(key) {
                metadata.insert(key, v.clone());
            }
        }
        let conn = req.extensions().get::<bramble_tls::ConnInfo>().cloned();
        Recipe {
            creds: Some((metadata, conn)),
            ..self.clone()
        }
    }

    /// A request carrying the caller's credentials.
    fn request<T>(&self, message: T) -> Request<T> {
        let Some((metadata, conn)) = &self.creds else {
            return Request::new(message);
        };
        let mut extensions = tonic::Extensions::new();
        if let Some(conn) = conn {
            extensions.insert(conn.clone());
        }
        Request::from_parts(metadata.clone(), extensions, message)
    }

    /// etcd's `concurrency.NewSession(WithLease(lease))`: lease 0 means "grant
    /// one" (TTL 60 s, never kept alive: the server orphans the session).
    pub(crate) async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = LeaseService::new(self.ctx.clone())
            .lease_grant(self.request(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL,
                id: 0,
            }))
            .await
            .map_err(client_error)?
            .into_inner();
        if !grant.error.is_empty() {
            return Err(errors::internal(grant.error));
        }
        Ok(grant.id)
    }

    /// A txn through the KV service (validated and proposed as a client's).
    pub(crate) async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        let resp = self.kv.txn(self.request(req)).await.map_err(client_error)?;
        Ok(resp.into_inner())
    }

    /// A range through the KV service.
    pub(crate) async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        let resp = self
            .kv
            .range(self.request(req))
            .await
            .map_err(client_error)?;
        Ok(resp.into_inner())
    }

    /// Deletes one key; the response header.
    pub(crate) async fn delete(&self, key: Vec<u8>) -> Result<Option<ResponseHeader>, Status> {
        let resp = self
            .kv
            .delete_range(self.request(DeleteRangeRequest {
                key,
                ..Default::default()
            }))
            .await
            .map_err(client_error)?
            .into_inner();
        Ok(resp.header)
    }

    /// The key under `prefix` with the smallest create revision (etcd's
    /// `WithFirstCreate`), with the range header.
    pub(crate) async fn first_created(
        &self,
        prefix: &[u8],
        serializable: bool,
    ) -> Result<(Option<KeyValue>, Option<ResponseHeader>), Status> {
        let resp = self
            .range(RangeRequest {
                key: prefix.to_vec(),
                range_end: bramble_api::prefix_range_end(prefix),
                limit: 1,
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Create as i32,
                serializable,
                ..Default::default()
            })
            .await?;
        Ok((resp.kvs.into_iter().next(), resp.header))
    }

    /// A receiver of applied revisions, or `server stopped` once the server stops.
    pub(crate) fn revisions(&self) -> watch::Receiver<i64> {
        self.ctx.node.subscribe_revisions()
    }

    /// Waits for the next applied revision (or a stop).
    pub(crate) async fn next_revision(
        &self,
        revs: &mut watch::Receiver<i64>,
    ) -> Result<(), Status> {
        if self.stop.is_cancelled() {
            return Err(errors::stopped());
        }
        tokio::select! {
            changed = revs.changed() => changed.map_err(|_| errors::stopped()),
            _ = self.stop.cancelled() => Err(errors::stopped()),
        }
    }

    /// etcd's `waitDeletes`: returns once no key under `prefix` has a create
    /// revision at or below `max_create_rev`, with the header of the range that
    /// saw it.
    pub(crate) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        let mut revs = self.revisions();
        let mut serializable = false;
        loop {
            revs.borrow_and_update();
            let resp = self
                .range(RangeRequest {
                    key: prefix.to_vec(),
                    range_end: bramble_api::prefix_range_end(prefix),
                    limit: 1,
                    sort_order: SortOrder::Descend as i32,
                    sort_target: SortTarget::Create as i32,
                    max_create_revision: max_create_rev,
                    serializable,
                    ..Default::default()
                })
                .await?;
            if resp.kvs.is_empty() {
                return Ok(resp.header);
            }
            // Later checks follow the local apply feed, which has seen at
            // least what the first (linearizable) range saw.
            serializable = true;
            self.next_revision(&mut revs).await?;
        }
    }
}

/// An error as etcd's lock and election services pass it on: they call the
/// server through a Go client, which turns etcd's errors into plain Go errors,
/// so gRPC answers them with code Unknown and the same text.
pub(crate) fn client_error(status: Status) -> Status {
    if errors::is_etcd_server_error(&status) {
        // Still typed for an embedding program (its meaning did not change).
        errors::recoded(&status, tonic::Code::Unknown)
    } else {
        status
    }
}

/// `key == 0`-style compare on a key's create revision (etcd's
/// `Compare(CreateRevision(key), "=", rev)`).
pub(crate) fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        target: CompareTarget::Create as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

/// A txn put op.
pub(crate) fn put_op(key: &[u8], value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

/// A txn single-key get op.
pub(crate) fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The first key-value of a txn's range response at `index`, if any.
pub(crate) fn range_kv(resp: &TxnResponse, index: usize) -> Option<&KeyValue> {
    match resp.responses.get(index)?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first(),
        _ => None,
    }
}

/// A contender's key: `<prefix><lease as Go's %x>`.
pub(crate) fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key
}

/// `name` + `/`: the prefix all contenders of a lock or election share.
pub(crate) fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// Deletes a contender's key if the request that put it goes away before it
/// got the lock (etcd's `Mutex.Lock` unlocks when its wait fails).
pub(crate) struct DeleteOnDrop {
    recipe: Option<(Recipe, Vec<u8>)>,
}

impl DeleteOnDrop {
    /// Arms the guard for `key`.
    pub(crate) fn new(recipe: &Recipe, key: &[u8]) -> Self {
        DeleteOnDrop {
            recipe: Some((recipe.clone(), key.to_vec())),
        }
    }

    /// Keeps the key.
    pub(crate) fn disarm(mut self) {
        self.recipe = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some((recipe, key)) = self.recipe.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = recipe.delete(key).await {
                    tracing::warn!("releasing an abandoned lock key: {e}");
                }
            });
        }
    }
}

/// The Lock service.
#[derive(Clone)]
pub struct LockService {
    recipe: Recipe,
}

impl LockService {
    /// A Lock service over `ctx`; waiting requests end with `server stopped`
    /// once `stop` is cancelled.
    pub fn with_shutdown(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        LockService {
            recipe: Recipe::new(ctx, stop),
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    /// etcd's `Mutex.Lock`: put `name/<lease>` unless this lease already
    /// waits or holds it, then wait until every older contender is gone.
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let r = &self.recipe.as_caller(&req);
        let req = req.into_inner();
        let lease = r.session_lease(req.lease).await?;
        let prefix = prefix_of(&req.name);
        let key = contender_key(&prefix, lease);
        let owner = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: prefix.clone(),
                range_end: bramble_api::prefix_range_end(&prefix),
                limit: 1,
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Create as i32,
                ..Default::default()
            })),
        };
        let resp = r
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![put_op(&key, Vec::new(), lease), owner.clone()],
                failure: vec![get_op(&key), owner],
            })
            .await?;
        let mut my_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            match range_kv(&resp, 0) {
                Some(kv) => my_rev = kv.create_revision,
                // Deleted between compare and get cannot happen in one txn.
                None => return Err(errors::internal("lock key vanished inside a txn")),
            }
        }
        let guard = DeleteOnDrop::new(r, &key);
        let header = match range_kv(&resp, 1) {
            Some(o) if o.create_revision != my_rev => r.wait_deletes(&prefix, my_rev - 1).await?,
            _ => resp.header,
        };
        guard.disarm();
        Ok(Response::new(LockResponse { header, key }))
    }

    /// Deletes the lock key.
    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let recipe = self.recipe.as_caller(&req);
        let header = recipe.delete(req.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's server errors come back as Unknown with their text; others
    /// (Bramble's own, gRPC's) keep their code.
    #[test]
    fn client_error_passes_etcd_errors_on_as_go_errors() {
        let e = client_error(errors::no_leader());
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::Unknown, "etcdserver: no leader")
        );
        let e = client_error(errors::mvcc_status(
            &bramble_storage::mvcc::MvccError::LeaseNotFound,
        ));
        assert_eq!(
            (e.code(), e.message()),
            (
                tonic::Code::Unknown,
                "etcdserver: requested lease not found"
            )
        );
        let e = client_error(Status::cancelled("request cancelled"));
        assert_eq!(e.code(), tonic::Code::Cancelled);
        let e = client_error(errors::unimplemented("x"));
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }
}
