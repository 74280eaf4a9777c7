//! etcd's multi-version key-value model on redb: the Raft state machine.
//!
//! Laid out like etcd's `server/storage/mvcc`, one concept per file:
//!
//! - `revision`: main/sub revisions and their big-endian key encoding;
//! - `key_index`: the generations of one key;
//! - `tree_index`: all keys (etcd's `treeIndex`), in memory, rebuilt from disk on open;
//! - `schema`: the redb tables (key table, meta table, lease table) and encodings;
//! - `auth`: etcd's auth store (users, roles, permissions, enabled, auth revision);
//! - `lease`: leases (grant, revoke, the keys attached to each); `alarm`: alarms (NOSPACE,
//!   CORRUPT) and the changes they refuse;
//! - `store`: [`MvccStore`], opening, concurrency and durability (checkpoints);
//! - `snapshot`: raft snapshots, the whole store as one checked stream and back;
//! - `read`: range reads; `read_page`: a range read a page at a time (streamed ranges);
//!   `write`: the apply loop, put and delete range; `txn`:
//!   transactions; `compaction`: compaction; `events`: history as watch events;
//!   `defrag`: defragmentation and space use; `error`: errors with etcd's texts;
//!   `hash`: etcd's HashKV and a whole-store hash.
//!
//! The raft layer feeds committed entries to [`MvccStore::apply`] (or
//! [`MvccStore::apply_batch`]) in log order; each entry's raft position is stored with
//! its effects, so after a crash [`MvccStore::applied`] says where to resume replaying.
//! Reads ([`MvccStore::range`]) run concurrently with applies.
//!
//! ```no_run
//! # fn main() -> Result<(), bramble_storage::mvcc::MvccError> {
//! use bramble_api::bramblepb::{command::Op, Command};
//! use bramble_api::etcdserverpb::{PutRequest, RangeRequest};
//! use bramble_storage::mvcc::{ApplyResult, MvccOptions, MvccStore};
//!
//! let store = MvccStore::open("/var/lib/bramble/state.redb".as_ref(), MvccOptions::default())?;
//! let put = Command {
//!     op: Some(Op::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() })),
//!     auth: None, // who asked, when auth is enabled
//! };
//! let (index, term) = store.applied();
//! match store.apply(index + 1, term.max(1), &put)? {
//!     ApplyResult::Put(resp) => assert_eq!(resp.header.unwrap().revision, 2),
//!     other => panic!("{other:?}"),
//! }
//! store.checkpoint()?;
//! let got = store.range(&RangeRequest { key: b"k".to_vec(), ..Default::default() })?;
//! assert_eq!(got.kvs[0].value, b"v");
//! # Ok(()) }
//! ```

mod alarm;
mod auth;
mod compaction;
mod compaction_hash;
mod defrag;
mod error;
mod events;
mod hash;
mod key_index;
mod lease;
mod read;
mod read_page;
mod revision;
mod schema;
mod snapshot;
mod store;
mod tree_index;
mod txn;
mod txn_read;
mod write;

#[cfg(test)]
mod tests;

pub(crate) use auth::imported_row as imported_auth_row;
pub use auth::{AuthError, AuthInfo, AuthState, ROOT as AUTH_ROOT};
pub use compaction::{CompactionMetrics, CompactionStep, DEFAULT_COMPACTION_BATCH_LIMIT};
pub use compaction_hash::MAX_HASHES;
pub use defrag::{DefragInfo, SpaceInfo, DEFRAG_WAIT};
pub use error::MvccError;
pub use hash::{KvHash, StoreHash};
pub use lease::{LeaseInfo, MAX_LEASE_TTL};
pub use read_page::{kv_encoded_len, PageRequest, RangePage};
pub use snapshot::{
    restore_saved_snapshot, saved_padding, verify_saved_snapshot, verify_snapshot, RestoreError,
    RestoreInfo, RestoreOptions, SavedSnapshotInfo, SnapshotInfo, StoreSnapshot, SAVED_SHA256_LEN,
};
pub(crate) use snapshot::{restore_stream, ImportWriter, ImportedCompaction};
pub use store::{MvccOptions, MvccStore};
pub use txn_read::is_read_only;
pub use write::{ApplyResult, RaftEntry};
