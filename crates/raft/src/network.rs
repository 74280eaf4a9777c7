//! The peer transport, client side: openraft's RPCs to other members over
//! gRPC (`proto/bramblepb/raft.proto`), on the peer URLs each member
//! advertises.
//!
//! One HTTP/2 connection per peer URL, shared by every client openraft makes
//! for that peer (openraft recreates clients after errors). Every failure is
//! reported as `Unreachable`, so openraft backs off instead of spinning on a
//! dead or partitioned peer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_api::bramblepb as pb;
use bramble_api::bramblepb::peer_client::PeerClient;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderError,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::snapshot::SnapshotData;
use crate::types::{Member, TypeConfig, Vote};
use crate::wire;

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// How much of a snapshot one message carries: small, so neither side holds
/// much of it in memory on a Pi.
const SNAPSHOT_CHUNK: usize = 256 * 1024;

/// The largest peer message: an AppendEntries batch of large entries.
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// Opens (and caches) gRPC channels to peers.
#[derive(Clone)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
}

impl PeerChannels {
    /// A cache whose connections give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        PeerChannels {
            channels: Arc::default(),
            connect_timeout,
        }
    }

    /// The channel to `url` (connected lazily, reconnected by tonic on failure).
    pub fn channel(&self, url: &str) -> Result<Channel, String> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| "peer channel cache poisoned".to_string())?;
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("peer URL {url:?}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        map.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// A Peer-service client for the first of `member`'s peer URLs.
    pub fn client(&self, member: &Member) -> Result<PeerClient<Channel>, String> {
        let url = member
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {} has no peer URL", member.name))?;
        Ok(PeerClient::new(self.channel(url)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }
}

/// Creates [`PeerNetwork`] clients for openraft.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    channels: PeerChannels,
    cluster_id: u64,
    rpc_timeout: Duration,
}

impl PeerNetworkFactory {
    /// A factory for members of cluster `cluster_id` whose Raft RPCs give up
    /// after `rpc_timeout`.
    ///
    /// openraft suggests one heartbeat interval as the deadline of an
    /// AppendEntries; a follower answers only after its fsync, and one slow
    /// fsync (an SD card stalls for hundreds of milliseconds) would then count
    /// as an unreachable peer, which openraft backs off from. So the deadline is
    /// ours: a peer that cannot answer within an election timeout is as good as
    /// gone anyway.
    pub fn new(channels: PeerChannels, cluster_id: u64, rpc_timeout: Duration) -> Self {
        PeerNetworkFactory {
            channels,
            cluster_id,
            rpc_timeout,
        }
    }
}

/// openraft's client for one peer.
pub struct PeerNetwork {
    target: u64,
    client: Result<PeerClient<Channel>, String>,
    cluster_id: u64,
    rpc_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerNetwork {
        PeerNetwork {
            target,
            client: self.channels.client(node),
            cluster_id: self.cluster_id,
            rpc_timeout: self.rpc_timeout,
        }
    }
}

fn unreachable(target: u64, what: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(format!("member {target:x}: {what}"))
}

impl PeerNetwork {
    fn client(&self) -> Result<PeerClient<Channel>, Unreachable<TypeConfig>> {
        self.client.clone().map_err(|e| unreachable(self.target, e))
    }

    /// A request with this client's deadline (see [`PeerNetworkFactory::new`]);
    /// openraft's suggested one only if it is longer.
    fn request<T>(&self, msg: T, suggested: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.rpc_timeout.max(suggested));
        req
    }
}

/// A real vote, or Pre-Vote's "would you vote?".
#[derive(Debug, Clone, Copy)]
enum VoteKind {
    Vote,
    PreVote,
}

