//! Cluster membership as etcd's Cluster service sees it: list, add (voter or
//! learner), remove, promote, update peer URLs, a member publishing its own
//! name and client URLs, and moving the leadership.
//!
//! Every change is decided on the leader, which alone knows how far each
//! learner has caught up and which members it hears from: a follower
//! forwards the change over `Peer.ChangeMembers`. The leader checks the
//! change as etcd's `ValidateConfigurationChange` and its strict reconfig
//! checks do, then maps it onto openraft:
//!
//! | etcd                | openraft                                               |
//! |---------------------|--------------------------------------------------------|
//! | MemberAdd --learner | `add_learner`                                          |
//! | MemberAdd           | `add_learner`, then `change_membership(AddVoterIds)`   |
//! | MemberPromote       | `change_membership(AddVoterIds)`                       |
//! | MemberRemove voter  | `change_membership(RemoveVoters)`, node dropped        |
//! | MemberRemove learner| `change_membership(RemoveNodes)`                       |
//! | MemberUpdate        | `change_membership(SetNodes)` with the new peer URLs   |
//! | publish             | `change_membership(SetNodes)` with name and client URLs|
//!
//! A voter change is openraft's two-step joint consensus. Its second step is
//! driven by the caller of `change_membership`, so the change runs in a task
//! of its own: a client that gives up does not leave the cluster in a joint
//! configuration. (Any later change, such as the new member's publish, also
//! completes a joint configuration left by a leader that crashed mid-change.)

mod error;
mod follower;
pub(crate) mod leader;
mod plan;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::change_members_request::Change;
use openraft::async_runtime::WatchReceiver;
use tokio::time::Instant;

use crate::error::ProposeError;
use crate::node::RaftNode;
use crate::types::Membership;

pub use error::MembershipError;

/// One member as etcd's MemberList shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member id.
    pub id: u64,
    /// Its `--name`; empty until the member started and published it.
    pub name: String,
    /// Where peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it published them.
    pub client_urls: Vec<String>,
    /// Whether it is a learner (a non-voting member).
    pub is_learner: bool,
}

/// The members of `m`, sorted by id as etcd lists them.
pub(crate) fn members_of(m: &Membership) -> Vec<MemberInfo> {
    let voters: BTreeSet<u64> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, n)| MemberInfo {
            id: *id,
            name: n.name.clone(),
            peer_urls: n.peer_urls.clone(),
            client_urls: n.client_urls.clone(),
            is_learner: !voters.contains(id),
        })
        .collect()
}

/// etcd's id for a member added at `unix_secs` (`membership.NewMember` with
/// no name and no cluster name): the first 8 bytes of sha1(sorted peer URLs,
/// then the time in seconds). Bumped past ids already taken, so two members
/// added with the same URLs in the same second still differ.
pub(crate) fn new_member_id(peer_urls: &[String], unix_secs: u64, taken: &BTreeSet<u64>) -> u64 {
    let mut secs = unix_secs;
    loop {
        let id = crate::derived_ids::member_id(peer_urls, &secs.to_string());
        if id != 0 && !taken.contains(&id) {
            return id;
        }
        secs += 1;
    }
}

impl RaftNode {
    /// The cluster's members as this member last saw them committed.
    pub fn member_list(&self) -> Vec<MemberInfo> {
        let m = self.raft().metrics().borrow_watched().clone();
        members_of(m.committed_membership_config.membership())
    }

    /// etcd's MemberAdd: adds a member (not started yet) with `peer_urls`,
    /// as a learner or a voter. Returns the new member and the member list.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), MembershipError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let taken: BTreeSet<u64> = {
            let m = self.raft().metrics().borrow_watched().clone();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        let id = new_member_id(&peer_urls, now, &taken);
        let members = self
            .change_members(Change::Add(pb::AddMember {
                id,
                peer_urls: peer_urls.clone(),
                is_learner,
            }))
            .await?;
        let added = MemberInfo {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        Ok((added, members))
    }

