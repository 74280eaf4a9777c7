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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::change_members_reply::Refused;
use bramble_api::bramblepb::change_members_request::Change;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::Precondition;
use openraft::{ChangeMembers, Instant as _};
use tokio::time::Instant;

use crate::codec;
use crate::node::{forward_status, ForwardError, ProposeError, RaftNode};
use crate::peer_service::NOT_LEADER;
use crate::types::{Member, Membership, Raft};

/// etcd's `maxLearners`: at most one learner at a time.
const MAX_LEARNERS: usize = 1;

/// etcd's `readyPercent`: a learner may be promoted once it has replicated
/// this share of the leader's log.
const READY_PERCENT: f64 = 0.9;

/// etcd's `HealthInterval`: a peer heard from within this is "active".
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// How long the leader works on a change forwarded by a follower (the
/// follower gives up after its own request timeout anyway).
const LEADER_DEADLINE: Duration = Duration::from_secs(10);

/// How often a change blocked by another one in progress tries again.
const IN_PROGRESS_PAUSE: Duration = Duration::from_millis(50);

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

/// Why a membership operation failed; the server maps these to etcd's errors.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// `etcdserver: member not found`
    #[error("member not found")]
    NotFound,
    /// `etcdserver: Peer URLs already exists`
    #[error("peer URLs already exist")]
    PeerUrlsExist,
    /// `etcdserver: member ID already exist`
    #[error("member id already exists")]
    MemberExists,
    /// `etcdserver: can only promote a learner member`
    #[error("not a learner")]
    NotLearner,
    /// `etcdserver: can only promote a learner member which is in sync with leader`
    #[error("learner not in sync with the leader")]
    LearnerNotReady,
    /// `etcdserver: too many learner members in cluster`
    #[error("too many learners")]
    TooManyLearners,
    /// `etcdserver: re-configuration failed due to not enough started members`
    #[error("not enough started members")]
    NotEnoughStarted,
    /// `etcdserver: unhealthy cluster`
    #[error("unhealthy cluster")]
    Unhealthy,
    /// `etcdserver: not leader` (MoveLeader must be sent to the leader)
    #[error("not leader")]
    NotLeader,
    /// `etcdserver: bad leader transferee`
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// `etcdserver: request timed out, leader transfer took too long`
    #[error("leader transfer took too long")]
    LeaderTransferTimeout,
    /// The change could not be proposed or committed.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

impl MembershipError {
    fn from_refused(r: Refused) -> Option<Self> {
        Some(match r {
            Refused::None => return None,
            Refused::MemberNotFound => MembershipError::NotFound,
            Refused::PeerUrlsExist => MembershipError::PeerUrlsExist,
            Refused::MemberExists => MembershipError::MemberExists,
            Refused::NotLearner => MembershipError::NotLearner,
            Refused::LearnerNotReady => MembershipError::LearnerNotReady,
            Refused::TooManyLearners => MembershipError::TooManyLearners,
            Refused::NotEnoughStarted => MembershipError::NotEnoughStarted,
            Refused::Unhealthy => MembershipError::Unhealthy,
        })
    }

    fn refused(&self) -> Option<Refused> {
        Some(match self {
            MembershipError::NotFound => Refused::MemberNotFound,
            MembershipError::PeerUrlsExist => Refused::PeerUrlsExist,
            MembershipError::MemberExists => Refused::MemberExists,
            MembershipError::NotLearner => Refused::NotLearner,
            MembershipError::LearnerNotReady => Refused::LearnerNotReady,
            MembershipError::TooManyLearners => Refused::TooManyLearners,
            MembershipError::NotEnoughStarted => Refused::NotEnoughStarted,
            MembershipError::Unhealthy => Refused::Unhealthy,
            _ => return None,
        })
    }
}

