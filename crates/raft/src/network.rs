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
use bramble_storage::latency::LatencyHistogram;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderError,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use prost::Message;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};

use crate::log_codec;
use crate::peer_codec;
use crate::peer_rtt::PeerRtt;
use crate::snapshot::SnapshotData;
use crate::types::{MemberAttributes, TypeConfig, Vote};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// How much of a snapshot one message carries: small, so neither side holds
/// much of it in memory on a Pi.
const SNAPSHOT_CHUNK: usize = 256 * 1024;

/// The largest `--max-request-bytes` a member accepts. A log entry must fit
/// in one WAL record (at most 4 GiB) and one peer message, and every size
/// computed from it must stay far from overflowing a 32-bit `usize` (armv7).
/// etcd has no ceiling but warns above 10 MiB; a 1 GiB request would not fit
/// in a 1 GiB Pi anyway.
pub(crate) const MAX_REQUEST_BYTES_LIMIT: usize = 1 << 30;

/// Payload bytes of log entries one AppendEntries carries (etcd's
/// `maxSizePerMsg`, 1 MiB), except that an entry larger than this goes
/// alone: what the log reader hands replication (`LogStore`'s
/// `limited_get_log_entries`). It bounds the leader's memory per lagging
/// follower and a follower's per message; openraft bounds batches only in
/// entries (300), which with 1 MB values made batches of 300 MB that no peer
/// accepted, so a lagging follower never caught up.
pub(crate) const REPLICATION_BATCH_BYTES: u64 = 1 << 20;

/// What a log entry adds around the client's request (log id, request id,
/// protobuf framing), generously: tens of bytes in fact.
const ENTRY_OVERHEAD: usize = 64 * 1024;

/// Peer messages up to this size are always accepted, whatever this member's
/// `--max-request-bytes`: a member with a larger limit (the flag may differ
/// between members) must still be able to replicate to this one.
const MIN_PEER_MESSAGE: usize = 64 << 20;

/// Refuses a `--max-request-bytes` the log could not store; the error says why.
pub fn check_max_request_bytes(max_request_bytes: usize) -> Result<(), String> {
    if max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
        return Err(format!(
            "{max_request_bytes} is above the largest supported request size, \
             {MAX_REQUEST_BYTES_LIMIT} bytes (a request must fit in one log entry)"
        ));
    }
    Ok(())
}

/// The largest peer message a member with `max_request_bytes` sends or
/// accepts: one entry of the largest allowed request (an AppendEntries
/// carries at least one; a forwarded proposal carries one request) plus
/// room for the rest of the message, and never less than
/// `MIN_PEER_MESSAGE` (which also holds any [`REPLICATION_BATCH_BYTES`]
/// batch).
pub(crate) fn peer_message_limit(max_request_bytes: usize) -> usize {
    max_request_bytes
        .min(MAX_REQUEST_BYTES_LIMIT)
        .saturating_add(2 * ENTRY_OVERHEAD)
        .max(MIN_PEER_MESSAGE)
}

/// Opens (and caches) gRPC channels to peers.
#[derive(Clone)]
pub(crate) struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    /// The largest message sent or received ([`peer_message_limit`]).
    max_message: usize,
    /// Dials http and https peer URLs.
    connector: bramble_tls::Connector,
}

impl PeerChannels {
    /// A cache whose connections give up connecting after `connect_timeout`,
    /// carry messages of up to `max_message` bytes and are made by `connector`.
    pub(crate) fn new(
        connect_timeout: Duration,
        max_message: usize,
        connector: bramble_tls::Connector,
    ) -> Self {
        PeerChannels {
            channels: Arc::default(),
            connect_timeout,
            max_message,
            connector,
        }
    }

