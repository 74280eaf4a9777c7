//! An MVCC store in a temp dir, and the commands that fill it, for benchmarks and tests
//! outside the storage crate.

use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::{CompactionRequest, PutRequest};
use bramble_storage::mvcc::{MvccOptions, MvccStore};
use tempfile::TempDir;

/// Entries applied per redb commit by [`TempStore::load`], and between checkpoints, as
/// the raft layer batches them.
const LOAD_BATCH: usize = 1000;

/// An [`MvccStore`] with default options in its own temp dir (removed on drop).
pub struct TempStore {
    /// The store.
    pub store: MvccStore,
    /// Dropped after `store` (field order), so the database closes before its dir goes.
    _dir: TempDir,
}

impl TempStore {
    /// Opens a new, empty store.
    pub fn open() -> TempStore {
        let dir = crate::temp::dir("bramble-store-");
        let store = MvccStore::open(&dir.path().join("bench.redb"), MvccOptions::default())
            .expect("open the store");
        TempStore { store, _dir: dir }
    }

    /// Applies `commands` as raft entries 1, 2, ... (term 1) in batches, then checkpoints.
    pub fn load(&self, commands: &[Command]) {
        let entries: Vec<(u64, u64, &Command)> =
            (1u64..).zip(commands).map(|(i, c)| (i, 1, c)).collect();
        for batch in entries.chunks(LOAD_BATCH) {
            self.store.apply_batch(batch).expect("apply a batch");
        }
        self.store.checkpoint().expect("checkpoint");
    }
}

/// The command that puts `value` at `key`.
pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Command {
    Command {
        auth: None,
        op: Some(Op::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

/// The command that compacts the history up to `revision`.
pub fn compact(revision: i64) -> Command {
    Command {
        auth: None,
        op: Some(Op::Compaction(CompactionRequest {
            revision,
            ..Default::default()
        })),
    }
}