impl PeerNetwork {
    async fn ask_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
        kind: VoteKind,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let req = self.request(
            wire::vote_request_to_pb(&rpc, self.cluster_id),
            option.hard_ttl(),
        );
        let mut client = self.client()?;
        let reply = match kind {
            VoteKind::Vote => client.vote(req).await,
            VoteKind::PreVote => client.pre_vote(req).await,
        }
        .map_err(|s| unreachable(self.target, s.message()))?;
        wire::vote_response_from_pb(reply.get_ref())
            .map_err(|e| RPCError::Unreachable(unreachable(self.target, e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let msg = wire::append_request_to_pb(&rpc, self.cluster_id);
        let reply = self
            .client()?
            .append_entries(self.request(msg, option.hard_ttl()))
            .await
            .map_err(|s| unreachable(self.target, s.message()))?;
        wire::append_response_from_pb(reply.get_ref())
            .map_err(|e| RPCError::Unreachable(unreachable(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(rpc, option, VoteKind::Vote).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(rpc, option, VoteKind::PreVote).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let target = self.target;
        let mut client = self.client()?;
        let path = snapshot.snapshot.path.clone();
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| unreachable(target, format!("{}: {e}", path.display())))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| unreachable(target, format!("{}: {e}", path.display())))?
            .len();
        let header = pb::SnapshotHeader {
            vote: Some(wire::vote_to_pb(&vote)),
            last_log_id: wire::opt_log_id_to_pb(snapshot.meta.last_log_id.as_ref()),
            last_membership: Some(pb::StoredMembership {
                log_term: snapshot
                    .meta
                    .last_membership
                    .log_id()
                    .map(|l| codec::log_term(&l))
                    .unwrap_or(0),
                log_index: snapshot
                    .meta
                    .last_membership
                    .log_id()
                    .map(|l| l.index)
                    .unwrap_or(0),
                has_log_id: snapshot.meta.last_membership.log_id().is_some(),
                membership: Some(codec::encode_membership(
                    snapshot.meta.last_membership.membership(),
                )),
            }),
            cluster_id: self.cluster_id,
            size,
        };
        // Chunks are read as the stream is polled: the file is never in memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::SnapshotChunk>(2);
        let reader = tokio::spawn(async move {
            let mut header = Some(header);
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => return Err(e.to_string()),
                };
                if n == 0 && header.is_none() {
                    return Ok(());
                }
                buf.truncate(n);
                let chunk = pb::SnapshotChunk {
                    header: header.take(),
                    data: buf,
                };
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
                if n == 0 {
                    return Ok(());
                }
            }
        });
        let send = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let reply = tokio::select! {
            r = send => r,
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(unreachable(target, format!("reading snapshot: {e}")).into()),
            Err(e) => return Err(unreachable(target, format!("snapshot reader: {e}")).into()),
        }
        let reply = reply.map_err(|s| unreachable(target, s.message()))?;
        let vote = wire::vote_from_pb(reply.get_ref().vote.as_ref())
            .map_err(|e| unreachable(target, e))?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let msg = pb::TransferLeaderRequest {
            from_leader: Some(wire::vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: wire::opt_log_id_to_pb(req.last_log_id()),
            cluster_id: self.cluster_id,
        };
        let reply = self
            .client()?
            .transfer_leader(self.request(msg, option.hard_ttl()))
            .await
            .map_err(|s| unreachable(self.target, s.message()))?
            .into_inner();
        let bad = |e| RPCError::Unreachable(unreachable(self.target, e));
        use pb::transfer_leader_reply::Rejected;
        Ok(match Rejected::try_from(reply.rejected) {
            Ok(Rejected::None) => Ok(()),
            Ok(Rejected::VoteChanged) => Err(TransferLeaderError::VoteChanged {
                expected: wire::vote_from_pb(reply.expected_vote.as_ref()).map_err(bad)?,
                actual: wire::vote_from_pb(reply.actual_vote.as_ref()).map_err(bad)?,
            }),
            Ok(Rejected::LogNotFlushed) => Err(TransferLeaderError::LogNotFlushed {
                expected: reply.expected_log.as_ref().map(wire::log_id_from_pb),
                actual: reply.actual_log.as_ref().map(wire::log_id_from_pb),
            }),
            Err(_) => {
                return Err(RPCError::Unreachable(unreachable(
                    self.target,
                    "unknown transfer-leader rejection",
                )))
            }
        })
    }
}