    /// The largest message these connections carry (the server side of the
    /// peer protocol accepts the same).
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    /// The channel to `url` (connected lazily, reconnected by tonic on failure).
    pub(crate) fn channel(&self, url: &str) -> Result<Channel, String> {
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
        let channel = endpoint.connect_with_connector_lazy(self.connector.clone());
        map.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// A Peer-service client for the first of `member`'s peer URLs.
    pub(crate) fn client(&self, member: &MemberAttributes) -> Result<PeerClient<Channel>, String> {
        let url = member
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {} has no peer URL", member.name))?;
        Ok(self.client_on(self.channel(url)?))
    }

    /// A Peer-service client on `channel`, carrying messages of up to
    /// [`Self::max_message`] bytes.
    pub(crate) fn client_on(&self, channel: Channel) -> PeerClient<Channel> {
        PeerClient::new(channel)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }
}

/// Creates [`PeerNetwork`] clients for openraft.
#[derive(Clone)]
pub(crate) struct PeerNetworkFactory {
    channels: PeerChannels,
    cluster_id: u64,
    rpc_timeout: Duration,
    rtt: PeerRtt,
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
    /// Heartbeat round trips are recorded in `rtt`.
    pub(crate) fn new(
        channels: PeerChannels,
        cluster_id: u64,
        rpc_timeout: Duration,
        rtt: PeerRtt,
    ) -> Self {
        PeerNetworkFactory {
            channels,
            cluster_id,
            rpc_timeout,
            rtt,
        }
    }
}

/// openraft's client for one peer.
pub(crate) struct PeerNetwork {
    target: u64,
    client: Result<PeerClient<Channel>, String>,
    cluster_id: u64,
    rpc_timeout: Duration,
    /// The largest message the peer accepts.
    max_message: usize,
    /// Heartbeat round trips to this peer (`crate::peer_rtt`).
    rtt: Arc<LatencyHistogram>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &MemberAttributes) -> PeerNetwork {
        PeerNetwork {
            target,
            client: self.channels.client(node),
            cluster_id: self.cluster_id,
            rpc_timeout: self.rpc_timeout,
            max_message: self.channels.max_message(),
            rtt: self.rtt.for_peer(target),
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

    /// A request with this client's deadline (see [`PeerNetworkFactory::new`]),
    /// openraft's suggested one only if it is longer, plus the time to move
    /// the message's bytes ([`transfer_time`]).
    fn request<T: Message>(&self, msg: T, suggested: Duration) -> tonic::Request<T> {
        let transfer = transfer_time(msg.encoded_len());
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.rpc_timeout.max(suggested) + transfer);
        req
    }
}

/// The slowest rate at which a healthy peer takes in a message and writes it
/// to its WAL: a Pi on 100 Mbit Ethernet with an SD card does 10 MB/s or
/// more; a quarter of that leaves room for a loaded member.
const MIN_PEER_BYTES_PER_SEC: u64 = 4 << 20;

/// Extra time a message of `bytes` may take on top of the RPC deadline.
///
/// The deadline (an election timeout) is sized for the round trip of a small
/// message; one entry of a 32 MiB `--max-request-bytes` takes seconds to send
/// and fsync on a Pi. Without this, every attempt to replicate such an entry
/// timed out and was retried forever: Raft stopped for good on that follower
/// (and on the cluster, without a quorum of fast followers).
fn transfer_time(bytes: usize) -> Duration {
    Duration::from_millis((bytes as u64).saturating_mul(1000) / MIN_PEER_BYTES_PER_SEC)
}

/// Drops entries from the end of `msg` until it encodes within `max` bytes,
/// keeping at least one; returns how many entries it kept.
///
/// Replication batches are already bounded in bytes when read
/// ([`REPLICATION_BATCH_BYTES`]); this guarantees the peer's message limit
/// whatever the batch, so no AppendEntries can fail on size and be retried
/// forever. Recomputing the length per dropped entry is quadratic in at most
/// openraft's 300 entries per batch, and only runs for an oversized batch.
fn fit_entries(msg: &mut pb::AppendRequest, max: usize) -> usize {
    while msg.entries.len() > 1 && msg.encoded_len() > max {
        msg.entries.pop();
    }
    msg.entries.len()
}

/// The answer to give openraft for `rpc` when only its first `sent` entries
/// went out: a follower's success covers just those, which openraft's
/// `PartialSuccess` reports (it then continues after the last one sent).
fn partial(
    resp: AppendEntriesResponse<TypeConfig>,
    rpc: &AppendEntriesRequest<TypeConfig>,
    sent: usize,
) -> AppendEntriesResponse<TypeConfig> {
    match resp {
        AppendEntriesResponse::Success if sent < rpc.entries.len() => {
            // `sent >= 1` whenever it is below a non-zero length.
            let last = sent
                .checked_sub(1)
                .and_then(|i| rpc.entries.get(i))
                .map(|e| e.log_id);
            AppendEntriesResponse::PartialSuccess(last.or(rpc.prev_log_id))
        }
        other => other,
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
            peer_codec::vote_request_to_pb(&rpc, self.cluster_id),
            option.hard_ttl(),
        );
        let mut client = self.client()?;
        let reply = match kind {
            VoteKind::Vote => client.vote(req).await,
            VoteKind::PreVote => client.pre_vote(req).await,
        }
        .map_err(|s| unreachable(self.target, s.message()))?;
        peer_codec::vote_response_from_pb(reply.get_ref())
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
        let mut msg = peer_codec::append_request_to_pb(&rpc, self.cluster_id);
        let sent = fit_entries(&mut msg, self.max_message);
        if msg.encoded_len() > self.max_message {
            // One entry above the limit: written under a larger
            // --max-request-bytes than this member now has. Retrying cannot
            // help; say so loudly (openraft backs off and retries).
            tracing::error!(
                peer = %format!("{:x}", self.target),
                bytes = msg.encoded_len(),
                limit = self.max_message,
                "log entry larger than the peer message limit: raise --max-request-bytes"
            );
            return Err(RPCError::Unreachable(unreachable(
                self.target,
                "log entry larger than the peer message limit",
            )));
        }
        let heartbeat = rpc.entries.is_empty();
        let started = std::time::Instant::now();
        let reply = self
            .client()?
            .append_entries(self.request(msg, option.hard_ttl()))
            .await
            .map_err(|s| unreachable(self.target, s.message()))?;
        if heartbeat {
            self.rtt.observe(started.elapsed());
        }
        let resp = peer_codec::append_response_from_pb(reply.get_ref())
            .map_err(|e| RPCError::Unreachable(unreachable(self.target, e)))?;
        Ok(partial(resp, &rpc, sent))
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
            vote: Some(peer_codec::vote_to_pb(&vote)),
            last_log_id: peer_codec::opt_log_id_to_pb(snapshot.meta.last_log_id.as_ref()),
            last_membership: Some(pb::StoredMembership {
                log_term: snapshot
                    .meta
                    .last_membership
                    .log_id()
                    .map(|l| log_codec::log_term(&l))
                    .unwrap_or(0),
                log_index: snapshot
                    .meta
                    .last_membership
                    .log_id()
                    .map(|l| l.index)
                    .unwrap_or(0),
                has_log_id: snapshot.meta.last_membership.log_id().is_some(),
                membership: Some(log_codec::encode_membership(
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
        let vote = peer_codec::vote_from_pb(reply.get_ref().vote.as_ref())
            .map_err(|e| unreachable(target, e))?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let msg = pb::TransferLeaderRequest {
            from_leader: Some(peer_codec::vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: peer_codec::opt_log_id_to_pb(req.last_log_id()),
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
                expected: peer_codec::vote_from_pb(reply.expected_vote.as_ref()).map_err(bad)?,
                actual: peer_codec::vote_from_pb(reply.actual_vote.as_ref()).map_err(bad)?,
            }),
            Ok(Rejected::LogNotFlushed) => Err(TransferLeaderError::LogNotFlushed {
                expected: reply.expected_log.as_ref().map(peer_codec::log_id_from_pb),
                actual: reply.actual_log.as_ref().map(peer_codec::log_id_from_pb),
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

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
