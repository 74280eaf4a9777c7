//! Leadership a caller can rely on (etcd's `ensureLeadership`): a quorum
//! acknowledged this member as leader recently, for work only safe on a
//! leader no other member can have replaced yet (lease renewals), and
//! proposals only the leader of a given term may make (lease expiry). The
//! check-quorum monitor that makes a cut-off leader step down is
//! [`crate::check_quorum`].

use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_storage::mvcc::ApplyResult;
use openraft::errors::{LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::LinearizerOption;

use super::RaftNode;
use crate::error::{write_error, ProposeError};
use crate::log_codec;
use crate::types::{Request, Response, TypeConfig};

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
        if log_codec::log_term(read.log_id()) != term {
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
