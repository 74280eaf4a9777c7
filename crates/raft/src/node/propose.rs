//! The two requests every etcd RPC goes through: proposing a command and
//! waiting for a linearizable read point, on the leader or forwarded to it.

use bramble_api::bramblepb::{self as pb, Command};
use bramble_storage::mvcc::ApplyResult;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::ReadPolicy;
use tokio::time::Instant;

use super::routing::{attempt, Attempt, LeaderPeer};
use super::RaftNode;
use crate::admission::{self, Refusal};
use crate::error::{forward_status, read_error, write_error, ForwardError, ProposeError};
use crate::types::{Request, Response};

impl RaftNode {
    /// Proposes a command and returns its result once it is committed (durable
    /// on a quorum) and applied on this member. A follower forwards the
    /// command to the leader (see [`crate::forwarded_proposals`]).
    pub async fn propose(&self, cmd: Command) -> Result<ApplyResult, ProposeError> {
        admission::check_command(&cmd, &self.limits).map_err(ProposeError::Refused)?;
        self.check_alive()?;
        let deadline = self.request_deadline();
        let cmd = &cmd;
        self.on_leader(
            deadline,
            std::convert::identity,
            || self.propose_here(cmd, deadline),
            |leader| async move {
                // The leader we knew stepped down before appending the
                // command, or could not be reached at all: nothing was
                // proposed, so trying again with the next leader is safe.
                attempt(self.forward(leader, cmd.clone(), deadline).await)
            },
        )
        .await
    }

    /// Proposes `cmd` on this member, the leader.
    async fn propose_here(
        &self,
        cmd: &Command,
        deadline: Instant,
    ) -> Attempt<ApplyResult, ProposeError> {
        let write = self.raft.client_write(Request::local(cmd.clone()));
        let Ok(resp) = tokio::time::timeout_at(deadline, write).await else {
            return Attempt::Done(Err(ProposeError::Timeout));
        };
        Attempt::Done(match resp {
            // Leadership moved between the metrics and the write; nothing
            // was appended, so try again with the new leader.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                return Attempt::Retry(ProposeError::Timeout)
            }
            Err(e) => Err(write_error(e)),
            Ok(resp) => match resp.data {
                Response::Command(r) => Ok(r),
                Response::Empty => Err(ProposeError::Stopped(
                    "a command entry was applied as a blank entry".into(),
                )),
            },
        })
    }

    /// Has the leader propose `cmd` and waits for it to apply here.
    async fn forward(
        &self,
        leader: LeaderPeer,
        cmd: Command,
        deadline: Instant,
    ) -> Result<ApplyResult, ForwardError> {
        let mut client = self.peer_client(leader.channel);
        let (request_id, applied) = self.waiters.register();
        let _forget = self.waiters.cancel_on_drop(request_id);
        let mut req = tonic::Request::new(pb::ForwardRequest {
            command: Some(crate::log_codec::command_record(&cmd)),
            cluster_id: self.cluster_id,
            request_id,
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let reply = match client.forward(req).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                tracing::debug!(leader = %format!("{:x}", leader.id), "forward failed: {status:?}");
                return Err(forward_status(&status));
            }
        };
        match Refusal::from_pb(reply.refused) {
            Ok(None) => {}
            Ok(Some(refusal)) => {
                return Err(ForwardError::Failed(ProposeError::Refused(refusal)));
            }
            Err(unknown) => {
                return Err(ForwardError::Failed(ProposeError::Stopped(format!(
                    "the leader refused the command for a reason this member does not know ({unknown})"
                ))));
            }
        }
        match tokio::time::timeout_at(deadline, applied).await {
            Ok(Ok(result)) => Ok(result),
            // Dropped by a snapshot install: the entry was applied as part of
            // the snapshot, its individual result is gone.
            Ok(Err(_)) => Err(ForwardError::Failed(ProposeError::LeaderChanged)),
            Err(_) => Err(ForwardError::Failed(ProposeError::Timeout)),
        }
    }

    /// Waits until this member's state machine reflects everything committed
    /// before the call (Raft read index), so a following local read is
    /// linearizable. A follower asks the leader for the read index.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        self.check_alive()?;
        let deadline = self.request_deadline();
        self.on_leader(
            deadline,
            std::convert::identity,
            || async move {
                let wait = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
                Attempt::Done(match tokio::time::timeout_at(deadline, wait).await {
                    Err(_) => Err(ProposeError::Timeout),
                    Ok(r) => r.map(|_| ()).map_err(read_error),
                })
            },
            |leader| async move {
                let index = match self.leader_read_index(leader, deadline).await {
                    Ok(index) => index,
                    Err(e) => return attempt(Err(e)),
                };
                let timeout = deadline.saturating_duration_since(Instant::now());
                Attempt::Done(
                    match self
                        .raft
                        .wait(Some(timeout))
                        .applied_index_at_least(Some(index), "read index applied")
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(openraft::metrics::WaitError::Timeout(..)) => {
                            Err(ProposeError::Timeout)
                        }
                        Err(e) => Err(ProposeError::Stopped(e.to_string())),
                    },
                )
            },
        )
        .await
    }

    /// Asks the leader for its read index.
    async fn leader_read_index(
        &self,
        leader: LeaderPeer,
        deadline: Instant,
    ) -> Result<u64, ForwardError> {
        let mut client = self.peer_client(leader.channel);
        let mut req = tonic::Request::new(pb::ReadIndexRequest {
            cluster_id: self.cluster_id,
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match client.read_index(req).await {
            Ok(r) => Ok(r.into_inner().read_index),
            Err(status) => Err(forward_status(&status)),
        }
    }
}
