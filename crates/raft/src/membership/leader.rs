//! The leader's side of a membership change: checks it against a view of
//! the cluster (see [`super::plan`]) and runs it on openraft, serializing it
//! with any change in progress; also the Peer service's answer to a change a
//! follower forwarded.

use std::time::Duration;

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::change_members_reply::Refused;
use bramble_api::bramblepb::change_members_request::Change;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::Precondition;
use openraft::ChangeMembers;
use tokio::time::Instant;

use super::error::LeaderError;
use super::error::MembershipError;
use super::plan::{plan, view, Plan, View};
use crate::error::ProposeError;
use crate::log_codec;
use crate::types::{Membership, Raft};

/// How long the leader works on a change forwarded by a follower (the
/// follower gives up after its own request timeout anyway).
const LEADER_DEADLINE: Duration = Duration::from_secs(10);

/// How often a change blocked by another one in progress tries again.
const IN_PROGRESS_PAUSE: Duration = Duration::from_millis(50);

/// The Peer service's answer to a forwarded change.
pub(crate) async fn serve_change(
    raft: &Raft,
    change: Change,
) -> Result<pb::ChangeMembersReply, tonic::Status> {
    let deadline = Instant::now() + LEADER_DEADLINE;
    match change_on_leader(raft, change, deadline).await {
        Ok(m) => Ok(pb::ChangeMembersReply {
            refused: Refused::None as i32,
            membership: Some(log_codec::encode_membership(&m)),
        }),
        Err(LeaderError::NotLeader) => Err(crate::error::not_leader()),
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
