//! CheckQuorum: a leader must know that a quorum still follows it.
//!
//! - `monitor`: a leader that has not heard from a quorum of voters for an election
//!   timeout steps down to follower (etcd's CheckQuorum), so a leader cut off by a
//!   partition stops reporting itself as leader (Status, `endpoint status`) and stops
//!   serving what only a leader may serve.
//! - `RaftNode::confirm_leadership` and `RaftNode::propose_as_leader` (in
//!   `node::leadership`): a quorum acknowledged this member as leader recently
//!   (etcd's `ensureLeadership`), for work that is only safe on a leader no other member
//!   can have replaced yet (lease renewals), and decisions only the leader of a given
//!   term may take (lease expiry).
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

use openraft::async_runtime::WatchReceiver;
use openraft::errors::RaftError;
use openraft::raft::VoteRequest;
use openraft::{Instant as _, ServerState};
use tokio::time::Instant;

use crate::types::{Raft, TypeConfig, Vote};

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
    // Only changes of state, leader and vote: it stays quiet between heartbeats, which
    // update the full metrics many times a second.
    let mut server = raft.server_metrics();
    loop {
        // A follower has nothing to check: it waits for a change of state instead of
        // waking every check (an idle member's wake-ups cost a Pi power).
        let state = server.borrow_watched().state;
        if state != ServerState::Leader {
            if state == ServerState::Shutdown {
                return;
            }
            leading_since = None;
            if server.changed().await.is_err() {
                return;
            }
            continue;
        }
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
