//! Errors of the MVCC store.
//!
//! The variants that etcd also returns carry etcd's exact message text, because Go
//! clients (kube-apiserver among them) match on the string. etcd's gRPC layer adds the
//! `etcdserver: ` prefix to the `mvcc: ...` ones; the server crate does the same.
//!
//! Two kinds of errors come out of the store:
//! - *deterministic* errors ([`MvccError::is_deterministic`]): the same command on the
//!   same state fails the same way on every replica (a compacted revision, a missing key
//!   for `ignore_value`, ...). `apply` reports them as `Ok(ApplyResult::Error(..))`.
//! - *local* errors: storage failures and detected corruption. They are returned as
//!   `Err(..)` and mean this node cannot go on applying.

use thiserror::Error;

/// An error from [`super::MvccStore`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MvccError {
    /// The requested revision was compacted away (etcd `mvcc.ErrCompacted`).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is higher than the current one (etcd `mvcc.ErrFutureRev`).
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// `ignore_value` / `ignore_lease` on a key that does not exist
    /// (etcd `etcdserver.ErrKeyNotFound`).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put names a lease that does not exist, a revoke an unknown lease, or a grant
    /// lease id 0 (etcd `rpctypes.ErrGRPCLeaseNotFound`).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease grant for an id that exists (etcd `lease.ErrLeaseExists`).
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease grant with a TTL above the maximum (etcd `lease.ErrLeaseTTLTooLarge`).
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A range request with a sort order or target outside the protocol's enums
    /// (etcd `rpctypes.ErrGRPCInvalidSortOption`).
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A change refused while a `NOSPACE` alarm is raised (etcd `ErrNoSpace`; its gRPC
    /// layer adds `etcdserver: `).
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// A change refused while a `CORRUPT` alarm is raised (etcd `ErrCorrupt`).
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    /// A command with no operation set: nothing to apply.
    #[error("mvcc: command has no operation")]
    EmptyCommand,
    /// A raft entry was handed to the store at or below the applied position.
    #[error("mvcc: raft entry {index} (term {term}) is not after the applied entry {applied_index} (term {applied_term})")]
    OutOfOrder {
        /// Index of the rejected entry.
        index: u64,
        /// Term of the rejected entry.
        term: u64,
        /// Index already applied.
        applied_index: u64,
        /// Term already applied.
        applied_term: u64,
    },
    /// The store's files hold something the store did not write (bad encoding, missing
    /// revision, broken invariant). The node must stop rather than guess.
    #[error("mvcc: storage is corrupt: {0}")]
    Corrupt(String),
    /// The storage engine (redb) failed: I/O error, disk full, ...
    #[error("mvcc: storage error: {0}")]
    Storage(String),
    /// A raft snapshot handed to [`super::MvccStore::install_snapshot`] is truncated,
    /// corrupt or not ours; the store was left as it was.
    #[error("mvcc: invalid snapshot: {0}")]
    BadSnapshot(String),
    /// A read overlapped the install of a raft snapshot, which replaced the state it
    /// was reading; the read methods retry on it, so callers only see it if installs
    /// keep overtaking one read.
    #[error("mvcc: the store was replaced by a raft snapshot during the read")]
    StoreReplaced,
    /// An auth request refused by the auth store (etcd's texts, see [`super::AuthError`]).
    #[error("{0}")]
    Auth(#[from] super::AuthError),
}

impl MvccError {
    /// True for errors that every replica reaches the same way for the same command and
    /// state, i.e. results of the state machine rather than failures of this node.
    pub(crate) fn is_deterministic(&self) -> bool {
        matches!(
            self,
            MvccError::Compacted
                | MvccError::FutureRevision
                | MvccError::KeyNotFound
                | MvccError::LeaseNotFound
                | MvccError::LeaseExists
                | MvccError::LeaseTtlTooLarge
                | MvccError::InvalidSortOption
                | MvccError::EmptyCommand
                | MvccError::NoSpace
                | MvccError::CorruptCluster
                | MvccError::Auth(_)
        )
    }
}

macro_rules! storage_error_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        })*
    };
}

storage_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<prost::DecodeError> for MvccError {
    fn from(e: prost::DecodeError) -> Self {
        MvccError::Corrupt(format!("undecodable record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds() {
        assert_eq!(
            MvccError::Compacted.to_string(),
            "mvcc: required revision has been compacted"
        );
        assert_eq!(
            MvccError::FutureRevision.to_string(),
            "mvcc: required revision is a future revision"
        );
        assert_eq!(
            MvccError::KeyNotFound.to_string(),
            "etcdserver: key not found"
        );
        assert_eq!(
            MvccError::LeaseNotFound.to_string(),
            "etcdserver: requested lease not found"
        );
        assert_eq!(
            MvccError::LeaseExists.to_string(),
            "etcdserver: lease already exists"
        );
        assert_eq!(
            MvccError::LeaseTtlTooLarge.to_string(),
            "etcdserver: too large lease TTL"
        );
        assert_eq!(
            MvccError::InvalidSortOption.to_string(),
            "etcdserver: invalid sort option"
        );
    }

    #[test]
    fn deterministic_split() {
        assert!(MvccError::Compacted.is_deterministic());
        assert!(MvccError::KeyNotFound.is_deterministic());
        assert!(!MvccError::Storage("x".into()).is_deterministic());
        assert!(!MvccError::Corrupt("x".into()).is_deterministic());
    }
}
