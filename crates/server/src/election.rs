//! etcd's `v3election` service (Campaign, Proclaim, Leader, Observe, Resign),
//! built as etcd builds it: its client-side election recipe
//! (`clientv3/concurrency/election.go`) run inside the server on Bramble's
//! own KV service.
//!
//! Candidates of election `name` put `name/<lease hex>` with their value; the
//! key with the smallest create revision is the leader. A `LeaderKey`
//! (name, key, create revision, lease) proves leadership: Proclaim and Resign
//! act only while that key still has that create revision.

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::etcdserverpb::{
    request_op, DeleteRangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use bramble_api::v3electionpb::election_server::Election;
use bramble_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::lock::{
    contender_key, create_revision_is, get_op, prefix_of, put_op, range_kv, DeleteOnDrop, Recipe,
};
use crate::ServerContext;

/// Observe streams buffer this many leader changes for a slow reader; beyond
/// it the observer waits (and later sends the leader as it then is).
const OBSERVE_QUEUE: usize = 16;

/// etcd's `ErrElectionNotLeader` (plain Go error: gRPC code Unknown).
pub(crate) fn not_leader() -> Status {
    crate::errors::typed(
        crate::errors::ErrorKind::ElectionNotLeader,
        Code::Unknown,
        "election: not leader",
    )
}

/// etcd's `ErrElectionNoLeader` (plain Go error: gRPC code Unknown).
pub(crate) fn no_leader() -> Status {
    crate::errors::typed(
        crate::errors::ErrorKind::ElectionNoLeader,
        Code::Unknown,
        "election: no leader",
    )
}

/// etcd's `ErrMissingLeaderKey` (plain Go error: gRPC code Unknown).
pub(crate) fn missing_leader_key() -> Status {
    crate::errors::typed(
        crate::errors::ErrorKind::MissingLeaderKey,
        Code::Unknown,
        "\"leader\" field must be provided",
    )
}

/// The Election service.
#[derive(Clone)]
pub struct ElectionService {
    recipe: Recipe,
}

impl ElectionService {
    /// An Election service over `ctx`; campaigns and observers end with
    /// `server stopped` once `stop` is cancelled.
    pub fn with_shutdown(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        ElectionService {
            recipe: Recipe::new(ctx, stop),
        }
    }

    /// etcd's `Election.Proclaim`: put `value` on the leader key if it still
    /// has the leader's create revision.
    async fn proclaim_value(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: Vec<u8>,
    ) -> Result<TxnResponse, Status> {
        let resp = self
            .recipe
            .txn(TxnRequest {
                compare: vec![create_revision_is(key, rev)],
                success: vec![put_op(key, value, lease)],
                failure: vec![],
            })
            .await?;
        if !resp.succeeded {
            return Err(not_leader());
        }
        Ok(resp)
    }

    /// etcd's `Election.Resign`: delete the leader key if it still has the
    /// leader's create revision.
    async fn resign_key(&self, key: &[u8], rev: i64) -> Result<TxnResponse, Status> {
        self.recipe
            .txn(TxnRequest {
                compare: vec![create_revision_is(key, rev)],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: key.to_vec(),
                            ..Default::default()
                        },
                    )),
                }],
                failure: vec![],
            })
            .await
    }

    /// The observe loop: send the leader, follow its key until it is deleted,
    /// then look for the next leader; ends when the client goes away or the
    /// server stops.
    async fn observe_loop(
        recipe: Recipe,
        prefix: Vec<u8>,
        tx: mpsc::Sender<Result<LeaderResponse, Status>>,
    ) -> Result<(), Status> {
        let mut revs = recipe.revisions();
        let mut serializable = false;
        let mut last: Option<KeyValue> = None;
        loop {
            revs.borrow_and_update();
            let (kv, header) = recipe.first_created(&prefix, serializable).await?;
            serializable = true;
            if let Some(kv) = kv {
                // A new leader, or the same leader with a new value.
                let changed = last.as_ref().is_none_or(|l| {
                    l.key != kv.key
                        || l.create_revision != kv.create_revision
                        || l.mod_revision != kv.mod_revision
                });
                if changed {
                    last = Some(kv.clone());
                    let resp = LeaderResponse {
                        header,
                        kv: Some(kv),
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            tokio::select! {
                next = recipe.next_revision(&mut revs) => next?,
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    /// etcd's `Election.Campaign`: enter as `name/<lease>` with `value` (or
    /// take over the key this lease already has, updating its value), then
    /// wait until every older candidate is gone.
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let this = ElectionService {
            recipe: self.recipe.as_caller(&req),
        };
        let req = req.into_inner();
        let r = &this.recipe;
        let lease = r.session_lease(req.lease).await?;
        let prefix = prefix_of(&req.name);
        let key = contender_key(&prefix, lease);
        let resp = r
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![put_op(&key, req.value.clone(), lease)],
                failure: vec![get_op(&key)],
            })
            .await?;
        let mut rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            let Some(kv) = range_kv(&resp, 0) else {
                return Err(crate::errors::internal(
                    "campaign key vanished inside a txn",
                ));
            };
            rev = kv.create_revision;
            if kv.value != req.value {
                if let Err(e) = this.proclaim_value(&key, rev, lease, req.value).await {
                    let _ = this.resign_key(&key, rev).await;
                    return Err(e);
                }
            }
        }
        let guard = DeleteOnDrop::new(r, &key);
        r.wait_deletes(&prefix, rev - 1).await?;
        guard.disarm();
        Ok(Response::new(CampaignResponse {
            header: resp.header,
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev,
                lease,
            }),
        }))
    }

    /// Updates the leader's value while it is still leader, else
    /// `election: not leader`.
    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let this = ElectionService {
            recipe: self.recipe.as_caller(&req),
        };
        let req = req.into_inner();
        let leader = req.leader.ok_or_else(missing_leader_key)?;
        let lease = this.recipe.session_lease(leader.lease).await?;
        // As the caller: with auth on, its token must allow the write.
        let resp = this
            .proclaim_value(&leader.key, leader.rev, lease, req.value)
            .await?;
        Ok(Response::new(ProclaimResponse {
            header: resp.header,
        }))
    }

    /// The current leader's key-value, or `election: no leader`.
    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let this = ElectionService {
            recipe: self.recipe.as_caller(&req),
        };
        let prefix = prefix_of(&req.into_inner().name);
        let (kv, header) = this.recipe.first_created(&prefix, false).await?;
        let kv = kv.ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    /// Streams the leader each time it changes (a new leader or a new value).
    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let this = ElectionService {
            recipe: self.recipe.as_caller(&req),
        };
        let prefix = prefix_of(&req.into_inner().name);
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let recipe = this.recipe.clone();
        tokio::spawn(async move {
            let errors = tx.clone();
            if let Err(e) = Self::observe_loop(recipe, prefix, tx).await {
                let _ = errors.send(Err(e)).await;
            }
        });
        let out = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }

    /// Deletes the leader key if it is still the leader's.
    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let this = ElectionService {
            recipe: self.recipe.as_caller(&req),
        };
        let leader = req.into_inner().leader.ok_or_else(missing_leader_key)?;
        this.recipe.session_lease(leader.lease).await?;
        let resp = this.resign_key(&leader.key, leader.rev).await?;
        Ok(Response::new(ResignResponse {
            header: resp.header,
        }))
    }
}
