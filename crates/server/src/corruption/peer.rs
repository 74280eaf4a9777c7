//! The hashes members ask each other for: the `bramblepb.Corruption` service on
//! the peer listener (etcd's `/members/hashkv` on its peer URLs) and the client
//! side that asks every other member at once (etcd's `getPeerHashKVs`).

use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::corruption_client::CorruptionClient;
use bramble_api::bramblepb::corruption_server::{Corruption, CorruptionServer};
use bramble_api::bramblepb::PeerHashKvRequest;
use bramble_api::etcdserverpb::{HashKvResponse, ResponseHeader};
use bramble_raft::{FatalSignal, RaftNode};
use bramble_storage::mvcc::{KvHash, MvccError, MvccStore};
use tonic::{Request, Response, Status};

use super::compare::{PeerError, PeerHash};
use crate::errors::{self, mvcc_status};

/// Serves this member's hashes to its peers.
pub struct CorruptionPeerService {
    store: Arc<MvccStore>,
    /// A member that failed for good answers nothing: its store is in doubt.
    fatal: FatalSignal,
    cluster_id: u64,
    member_id: u64,
}

impl CorruptionPeerService {
    /// The service for `node`'s store, to serve on its peer listeners.
    pub fn new(node: &RaftNode) -> CorruptionServer<CorruptionPeerService> {
        CorruptionServer::new(CorruptionPeerService {
            store: node.store().clone(),
            fatal: node.fatal().clone(),
            cluster_id: node.cluster_id(),
            member_id: node.member_id(),
        })
    }
}

#[tonic::async_trait]
impl Corruption for CorruptionPeerService {
    async fn hash_kv(
        &self,
        req: Request<PeerHashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let req = req.into_inner();
        bramble_raft::peer_service::check_cluster(self.cluster_id, req.cluster_id)?;
        if self.fatal.get().is_some() {
            return Err(errors::stopped());
        }
        let h = local_hash(&self.store, req.revision)
            .await
            .map_err(|e| match e {
                HashError::Store(e) => mvcc_status(&e),
                HashError::Join(e) => errors::internal(e),
            })?;
        Ok(Response::new(HashKvResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                member_id: self.member_id,
                revision: h.current_revision,
                raft_term: 0,
            }),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }
}

/// Why this member's own hash could not be computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// The store refused or failed.
    #[error("{0}")]
    Store(#[from] MvccError),
    /// The blocking task died.
    #[error("hash task: {0}")]
    Join(String),
}

/// This member's hash at `revision` (0: the current one): a hash stored at the
/// compaction of that revision if there is one, else HashKV's (etcd 3.6's
/// `HashStorage.HashByRev`). Reads the key table on a blocking thread.
pub(crate) async fn local_hash(store: &Arc<MvccStore>, revision: i64) -> Result<KvHash, HashError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.hash_kv(revision))
        .await
        .map_err(|e| HashError::Join(e.to_string()))?
        .map_err(HashError::Store)
}

/// Asks every other member of `node`'s committed membership for its hash at
/// `revision`, all at once, each within `timeout`.
pub(crate) async fn peer_hashes(
    node: &RaftNode,
    revision: i64,
    timeout: Duration,
) -> Vec<PeerHash> {
    let me = node.member_id();
    let cluster_id = node.cluster_id();
    let asks = node
        .member_list()
        .into_iter()
        .filter(|m| m.id != me)
        .map(|m| {
            let channel = node.peer_channel(m.id);
            async move {
                let reply = match channel {
                    Err(e) => Err(PeerError::Other(e.to_string())),
                    Ok(channel) => {
                        let mut req = Request::new(PeerHashKvRequest {
                            revision,
                            cluster_id,
                        });
                        req.set_timeout(timeout);
                        let mut client = CorruptionClient::new(channel);
                        match tokio::time::timeout(timeout, client.hash_kv(req)).await {
                            Err(_) => Err(PeerError::Other("timed out".into())),
                            Ok(Err(s)) => Err(peer_error(&s)),
                            Ok(Ok(resp)) => Ok(reply_hash(&resp.into_inner())),
                        }
                    }
                };
                if let Err(e) = &reply {
                    tracing::warn!(
                        local_member_id = %format!("{me:x}"),
                        requested_revision = revision,
                        remote_peer_id = %format!("{:x}", m.id),
                        remote_peer_endpoints = ?m.peer_urls,
                        error = ?e,
                        "failed hash kv request"
                    );
                }
                PeerHash { id: m.id, reply }
            }
        });
    futures::future::join_all(asks).await
}

/// A peer's answer as a hash, with its current revision from the header.
fn reply_hash(r: &HashKvResponse) -> KvHash {
    KvHash {
        hash: r.hash,
        compact_revision: r.compact_revision,
        hash_revision: r.hash_revision,
        current_revision: r.header.as_ref().map_or(0, |h| h.revision),
    }
}

/// What a failed peer call means (etcd's `HashByRev` reads the error text too).
fn peer_error(s: &Status) -> PeerError {
    let text = s.message();
    if text.contains(&MvccError::Compacted.to_string()) {
        PeerError::Compacted
    } else if text.contains(&MvccError::FutureRevision.to_string()) {
        PeerError::FutureRevision
    } else if s.code() == tonic::Code::FailedPrecondition && text.contains("cluster id mismatch") {
        PeerError::ClusterMismatch
    } else {
        PeerError::Other(format!("{:?}: {text}", s.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_errors_are_read_from_etcds_texts() {
        let compacted = mvcc_status(&MvccError::Compacted);
        assert_eq!(peer_error(&compacted), PeerError::Compacted);
        let future = mvcc_status(&MvccError::FutureRevision);
        assert_eq!(peer_error(&future), PeerError::FutureRevision);
        let other = bramble_raft::peer_service::check_cluster(1, 2).expect_err("mismatch");
        assert_eq!(peer_error(&other), PeerError::ClusterMismatch);
        assert!(matches!(
            peer_error(&Status::unavailable("connection refused")),
            PeerError::Other(_)
        ));
    }
}