/// The members of `m`, sorted by id as etcd lists them.
pub fn members_of(m: &Membership) -> Vec<MemberInfo> {
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
pub fn new_member_id(peer_urls: &[String], unix_secs: u64, taken: &BTreeSet<u64>) -> u64 {
    let mut secs = unix_secs;
    loop {
        let id = crate::identity::member_id(peer_urls, &secs.to_string());
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
        if committed.get_node(&me).is_none() && committed.nodes().next().is_some() {
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
            let Ok(mut client) = self.leader_client(id) else {
                continue;
            };
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

    /// Has the leader make `change` (this member, if it leads) and returns
    /// the member list after it.
    async fn change_members(&self, change: Change) -> Result<Vec<MemberInfo>, MembershipError> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            if leader == self.member_id() {
                match change_on_leader(self.raft(), change.clone(), deadline).await {
                    Err(LeaderError::NotLeader) => {
                        self.pause_for_leader_change(leader, deadline).await?;
                        continue;
                    }
                    Err(LeaderError::Failed(e)) => return Err(e),
                    Ok(m) => return Ok(members_of(&m)),
                }
            }
            let mut client = match self.leader_client(leader) {
                Ok(c) => c,
                Err(ForwardError::Failed(e)) => return Err(e.into()),
                Err(ForwardError::NotDelivered) => {
                    self.pause_for_leader_change(leader, deadline).await?;
                    continue;
                }
            };
            let mut req = tonic::Request::new(pb::ChangeMembersRequest {
                cluster_id: self.cluster_id(),
                change: Some(change.clone()),
            });
            req.set_timeout(deadline.saturating_duration_since(Instant::now()));
            let reply = match client.change_members(req).await {
                Ok(r) => r.into_inner(),
                Err(status) => match forward_status(&status) {
                    ForwardError::NotDelivered => {
                        self.pause_for_leader_change(leader, deadline).await?;
                        continue;
                    }
                    ForwardError::Failed(e) => return Err(e.into()),
                },
            };
            let refused = Refused::try_from(reply.refused).unwrap_or(Refused::None);
            if let Some(e) = MembershipError::from_refused(refused) {
                return Err(e);
            }
            let membership = reply
                .membership
                .as_ref()
                .map(codec::decode_membership)
                .transpose()
                .map_err(|e| ProposeError::Stopped(format!("leader's member list: {e}")))?
                .ok_or_else(|| ProposeError::Stopped("leader sent no member list".into()))?;
            return Ok(members_of(&membership));
        }
    }
}

/// Why the leader did not make a change.
pub(crate) enum LeaderError {
    /// This member does not lead (any more); nothing was proposed.
    NotLeader,
    /// The change was refused or failed.
    Failed(MembershipError),
}

impl From<MembershipError> for LeaderError {
    fn from(e: MembershipError) -> Self {
        LeaderError::Failed(e)
    }
}

impl From<ProposeError> for LeaderError {
    fn from(e: ProposeError) -> Self {
        LeaderError::Failed(e.into())
    }
}

/// The Peer service's answer to a forwarded change.
pub(crate) async fn serve_change(
    raft: &Raft,
    change: Change,
) -> Result<pb::ChangeMembersReply, tonic::Status> {
    let deadline = Instant::now() + LEADER_DEADLINE;
    match change_on_leader(raft, change, deadline).await {
        Ok(m) => Ok(pb::ChangeMembersReply {
            refused: Refused::None as i32,
            membership: Some(codec::encode_membership(&m)),
        }),
        Err(LeaderError::NotLeader) => Err(tonic::Status::failed_precondition(NOT_LEADER)),
        Err(LeaderError::Failed(e)) => match e.refused() {
            Some(r) => Ok(pb::ChangeMembersReply {
                refused: r as i32,
                membership: None,
            }),
            // Statuses the follower's forward_status maps back.
            None => Err(match e {
                MembershipError::Propose(ProposeError::LeaderChanged) => {
                    tonic::Status::aborted("leader changed")
                }
                MembershipError::Propose(ProposeError::Timeout) => {
                    tonic::Status::deadline_exceeded("request timed out")
                }
                other => tonic::Status::unavailable(other.to_string()),
            }),
        },
    }
}

/// A snapshot of what the leader knows, for checking a change.
struct View {
    me: u64,
    membership: Membership,
    /// The effective membership's log id (the change's precondition).
    log_id: Option<crate::types::LogId>,
    /// Whether the effective membership is committed (no change in progress).
    settled: bool,
    voters: BTreeSet<u64>,
    /// Members heard from within [`HEALTH_INTERVAL`] (the leader itself included).
    active: BTreeSet<u64>,
    /// The log index each member has replicated.
    matched: BTreeMap<u64, u64>,
    last_log_index: u64,
}

fn view(raft: &Raft) -> Result<View, LeaderError> {
    let m = raft.metrics().borrow_watched().clone();
    if m.current_leader != Some(m.id) {
        return Err(LeaderError::NotLeader);
    }
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut active = BTreeSet::from([m.id]);
    if let Some(hb) = &m.heartbeat {
        for (id, at) in hb {
            if at.as_ref().is_some_and(|t| t.elapsed() < HEALTH_INTERVAL) {
                active.insert(*id);
            }
        }
    }
    let matched = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.as_ref().map(|l| l.index).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    Ok(View {
        me: m.id,
        settled: m.membership_config.log_id() == m.committed_membership_config.log_id(),
        log_id: *m.membership_config.log_id(),
        membership,
        voters,
        active,
        matched,
        last_log_index: m.last_log_index.unwrap_or(0),
    })
}

impl View {
    fn node(&self, id: u64) -> Result<&Member, MembershipError> {
        self.membership
            .get_node(&id)
            .ok_or(MembershipError::NotFound)
    }

    fn started(&self, id: u64) -> bool {
        self.membership
            .get_node(&id)
            .is_some_and(|m| !m.name.is_empty())
    }

    /// Whether any member other than `except` uses one of `urls`.
    fn urls_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.membership
            .nodes()
            .filter(|(id, _)| Some(**id) != except)
            .any(|(_, m)| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// etcd's `mayAddMember`: enough started voters (for a voter), and the
    /// leader hears from every voter (for any member).
    fn may_add(&self, learner: bool) -> Result<(), MembershipError> {
        let members = self.voters.len() + 1;
        let started = self.voters.iter().filter(|v| self.started(**v)).count();
        // Adding a second member to a one-member cluster is allowed (etcd's
        // restore procedure), though the cluster has no quorum until it starts.
        let restore = started == 1 && members == 2;
        if !learner && !restore && started < members / 2 + 1 {
            return Err(MembershipError::NotEnoughStarted);
        }
        if !self.voters.iter().all(|v| self.active.contains(v)) {
            return Err(MembershipError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`.
    fn may_remove_voter(&self, id: u64) -> Result<(), MembershipError> {
        let rest: Vec<u64> = self.voters.iter().copied().filter(|v| *v != id).collect();
        let started = rest.iter().filter(|v| self.started(**v)).count();
        if started < rest.len() / 2 + 1 {
            return Err(MembershipError::NotEnoughStarted);
        }
        // A member that is down is not part of the active quorum.
        if id != self.me && !self.active.contains(&id) {
            return Ok(());
        }
        let active = self
            .voters
            .iter()
            .filter(|v| self.active.contains(v))
            .count();
        if active.saturating_sub(1) < 1 + (self.voters.len().saturating_sub(1)) / 2 {
            return Err(MembershipError::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `isLearnerReady` and `IsReadyToPromoteMember`.
    fn may_promote(&self, id: u64) -> Result<(), MembershipError> {
        let matched = self.matched.get(&id).copied().unwrap_or(0);
        if (matched as f64) < (self.last_log_index as f64) * READY_PERCENT {
            return Err(MembershipError::LearnerNotReady);
        }
        let members = self.voters.len() + 1;
        let started = 1 + self.voters.iter().filter(|v| self.started(**v)).count();
        if started < members / 2 + 1 {
            return Err(MembershipError::NotEnoughStarted);
        }
        Ok(())
    }
}

/// Makes `change` on this member, which must lead; returns the membership
/// after it. Waits (until `deadline`) for a change already in progress.
pub(crate) async fn change_on_leader(
    raft: &Raft,
    change: Change,
    deadline: Instant,
) -> Result<Membership, LeaderError> {
    loop {
        let v = view(raft)?;
        if !v.settled {
            pause_in_progress(deadline).await?;
            continue;
        }
        let plan = plan(&v, &change)?;
        let outcome = run(raft, &v, plan, deadline).await;
        match outcome {
            Err(RunError::Retry) => pause_in_progress(deadline).await?,
            Err(RunError::Failed(e)) => return Err(e),
            Ok(m) => return Ok(m),
        }
    }
}

async fn pause_in_progress(deadline: Instant) -> Result<(), LeaderError> {
    if Instant::now() + IN_PROGRESS_PAUSE >= deadline {
        return Err(ProposeError::Timeout.into());
    }
    tokio::time::sleep(IN_PROGRESS_PAUSE).await;
    Ok(())
}

/// What to ask openraft for.
enum Plan {
    /// Add a learner, and make it a voter unless `learner`.
    Add {
        id: u64,
        member: Member,
        learner: bool,
    },
    /// Any other change: one `change_membership` call.
    Change(ChangeMembers<u64, Member>),
}

/// Checks `change` against the membership, as etcd's
/// `ValidateConfigurationChange` and strict reconfig checks do.
fn plan(v: &View, change: &Change) -> Result<Plan, MembershipError> {
    Ok(match change {
        Change::Add(a) => {
            if v.membership.get_node(&a.id).is_some() {
                return Err(MembershipError::MemberExists);
            }
            if v.urls_taken(&a.peer_urls, None) {
                return Err(MembershipError::PeerUrlsExist);
            }
            if a.is_learner {
                let learners = v.membership.learner_ids().count();
                if learners + 1 > MAX_LEARNERS {
                    return Err(MembershipError::TooManyLearners);
                }
            }
            v.may_add(a.is_learner)?;
            Plan::Add {
                id: a.id,
                member: Member {
                    name: String::new(),
                    peer_urls: a.peer_urls.clone(),
                    client_urls: Vec::new(),
                },
                learner: a.is_learner,
            }
        }
        Change::Remove(r) => {
            v.node(r.id)?;
            if v.voters.contains(&r.id) {
                v.may_remove_voter(r.id)?;
                Plan::Change(ChangeMembers::RemoveVoters([r.id].into()))
            } else {
                Plan::Change(ChangeMembers::RemoveNodes([r.id].into()))
            }
        }
        Change::Promote(p) => {
            v.node(p.id)?;
            if v.voters.contains(&p.id) {
                return Err(MembershipError::NotLearner);
            }
            v.may_promote(p.id)?;
            Plan::Change(ChangeMembers::AddVoterIds([p.id].into()))
        }
        Change::Update(u) => {
            let mut member = v.node(u.id)?.clone();
            if v.urls_taken(&u.peer_urls, Some(u.id)) {
                return Err(MembershipError::PeerUrlsExist);
            }
            member.peer_urls = u.peer_urls.clone();
            Plan::Change(ChangeMembers::SetNodes([(u.id, member)].into()))
        }
        Change::Publish(p) => {
            let mut member = v.node(p.id)?.clone();
            member.name = p.name.clone();
            member.client_urls = p.client_urls.clone();
            Plan::Change(ChangeMembers::SetNodes([(p.id, member)].into()))
        }
    })
}

enum RunError {
    /// Another change got in first: check again.
    Retry,
    Failed(LeaderError),
}

impl From<LeaderError> for RunError {
    fn from(e: LeaderError) -> Self {
        RunError::Failed(e)
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
    RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
>;

fn write_failure(
    e: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
) -> RunError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            RunError::Failed(LeaderError::NotLeader)
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            RunError::Failed(ProposeError::LeaderChanged.into())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        ))
        | RaftError::APIError(ClientWriteError::PreconditionFailed(_)) => RunError::Retry,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::EmptyMembership(_),
        )) => RunError::Failed(MembershipError::NotEnoughStarted.into()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(_),
        )) => RunError::Failed(MembershipError::NotFound.into()),
        RaftError::APIError(other) => {
            RunError::Failed(ProposeError::Stopped(other.to_string()).into())
        }
        RaftError::Fatal(f) => RunError::Failed(ProposeError::Stopped(f.to_string()).into()),
    }
}

/// Runs a membership write in a task of its own, so a voter change finishes
/// its second (uniform) step even when the caller stops waiting.
async fn spawn_write(
    raft: &Raft,
    write: impl FnOnce(Raft) -> futures::future::BoxFuture<'static, WriteResult>,
    deadline: Instant,
    mut done_early: impl FnMut(&Raft) -> bool,
) -> Result<Option<WriteResult>, RunError> {
    let mut task = tokio::spawn(write(raft.clone()));
    let mut metrics = raft.metrics();
    loop {
        tokio::select! {
            r = &mut task => {
                return r
                    .map(Some)
                    .map_err(|e| RunError::Failed(ProposeError::Stopped(e.to_string()).into()));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(RunError::Failed(ProposeError::Timeout.into()));
            }
            changed = metrics.changed() => {
                if changed.is_err() {
                    return Err(RunError::Failed(ProposeError::Stopped("raft stopped".into()).into()));
                }
                if done_early(raft) {
                    return Ok(None);
                }
            }
        }
    }
}

async fn run(raft: &Raft, v: &View, plan: Plan, deadline: Instant) -> Result<Membership, RunError> {
    // Serialize with any other change: propose only while the membership is
    // still the one the checks above looked at.
    let guard = Precondition::LastMembershipLogId {
        last_membership_log_id: v.log_id,
    };
    match plan {
        Plan::Add {
            id,
            member,
            learner,
        } => {
            // The learner entry needs only the current quorum.
            let add = raft.add_learner(id, member, false);
            let r = tokio::time::timeout_at(deadline, add)
                .await
                .map_err(|_| RunError::Failed(ProposeError::Timeout.into()))?;
            r.map_err(write_failure)?;
            if learner {
                return Ok(current(raft));
            }
            // A second voter in a one-member cluster cannot commit the joint
            // configuration before it starts, which the client must do after
            // MemberAdd returns (etcd answers once the change is in its log
            // too): answer once the joint configuration is appended.
            let single = v.voters.len() == 1;
            let result = spawn_write(
                raft,
                move |r| {
                    Box::pin(async move {
                        r.change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                            .await
                    })
                },
                deadline,
                move |r| {
                    single
                        && r.metrics()
                            .borrow_watched()
                            .membership_config
                            .membership()
                            .voter_ids()
                            .any(|v| v == id)
                },
            )
            .await?;
            match result {
                None => Ok(current(raft)),
                Some(Ok(resp)) => Ok(resp.membership.clone().unwrap_or_else(|| current(raft))),
                // The learner is in; a failed promotion is reported, and a
                // retried MemberAdd finds the URLs taken, as etcd would.
                Some(Err(e)) => Err(write_failure(e)),
            }
        }
        Plan::Change(change) => {
            let result = spawn_write(
                raft,
                move |r| {
                    Box::pin(async move { r.change_membership_if(change, false, [guard]).await })
                },
                deadline,
                |_| false,
            )
            .await?;
            match result {
                Some(Ok(resp)) => Ok(resp.membership.clone().unwrap_or_else(|| current(raft))),
                Some(Err(e)) => Err(write_failure(e)),
                None => Ok(current(raft)),
            }
        }
    }
}

/// The leader's effective membership.
fn current(raft: &Raft) -> Membership {
    raft.metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, url: &str) -> Member {
        Member {
            name: name.into(),
            peer_urls: vec![url.into()],
            client_urls: vec![],
        }
    }

    fn view_of(voters: &[u64], learners: &[u64], active: &[u64]) -> View {
        let mut nodes = BTreeMap::new();
        for id in voters.iter().chain(learners) {
            nodes.insert(
                *id,
                member(&format!("m{id}"), &format!("http://h{id}:2380")),
            );
        }
        let membership =
            Membership::new(vec![voters.iter().copied().collect()], nodes).expect("valid");
        View {
            me: voters[0],
            membership,
            log_id: None,
            settled: true,
            voters: voters.iter().copied().collect(),
            active: active.iter().copied().collect(),
            matched: BTreeMap::new(),
            last_log_index: 100,
        }
    }

    #[test]
    fn new_ids_follow_etcd_and_avoid_taken_ones() {
        let urls = vec!["http://b:2380".to_string(), "http://a:2380".to_string()];
        let a = new_member_id(&urls, 1_700_000_000, &BTreeSet::new());
        assert_eq!(
            a,
            crate::identity::member_id(&urls, "1700000000"),
            "sha1(sorted urls + unix seconds), as etcd's NewMember"
        );
        let b = new_member_id(&urls, 1_700_000_000, &[a].into());
        assert_ne!(a, b);
    }

    #[test]
    fn add_checks_urls_learners_and_quorum() {
        let v = view_of(&[1, 2, 3], &[], &[1, 2, 3]);
        let add = |urls: &[&str], learner| {
            Change::Add(pb::AddMember {
                id: 9,
                peer_urls: urls.iter().map(|s| s.to_string()).collect(),
                is_learner: learner,
            })
        };
        assert!(matches!(
            plan(&v, &add(&["http://h2:2380"], false)),
            Err(MembershipError::PeerUrlsExist)
        ));
        assert!(plan(&v, &add(&["http://h9:2380"], false)).is_ok());
        let with_learner = view_of(&[1, 2, 3], &[4], &[1, 2, 3]);
        assert!(matches!(
            plan(&with_learner, &add(&["http://h9:2380"], true)),
            Err(MembershipError::TooManyLearners)
        ));
        let one_down = view_of(&[1, 2, 3], &[], &[1, 2]);
        assert!(matches!(
            plan(&one_down, &add(&["http://h9:2380"], false)),
            Err(MembershipError::Unhealthy)
        ));
        let single = view_of(&[1], &[], &[1]);
        assert!(plan(&single, &add(&["http://h9:2380"], false)).is_ok());
    }

    #[test]
    fn remove_promote_update_check_the_member() {
        let mut v = view_of(&[1, 2, 3], &[4], &[1, 2, 3, 4]);
        assert!(matches!(
            plan(&v, &Change::Remove(pb::RemoveMember { id: 7 })),
            Err(MembershipError::NotFound)
        ));
        assert!(matches!(
            plan(&v, &Change::Remove(pb::RemoveMember { id: 4 })),
            Ok(Plan::Change(ChangeMembers::RemoveNodes(_)))
        ));
        assert!(matches!(
            plan(&v, &Change::Remove(pb::RemoveMember { id: 2 })),
            Ok(Plan::Change(ChangeMembers::RemoveVoters(_)))
        ));
        assert!(matches!(
            plan(&v, &Change::Promote(pb::PromoteMember { id: 2 })),
            Err(MembershipError::NotLearner)
        ));
        assert!(matches!(
            plan(&v, &Change::Promote(pb::PromoteMember { id: 4 })),
            Err(MembershipError::LearnerNotReady)
        ));
        v.matched.insert(4, 95);
        assert!(plan(&v, &Change::Promote(pb::PromoteMember { id: 4 })).is_ok());
        let update = |urls: &[&str]| {
            Change::Update(pb::UpdateMember {
                id: 2,
                peer_urls: urls.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert!(matches!(
            plan(&v, &update(&["http://h3:2380"])),
            Err(MembershipError::PeerUrlsExist)
        ));
        assert!(plan(&v, &update(&["http://h2:2380", "http://h2b:2380"])).is_ok());
    }

    #[test]
    fn members_list_learners_and_voters_by_id() {
        let v = view_of(&[3, 1], &[2], &[1]);
        let list = members_of(&v.membership);
        let ids: Vec<(u64, bool)> = list.iter().map(|m| (m.id, m.is_learner)).collect();
        assert_eq!(ids, vec![(1, false), (2, true), (3, false)]);
    }
}
