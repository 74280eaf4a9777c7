//! A membership change asked of this member: made here when it leads,
//! otherwise forwarded to the leader over `Peer.ChangeMembers` and retried
//! with the next leader until the request timeout.

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::change_members_reply::Refused;
use bramble_api::bramblepb::change_members_request::Change;
use tokio::time::Instant;

use super::error::LeaderError;
use super::leader::change_on_leader;
use super::{members_of, MemberInfo, MembershipError};
use crate::error::{forward_status, ForwardError, ProposeError};
use crate::log_codec;
use crate::node::{attempt, Attempt, LeaderPeer, RaftNode};

impl RaftNode {
    /// Has the leader make `change` (this member, if it leads) and returns
    /// the member list after it.
    pub(super) async fn change_members(
        &self,
        change: Change,
    ) -> Result<Vec<MemberInfo>, MembershipError> {
        let deadline = self.request_deadline();
        let change = &change;
        self.on_leader(
            deadline,
            MembershipError::from,
            || async move {
                match change_on_leader(self.raft(), change.clone(), deadline).await {
                    Err(LeaderError::NotLeader) => Attempt::Retry(ProposeError::Timeout.into()),
                    Err(LeaderError::Failed(e)) => Attempt::Done(Err(e)),
                    Ok(m) => Attempt::Done(Ok(members_of(&m))),
                }
            },
            |leader| async move {
                let reply = match self.forward_change(leader, change.clone(), deadline).await {
                    Ok(reply) => reply,
                    Err(e) => return attempt(Err(e)),
                };
                Attempt::Done(members_from_reply(reply))
            },
        )
        .await
    }

    /// Asks the leader to make `change`.
    async fn forward_change(
        &self,
        leader: LeaderPeer,
        change: Change,
        deadline: Instant,
    ) -> Result<pb::ChangeMembersReply, ForwardError> {
        let mut client = self.peer_client(leader.channel);
        let mut req = tonic::Request::new(pb::ChangeMembersRequest {
            cluster_id: self.cluster_id(),
            change: Some(change),
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match client.change_members(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => Err(forward_status(&status)),
        }
    }
}

/// The member list in the leader's answer, or why it refused the change.
fn members_from_reply(reply: pb::ChangeMembersReply) -> Result<Vec<MemberInfo>, MembershipError> {
    let refused = Refused::try_from(reply.refused).unwrap_or(Refused::None);
    if let Some(e) = MembershipError::from_refused(refused) {
        return Err(e);
    }
    let membership = reply
        .membership
        .as_ref()
        .map(log_codec::decode_membership)
        .transpose()
        .map_err(|e| ProposeError::Stopped(format!("leader's member list: {e}")))?
        .ok_or_else(|| ProposeError::Stopped("leader sent no member list".into()))?;
    Ok(members_of(&membership))
}
