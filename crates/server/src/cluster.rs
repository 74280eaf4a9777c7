//! The etcd Cluster service: MemberAdd, MemberRemove, MemberUpdate,
//! MemberList and MemberPromote, with etcd's response shapes and errors. The
//! decisions are Raft's (`bramble_raft::membership`); this layer checks the
//! request, maps errors to etcd's strings and fills the responses.

use std::sync::Arc;

use bramble_api::etcdserverpb::cluster_server::Cluster;
use bramble_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use bramble_raft::{MemberInfo, MembershipError};
use tonic::{Request, Response, Status};

use crate::{errors, propose_status, ServerContext};

/// The Cluster service.
#[derive(Clone)]
pub struct ClusterService {
    ctx: Arc<ServerContext>,
}

impl ClusterService {
    /// A Cluster service for `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        ClusterService { ctx }
    }

    /// etcd's Cluster responses carry no revision: only cluster, member and term.
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.ctx.identity.cluster_id,
            member_id: self.ctx.identity.member_id,
            raft_term: self.ctx.node.term(),
            revision: 0,
        })
    }

    /// etcd serves only Status and serializable reads on a learner.
    fn refuse_on_learner(&self) -> Result<(), Status> {
        if self.ctx.node.status().is_learner {
            return Err(errors::not_supported_for_learner());
        }
        Ok(())
    }
}

/// A member as etcd's API shows it.
pub(crate) fn member_to_pb(m: &MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn members_to_pb(list: &[MemberInfo]) -> Vec<Member> {
    list.iter().map(member_to_pb).collect()
}

/// Maps a membership failure to etcd's error.
pub(crate) fn membership_status(e: MembershipError) -> Status {
    match e {
        MembershipError::NotFound => errors::member_not_found(),
        MembershipError::PeerUrlsExist => errors::peer_urls_exist(),
        MembershipError::MemberExists => errors::member_exists(),
        MembershipError::NotLearner => errors::member_not_learner(),
        MembershipError::LearnerNotReady => errors::learner_not_ready(),
        MembershipError::TooManyLearners => errors::too_many_learners(),
        MembershipError::NotEnoughStarted => errors::member_not_enough_started(),
        MembershipError::Unhealthy => errors::unhealthy(),
        MembershipError::NotLeader => errors::not_leader(),
        MembershipError::BadLeaderTransferee => errors::bad_leader_transferee(),
        MembershipError::LeaderTransferTimeout => errors::leader_transfer_timeout(),
        MembershipError::Propose(p) => propose_status(p),
    }
}

/// etcd's `types.NewURLs`: each URL is `scheme://host:port` with scheme
/// http, https, unix or unixs and no path; returned sorted.
pub(crate) fn parse_urls(urls: &[String]) -> Result<Vec<String>, Status> {
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let (scheme, rest) = u.split_once("://").ok_or_else(errors::member_bad_urls)?;
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(errors::member_bad_urls());
        }
        // Anything after the host (a path, query or fragment) is refused.
        if rest.contains(['/', '?', '#']) || !has_port(rest) {
            return Err(errors::member_bad_urls());
        }
        out.push(u.clone());
    }
    out.sort();
    Ok(out)
}

/// Go's `net.SplitHostPort` succeeds: `host:port` or `[v6]:port`.
fn has_port(hostport: &str) -> bool {
    if let Some(rest) = hostport.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, after)) => after.starts_with(':') && !after[1..].contains(':'),
            None => false,
        };
    }
    hostport.matches(':').count() == 1
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        self.refuse_on_learner()?;
        let req = req.into_inner();
        let urls = parse_urls(&req.peer_ur_ls)?;
        let (added, members) = self
            .ctx
            .node
            .add_member(urls, req.is_learner)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member_to_pb(&added)),
            members: members_to_pb(&members),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        self.refuse_on_learner()?;
        let members = self
            .ctx
            .node
            .remove_member(req.into_inner().id)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: members_to_pb(&members),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        self.refuse_on_learner()?;
        let req = req.into_inner();
        // etcd's MemberUpdate takes the URLs as given (its client checks them).
        let members = self
            .ctx
            .node
            .update_member(req.id, req.peer_ur_ls)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: members_to_pb(&members),
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        self.refuse_on_learner()?;
        let creds = crate::auth::who::Credentials::of(&req);
        if req.into_inner().linearizable {
            self.ctx.node.read_barrier().await.map_err(propose_status)?;
        }
        // etcd 3.6: with auth enabled, a user (any).
        self.ctx.settle(&creds).await;
        let who = self.ctx.who_from(&creds)?;
        crate::auth::who::require(self.ctx.node.store(), who.as_ref())?;
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: members_to_pb(&self.ctx.node.member_list()),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        self.refuse_on_learner()?;
        let members = self
            .ctx
            .node
            .promote_member(req.into_inner().id)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: members_to_pb(&members),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn urls_are_checked_like_etcd() {
        assert_eq!(
            parse_urls(&urls(&["http://b:2380", "https://a:2380"])).ok(),
            Some(urls(&["http://b:2380", "https://a:2380"]))
        );
        assert!(parse_urls(&urls(&["http://[::1]:2380"])).is_ok());
        for bad in [
            "b:2380",
            "ftp://a:2380",
            "http://a",
            "http://a:2380/path",
            "http://a:2380/",
            "http://[::1]",
        ] {
            let e = parse_urls(&urls(&[bad])).expect_err(bad);
            assert_eq!(e.message(), "etcdserver: given member URLs are invalid");
        }
    }
}
