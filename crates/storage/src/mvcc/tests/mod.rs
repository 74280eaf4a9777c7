//! Store-level tests, one file per source file (`read.rs` tests `../read.rs`, ...), and
//! the helpers they share. Expectations marked "etcd 3.4" were checked against a real
//! etcd 3.4 through its JSON gateway.

use std::path::{Path, PathBuf};

use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::request_op::Request;
use bramble_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};
use bramble_api::mvccpb::KeyValue;

use super::{
    ApplyResult, CompactionStep, MvccError, MvccOptions, MvccStore, DEFAULT_COMPACTION_BATCH_LIMIT,
};

mod alarm;
mod auth;
mod compaction;
mod defrag;
mod hash;
mod lease;
mod model;
mod read;
mod read_page;
mod restore;
mod snapshot;
mod store;
mod txn;
mod write;

/// A store in a temp dir that numbers raft entries itself.
pub(super) struct TestStore {
    pub store: MvccStore,
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = MvccStore::open(&db_path(dir.path()), MvccOptions::default()).unwrap();
        TestStore { store, dir }
    }

    /// Drops the store (a clean close) and opens it again.
    pub(super) fn reopen(self) -> Self {
        let TestStore { store, dir } = self;
        drop(store);
        let store = MvccStore::open(&db_path(dir.path()), MvccOptions::default()).unwrap();
        TestStore { store, dir }
    }

    pub(super) fn apply(&self, cmd: Command) -> ApplyResult {
        let (index, _) = self.store.applied();
        self.store.apply(index + 1, 1, &cmd).unwrap()
    }

    /// Puts and returns the response revision.
    pub(super) fn put(&self, key: &str, value: &str) -> i64 {
        match self.apply(put_cmd(put(key, value))) {
            ApplyResult::Put(r) => r.header.unwrap().revision,
            other => panic!("put {key}: {other:?}"),
        }
    }

    /// Grants lease `id` with `ttl`.
    /// Applies the puts `(key, value)` in one batch, as raft entries 1, 2, ...
    pub(super) fn put_many(&self, pairs: impl IntoIterator<Item = (String, String)>) {
        let cmds: Vec<Command> = pairs
            .into_iter()
            .map(|(k, v)| put_cmd(put(&k, &v)))
            .collect();
        let entries: Vec<(u64, u64, &Command)> = cmds
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u64 + 1, 1, c))
            .collect();
        self.store.apply_batch(&entries).unwrap();
    }

    pub(super) fn grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, MvccError> {
        match self.apply(grant_cmd(id, ttl)) {
            ApplyResult::LeaseGrant(r) => Ok(r),
            ApplyResult::Error(e) => Err(e),
            other => panic!("grant {id}: {other:?}"),
        }
    }

    /// Revokes lease `id`; returns the response revision.
    pub(super) fn revoke(&self, id: i64) -> Result<i64, MvccError> {
        match self.apply(revoke_cmd(id)) {
            ApplyResult::LeaseRevoke(r) => Ok(r.header.unwrap().revision),
            ApplyResult::Error(e) => Err(e),
            other => panic!("revoke {id}: {other:?}"),
        }
    }

    /// Deletes `[key, end)` and returns the number of deleted keys.
    pub(super) fn del(&self, key: &str, end: &str) -> i64 {
        match self.apply(del_cmd(key, end)) {
            ApplyResult::DeleteRange(r) => r.deleted,
            other => panic!("del {key}: {other:?}"),
        }
    }

    pub(super) fn txn(&self, t: TxnRequest) -> Result<TxnResponse, MvccError> {
        match self.apply(Command {
            auth: None,
            op: Some(Op::Txn(t)),
        }) {
            ApplyResult::Txn(r) => Ok(r),
            ApplyResult::Error(e) => Err(e),
            other => panic!("txn: {other:?}"),
        }
    }

    /// Applies a compaction and runs its deletion to the end, as the background loop
    /// would (`compact_scheduled` leaves the deletion pending).
    pub(super) fn compact(&self, rev: i64) -> Result<i64, MvccError> {
        let r = self.compact_scheduled(rev);
        self.store.finish_compaction().unwrap();
        r
    }

    /// Applies a compaction; its deletion stays pending.
    pub(super) fn compact_scheduled(&self, rev: i64) -> Result<i64, MvccError> {
        match self.apply(compact_cmd(rev)) {
            ApplyResult::Compaction(r) => Ok(r.header.unwrap().revision),
            ApplyResult::Error(e) => Err(e),
            other => panic!("compact: {other:?}"),
        }
    }

    pub(super) fn range(&self, req: RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.range(&req)
    }

    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.range(range(key, "")).unwrap().kvs.pop()
    }

    pub(super) fn get_at(&self, key: &str, rev: i64) -> Result<Option<KeyValue>, MvccError> {
        let mut req = range(key, "");
        req.revision = rev;
        Ok(self.range(req)?.kvs.pop())
    }

    /// Keys and values of the whole store at `rev` (0 = current).
    pub(super) fn dump(&self, rev: i64) -> Vec<KeyValue> {
        let mut req = range("\0", "\0");
        req.revision = rev;
        self.range(req).unwrap().kvs
    }

    /// Number of rows in the key table.
    pub(super) fn rows(&self) -> u64 {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let r = self.store.db().begin_read().unwrap();
        r.open_table(super::schema::KEYS).unwrap().len().unwrap()
    }
}

pub(super) fn db_path(dir: &Path) -> PathBuf {
    dir.join("mvcc.redb")
}

pub(super) fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(super) fn put_cmd(p: PutRequest) -> Command {
    Command {
        auth: None,
        op: Some(Op::Put(p)),
    }
}

pub(super) fn del(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(super) fn del_cmd(key: &str, end: &str) -> Command {
    Command {
        auth: None,
        op: Some(Op::DeleteRange(del(key, end))),
    }
}

pub(super) fn grant_cmd(id: i64, ttl: i64) -> Command {
    Command {
        auth: None,
        op: Some(Op::LeaseGrant(LeaseGrantRequest { ttl, id })),
    }
}

pub(super) fn revoke_cmd(id: i64) -> Command {
    Command {
        auth: None,
        op: Some(Op::LeaseRevoke(LeaseRevokeRequest { id })),
    }
}

pub(super) fn compact_cmd(rev: i64) -> Command {
    Command {
        auth: None,
        op: Some(Op::Compaction(CompactionRequest {
            revision: rev,
            physical: false,
        })),
    }
}

pub(super) fn txn_cmd(t: TxnRequest) -> Command {
    Command {
        auth: None,
        op: Some(Op::Txn(t)),
    }
}

pub(super) fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(super) fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(key, value))),
    }
}

pub(super) fn op_del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del(key, end))),
    }
}

pub(super) fn op_range(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(r)),
    }
}

pub(super) fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

/// A compare of `target` of `key` (`range_end` optional) with `result`.
pub(super) fn cmp(
    key: &str,
    end: &str,
    target: CompareTarget,
    result: CompareResult,
    v: i64,
) -> Compare {
    let target_union = match target {
        CompareTarget::Version => TargetUnion::Version(v),
        CompareTarget::Create => TargetUnion::CreateRevision(v),
        CompareTarget::Mod => TargetUnion::ModRevision(v),
        CompareTarget::Lease => TargetUnion::Lease(v),
        CompareTarget::Value => TargetUnion::Value(v.to_string().into_bytes()),
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        target_union: Some(target_union),
    }
}

pub(super) fn cmp_value(key: &str, result: CompareResult, v: &str) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Value as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Value(v.as_bytes().to_vec())),
    }
}

pub(super) fn keys_of(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MvccStore>();
}
