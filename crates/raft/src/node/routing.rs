//! The one way a request reaches the leader: find it, run the request here
//! when this member leads or on the leader's peer channel otherwise, and
//! when the member asked did nothing (it no longer leads, or the request
//! never reached it) try again with the leader known then, until a deadline.
//!
//! Proposals, read barriers, membership changes and the leader-only lease
//! requests all go through [`RaftNode::on_leader`]; each decides what counts
//! as "nothing was done" and which error a caller gets when time runs out.

use std::future::Future;
use std::time::Duration;

use bramble_api::bramblepb::peer_client::PeerClient;
use openraft::async_runtime::WatchReceiver;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::RaftNode;
use crate::error::{ForwardError, ProposeError};

/// The longest a request waits before it retries with the leader it
/// knows after one that was refused or never delivered.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What one attempt of a request on the leader came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// The request finished (well or not): the caller gets this.
    Done(Result<T, E>),
    /// The member asked did nothing (it does not lead, or the request never
    /// reached it), so trying again with the next leader is safe. Carries
    /// the error the caller gets if the deadline has passed.
    Retry(E),
}

/// The leader as a remote action sees it.
#[derive(Debug, Clone)]
pub struct LeaderPeer {
    /// The leader's member id.
    pub id: u64,
    /// A channel to the leader's (first) peer URL; the peer listener serves
    /// the Raft peer protocol and the leader-only lease requests.
    pub channel: Channel,
}

impl RaftNode {
    /// The deadline of a request that starts now (etcd's request timeout).
    pub fn request_deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Runs a request where only the leader can run it: `local` when this
    /// member leads, else `remote` against the leader. An attempt that comes
    /// back [`Attempt::Retry`] is tried again, after a short pause (or as soon
    /// as another leader is known), with the leader known then; once
    /// `deadline` has passed its error is returned instead. Finding no leader
    /// before `deadline`, or none this member can reach, fails with
    /// `no_route` of why.
    pub async fn on_leader<T, E, Local, LocalFut, Remote, RemoteFut>(
        &self,
        deadline: Instant,
        no_route: impl Fn(ProposeError) -> E,
        mut local: Local,
        mut remote: Remote,
    ) -> Result<T, E>
    where
        Local: FnMut() -> LocalFut,
        LocalFut: Future<Output = Attempt<T, E>>,
        Remote: FnMut(LeaderPeer) -> RemoteFut,
        RemoteFut: Future<Output = Attempt<T, E>>,
    {
        loop {
            let leader = self.wait_for_leader(deadline).await.map_err(&no_route)?;
            let attempt = if leader == self.member_id {
                local().await
            } else {
                let channel = self.peer_channel(leader).map_err(&no_route)?;
                remote(LeaderPeer {
                    id: leader,
                    channel,
                })
                .await
            };
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry(timed_out) => {
                    if Instant::now() >= deadline {
                        return Err(timed_out);
                    }
                    self.pause_for_leader_change(leader, deadline)
                        .await
                        .map_err(&no_route)?;
                }
            }
        }
    }

    /// A channel to member `id`'s peer URL, as this member's current
    /// membership lists it.
    pub fn peer_channel(&self, id: u64) -> Result<Channel, ProposeError> {
        let member = {
            let m = self.raft.metrics().borrow_watched().clone();
            m.membership_config
                .membership()
                .get_node(&id)
                .cloned()
                .ok_or(ProposeError::NoLeader)?
        };
        let url = member.peer_urls.first().ok_or(ProposeError::NoLeader)?;
        self.channels.channel(url).map_err(ProposeError::Stopped)
    }

    /// A Peer-service client on `channel`, with this member's message limits.
    pub(crate) fn peer_client(&self, channel: Channel) -> PeerClient<Channel> {
        self.channels.client_on(channel)
    }

    /// The current leader, waiting for one to be elected (until `deadline`).
    async fn wait_for_leader(&self, deadline: Instant) -> Result<u64, ProposeError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
        {
            Ok(m) => m.current_leader.ok_or(ProposeError::NoLeader),
            Err(openraft::metrics::WaitError::Timeout(..)) => Err(ProposeError::NoLeader),
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }

    /// Before retrying a request `old` did not take: waits for another
    /// leader, or a short while (a member that just won an election refuses
    /// proposals until its first entry commits), but not past `deadline`.
    async fn pause_for_leader_change(
        &self,
        old: u64,
        deadline: Instant,
    ) -> Result<(), ProposeError> {
        let pause = RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
        match self
            .raft
            .wait(Some(pause))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != old),
                "a new leader",
            )
            .await
        {
            Ok(_) | Err(openraft::metrics::WaitError::Timeout(..)) => Ok(()),
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }
}

/// The attempt a forwarded request's outcome is: one the leader never took
/// is retried (failing as a timeout once out of time).
pub(crate) fn attempt<T, E: From<ProposeError>>(r: Result<T, ForwardError>) -> Attempt<T, E> {
    match r {
        Ok(v) => Attempt::Done(Ok(v)),
        Err(ForwardError::NotDelivered) => Attempt::Retry(ProposeError::Timeout.into()),
        Err(ForwardError::Failed(e)) => Attempt::Done(Err(e.into())),
    }
}
