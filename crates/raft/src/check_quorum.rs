//! CheckQuorum: a leader must know that a quorum still follows it.
//!
//! - [`monitor`]: a leader that has not heard from a quorum of voters for an election
//!   timeout steps down to follower (etcd's CheckQuorum), so a leader cut off by a
//!   partition stops reporting itself as leader (Status, `endpoint status`) and stops
//!   serving what only a leader may serve.
//! - [`RaftNode::confirm_leadership`]: a quorum acknowledged this member as leader
//!   recently (etcd's `ensureLeadership`), for work that is only safe on a leader no other
//!   member can have replaced yet (lease renewals), and
//!   [`RaftNode::propose_as_leader`] for decisions only the leader of a given term may
//!   take (lease expiry).
//!
//! openraft alone keeps a leader that lost its quorum in the Leader state: it refuses new
//! proposals once its quorum lease (`election_timeout_max`, the time followers refuse to
//! vote for another candidate after hearing from the leader) has expired, but goes on
//! leading until it hears of a higher term (openraft's `docs::protocol::check_quorum`).
//! Its public API has no "step down" either, so the monitor uses the one transition
//! openraft offers: the member grants its own vote, at the next term, to no candidate
//! (node id 0, which is no member: etcd's `raft.None`). openraft grants a higher vote to
//! anyone once the leader's quorum lease has expired (never before), and a member that
//! voted for another node is a follower. Nobody is elected by that vote; the member then
//! behaves as any follower without a leader: Pre-Vote after its election timeout, which
//! fails while it is cut off and does not disturb the majority's leader after a heal.

use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_storage::mvcc::ApplyResult;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::VoteRequest;
use openraft::{Instant as _, LinearizerOption, ServerState};
use tokio::time::Instant;

use crate::codec;
use crate::node::{write_error, ProposeError, RaftNode};
use crate::types::{Raft, Request, Response, TypeConfig, Vote};

/// The member id no member has: a vote for it elects nobody (etcd's `raft.None`).
const NO_CANDIDATE: u64 = 0;

/// How often per election timeout the monitor looks at the leader's quorum.
const CHECKS_PER_ELECTION: u32 = 10;

/// Steps this member down whenever it leads but no quorum of voters has acknowledged it
/// for `election_timeout` (etcd's CheckQuorum). Runs until Raft stops.
pub(crate) async fn monitor(raft: Raft, election_timeout: Duration) {
    let every = (election_timeout / CHECKS_PER_ELECTION).max(Duration::from_millis(10));
    // When this member was first seen leading in the current term: a new leader has no
    // quorum acknowledgement yet, and gets an election timeout to collect one.
    let mut leading_since: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(every).await;
        let m = raft.metrics().borrow_watched().clone();
        match m.state {
            ServerState::Shutdown => return,
            ServerState::Leader => {}
            _ => {
                leading_since = None;
                continue;
            }
        }
        let term = m.current_term;
        let since = match leading_since {
            Some((t, at)) if t == term => at,
            _ => {
                let now = Instant::now();
                leading_since = Some((term, now));
                now
            }
        };
        let me = m.id;
        if m.membership_config
            .membership()
            .voter_ids()
            .all(|v| v == me)
        {
            // The only voter: its own acknowledgement is a quorum.
            continue;
        }
        // How long since a quorum acknowledged this leader (or since it started leading).
        let silent = m
            .last_quorum_acked
            .map(|acked| acked.into_inner().elapsed())
            .map_or(since.elapsed(), |a| a.min(since.elapsed()));
        if silent < election_timeout {
            continue;
        }
        tracing::warn!(
            term,
            silent_ms = silent.as_millis() as u64,
            "no quorum has acknowledged this leader for an election timeout; stepping down"
        );
        match step_down(&raft, term).await {
            Ok(true) => leading_since = None,
            // A quorum answered meanwhile, or the term moved on: look again next time.
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("check quorum: raft stopped: {e}");
                return;
            }
        }
    }
}

