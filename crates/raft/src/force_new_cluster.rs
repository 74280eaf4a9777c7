//! etcd's `--force-new-cluster`: a surviving member of a cluster that lost its
//! quorum for good restarts as a one-member cluster with its own data, the same
//! cluster id and the same member id; new members are then added with
//! `member add` as usual.
//!
//! etcd does it by appending configuration changes that remove every other member
//! to the member's log before Raft starts (`restartAsStandaloneNode`). Bramble does
//! the same with openraft's means: before openraft opens the storage, one
//! membership entry naming this member as the only voter (no learners) is appended
//! to the WAL and fsynced, after the last entry the log holds. openraft takes the
//! last membership entry of the log as the effective one whatever the state
//! machine applied (so rewriting the state machine's membership alone would be
//! overridden by any membership entry still in the log), the member elects itself,
//! and its first entry as leader commits everything before it.
//!
//! etcd first drops the entries beyond its persisted commit index. Bramble keeps
//! them: a follower learns that an entry is committed only with the leader's next
//! message, so entries beyond what this member knew to be committed may well have
//! been acknowledged to clients by a leader that is now dead. Committing the whole
//! log is what any newly elected Raft leader does anyway, so every write the
//! survivor holds, acknowledged or not, is kept (RPO 0 for what reached it).
//!
//! The entry is written once and stays: a restart without the flag finds the same
//! one-member cluster. Forcing again appends nothing when the effective membership
//! already is this member alone.

use bramble_storage::mvcc::MvccStore;
use bramble_storage::wal::{Record, Wal};
use bytes::Bytes;
use openraft::EntryPayload;

use crate::log_codec;
use crate::log_store::{last_log_id_blocking, purge_records};
#[cfg(test)]
use crate::types::LogId;
use crate::types::{Entry, MemberAttributes, Membership};

/// Entries read per step when looking back for the last membership entry.
const SCAN_STEP: u64 = 256;

/// What forcing a new cluster did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceOutcome {
    /// The data dir held no Raft state yet: the member starts a new cluster from
    /// its flags and the flag has no effect (as in etcd).
    NothingToForce,
    /// The membership already was this member alone: nothing was written.
    AlreadyAlone {
        /// The log's last index.
        last_index: u64,
    },
    /// The one-member membership entry was appended at `index`.
    Forced {
        /// Where the new membership entry is.
        index: u64,
        /// The last index the state machine had applied (etcd reports its commit
        /// index; entries after it are kept, see the module doc).
        applied_index: u64,
        /// The members that were removed (voters and learners).
        removed: Vec<u64>,
    },
}

/// Why the membership could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ForceError {
    /// Reading or writing the WAL failed.
    #[error("write-ahead log: {0}")]
    Wal(String),
    /// Reading the state machine's membership failed.
    #[error("state machine: {0}")]
    Store(String),
    /// The new membership is not a valid one.
    #[error("membership: {0}")]
    Membership(String),
}

