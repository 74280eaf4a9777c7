//! The etcd Lease service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a bidirectional
//! stream), LeaseTimeToLive, LeaseLeases.
//!
//! - Grants and revokes are Raft commands; the MVCC store keeps the leases and the keys
//!   attached to them (`bramble_storage::mvcc::lease`). A grant asking for id 0 gets an
//!   id from etcd's id generator, chosen here, before proposing, so every replica
//!   applies the same grant; TTLs below etcd's minimum are raised to it here too.
//! - Renewals and remaining TTLs are the leader's clock ([`expiry::Lessor`]), which
//!   also revokes expired leases through Raft. The leader answers them only once a quorum
//!   has confirmed its leadership recently (etcd's `ensureLeadership`): a leader cut off
//!   from its peers must not renew a lease that the majority's new leader will expire.

pub mod expiry;
pub mod forward;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::lease_server::Lease;
use bramble_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use bramble_raft::{LeadershipError, ProposeError};
use bramble_storage::mvcc::{ApplyResult, AuthError, AuthInfo, MvccError};
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::who::{self, Credentials};
use crate::errors;
use crate::errors::{auth_status, mvcc_status};
use crate::ServerContext;
pub use expiry::Lessor;
use forward::HereError;

/// Keep-alive responses buffered per stream.
const OUT_BUFFER: usize = 16;

/// How long a renewal of an expired lease waits for its revoke (etcd waits for it too,
/// then answers TTL 0).
const EXPIRED_RENEW_WAIT: Duration = Duration::from_secs(5);

/// Leadership confirmations tried for one lease request (see `ensure_leadership`).
const CONFIRM_ATTEMPTS: usize = 2;

/// Auto-assigned ids tried before giving up on `lease already exists`.
const ID_ATTEMPTS: usize = 8;

/// The Lease service.
#[derive(Clone)]
pub struct LeaseService {
    ctx: Arc<ServerContext>,
    /// Cancelled when the server stops: keep-alive streams then end.
    stop: CancellationToken,
}

