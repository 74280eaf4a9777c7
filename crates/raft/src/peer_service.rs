//! The peer transport, server side: the `bramblepb.Peer` gRPC service a member
//! serves on its `--listen-peer-urls`, handing Raft messages to openraft and
//! answering its followers' forwarded proposals and read-index requests.
//!
//! Every message carries the sender's cluster id; a message from another
//! cluster (a member started with the wrong `--initial-cluster-token`, or a
//! stale member of a re-created cluster) is refused, as etcd refuses peers
//! whose `X-Etcd-Cluster-ID` differs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::peer_server::{Peer, PeerServer};
use futures::Stream;
use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::raft::{TransferLeaderError, TransferLeaderRequest};
use openraft::ReadPolicy;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::admission::{self, Limits};
use crate::log_codec;
use crate::peer_codec;
use crate::snapshot::SnapshotData;
use crate::types::{Raft, Request as RaftRequest};

/// The Peer service of one member.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
    cluster_id: u64,
    /// Where received snapshots are written before they are installed.
    snap_dir: PathBuf,
    /// This member's request limits, which forwarded commands must meet too.
    limits: Limits,
}

fn bad_message(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

impl PeerService {
    /// The service for `raft`, a member of cluster `cluster_id`.
    pub fn new(raft: Raft, cluster_id: u64, snap_dir: PathBuf, limits: Limits) -> Self {
        PeerService {
            raft,
            cluster_id,
            snap_dir,
            limits,
        }
    }

    /// The tonic server wrapper, taking messages of up to `max_message` bytes
    /// ([`crate::network::peer_message_limit`]).
    pub(crate) fn into_server(self, max_message: usize) -> PeerServer<PeerService> {
        PeerServer::new(self)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message)
    }

    /// A vote request, or with `pre` a Pre-Vote (no vote is stored).
    async fn answer_vote(
        &self,
        req: pb::VoteRequest,
        pre: bool,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        self.check_cluster(req.cluster_id)?;
        let rpc = peer_codec::vote_request_from_pb(&req).map_err(bad_message)?;
        let resp = if pre {
            self.raft.pre_vote(rpc).await
        } else {
            self.raft.vote(rpc).await
        }
        .map_err(fatal)?;
        Ok(Response::new(peer_codec::vote_response_to_pb(&resp)))
    }

    fn check_cluster(&self, sender: u64) -> Result<(), Status> {
        check_cluster(self.cluster_id, sender)
    }
}