/// Rewrites the membership of the member `member_id` in `wal` and `store` (both
/// opened, openraft not started yet) to a one-member cluster of itself. `fallback`
/// are its attributes if the stored membership does not hold them. Blocking.
pub(crate) fn force_new_cluster(
    wal: &Wal,
    store: &MvccStore,
    member_id: u64,
    fallback: &MemberAttributes,
) -> Result<ForceOutcome, ForceError> {
    let wal_err = |e: &dyn std::fmt::Display| ForceError::Wal(e.to_string());
    let (applied_store_index, applied_term) = store.applied();
    // The store numbers raft index i as i + 1 (see `state_machine`).
    let applied = applied_store_index
        .checked_sub(1)
        .map(|index| log_codec::log_id(applied_term, index));
    let last = last_log_id_blocking(wal).map_err(|e| wal_err(&e))?;
    // The position the new entry follows. A log that ends before the applied
    // index (an empty WAL next to a restored state machine) is purged up to it
    // first, as openraft itself would on start.
    let (base, purge) = match (last, applied) {
        (None, None) => return Ok(ForceOutcome::NothingToForce),
        (Some(l), Some(a)) if l.index < a.index => (a, true),
        (Some(l), _) => (l, false),
        (None, Some(a)) => (a, true),
    };
    let effective = effective_membership(wal, store, applied.map(|a| a.index))?;
    let voters: Vec<u64> = effective
        .as_ref()
        .map(|m| m.voter_ids().collect())
        .unwrap_or_default();
    let nodes: Vec<u64> = effective
        .as_ref()
        .map(|m| m.nodes().map(|(id, _)| *id).collect())
        .unwrap_or_default();
    if voters == [member_id] && nodes == [member_id] && !purge {
        return Ok(ForceOutcome::AlreadyAlone {
            last_index: base.index,
        });
    }
    let attributes = effective
        .as_ref()
        .and_then(|m| m.get_node(&member_id).cloned())
        .unwrap_or_else(|| fallback.clone());
    let nodes_alone: std::collections::BTreeMap<u64, MemberAttributes> =
        [(member_id, attributes)].into();
    let alone = Membership::new(vec![[member_id].into()], nodes_alone)
        .map_err(|e| ForceError::Membership(e.to_string()))?;
    let index = base.index + 1;
    let entry: Entry = openraft::Entry {
        // The last entry's term: terms in a log never go down, and the election
        // that follows starts a higher one.
        log_id: log_codec::log_id(log_codec::log_term(&base), index),
        payload: EntryPayload::Membership(alone),
    };
    let mut records = if purge {
        purge_records(&base)
    } else {
        Vec::new()
    };
    records.push(Record::Entry {
        index,
        payload: Bytes::from(log_codec::encode_entry(&entry)),
    });
    wal.append_sync(records).map_err(|e| wal_err(&e))?;
    let removed = nodes.into_iter().filter(|id| *id != member_id).collect();
    Ok(ForceOutcome::Forced {
        index,
        applied_index: applied.map(|a| a.index).unwrap_or(0),
        removed,
    })
}

/// The membership openraft would start with: the last membership entry in the
/// log after the applied index, or else the one the state machine applied.
fn effective_membership(
    wal: &Wal,
    store: &MvccStore,
    applied_index: Option<u64>,
) -> Result<Option<Membership>, ForceError> {
    let wal_err = |e: &dyn std::fmt::Display| ForceError::Wal(e.to_string());
    if let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) {
        let start = match applied_index {
            Some(a) => first.max(a + 1),
            None => first,
        };
        let mut end = last + 1;
        while end > start {
            let from = end.saturating_sub(SCAN_STEP).max(start);
            let raw = wal.read(from..end).map_err(|e| wal_err(&e))?;
            for (index, bytes) in raw.iter().rev() {
                let entry = log_codec::decode_entry(*index, bytes).map_err(|e| wal_err(&e))?;
                if let EntryPayload::Membership(m) = entry.payload {
                    return Ok(Some(m));
                }
            }
            end = from;
        }
    }
    let blob = store
        .raft_membership()
        .map_err(|e| ForceError::Store(e.to_string()))?;
    match blob {
        Some(blob) => Ok(Some(
            log_codec::decode_stored_membership(&blob)
                .map_err(|e| ForceError::Store(e.to_string()))?
                .membership()
                .clone(),
        )),
        None => Ok(None),
    }
}

/// A log entry's payload (tests).
#[cfg(test)]
type Payload = EntryPayload<crate::types::Request, u64, MemberAttributes>;