    /// etcd's MemberRemove.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<MemberInfo>, MembershipError> {
        self.change_members(Change::Remove(pb::RemoveMember { id }))
            .await
    }

    /// etcd's MemberPromote: a learner in sync with the leader becomes a voter.
    pub async fn promote_member(&self, id: u64) -> Result<Vec<MemberInfo>, MembershipError> {
        self.change_members(Change::Promote(pb::PromoteMember { id }))
            .await
    }

    /// etcd's MemberUpdate: new peer URLs for a member.
    pub async fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<MemberInfo>, MembershipError> {
        self.change_members(Change::Update(pb::UpdateMember { id, peer_urls }))
            .await
    }

    /// etcd's publish: records this member's name and client URLs in the
    /// membership, so MemberList shows it as started with its addresses.
    pub async fn publish(
        &self,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<Vec<MemberInfo>, MembershipError> {
        self.change_members(Change::Publish(pb::PublishMember {
            id: self.member_id(),
            name,
            client_urls,
        }))
        .await
    }

    /// Whether this member's entry in the committed membership already has
    /// `name` and `client_urls`; `None` when it is not (yet) a member.
    pub fn is_published(&self, name: &str, client_urls: &[String]) -> Option<bool> {
        let m = self.raft().metrics().borrow_watched().clone();
        let me = m
            .committed_membership_config
            .membership()
            .get_node(&self.member_id())
            .cloned()?;
        Some(me.name == name && me.client_urls == client_urls)
    }

    /// Whether the leader (as this member can tell) no longer lists this
    /// member: it was removed. Only a positive answer from a leader counts,
    /// so a lagging member never concludes it was removed.
    pub async fn is_removed(&self) -> bool {
        let m = self.raft().metrics().borrow_watched().clone();
        let me = self.member_id();
        let committed = m.committed_membership_config.membership();
        let listed = committed.get_node(&me).is_some();
        if listed {
            self.seen_in_membership.store(true, Ordering::Relaxed);
        }
        // Only a member that was listed can read its absence as a removal: a
        // member that just joined may install a snapshot taken before it was
        // added (its membership lacks the member until the entries after the
        // snapshot arrive, seconds later for a large one). It asks the
        // members it knows instead, below.
        if !listed
            && committed.nodes().next().is_some()
            && self.seen_in_membership.load(Ordering::Relaxed)
        {
            return true;
        }
        // (A leader that removed itself keeps naming itself the leader
        // after it stepped down: only the Raft state says who leads.)
        if m.state == openraft::ServerState::Leader {
            return false;
        }
        // A removed voter may never receive the entry that removes it (the
        // leader stops replicating to it): ask the members it knows.
        let known: Vec<u64> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| *id != me)
            .collect();
        for id in known {
            let Ok(channel) = self.peer_channel(id) else {
                continue;
            };
            let mut client = self.peer_client(channel);
            let mut req = tonic::Request::new(pb::MembersRequest {});
            req.set_timeout(Duration::from_secs(1));
            let Ok(reply) = client.members(req).await else {
                continue;
            };
            let reply = reply.into_inner();
            if reply.cluster_id != self.cluster_id() || reply.leader != id {
                continue;
            }
            if let Some(ms) = reply.membership {
                return !ms.members.iter().any(|n| n.id == me);
            }
        }
        false
    }

    /// etcd's MoveLeader: this member (the leader) hands leadership to
    /// voter `target` and waits until it took over.
    pub async fn move_leader(&self, target: u64) -> Result<(), MembershipError> {
        let deadline = Instant::now() + self.request_timeout();
        let m = self.raft().metrics().borrow_watched().clone();
        if m.current_leader != Some(self.member_id()) {
            return Err(MembershipError::NotLeader);
        }
        let membership = m.membership_config.membership();
        let is_voter = membership.voter_ids().any(|v| v == target);
        if membership.get_node(&target).is_none() || !is_voter {
            return Err(MembershipError::BadLeaderTransferee);
        }
        if target == self.member_id() {
            return Ok(());
        }
        // A transfer the target could not take (its log was behind, or a
        // message was lost) is simply asked for again.
        let retry = Duration::from_millis(500);
        loop {
            self.raft()
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| ProposeError::Stopped(e.to_string()))?;
            let until = deadline.min(Instant::now() + retry);
            let wait = self
                .raft()
                .wait(Some(until.saturating_duration_since(Instant::now())))
                .metrics(|m| m.current_leader == Some(target), "leader moved")
                .await;
            match wait {
                Ok(_) => return Ok(()),
                Err(openraft::metrics::WaitError::Timeout(..)) => {}
                Err(e) => return Err(ProposeError::Stopped(e.to_string()).into()),
            }
            if Instant::now() >= deadline {
                return Err(MembershipError::LeaderTransferTimeout);
            }
        }
    }
}
