//! The requests kube-apiserver's etcd3 storage layer sends, shape for shape.
//!
//! Each function is one call of k8s.io/apiserver's `storage/etcd3` store (through etcd's
//! `client/v3/kubernetes` wrapper it uses since Kubernetes 1.31), so the server sees what
//! a real apiserver would send:
//!
//! - Create: `Txn(If mod_revision(key) == 0, Then Put(key, value, lease))`, no Else.
//! - GuaranteedUpdate: `Txn(If mod_revision(key) == rev, Then Put(key), Else Get(key))`,
//!   `rev` the revision of the copy in apiserver's watch cache (so no Get before it).
//! - Delete: `Txn(If mod_revision(key) == rev, Then Delete(key), Else Get(key))`.
//! - GetList: `Range(from, prefix end, limit, revision)`, paging from the last key + `\0`
//!   at the first page's revision until the count is reached.
//! - Count (storage stats): `Range(prefix, prefix end, count_only)`.
//! - The compactor (`compact.go`): `Txn(If version(compact_rev_key) == t,
//!   Then Put(compact_rev_key, rev), Else Get(compact_rev_key))`, then `Compact(rev)` with
//!   the revision the previous successful Txn saw.

use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::{
    request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use tonic::Status;

use crate::conn::Kv;

/// The key kube-apiserver's compactor keeps its logical clock in.
pub(crate) const COMPACT_REV_KEY: &[u8] = b"compact_rev_key";

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The compare held: the write happened at this revision.
    At(i64),
    /// The compare failed: nothing was written. For an update or delete, the key's
    /// current mod revision from the Else Get (0 if the key is gone).
    Conflict(i64),
}

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub(crate) use bramble_api::prefix_range_end as prefix_end;

/// `If mod_revision(key) == rev`.
fn mod_equals(key: &[u8], rev: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        target: CompareTarget::Mod as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

/// A Get of `key` as a txn operation.
fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// A Put as a txn operation.
fn put_op(key: &[u8], value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

/// The revision a successful txn wrote at.
fn header_revision(reply: &TxnResponse) -> Result<i64, Status> {
    reply
        .header
        .as_ref()
        .map(|h| h.revision)
        .ok_or_else(|| bad_reply("a Txn response has no header"))
}

/// The key's mod revision from a failed txn's Else Get (0 if it has no such key).
fn else_get_mod_revision(reply: &TxnResponse) -> Result<i64, Status> {
    match reply.responses.first().and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(range)) => {
            Ok(range.kvs.first().map_or(0, |kv| kv.mod_revision))
        }
        _ => Err(bad_reply("a failed Txn did not answer with its Get")),
    }
}

/// apiserver's Create: put `key` only if it does not exist, with `lease` (0: none).
pub(crate) async fn create(
    kv: &mut Kv,
    key: &[u8],
    value: Vec<u8>,
    lease: i64,
) -> Result<Written, Status> {
    let request = TxnRequest {
        compare: vec![mod_equals(key, 0)],
        success: vec![put_op(key, value, lease)],
        failure: Vec::new(),
    };
    let reply = kv.txn(request).await?.into_inner();
    if reply.succeeded {
        Ok(Written::At(header_revision(&reply)?))
    } else {
        // apiserver answers "already exists"; Create sends no Else, so no revision.
        Ok(Written::Conflict(0))
    }
}

/// apiserver's GuaranteedUpdate: put `key` if its mod revision is still `rev`.
pub(crate) async fn update(
    kv: &mut Kv,
    key: &[u8],
    value: Vec<u8>,
    rev: i64,
) -> Result<Written, Status> {
    let request = TxnRequest {
        compare: vec![mod_equals(key, rev)],
        success: vec![put_op(key, value, 0)],
        failure: vec![get_op(key)],
    };
    conditional(kv, request).await
}

/// Sends an update's or delete's `If mod_revision == N, Then write, Else Get` txn.
async fn conditional(kv: &mut Kv, request: TxnRequest) -> Result<Written, Status> {
    let reply = kv.txn(request).await?.into_inner();
    if reply.succeeded {
        Ok(Written::At(header_revision(&reply)?))
    } else {
        Ok(Written::Conflict(else_get_mod_revision(&reply)?))
    }
}

/// apiserver's conditional Delete: delete `key` if its mod revision is still `rev`.
pub(crate) async fn delete(kv: &mut Kv, key: &[u8], rev: i64) -> Result<Written, Status> {
    let request = TxnRequest {
        compare: vec![mod_equals(key, rev)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            )),
        }],
        failure: vec![get_op(key)],
    };
    conditional(kv, request).await
}

