//! Lease requests that only the leader can answer (renewals and remaining TTLs:
//! the lease clock is the leader's), forwarded by followers over the peer
//! listener (`proto/bramblepb/lease_forward.proto`), as etcd's followers forward
//! them to the leader's peer port.
//!
//! A request refused because the receiver is no longer the leader (it stepped
//! down in between), or cannot confirm that it still is (`not a primary lessor`: it
//! may be cut off from its quorum), is retried with the leader known then until the
//! request timeout, as etcd's followers retry.
//! On the leader itself, `not a primary lessor` goes back to the client at once, as
//! etcd does, so that the client tries another member.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bramble_api::bramblepb::leader_lease_client::LeaderLeaseClient;
use bramble_api::bramblepb::leader_lease_server::{LeaderLease, LeaderLeaseServer};
use bramble_api::bramblepb::{ForwardedTimeToLive, RenewReply, RenewRequest};
use bramble_api::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use bramble_raft::node::Attempt;
use bramble_raft::refusal::{reason as refusal_reason, refusal, Reason};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::LeaseService;
use crate::errors;

/// The message of a lease request refused by a member that does not lead
/// (the sender goes by the refusal's [`Reason::NotLeader`], not this text).
const NOT_LEADER: &str = "bramble: not the leader for leases";

/// etcd's `lease.ErrNotPrimary`: a leader that cannot confirm its leadership with a
/// quorum refuses to renew (etcd's gRPC layer passes it on with code Unknown).
const NOT_PRIMARY: &str = "not a primary lessor";

/// Why the leader's side of a lease request (`*_here`) did not answer it.
#[derive(Debug)]
pub(crate) enum HereError {
    /// This member does not lead (or cannot serve leases yet): nothing was done.
    NotLeader,
    /// etcd's `lease.ErrNotPrimary`: this member leads but could not confirm its
    /// leadership with a quorum, so it did nothing.
    NotPrimary,
    /// Any other failure, as the client sees it.
    Failed(Status),
}

impl From<Status> for HereError {
    fn from(s: Status) -> Self {
        HereError::Failed(s)
    }
}

impl HereError {
    /// The answer to a follower that forwarded the request: a refusal carries its
    /// typed reason (and the text a client would see).
    fn into_peer_status(self) -> Status {
        match self {
            HereError::NotLeader => {
                refusal(Code::FailedPrecondition, NOT_LEADER, Reason::NotLeader)
            }
            HereError::NotPrimary => refusal(Code::Unknown, NOT_PRIMARY, Reason::NotPrimaryLessor),
            HereError::Failed(s) => s,
        }
    }
}

/// Maps a failed forward to what the client sees.
fn client_status(status: Status) -> Status {
    match status.code() {
        // The leader could not be reached or did not answer in time.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => errors::timeout(),
        _ => status,
    }
}

/// Renews lease `id` on the leader, forwarding if this member does not lead.
pub(super) async fn renew(svc: &LeaseService, id: i64) -> Result<i64, Status> {
    let cluster_id = svc.ctx.identity.cluster_id;
    on_leader(
        svc,
        || svc.renew_here(id),
        |mut client, timeout| async move {
            let mut req = Request::new(RenewRequest { id, cluster_id });
            req.set_timeout(timeout);
            client.renew(req).await.map(|r| r.into_inner().ttl)
        },
    )
    .await
}