/// Has this leader of `term` give its vote for `term + 1` to no candidate, which makes it
/// a follower. Returns whether openraft granted the vote (it refuses while a quorum has
/// acknowledged the leader within its lease, or if the term moved on).
async fn step_down(raft: &Raft, term: u64) -> Result<bool, RaftError<TypeConfig>> {
    // The vote is granted only to a log at least as new as this member's own; this one is
    // exactly as new, and since no candidate exists, no log is ever judged by it.
    let last_log_id = raft.data_metrics().borrow_watched().last_log;
    let req = VoteRequest::new(Vote::new(term + 1, NO_CANDIDATE), last_log_id);
    let resp = raft.vote(req).await?;
    Ok(resp.vote_granted)
}

/// Why leadership could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    /// This member does not lead (any more).
    #[error("not the leader")]
    NotLeader,
    /// This member leads, but no quorum acknowledged it within the margin.
    #[error("leadership not confirmed by a quorum")]
    NotConfirmed,
    /// Raft stopped.
    #[error("server stopped: {0}")]
    Stopped(String),
}

impl RaftNode {
    /// Confirms that this member leads in `term` and that a quorum of voters acknowledged
    /// it as leader with a heartbeat or append sent no earlier than `max_age` before the
    /// call (etcd's `ensureLeadership`, a read-index style confirmation): if the last
    /// acknowledgement is older, a heartbeat round goes out and is waited for at most
    /// `wait`. Also waits until the state machine has applied everything committed
    /// before the confirmation (etcd's `waitAppliedIndex`), so the caller acts on current
    /// state. `max_age` is capped at [`Self::follower_lease`].
    ///
    /// What a caller may conclude: no other member can be elected before the followers'
    /// leader lease, counted from that acknowledgement, runs out, that is before
    /// `call start - max_age + follower_lease`.
    pub async fn confirm_leadership(
        &self,
        term: u64,
        max_age: Duration,
        wait: Duration,
    ) -> Result<(), LeadershipError> {
        let option = LinearizerOption::new(Some(max_age), true).with_wait_timeout(wait);
        let confirmed = self.raft().ensure_linearizable(option);
        let read = match tokio::time::timeout(self.request_timeout(), confirmed).await {
            Err(_) => return Err(LeadershipError::NotConfirmed),
            Ok(Ok(read)) => read,
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => {
                return Err(LeadershipError::NotLeader)
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) => {
                return Err(LeadershipError::NotConfirmed)
            }
            Ok(Err(RaftError::Fatal(f))) => return Err(LeadershipError::Stopped(f.to_string())),
        };
        // The read point is at or after the leader's first entry of its term.
        if codec::log_term(read.log_id()) != term {
            return Err(LeadershipError::NotLeader);
        }
        Ok(())
    }

    /// Proposes `cmd` only as the leader of `term` (never forwarded) and returns its result
    /// once applied here. For decisions only that leader may take, such as expiring a
    /// lease by its clock (etcd's `revokeExpiredLeases`): a member that lost its
    /// leadership must not hand a stale decision to the next leader. An entry appended in
    /// `term` commits only through a quorum that has not voted for a later term, so every
    /// later leader has it in its log.
    pub async fn propose_as_leader(
        &self,
        cmd: Command,
        term: u64,
    ) -> Result<ApplyResult, ProposeError> {
        let (responder, done) = ProgressResponder::<TypeConfig, _>::complete_only();
        self.raft()
            .write(Request::local(cmd))
            .with_leader(term)
            .responder(responder)
            .await
            .map_err(|f| ProposeError::Stopped(f.to_string()))?;
        let result = tokio::time::timeout(self.request_timeout(), done)
            .await
            .map_err(|_| ProposeError::Timeout)?
            .map_err(|_| ProposeError::Stopped("raft dropped a proposal".into()))?;
        let resp = result.map_err(|e| write_error(RaftError::APIError(e)))?;
        match resp.data {
            Response::Command(r) => Ok(r),
            Response::Empty => Err(ProposeError::Stopped(
                "a command entry was applied as a blank entry".into(),
            )),
        }
    }

    /// The leader lease followers grant: after hearing from the leader, a follower refuses
    /// to vote for another candidate for this long (openraft's `election_timeout_max`).
    pub fn follower_lease(&self) -> Duration {
        Duration::from_millis(self.raft().config().election_timeout_max)
    }
}