/// One page of a GetList.
#[derive(Debug)]
pub(crate) struct Page {
    /// The revision the list reads at (the first page's header revision).
    pub(crate) revision: i64,
    /// Where the next page starts, if the count says there is more.
    pub(crate) next: Option<Vec<u8>>,
}

/// One page of apiserver's GetList of `prefix`: from `from` (the prefix on the first
/// page, else the continue key), at `revision` (0 on the first page: the current one).
pub(crate) async fn list_page(
    kv: &mut Kv,
    prefix: &[u8],
    from: &[u8],
    limit: i64,
    revision: i64,
) -> Result<Page, Status> {
    let request = RangeRequest {
        key: from.to_vec(),
        range_end: prefix_end(prefix),
        limit,
        revision,
        ..Default::default()
    };
    let reply = kv.range(request).await?.into_inner();
    let revision = if revision == 0 {
        reply
            .header
            .as_ref()
            .map(|h| h.revision)
            .ok_or_else(|| bad_reply("a Range response has no header"))?
    } else {
        revision
    };
    // apiserver's test for "more": fewer keys than the range holds from `from` on.
    let more = (reply.kvs.len() as i64) < reply.count;
    let next = match reply.kvs.last() {
        Some(last) if more => {
            let mut key = last.key.clone();
            key.push(0);
            Some(key)
        }
        _ => None,
    };
    Ok(Page { revision, next })
}

/// apiserver's Count (the storage stats it reports per resource): keys under `prefix`.
pub(crate) async fn count(kv: &mut Kv, prefix: &[u8]) -> Result<i64, Status> {
    let request = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        count_only: true,
        ..Default::default()
    };
    Ok(kv.range(request).await?.into_inner().count)
}

/// The compactor's state between rounds (`compactTime` and `rev` in compact.go).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Compactor {
    /// The version of compact_rev_key this compactor expects (its logical clock).
    pub(crate) expect_version: i64,
    /// The store's revision at the last successful round: what the next one compacts.
    pub(crate) rev: i64,
}

/// What one compactor round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// The Txn lost (another compactor moved the clock): adopted its version.
    Lost,
    /// The Txn won, and there was nothing to compact yet (the first round).
    Bootstrapped,
    /// The Txn won; compact to this revision next (`compact` does it).
    Compact(i64),
}

impl Compactor {
    /// compact.go's Txn on compact_rev_key; returns the txn's write revision too.
    pub(crate) async fn txn(&mut self, kv: &mut Kv) -> Result<Round, Status> {
        let request = TxnRequest {
            compare: vec![Compare {
                key: COMPACT_REV_KEY.to_vec(),
                target: CompareTarget::Version as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::Version(self.expect_version)),
                ..Default::default()
            }],
            success: vec![put_op(
                COMPACT_REV_KEY,
                self.rev.to_string().into_bytes(),
                0,
            )],
            failure: vec![get_op(COMPACT_REV_KEY)],
        };
        let reply = kv.txn(request).await?.into_inner();
        let current = header_revision(&reply)?;
        let compact_to = self.rev;
        self.rev = current;
        if !reply.succeeded {
            let kv = match reply.responses.first().and_then(|r| r.response.as_ref()) {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.first(),
                _ => None,
            };
            let Some(kv) = kv else {
                return Err(bad_reply(
                    "the compactor's failed Txn read no compact_rev_key",
                ));
            };
            self.expect_version = kv.version;
            return Ok(Round::Lost);
        }
        self.expect_version += 1;
        if compact_to == 0 {
            // compact.go: "We don't compact on bootstrap."
            return Ok(Round::Bootstrapped);
        }
        Ok(Round::Compact(compact_to))
    }
}

/// `Compact(rev)`, as the compactor sends it (not physical: it does not wait for the
/// backend to drop the old revisions).
pub(crate) async fn compact(kv: &mut Kv, rev: i64) -> Result<(), Status> {
    kv.compact(CompactionRequest {
        revision: rev,
        physical: false,
    })
    .await?;
    Ok(())
}

/// An error for a reply that breaks the protocol, counted with the gRPC errors (under
/// `Internal`) so the run shows it.
pub(crate) fn bad_reply(what: &str) -> Status {
    Status::internal(format!("bramble-bench: k8s: {what}"))
}
