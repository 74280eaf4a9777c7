//! A member's storage for a NEW cluster, made from a saved snapshot file (what
//! `etcdutl snapshot restore` makes for etcd): the raft side of `bramble snapshot
//! restore`.
//!
//! Every member of the new cluster is restored from the same file with the same
//! `--initial-cluster`, and so starts from the same raft position: the state machine
//! has applied log index 0 (term 0), the entry a fresh bootstrap would write, holding
//! the new membership (every initial member a voter). The WAL is created empty. On its
//! first start a member therefore finds itself initialized (its applied membership
//! names the cluster; the flags' `--initial-cluster` is not used again, as etcd ignores
//! it once a data dir exists), openraft purges its empty log up to index 0, and the
//! members elect a leader that replicates from index 1.
//!
//! The file's own raft state (the old cluster's applied position and membership) is
//! dropped; its keys, history, leases and compaction state are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bramble_storage::mvcc::{restore_saved_snapshot, RestoreError, RestoreInfo, RestoreOptions};

use crate::config::NodeConfig;
use crate::log_codec;
use crate::log_store::LogStore;
use crate::types::MemberAttributes;

/// How long to wait for the new WAL's directory lock to be let go.
const WAL_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The saved snapshot file (`etcdctl snapshot save`).
    pub snapshot: PathBuf,
    /// The data dir to fill (normally a temporary one, renamed into place after).
    pub data_dir: PathBuf,
    /// The new cluster's members by id (ids as a fresh bootstrap derives them).
    pub members: BTreeMap<u64, MemberAttributes>,
    /// Accept a missing or wrong SHA-256 trailer (the stream's crc is still checked).
    pub skip_hash_check: bool,
    /// How much to raise the revision.
    pub bump_revision: u64,
    /// Make the new revision the compaction revision.
    pub mark_compacted: bool,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreMemberError {
    /// The snapshot file was refused, or the database could not be written.
    #[error(transparent)]
    Snapshot(#[from] RestoreError),
    /// The new membership is not a valid one.
    #[error("membership: {0}")]
    Membership(String),
    /// A file or directory of the data dir could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The raft index every restored member has applied: a fresh bootstrap's first entry.
const RESTORED_INDEX: u64 = 0;
/// Its term.
const RESTORED_TERM: u64 = 0;

/// The membership blob a restored state machine holds: all `members` voters, as the
/// first log entry of a fresh bootstrap (openraft's `initialize`) holds them.
pub(crate) fn restored_membership(
    members: &BTreeMap<u64, MemberAttributes>,
) -> Result<Vec<u8>, RestoreMemberError> {
    let voters = members.keys().copied().collect();
    let m = openraft::Membership::new(vec![voters], members.clone())
        .map_err(|e| RestoreMemberError::Membership(e.to_string()))?;
    let stored =
        openraft::StoredMembership::new(Some(log_codec::log_id(RESTORED_TERM, RESTORED_INDEX)), m);
    Ok(log_codec::encode_stored_membership(&stored))
}

/// Writes the storage of one member of the new cluster into `req.data_dir` (the
/// database and an empty WAL; the caller adds the identity file). Blocking.
pub fn restore_member(req: &RestoreRequest) -> Result<RestoreInfo, RestoreMemberError> {
    if req.members.is_empty() {
        return Err(RestoreMemberError::Membership(
            "the new cluster has no members".into(),
        ));
    }
    let membership = restored_membership(&req.members)?;
    let layout = NodeConfig::new(&req.data_dir, 0, MemberAttributes::default());
    let db_path = layout.db_path();
    if let Some(dir) = db_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RestoreMemberError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let info = restore_saved_snapshot(
        &req.snapshot,
        &db_path,
        &RestoreOptions {
            skip_hash_check: req.skip_hash_check,
            // The store numbers raft index i as i + 1 (see `state_machine`).
            applied: (RESTORED_INDEX + 1, RESTORED_TERM),
            membership,
            bump_revision: req.bump_revision,
            mark_compacted: req.mark_compacted,
        },
    )?;
    // The WAL after the database: a database without a WAL is a lost WAL to a
    // starting member (`member_storage`), so a crash here leaves a data dir that
    // refuses to start rather than one that starts wrongly (and the caller only
    // renames a finished one into place).
    create_empty_wal(&layout.wal_dir())?;
    Ok(info)
}

/// Creates the WAL (its first segment, fsynced with its directory) and closes it.
fn create_empty_wal(dir: &Path) -> Result<(), RestoreMemberError> {
    let io = |source| RestoreMemberError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let log = LogStore::open(dir).map_err(io)?;
    let release = log.wal().release();
    drop(log);
    let deadline = Instant::now() + WAL_RELEASE_TIMEOUT;
    while !release.is_released() {
        if Instant::now() >= deadline {
            return Err(io(std::io::Error::other(
                "the new WAL was not closed in time",
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> MemberAttributes {
        MemberAttributes {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: vec![],
        }
    }

    #[test]
    fn the_restored_membership_is_every_member_a_voter_at_index_0() {
        let members: BTreeMap<u64, MemberAttributes> =
            [(3, member("c")), (1, member("a")), (2, member("b"))].into();
        let blob = restored_membership(&members).expect("membership");
        let stored = log_codec::decode_stored_membership(&blob).expect("decode");
        assert_eq!(stored.log_id(), &Some(log_codec::log_id(0, 0)));
        let voters: Vec<u64> = stored.membership().voter_ids().collect();
        assert_eq!(voters, [1, 2, 3]);
        // The same members give the same bytes, whatever their order: every member
        // restored from the same flags starts from the same state.
        let again: BTreeMap<u64, MemberAttributes> =
            [(2, member("b")), (1, member("a")), (3, member("c"))].into();
        assert_eq!(restored_membership(&again).expect("again"), blob);
    }

    #[test]
    fn an_empty_cluster_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = RestoreRequest {
            snapshot: dir.path().join("missing.db"),
            data_dir: dir.path().join("data"),
            members: BTreeMap::new(),
            skip_hash_check: false,
            bump_revision: 0,
            mark_compacted: false,
        };
        assert!(matches!(
            restore_member(&req),
            Err(RestoreMemberError::Membership(_))
        ));
        assert!(!dir.path().join("data").exists());
    }
}