/// LeaseTimeToLive on the leader, forwarding if this member does not lead.
pub(super) async fn time_to_live(
    svc: &LeaseService,
    request: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, Status> {
    let cluster_id = svc.ctx.identity.cluster_id;
    on_leader(
        svc,
        || svc.time_to_live_here(request),
        |mut client, timeout| async move {
            let mut req = Request::new(ForwardedTimeToLive {
                request: Some(request),
                cluster_id,
            });
            req.set_timeout(timeout);
            client.time_to_live(req).await.map(Response::into_inner)
        },
    )
    .await
}

/// Runs a lease request where the lease clock is: `here` when this member
/// leads, else `remote` against the leader (given the time left), through
/// the member's one leader-routing loop ([`bramble_raft::RaftNode::on_leader`]). A refusal
/// by a member that no longer leads (or, forwarded, cannot confirm that it
/// does) is retried until the request timeout.
async fn on_leader<T, Here, HereFut, Remote, RemoteFut>(
    svc: &LeaseService,
    here: Here,
    remote: Remote,
) -> Result<T, Status>
where
    Here: Fn() -> HereFut,
    HereFut: Future<Output = Result<T, HereError>>,
    Remote: Fn(LeaderLeaseClient<Channel>, Duration) -> RemoteFut,
    RemoteFut: Future<Output = Result<T, Status>>,
{
    let node = &svc.ctx.node;
    let deadline = node.request_deadline();
    node.on_leader(
        deadline,
        crate::propose_status,
        || async { here_attempt(here().await) },
        |leader| {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let call = remote(LeaderLeaseClient::new(leader.channel), left);
            async move { remote_attempt(call.await) }
        },
    )
    .await
}

/// What a lease request run here comes to for the routing loop: a refusal
/// because this member does not lead (any more) is retried, as etcd's `no
/// leader` once out of time; a leader that cannot confirm its leadership
/// answers etcd's `not a primary lessor` at once, so the client tries
/// another member.
fn here_attempt<T>(result: Result<T, HereError>) -> Attempt<T, Status> {
    match result {
        Ok(v) => Attempt::Done(Ok(v)),
        Err(HereError::NotLeader) => Attempt::Retry(errors::no_leader()),
        Err(HereError::NotPrimary) => Attempt::Done(Err(Status::unknown(NOT_PRIMARY))),
        Err(HereError::Failed(s)) => Attempt::Done(Err(client_status(s))),
    }
}

/// What a forwarded lease request comes to: a refusal by a member that does not
/// lead is retried (etcd's `no leader` once out of time), and so is one by a
/// leader that could not confirm its leadership (etcd's timeout once out of time).
fn remote_attempt<T>(result: Result<T, Status>) -> Attempt<T, Status> {
    match result {
        Ok(v) => Attempt::Done(Ok(v)),
        Err(s) => match refusal_reason(&s) {
            Some(Reason::NotLeader) => Attempt::Retry(errors::no_leader()),
            Some(Reason::NotPrimaryLessor) => Attempt::Retry(errors::timeout()),
            _ => Attempt::Done(Err(client_status(s))),
        },
    }
}

/// The leader's side: serves forwarded lease requests (on the peer listener).
///
/// The peer listener starts before the client services exist (peers must
/// reach a member while it recovers), so the Lease service is handed over
/// once it does; until then forwarded requests are refused as "not leader"
/// and retried by the sender.
pub struct LeaderLeaseService {
    lease: Arc<OnceLock<LeaseService>>,
}

impl LeaderLeaseService {
    /// The service answering forwarded requests with the Lease service set
    /// into `lease`.
    pub fn new(lease: Arc<OnceLock<LeaseService>>) -> LeaderLeaseServer<LeaderLeaseService> {
        LeaderLeaseServer::new(LeaderLeaseService { lease })
    }

    fn lease(&self) -> Result<&LeaseService, Status> {
        self.lease
            .get()
            .ok_or_else(|| HereError::NotLeader.into_peer_status())
    }

    fn check_cluster(&self, sender: u64) -> Result<(), Status> {
        let mine = self.lease()?.ctx.identity.cluster_id;
        bramble_raft::peer_service::check_cluster(mine, sender)
    }
}

#[tonic::async_trait]
impl LeaderLease for LeaderLeaseService {
    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewReply>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let ttl = self
            .lease()?
            .renew_here(req.id)
            .await
            .map_err(HereError::into_peer_status)?;
        Ok(Response::new(RenewReply { ttl }))
    }

    async fn time_to_live(
        &self,
        req: Request<ForwardedTimeToLive>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let request = req
            .request
            .ok_or_else(|| Status::invalid_argument("forwarded TimeToLive without a request"))?;
        let resp = self
            .lease()?
            .time_to_live_here(request)
            .await
            .map_err(HereError::into_peer_status)?;
        Ok(Response::new(resp))
    }
}
