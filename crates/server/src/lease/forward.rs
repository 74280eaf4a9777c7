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
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::LeaseService;
use crate::errors;

/// The message of a lease request refused by a member that does not lead.
pub const NOT_LEADER: &str = "bramble: not the leader for leases";

/// etcd's `lease.ErrNotPrimary`: a leader that cannot confirm its leadership with a
/// quorum refuses to renew (etcd's gRPC layer passes it on with code Unknown).
pub const NOT_PRIMARY: &str = "not a primary lessor";

/// etcd's answer from a leader that cannot confirm its leadership.
pub fn not_primary() -> Status {
    Status::unknown(NOT_PRIMARY)
}

/// How long a refused forward waits before it asks the (new) leader again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether a forward was refused because the receiver does not lead.
fn refused(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition && status.message() == NOT_LEADER
}

/// Whether a forward was refused because the receiver could not confirm that it leads.
fn unconfirmed(status: &Status) -> bool {
    status.code() == Code::Unknown && status.message() == NOT_PRIMARY
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
pub async fn renew(svc: &LeaseService, id: i64) -> Result<i64, Status> {
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
pub async fn time_to_live(
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
/// leads, else `remote` against the leader (given the time left). A refusal
/// by a member that no longer leads is retried until the request timeout.
async fn on_leader<T, Here, HereFut, Remote, RemoteFut>(
    svc: &LeaseService,
    here: Here,
    remote: Remote,
) -> Result<T, Status>
where
    Here: Fn() -> HereFut,
    HereFut: Future<Output = Result<T, Status>>,
    Remote: Fn(LeaderLeaseClient<Channel>, Duration) -> RemoteFut,
    RemoteFut: Future<Output = Result<T, Status>>,
{
    let deadline = tokio::time::Instant::now() + svc.ctx.node.request_timeout();
    loop {
        let route = svc
            .ctx
            .node
            .leader_route()
            .await
            .map_err(crate::propose_status)?;
        let (result, forwarded) = match route {
            None => (here().await, false),
            Some(channel) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                (remote(LeaderLeaseClient::new(channel), left).await, true)
            }
        };
        let retry = |s: &Status| refused(s) || (forwarded && unconfirmed(s));
        match result {
            Err(s) if retry(&s) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(s) if refused(&s) => return Err(errors::no_leader()),
            Err(s) if retry(&s) => return Err(errors::timeout()),
            other => return other.map_err(client_status),
        }
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
            .ok_or_else(|| Status::failed_precondition(NOT_LEADER))
    }

    fn check_cluster(&self, sender: u64) -> Result<(), Status> {
        let mine = self.lease()?.ctx.identity.cluster_id;
        if sender != mine {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: this member is in cluster {mine:x}, the sender in {sender:x}"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl LeaderLease for LeaderLeaseService {
    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewReply>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let ttl = self.lease()?.renew_here(req.id).await?;
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
        Ok(Response::new(
            self.lease()?.time_to_live_here(request).await?,
        ))
    }
}