impl LeaseService {
    /// A Lease service over `ctx`; starts the expiry loop once per context (needs a
    /// Tokio runtime).
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        // Never cancelled: streams only end with their clients.
        Self::with_shutdown(ctx, CancellationToken::new())
    }

    /// Like [`LeaseService::new`], but keep-alive streams end with etcd's
    /// `etcdserver: server stopped` once `stop` is cancelled, instead of holding a
    /// graceful shutdown until its drain timeout.
    pub fn with_shutdown(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        Lessor::start(&ctx);
        LeaseService { ctx, stop }
    }

    async fn propose(&self, op: Op, who: Option<&AuthInfo>) -> Result<ApplyResult, Status> {
        let result = self
            .ctx
            .propose_as(
                Command {
                    auth: None,
                    op: Some(op),
                },
                who,
            )
            .await?;
        match result {
            ApplyResult::Error(e) => Err(mvcc_status(&e)),
            ok => Ok(ok),
        }
    }

    /// Leases are timed by the leader only: the `*_here` operations run on
    /// it, and a follower forwards to it (see [`forward`]). The term it leads in.
    fn check_leader(&self) -> Result<u64, HereError> {
        let node = &self.ctx.node;
        let status = node.status();
        if status.leader == node.member_id() {
            Ok(status.term)
        } else {
            Err(HereError::NotLeader)
        }
    }

    /// etcd's `ensureLeadership` (and `waitAppliedIndex`): a quorum acknowledged this
    /// member as the leader of `term` recently, and everything committed before is applied
    /// here. Returns until when renewing on the lease clock is safe; refuses with etcd's
    /// `not a primary lessor` when leadership cannot be confirmed.
    ///
    /// Why the bound is safe. Let `L` be the followers' leader lease and `X` the promote
    /// extension (an election timeout). The quorum's acknowledgement was sent no earlier
    /// than `start - L`, and no follower votes for another member within `L` of it, so no
    /// other member is elected before `start`; a new leader then gives every lease a
    /// whole TTL plus `X` from its election on (its clock starts over in its term). A
    /// renewal answered before `start + X/2` ends for its client (TTL counted from when the
    /// answer arrives) before the new leader may expire the lease, as long as the answer
    /// takes less than `X/2` to arrive.
    async fn ensure_leadership(&self, term: u64) -> Result<Instant, HereError> {
        let node = &self.ctx.node;
        let window = self.ctx.lessor.promote_extend() / 2;
        // A lagging state machine can make the apply wait outlast the window: then confirm
        // again, with the state applied by now.
        for _ in 0..CONFIRM_ATTEMPTS {
            let start = Instant::now();
            node.confirm_leadership(term, node.follower_lease(), window)
                .await
                .map_err(|e| {
                    tracing::warn!(term, error = %e, "lease request refused: leadership not confirmed");
                    match e {
                        LeadershipError::Stopped(why) => {
                            HereError::Failed(crate::propose_status(ProposeError::Stopped(why)))
                        }
                        LeadershipError::NotLeader | LeadershipError::NotConfirmed => {
                            HereError::NotPrimary
                        }
                    }
                })?;
            let until = start + window;
            if Instant::now() < until {
                return Ok(until);
            }
        }
        Err(HereError::NotPrimary)
    }

    fn header(&self) -> Option<ResponseHeader> {
        let mut h = None;
        self.ctx.identity.fill(&mut h, &self.ctx.node);
        h
    }

    /// etcd's lessor `Renew` on the leader, wherever this member is.
    async fn renew(&self, id: i64) -> Result<i64, Status> {
        forward::renew(self, id).await
    }

    /// etcd's lessor `Renew`, on the leader: the new TTL, or 0 when the lease does not
    /// exist (or expired and was revoked meanwhile).
    pub(crate) async fn renew_here(&self, id: i64) -> Result<i64, HereError> {
        let term = self.check_leader()?;
        let confirmed_until = self.ensure_leadership(term).await?;
        let store = self.ctx.node.store();
        // The lease table is in memory (no redb read): fine on this worker.
        let Some(info) = store.lease(id).map_err(|e| mvcc_status(&e))? else {
            return Ok(0);
        };
        let lessor = &self.ctx.lessor;
        if lessor.expiry(id, info.ttl, term) <= Instant::now() {
            // Expired: its revoke is on its way; answer once it is through.
            let give_up = Instant::now() + EXPIRED_RENEW_WAIT;
            while store.lease_exists(id) && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if store.lease_exists(id) {
                return Err(HereError::Failed(errors::timeout()));
            }
            return Ok(0);
        }
        if Instant::now() >= confirmed_until {
            // The apply wait or the store took so long that another member may lead by now.
            return Err(HereError::NotPrimary);
        }
        lessor.refresh(id, info.ttl, term);
        Ok(info.ttl)
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        who::require(self.ctx.node.store(), who.as_ref())?;
        let mut req = req.into_inner();
        // etcd's quota lease server checks a grant's cost before it is proposed.
        crate::quota::check(&self.ctx, &Op::LeaseGrant(req)).await?;
        req.ttl = req.ttl.max(self.ctx.lessor.min_ttl);
        let auto_id = req.id == 0;
        let mut attempts = 0;
        let mut resp = loop {
            if auto_id {
                req.id = self.ctx.lessor.ids.next_lease_id();
            }
            attempts += 1;
            let grant = Command {
                auth: None,
                op: Some(Op::LeaseGrant(req)),
            };
            match self.ctx.propose_as(grant, who.as_ref()).await? {
                ApplyResult::LeaseGrant(r) => break r,
                // Another grant took the id this member chose: choose again.
                ApplyResult::Error(MvccError::LeaseExists) if auto_id && attempts < ID_ATTEMPTS => {
                    continue
                }
                ApplyResult::Error(e) => return Err(mvcc_status(&e)),
                _ => return Err(errors::internal("unexpected apply result for lease grant")),
            }
        };
        self.ctx
            .lessor
            .refresh(resp.id, resp.ttl, self.ctx.node.term());
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        who::require(self.ctx.node.store(), who.as_ref())?;
        let req = req.into_inner();
        let id = req.id;
        match self.propose(Op::LeaseRevoke(req), who.as_ref()).await? {
            ApplyResult::LeaseRevoke(mut r) => {
                self.ctx.lessor.forget(id);
                self.ctx.identity.fill(&mut r.header, &self.ctx.node);
                Ok(Response::new(r))
            }
            _ => Err(errors::internal("unexpected apply result for lease revoke")),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        // etcd checks each renewal as whoever the stream's credentials name.
        let creds = Credentials::of(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let svc = self.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = inbound.message() => next,
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(errors::stopped())).await;
                        return;
                    }
                };
                let req = match next {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "lease keep-alive stream ended");
                        return;
                    }
                };
                let item = svc.keep_alive_once(&creds, req.id).await;
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        let out = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let creds = Credentials::of(&req);
        let req = req.into_inner();
        let store = self.ctx.node.store();
        self.ctx.settle(&creds).await;
        let rev = store.auth_revision();
        if store.auth_enabled() {
            who::require(store, self.ctx.who_from(&creds)?.as_ref())?;
            // etcd checks the keys' read permission only when they are asked for.
            if req.keys {
                self.check_lease_keys(&creds, req.id, PermType::Read)?;
            }
        }
        let keys = req.keys;
        let mut resp = forward::time_to_live(self, req).await?;
        if keys && store.auth_enabled() && rev != store.auth_revision() {
            return Err(auth_status(AuthError::AuthOldRevision));
        }
        // The leader's header, as etcd forwards the leader's answer, but
        // naming this member, which answered the client.
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.leases(req).await
    }
}

