//! Lease requests that only the leader can answer (renewals and remaining TTLs:
//! the lease clock is the leader's), forwarded by followers over the peer
//! listener (`proto/bramblepb/lease_forward.proto`), as etcd's followers forward
//! them to the leader's peer port.
//!
//! A request refused because the receiver is no longer the leader (it stepped
//! down in between) is retried with the new leader until the request timeout.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bramble_api::bramblepb::leader_lease_client::LeaderLeaseClient;
use bramble_api::bramblepb::leader_lease_server::{LeaderLease, LeaderLeaseServer};
use bramble_api::bramblepb::{ForwardedTimeToLive, RenewReply, RenewRequest};
use bramble_api::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use tonic::{Code, Request, Response, Status};

use super::LeaseService;
use crate::errors;

/// The message of a lease request refused by a member that does not lead.
pub const NOT_LEADER: &str = "bramble: not the leader for leases";

/// How long a refused forward waits before it asks the (new) leader again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether a forward was refused because the receiver does not lead.
fn refused(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition && status.message() == NOT_LEADER
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
    let deadline = tokio::time::Instant::now() + svc.ctx.node.request_timeout();
    loop {
        let route = svc
            .ctx
            .node
            .leader_route()
            .await
            .map_err(crate::propose_status)?;
        let result = match route {
            None => svc.renew_here(id).await,
            Some(channel) => {
                let mut req = Request::new(RenewRequest {
                    id,
                    cluster_id: svc.ctx.identity.cluster_id,
                });
                req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
                LeaderLeaseClient::new(channel)
                    .renew(req)
                    .await
                    .map(|r| r.into_inner().ttl)
            }
        };
        match result {
            Err(s) if refused(&s) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(s) if refused(&s) => return Err(errors::no_leader()),
            other => return other.map_err(client_status),
        }
    }
}

/// LeaseTimeToLive on the leader, forwarding if this member does not lead.
pub async fn time_to_live(
    svc: &LeaseService,
    request: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, Status> {
    let deadline = tokio::time::Instant::now() + svc.ctx.node.request_timeout();
    loop {
        let route = svc
            .ctx
            .node
            .leader_route()
            .await
            .map_err(crate::propose_status)?;
        let result = match route {
            None => svc.time_to_live_here(request).await,
            Some(channel) => {
                let mut req = Request::new(ForwardedTimeToLive {
                    request: Some(request),
                    cluster_id: svc.ctx.identity.cluster_id,
                });
                req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
                LeaderLeaseClient::new(channel)
                    .time_to_live(req)
                    .await
                    .map(Response::into_inner)
            }
        };
        match result {
            Err(s) if refused(&s) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(s) if refused(&s) => return Err(errors::no_leader()),
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
