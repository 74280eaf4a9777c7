//! The verdicts of etcd 3.6's corruption checks (`etcdserver/corrupt.go`), apart
//! from how the hashes are obtained: which members disagree, and which ones are
//! skipped. Pure functions over hashes, so each rule is unit-tested.

use std::collections::BTreeMap;

use bramble_storage::mvcc::KvHash;

/// Why a peer gave no hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerError {
    /// The revision asked is compacted on the peer (etcd's `ErrCompacted`: this
    /// member is behind).
    Compacted,
    /// The revision asked is above the peer's (etcd's `ErrFutureRev`: the peer is
    /// behind).
    FutureRevision,
    /// The peer is in another cluster.
    ClusterMismatch,
    /// Unreachable, timed out, or any other failure.
    Other(String),
}

/// One peer's answer to a HashKV request (etcd's `peerHashKVResp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerHash {
    /// The peer's member id.
    pub(crate) id: u64,
    /// Its hash (with its current revision in `current_revision`), or why not.
    pub(crate) reply: Result<KvHash, PeerError>,
}

/// etcd's `InitialCheck`: the peers whose hash at the local hash's revision
/// differs while their compact revision is the same. Peers with another compact
/// revision, or no answer, are skipped (logged), as etcd skips them.
pub(crate) fn initial_mismatches(me: u64, local: &KvHash, peers: &[PeerHash]) -> Vec<u64> {
    let mut mismatched = Vec::new();
    for p in peers {
        match &p.reply {
            Ok(r) if r.hash != local.hash => {
                if r.compact_revision == local.compact_revision {
                    tracing::warn!(
                        local_member_id = %format!("{me:x}"),
                        local_member_revision = local.hash_revision,
                        local_member_compact_revision = local.compact_revision,
                        local_member_hash = local.hash,
                        remote_peer_id = %format!("{:x}", p.id),
                        remote_peer_revision = r.current_revision,
                        remote_peer_compact_revision = r.compact_revision,
                        remote_peer_hash = r.hash,
                        "found different hash values from remote peer"
                    );
                    mismatched.push(p.id);
                } else {
                    tracing::warn!(
                        local_member_compact_revision = local.compact_revision,
                        remote_peer_id = %format!("{:x}", p.id),
                        remote_peer_compact_revision = r.compact_revision,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                let why = match e {
                    PeerError::FutureRevision => "cannot fetch hash from slow remote peer",
                    PeerError::Compacted => {
                        "cannot fetch hash from remote peer; local member is behind"
                    }
                    PeerError::ClusterMismatch => "cluster ID mismatch",
                    PeerError::Other(_) => "failed hash kv request",
                };
                tracing::warn!(
                    local_member_id = %format!("{me:x}"),
                    local_member_revision = local.hash_revision,
                    remote_peer_id = %format!("{:x}", p.id),
                    error = ?e,
                    "{why}"
                );
            }
        }
    }
    mismatched
}

/// etcd's `PeriodicCheck`, on the leader: `first` is its hash taken before the
/// peers were asked at `first.hash_revision`, `second` the one taken after a
/// linearizable read barrier (whose `current_revision` is etcd's `rev2`). Returns
/// the member to raise the CORRUPT alarm for: etcd raises one alarm per check, for
/// the first member found.
pub(crate) fn periodic_blame(
    me: u64,
    first: &KvHash,
    second: &KvHash,
    peers: &[PeerHash],
) -> Option<u64> {
    // The leader's own store changed under a fixed revision and compact revision.
    if second.hash != first.hash
        && second.hash_revision == first.hash_revision
        && second.compact_revision == first.compact_revision
    {
        tracing::warn!(
            revision_1 = first.hash_revision,
            hash_1 = first.hash,
            revision_2 = second.hash_revision,
            hash_2 = second.hash,
            "found hash mismatch"
        );
        return Some(me);
    }
    let mut checked = 0;
    let mut blamed = None;
    for p in peers {
        let Ok(r) = &p.reply else {
            continue;
        };
        checked += 1;
        let follower = format!("{:x}", p.id);
        if r.current_revision > second.current_revision {
            tracing::warn!(
                leader_revision = second.current_revision,
                follower_revision = r.current_revision,
                follower_peer_id = %follower,
                "revision from follower must be less than or equal to leader's"
            );
            blamed = blamed.or(Some(p.id));
        }
        if r.compact_revision > second.compact_revision {
            tracing::warn!(
                leader_compact_revision = second.compact_revision,
                follower_compact_revision = r.compact_revision,
                follower_peer_id = %follower,
                "compact revision from follower must be less than or equal to leader's"
            );
            blamed = blamed.or(Some(p.id));
        }
        if r.compact_revision == first.compact_revision && r.hash != first.hash {
            tracing::warn!(
                leader_compact_revision = second.compact_revision,
                leader_hash = first.hash,
                follower_compact_revision = r.compact_revision,
                follower_hash = r.hash,
                follower_peer_id = %follower,
                "same compact revision then hashes must match"
            );
            blamed = blamed.or(Some(p.id));
        }
    }
    tracing::info!(
        number_of_peers_checked = checked,
        "finished peer corruption check"
    );
    blamed
}

/// What etcd's `checkPeerHashes` concludes about one compaction hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompactVerdict {
    /// Every member has the same hash for this compaction: no need to look at
    /// older ones.
    Consistent,
    /// The members that answered agree, but some peers were skipped (no answer,
    /// or another compact revision): an older compaction may tell more.
    Incomplete,
    /// Hashes differ: raise the CORRUPT alarm for these members (member 0, the
    /// whole cluster, when no majority agrees on one hash).
    Corrupt(Vec<u64>),
}

/// etcd's `checkPeerHashes`: groups the leader (`me`, with `leader`, a hash stored
/// at a compaction) and the peers that have a hash for the same compaction (same
/// revision and same previous compact revision) by hash. When hashes differ, the
/// members outside a majority group are blamed; with no majority, member 0.
pub(crate) fn compact_verdict(me: u64, leader: &KvHash, peers: &[PeerHash]) -> CompactVerdict {
    let mut by_hash: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    by_hash.entry(leader.hash).or_default().push(me);
    let mut checked = 0;
    for p in peers {
        let skip = match &p.reply {
            Err(e) => Some(format!("no response: {e:?}")),
            Ok(r) if r.compact_revision != leader.compact_revision => Some(format!(
                "the peer's CompactRevision {} doesn't match leader's CompactRevision {}",
                r.compact_revision, leader.compact_revision
            )),
            Ok(_) => None,
        };
        match (skip, &p.reply) {
            (None, Ok(r)) => {
                checked += 1;
                by_hash.entry(r.hash).or_default().push(p.id);
            }
            (reason, _) => tracing::warn!(
                number_of_peers = peers.len(),
                leader_id = %format!("{me:x}"),
                peer_id = %format!("{:x}", p.id),
                reason = reason.unwrap_or_default(),
                "Skipped peer's hash"
            ),
        }
    }
    if by_hash.len() == 1 {
        if checked == peers.len() {
            tracing::info!(
                number_of_peers_checked = checked,
                revision = leader.hash_revision,
                compact_revision = leader.compact_revision,
                "successfully checked hash on whole cluster"
            );
            return CompactVerdict::Consistent;
        }
        tracing::warn!(
            number_of_peers_checked = checked,
            number_of_peers = peers.len(),
            revision = leader.hash_revision,
            compact_revision = leader.compact_revision,
            "skipped revision in compaction hash check; was not able to check all peers"
        );
        return CompactVerdict::Incomplete;
    }
    // Members counted as etcd counts them: every peer asked, and the leader.
    let members = peers.len() + 1;
    let quorum = members / 2 + 1;
    let majority = by_hash
        .iter()
        .find(|(_, ids)| ids.len() >= quorum)
        .map(|(hash, _)| *hash);
    let mut blamed = Vec::new();
    for (hash, ids) in &by_hash {
        if Some(*hash) == majority {
            continue;
        }
        tracing::error!(
            leader_id = %format!("{me:x}"),
            leader_revision = leader.hash_revision,
            leader_compact_revision = leader.compact_revision,
            leader_hash = leader.hash,
            peer_hash = hash,
            peer_ids = ?ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(),
            quorum_exist = majority.is_some(),
            "Detected compaction hash mismatch"
        );
        if majority.is_some() {
            blamed.extend(ids);
        }
    }
    if majority.is_none() {
        tracing::error!(
            leader_id = %format!("{me:x}"),
            leader_revision = leader.hash_revision,
            leader_compact_revision = leader.compact_revision,
            leader_hash = leader.hash,
            "Detected compaction hash mismatch but cannot identify the corrupted members, \
             so intentionally set the memberID as 0"
        );
        blamed = vec![0];
    }
    CompactVerdict::Corrupt(blamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(hash: u32, compact_revision: i64, hash_revision: i64, current: i64) -> KvHash {
        KvHash {
            hash,
            compact_revision,
            hash_revision,
            current_revision: current,
        }
    }

    fn peer(id: u64, h: KvHash) -> PeerHash {
        PeerHash { id, reply: Ok(h) }
    }

    fn failed(id: u64, e: PeerError) -> PeerHash {
        PeerHash { id, reply: Err(e) }
    }

    #[test]
    fn initial_check_blames_same_compaction_different_hash_only() {
        let local = hash(7, 5, 20, 20);
        let peers = [
            peer(2, hash(7, 5, 20, 30)),
            // Another compact revision: etcd cannot tell, skipped.
            peer(3, hash(8, 10, 20, 30)),
            peer(4, hash(9, 5, 20, 25)),
            failed(5, PeerError::FutureRevision),
            failed(6, PeerError::Compacted),
            failed(7, PeerError::Other("connection refused".into())),
        ];
        assert_eq!(initial_mismatches(1, &local, &peers), vec![4]);
        assert!(initial_mismatches(1, &local, &peers[..2]).is_empty());
        assert!(initial_mismatches(1, &local, &[]).is_empty());
    }

    #[test]
    fn periodic_check_blames_the_follower_that_differs() {
        let first = hash(7, 5, 20, 20);
        let second = hash(7, 5, 20, 22);
        let agree = peer(2, hash(7, 5, 20, 21));
        let differs = peer(3, hash(8, 5, 20, 21));
        assert_eq!(
            periodic_blame(1, &first, &second, std::slice::from_ref(&agree)),
            None
        );
        assert_eq!(
            periodic_blame(1, &first, &second, &[agree.clone(), differs.clone()]),
            Some(3)
        );
        // Compacted since on the follower: cannot compare, skipped.
        let compacted_since = peer(3, hash(8, 6, 20, 21));
        assert_eq!(
            periodic_blame(1, &first, &hash(7, 6, 20, 22), &[compacted_since]),
            None
        );
        // Unanswered peers are skipped.
        let none = failed(3, PeerError::FutureRevision);
        assert_eq!(periodic_blame(1, &first, &second, &[none]), None);
    }

    #[test]
    fn periodic_check_blames_a_follower_ahead_of_the_leader() {
        let first = hash(7, 5, 20, 20);
        let second = hash(7, 5, 20, 22);
        // Ahead in revision after the leader's read barrier: impossible unless its
        // data is wrong.
        assert_eq!(
            periodic_blame(1, &first, &second, &[peer(2, hash(7, 5, 20, 23))]),
            Some(2)
        );
        // Compacted further than the leader.
        assert_eq!(
            periodic_blame(1, &first, &second, &[peer(2, hash(9, 8, 20, 21))]),
            Some(2)
        );
        // One alarm per check: the first member found.
        let two = [peer(2, hash(8, 5, 20, 21)), peer(3, hash(9, 5, 20, 21))];
        assert_eq!(periodic_blame(1, &first, &second, &two), Some(2));
    }

    #[test]
    fn periodic_check_blames_the_leader_whose_own_hash_moved() {
        let first = hash(7, 5, 20, 20);
        let moved = hash(8, 5, 20, 22);
        assert_eq!(periodic_blame(1, &first, &moved, &[]), Some(1));
        // A compaction in between explains a different hash.
        assert_eq!(periodic_blame(1, &first, &hash(8, 6, 20, 22), &[]), None);
    }

    #[test]
    fn compact_check_blames_the_minority() {
        let leader = hash(7, 5, 10, 30);
        let same = |id| peer(id, hash(7, 5, 10, 30));
        let other = |id| peer(id, hash(9, 5, 10, 30));
        assert_eq!(
            compact_verdict(1, &leader, &[same(2), same(3)]),
            CompactVerdict::Consistent
        );
        assert_eq!(
            compact_verdict(1, &leader, &[same(2), other(3)]),
            CompactVerdict::Corrupt(vec![3])
        );
        // The leader itself can be the odd one out.
        assert_eq!(
            compact_verdict(1, &leader, &[other(2), other(3)]),
            CompactVerdict::Corrupt(vec![1])
        );
        // No majority (1 / 1 / 1): the whole cluster, member 0.
        let third = peer(3, hash(11, 5, 10, 30));
        assert_eq!(
            compact_verdict(1, &leader, &[other(2), third]),
            CompactVerdict::Corrupt(vec![0])
        );
        // 5 members, 2 disagree with 3.
        assert_eq!(
            compact_verdict(1, &leader, &[same(2), same(3), other(4), other(5)]),
            CompactVerdict::Corrupt(vec![4, 5])
        );
    }

    #[test]
    fn compact_check_skips_other_compactions_and_silent_peers() {
        let leader = hash(7, 5, 10, 30);
        // Another previous compact revision (the peer's hash was computed by HashKV,
        // or over a different range): skipped, not blamed.
        let elsewhere = peer(2, hash(9, 10, 10, 30));
        let silent = failed(3, PeerError::Other("timeout".into()));
        assert_eq!(
            compact_verdict(1, &leader, &[elsewhere, silent]),
            CompactVerdict::Incomplete
        );
        // Of 3 members, one skipped and one disagreeing: 2 hashes, no group of 2.
        let other = peer(3, hash(9, 5, 10, 30));
        let skipped = failed(2, PeerError::FutureRevision);
        assert_eq!(
            compact_verdict(1, &leader, &[skipped, other]),
            CompactVerdict::Corrupt(vec![0])
        );
    }
}