impl LeaseService {
    /// One renewal of a keep-alive stream made by `creds`: etcd's answer to
    /// one LeaseKeepAliveRequest (the lease's new TTL, or `ttl` 0 once it is
    /// gone); an error ends the stream.
    pub async fn keep_alive_once(
        &self,
        creds: &Credentials,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, Status> {
        // The header is taken before the renewal, as etcd does: a lease
        // revoked at revision R is never renewed at a later revision.
        let header = self.header();
        self.ctx.settle(creds).await;
        self.check_lease_keys(creds, id, PermType::Write)?;
        let ttl = self.renew(id).await?;
        Ok(LeaseKeepAliveResponse { header, id, ttl })
    }

    /// etcd's `checkLeaseRenew` (`want` WRITE) and `checkLeaseTimeToLive` (READ):
    /// with auth enabled, a user, and (unless an admin) `want` on every key
    /// attached to the lease; refused as old if the auth state moved meanwhile.
    fn check_lease_keys(&self, creds: &Credentials, id: i64, want: PermType) -> Result<(), Status> {
        let store = self.ctx.node.store();
        let rev = store.auth_revision();
        if !store.auth_enabled() {
            return Ok(());
        }
        let who = self.ctx.who_from(creds)?;
        let Some(who) = who else {
            return Err(auth_status(AuthError::UserEmpty));
        };
        store
            .auth_check_lease_keys(&who, id, want)
            .map_err(|e| mvcc_status(&e))?;
        if rev != store.auth_revision() {
            return Err(auth_status(AuthError::AuthOldRevision));
        }
        Ok(())
    }

    /// LeaseTimeToLive on the leader.
    pub(crate) async fn time_to_live_here(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, HereError> {
        let term = self.check_leader()?;
        self.ensure_leadership(term).await?;
        let info = self
            .ctx
            .node
            .store()
            .lease(req.id)
            .map_err(|e| mvcc_status(&e))?;
        let resp = match info {
            // etcd 3.4 answers an unknown lease with TTL -1, not an error.
            None => LeaseTimeToLiveResponse {
                header: self.header(),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Some(info) => {
                let expiry = self.ctx.lessor.expiry(info.id, info.ttl, term);
                let now = Instant::now();
                // Go's int64(d.Seconds()): truncated toward zero.
                let remaining = if expiry >= now {
                    (expiry - now).as_secs() as i64
                } else {
                    -((now - expiry).as_secs() as i64)
                };
                LeaseTimeToLiveResponse {
                    header: self.header(),
                    id: info.id,
                    ttl: remaining,
                    granted_ttl: info.ttl,
                    keys: if req.keys { info.keys } else { Vec::new() },
                }
            }
        };
        Ok(resp)
    }

    /// LeaseLeases, from this member's store: every member knows every lease (etcd
    /// answers it locally too).
    async fn leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        // etcd's checkLeaseLeases: a user, and (unless an admin) read on every
        // key attached to any lease.
        let creds = Credentials::of(&req);
        let store = self.ctx.node.store();
        self.ctx.settle(&creds).await;
        if store.auth_enabled() {
            let ids: Vec<i64> = store
                .leases()
                .map_err(|e| mvcc_status(&e))?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            who::require(store, self.ctx.who_from(&creds)?.as_ref())?;
            for id in ids {
                self.check_lease_keys(&creds, id, PermType::Read)?;
            }
        }
        let mut leases = self
            .ctx
            .node
            .store()
            .leases()
            .map_err(|e| mvcc_status(&e))?;
        // etcd lists them soonest expiry first.
        let lessor = &self.ctx.lessor;
        let term = self.ctx.node.term();
        leases.sort_by_cached_key(|&(id, ttl)| (lessor.expiry(id, ttl, term), id));
        Ok(Response::new(LeaseLeasesResponse {
            header: self.header(),
            leases: leases
                .into_iter()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }))
    }
}