/// Refuses a peer request from cluster `sender` to a member of cluster
/// `mine` (every service on the peer listener checks this).
pub fn check_cluster(mine: u64, sender: u64) -> Result<(), Status> {
    if sender != mine {
        return Err(Status::failed_precondition(format!(
            "cluster id mismatch: this member is in cluster {mine:x}, the sender in {sender:x}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        self.answer_vote(req.into_inner(), false).await
    }

    async fn pre_vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        self.answer_vote(req.into_inner(), true).await
    }

    async fn append_entries(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let rpc = peer_codec::append_request_from_pb(req).map_err(bad_message)?;
        let resp = self.raft.append_entries(rpc).await.map_err(fatal)?;
        Ok(Response::new(peer_codec::append_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| bad_message("empty snapshot stream"))??;
        let header = first
            .header
            .clone()
            .ok_or_else(|| bad_message("snapshot stream without a header"))?;
        self.check_cluster(header.cluster_id)?;
        // The whole header is checked before a byte is written.
        let offer = peer_codec::snapshot_header_from_pb(&header).map_err(bad_message)?;
        let path = receive_file(&self.snap_dir, first.data, &mut stream, offer.size).await?;
        let snapshot = openraft::storage::Snapshot {
            meta: openraft::storage::SnapshotMeta {
                last_log_id: Some(offer.last_log_id),
                last_membership: offer.membership,
            },
            snapshot: SnapshotData { path: path.clone() },
        };
        let result = self.raft.install_full_snapshot(offer.vote, snapshot).await;
        // The state machine moved the file into place if it installed it;
        // whatever is left here was refused (an outdated snapshot).
        let _ = tokio::fs::remove_file(&path).await;
        let resp = result.map_err(fatal)?;
        Ok(Response::new(pb::SnapshotReply {
            vote: Some(peer_codec::vote_to_pb(&resp.vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let rpc = TransferLeaderRequest::new(
            peer_codec::vote_from_pb(req.from_leader.as_ref()).map_err(bad_message)?,
            req.to_node_id,
            peer_codec::opt_log_id_from_pb(req.last_log_id.as_ref()).map_err(bad_message)?,
        );
        let resp = self.raft.handle_transfer_leader(rpc).await.map_err(fatal)?;
        use pb::transfer_leader_reply::Rejected;
        let reply = match resp {
            Ok(()) => pb::TransferLeaderReply::default(),
            Err(TransferLeaderError::VoteChanged { expected, actual }) => pb::TransferLeaderReply {
                rejected: Rejected::VoteChanged as i32,
                expected_vote: Some(peer_codec::vote_to_pb(&expected)),
                actual_vote: Some(peer_codec::vote_to_pb(&actual)),
                ..Default::default()
            },
            Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                pb::TransferLeaderReply {
                    rejected: Rejected::LogNotFlushed as i32,
                    expected_log: peer_codec::opt_log_id_to_pb(expected.as_ref()),
                    actual_log: peer_codec::opt_log_id_to_pb(actual.as_ref()),
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let record = req
            .command
            .ok_or_else(|| bad_message("forward without a command"))?;
        let command = log_codec::command_from_record(record).map_err(bad_message)?;
        let request_id = command_request_id(&req.request_id)?;
        // The leader's own checks and limits, as for its own clients.
        if let Err(refusal) = admission::check_command(&command, &self.limits) {
            tracing::debug!("refused a forwarded command: {refusal}");
            return Ok(Response::new(pb::ForwardReply {
                log_id: None,
                refused: refusal.to_pb() as i32,
            }));
        }
        let resp = self
            .raft
            .client_write(RaftRequest {
                command,
                request_id,
            })
            .await;
        match resp {
            Ok(r) => Ok(Response::new(pb::ForwardReply {
                log_id: Some(peer_codec::log_id_to_pb(&r.log_id)),
                refused: pb::forward_reply::Refused::None as i32,
            })),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(crate::error::not_leader())
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Status::aborted("leader changed"))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        self.check_cluster(req.into_inner().cluster_id)?;
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(l) => Ok(Response::new(pb::ReadIndexReply {
                read_index: l.read_log_id().log_id().index,
            })),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                Err(crate::error::not_leader())
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                Err(Status::unavailable(e.to_string()))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn members(
        &self,
        _req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let m = self.raft.metrics().borrow_watched().clone();
        Ok(Response::new(pb::MembersReply {
            cluster_id: self.cluster_id,
            leader: m.current_leader.unwrap_or(0),
            membership: Some(log_codec::encode_membership(
                m.membership_config.membership(),
            )),
        }))
    }

    async fn change_members(
        &self,
        req: Request<pb::ChangeMembersRequest>,
    ) -> Result<Response<pb::ChangeMembersReply>, Status> {
        let req = req.into_inner();
        self.check_cluster(req.cluster_id)?;
        let change = req
            .change
            .ok_or_else(|| bad_message("membership change without a change"))?;
        crate::membership::leader::serve_change(&self.raft, change)
            .await
            .map(Response::new)
    }
}

/// A forwarded command must carry the follower's request id.
fn command_request_id(id: &u64) -> Result<u64, Status> {
    if *id == 0 {
        return Err(bad_message("forwarded command without a request id"));
    }
    Ok(*id)
}

/// Distinguishes concurrent snapshot receptions' temporary files.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Writes a streamed snapshot to a new file in `dir` (fsynced), checking it
/// has exactly `size` bytes.
async fn receive_file(
    dir: &std::path::Path,
    first: Vec<u8>,
    rest: &mut (impl Stream<Item = Result<pb::SnapshotChunk, Status>> + Unpin),
    size: u64,
) -> Result<PathBuf, Status> {
    let mut written = first.len() as u64;
    if written > size {
        return Err(bad_message("snapshot longer than its header says"));
    }
    let io = |e: std::io::Error| Status::internal(format!("receiving snapshot: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let n = RECEIVED.fetch_add(1, Ordering::Relaxed);
    // A `.tmp` name: a start removes it if a crash interrupted the transfer.
    let path = dir.join(format!("receiving-{}-{n}.tmp", std::process::id()));
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let result: Result<(), Status> = async {
        file.write_all(&first).await.map_err(io)?;
        while let Some(chunk) = rest.next().await {
            let chunk = chunk?;
            written = written
                .checked_add(chunk.data.len() as u64)
                .filter(|w| *w <= size)
                .ok_or_else(|| bad_message("snapshot longer than its header says"))?;
            file.write_all(&chunk.data).await.map_err(io)?;
        }
        if written != size {
            return Err(bad_message(format!(
                "snapshot stream ended after {written} of {size} bytes"
            )));
        }
        file.sync_all().await.map_err(io)?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    Ok(path)
}