/// The log id and payload of entry `index` (tests).
#[cfg(test)]
fn entry_at(wal: &Wal, index: u64) -> (LogId, Payload) {
    let raw = wal.read(index..=index).expect("read");
    let (i, bytes) = raw.first().expect("entry");
    let e = log_codec::decode_entry(*i, bytes).expect("decode");
    (e.log_id, e.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_storage::mvcc::MvccOptions;
    use bramble_storage::wal::WalOptions;
    use std::collections::BTreeMap;

    fn attrs(name: &str) -> MemberAttributes {
        MemberAttributes {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: vec![format!("http://{name}:2379")],
        }
    }

    fn three() -> Membership {
        let nodes: BTreeMap<u64, MemberAttributes> =
            [(1, attrs("a")), (2, attrs("b")), (3, attrs("c"))].into();
        Membership::new(vec![[1, 2, 3].into()], nodes).expect("valid")
    }

    fn append(wal: &Wal, term: u64, index: u64, payload: Payload) {
        let e: Entry = openraft::Entry {
            log_id: log_codec::log_id(term, index),
            payload,
        };
        wal.append_sync(vec![Record::Entry {
            index,
            payload: Bytes::from(log_codec::encode_entry(&e)),
        }])
        .expect("append");
    }

    fn open(dir: &std::path::Path) -> (Wal, MvccStore) {
        let wal = Wal::open(dir.join("wal"), WalOptions::default()).expect("wal");
        let store = MvccStore::open(
            &dir.join("db"),
            MvccOptions {
                cache_size_bytes: 1 << 20,
            },
        )
        .expect("store");
        (wal, store)
    }

    #[test]
    fn an_empty_data_dir_has_nothing_to_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, store) = open(dir.path());
        let out = force_new_cluster(&wal, &store, 1, &attrs("a")).expect("force");
        assert_eq!(out, ForceOutcome::NothingToForce);
        assert_eq!(wal.last_index(), None);
    }

    #[test]
    fn the_log_gets_a_one_member_entry_after_its_last_one_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, store) = open(dir.path());
        append(&wal, 1, 0, EntryPayload::Membership(three()));
        append(&wal, 1, 1, EntryPayload::Blank);
        append(&wal, 2, 2, EntryPayload::Blank);
        // Nothing applied: entries 0..=2 are all kept, the new one follows.
        let out = force_new_cluster(&wal, &store, 2, &attrs("fallback")).expect("force");
        assert_eq!(
            out,
            ForceOutcome::Forced {
                index: 3,
                applied_index: 0,
                removed: vec![1, 3],
            }
        );
        assert_eq!(wal.first_index(), Some(0));
        let (log_id, payload) = entry_at(&wal, 3);
        assert_eq!(log_id, log_codec::log_id(2, 3));
        let EntryPayload::Membership(m) = payload else {
            panic!("not a membership entry: {payload:?}");
        };
        assert_eq!(m.voter_ids().collect::<Vec<_>>(), [2]);
        // The stored attributes are kept, not the fallback.
        assert_eq!(m.get_node(&2), Some(&attrs("b")));
        assert_eq!(m.nodes().count(), 1);
        // Forcing again writes nothing more.
        let again = force_new_cluster(&wal, &store, 2, &attrs("fallback")).expect("again");
        assert_eq!(again, ForceOutcome::AlreadyAlone { last_index: 3 });
        assert_eq!(wal.last_index(), Some(3));
    }

    #[test]
    fn a_learner_is_removed_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, store) = open(dir.path());
        let nodes: BTreeMap<u64, MemberAttributes> = [(1, attrs("a")), (4, attrs("d"))].into();
        let with_learner = Membership::new(vec![[1].into()], nodes).expect("valid");
        append(&wal, 3, 7, EntryPayload::Membership(with_learner));
        let out = force_new_cluster(&wal, &store, 1, &attrs("a")).expect("force");
        assert_eq!(
            out,
            ForceOutcome::Forced {
                index: 8,
                applied_index: 0,
                removed: vec![4],
            }
        );
    }

    #[test]
    fn a_restored_member_with_an_empty_log_is_purged_up_to_its_applied_entry_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, store) = open(dir.path());
        // What `bramble snapshot restore` leaves: raft index 0 (store index 1, term 0)
        // applied with the new cluster's membership, an empty WAL.
        let stored = openraft::StoredMembership::new(Some(log_codec::log_id(0, 0)), three());
        let blob = log_codec::encode_stored_membership(&stored);
        store
            .apply_entries(&[(1, 0, bramble_storage::mvcc::RaftEntry::Membership(&blob))])
            .expect("apply");
        let out = force_new_cluster(&wal, &store, 3, &attrs("c")).expect("force");
        assert_eq!(
            out,
            ForceOutcome::Forced {
                index: 1,
                applied_index: 0,
                removed: vec![1, 2],
            }
        );
        assert_eq!(wal.purged_index(), Some(0));
        assert_eq!(
            last_log_id_blocking(&wal).expect("last"),
            Some(log_codec::log_id(0, 1))
        );
        let (_, payload) = entry_at(&wal, 1);
        let EntryPayload::Membership(m) = payload else {
            panic!("not a membership entry: {payload:?}");
        };
        assert_eq!(m.voter_ids().collect::<Vec<_>>(), [3]);
    }
}
