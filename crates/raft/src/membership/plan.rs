//! Checking a membership change on the leader, as etcd's
//! `ValidateConfigurationChange` and strict reconfig checks do: a [`View`]
//! of what the leader knows, and the [`Plan`] (openraft calls) a valid
//! change becomes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bramble_api::bramblepb::change_members_request::Change;
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Instant as _};

use super::error::LeaderError;
use super::error::MembershipError;
use crate::types::{MemberAttributes, Membership, Raft};

/// etcd's `maxLearners`: at most one learner at a time.
const MAX_LEARNERS: usize = 1;

/// etcd's `readyPercent`: a learner may be promoted once it has replicated
/// this share of the leader's log.
const READY_PERCENT: f64 = 0.9;

/// etcd's `HealthInterval`: a peer heard from within this is "active".
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A snapshot of what the leader knows, for checking a change.
pub(super) struct View {
    pub(super) me: u64,
    pub(super) membership: Membership,
    /// The effective membership's log id (the change's precondition).
    pub(super) log_id: Option<crate::types::LogId>,
    /// Whether the effective membership is committed (no change in progress).
    pub(super) settled: bool,
    pub(super) voters: BTreeSet<u64>,
    /// Members heard from within [`HEALTH_INTERVAL`] (the leader itself included).
    pub(super) active: BTreeSet<u64>,
    /// The log index each member has replicated.
    pub(super) matched: BTreeMap<u64, u64>,
    pub(super) last_log_index: u64,
}

pub(super) fn view(raft: &Raft) -> Result<View, LeaderError> {
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
    fn node(&self, id: u64) -> Result<&MemberAttributes, MembershipError> {
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

/// What to ask openraft for.
pub(super) enum Plan {
    /// Add a learner, and make it a voter unless `learner`.
    Add {
        id: u64,
        member: MemberAttributes,
        learner: bool,
    },
    /// Any other change: one `change_membership` call.
    Change(ChangeMembers<u64, MemberAttributes>),
}

/// Checks `change` against the membership, as etcd's
/// `ValidateConfigurationChange` and strict reconfig checks do.
pub(super) fn plan(v: &View, change: &Change) -> Result<Plan, MembershipError> {
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
                member: MemberAttributes {
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

#[cfg(test)]
mod tests {
    use super::super::{members_of, new_member_id};
    use super::*;
    use bramble_api::bramblepb as pb;

    fn member(name: &str, url: &str) -> MemberAttributes {
        MemberAttributes {
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
            crate::derived_ids::member_id(&urls, "1700000000"),
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
