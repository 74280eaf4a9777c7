//! Txn: compares, then the ops of the chosen branch, as etcd's applier `Txn`.
//!
//! Order of work, as etcd:
//! 1. Every compare of the txn *and of the nested txns on the chosen path* is evaluated
//!    against the state before the txn (a nested txn does not see its parent's writes
//!    when choosing its branch).
//! 2. Checks of the chosen path, before any write: for a txn with writes, puts with
//!    `ignore_value`/`ignore_lease` need their key to exist (else `KeyNotFound`) and
//!    leases must exist; then ranges must not read a future (`> current`) or compacted
//!    revision (`revision != 0 && revision < compact revision`: so a negative revision
//!    fails with `Compacted` once compacted, etcd's quirk). On failure the whole txn fails
//!    and changes nothing.
//! 3. The ops run in order; reads see the txn's earlier writes; all writes share one main
//!    revision with increasing sub revisions.
//!
//! A compare with `range_end` must hold for every key in the range; on an empty range it
//! is evaluated against an all-zero key (version 0, create 0, ...), except a VALUE
//! compare, which then fails. Nested txn responses carry an empty header, the op
//! responses a header with the revision only (both as etcd 3.4 answers).
//!
//! One case etcd does not handle: a put with `ignore_value` on a key that an earlier op
//! of the same txn deleted (etcd's server rejects such txns as duplicate keys; its
//! applier would panic). Here the txn fails with `KeyNotFound` before writing.

use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::request_op::Request;
use bramble_api::etcdserverpb::response_op::Response;
use bramble_api::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use std::sync::RwLock;

use super::error::MvccError;
use super::read::{self, KeyTable, SortSpec};
use super::tree_index::{KeyRange, TreeIndex};
use super::write::{header, WriteCtx};

/// The outcome of a txn's compares and of those of the nested txns on its chosen path.
#[derive(Debug)]
struct TxnPath {
    succeeded: bool,
    /// One per nested txn op of the chosen branch, in order.
    nested: Vec<TxnPath>,
}

impl WriteCtx<'_, '_> {
    /// Applies a txn request (see the module doc).
    pub(super) fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let path = self.compare_path(req)?;
        let read_only = req
            .success
            .iter()
            .chain(&req.failure)
            .all(|op| matches!(op.request, Some(Request::RequestRange(_))));
        if !read_only {
            self.check_puts(req, &path)?;
        }
        self.check_ranges(req, &path)?;
        let mut flat = Vec::new();
        flatten(req, &path, &mut flat);
        check_ignored_after_delete(&flat)?;

        let mut resp = self.exec(req, &path)?;
        resp.header = header(self.read_rev());
        Ok(resp)
    }

    fn compare_path(&self, req: &TxnRequest) -> Result<TxnPath, MvccError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let mut nested = Vec::new();
        for op in branch(req, succeeded) {
            if let Some(Request::RequestTxn(t)) = &op.request {
                nested.push(self.compare_path(t)?);
            }
        }
        Ok(TxnPath { succeeded, nested })
    }

    /// One compare, against every key of its range at the current revision.
    fn compare(&self, c: &Compare) -> Result<bool, MvccError> {
        compare_holds(&*self.keys, self.index, self.read_rev(), &|| Ok(()), c)
    }

    /// etcd's checkRequestPut over the chosen path.
    fn check_puts(&self, req: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(req, path.succeeded) {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    if let Some(p) = nested.next() {
                        self.check_puts(t, p)?;
                    }
                }
                Some(Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease) && self.get(&p.key)?.is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    self.check_lease(p.lease)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's checkRequestRange over the chosen path, plus the sort option check.
    fn check_ranges(&self, req: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(req, path.succeeded) {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    if let Some(p) = nested.next() {
                        self.check_ranges(t, p)?;
                    }
                }
                Some(Request::RequestRange(r)) => {
                    if r.revision != 0 {
                        if r.revision > self.read_rev() {
                            return Err(MvccError::FutureRevision);
                        }
                        if r.revision < self.compact_rev {
                            return Err(MvccError::Compacted);
                        }
                    }
                    SortSpec::of(r)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn exec(&mut self, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, MvccError> {
        let ops = branch(req, path.succeeded);
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range(r)?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put_request(p)?)),
                Some(Request::RequestDeleteRange(d)) => {
                    Some(Response::ResponseDeleteRange(self.delete_range(d)?))
                }
                Some(Request::RequestTxn(t)) => {
                    let Some(p) = nested.next() else {
                        return Err(MvccError::Corrupt("txn path lost a nested txn".into()));
                    };
                    let mut r = self.exec(t, p)?;
                    r.header = Some(ResponseHeader::default());
                    Some(Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: path.succeeded,
            responses,
        })
    }
}

/// Whether compare `c` holds at `at_rev` (etcd's applyCompare): for every key of its
/// range, or against an all-zero key when the range is empty (a VALUE compare then
/// fails: gRPC cannot tell a missing value from an empty one).
pub(super) fn compare_holds(
    table: &impl KeyTable,
    index: &RwLock<TreeIndex>,
    at_rev: i64,
    still_readable: &dyn Fn() -> Result<(), MvccError>,
    c: &Compare,
) -> Result<bool, MvccError> {
    let range = KeyRange::new(&c.key, &c.range_end);
    let mut any = false;
    let mut all = true;
    read::for_each_kv(table, index, &range, at_rev, still_readable, |kv| {
        any = true;
        all = compare_kv(c, &kv);
        Ok(all)
    })?;
    if any {
        return Ok(all);
    }
    if c.target == CompareTarget::Value as i32 {
        return Ok(false);
    }
    Ok(compare_kv(c, &KeyValue::default()))
}

/// The ops of the branch a txn takes.
pub(super) fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// A write of the chosen path, in execution order.
enum FlatWrite<'a> {
    Put { key: &'a [u8], needs_key: bool },
    Delete(KeyRange<'a>),
}

fn flatten<'a>(req: &'a TxnRequest, path: &TxnPath, out: &mut Vec<FlatWrite<'a>>) {
    let mut nested = path.nested.iter();
    for op in branch(req, path.succeeded) {
        match &op.request {
            Some(Request::RequestPut(p)) => out.push(FlatWrite::Put {
                key: &p.key,
                needs_key: p.ignore_value || p.ignore_lease,
            }),
            Some(Request::RequestDeleteRange(d)) => {
                out.push(FlatWrite::Delete(KeyRange::new(&d.key, &d.range_end)))
            }
            Some(Request::RequestTxn(t)) => {
                if let Some(p) = nested.next() {
                    flatten(t, p, out);
                }
            }
            _ => {}
        }
    }
}

/// `KeyNotFound` if a put needing its key (`ignore_value`/`ignore_lease`) follows a
/// delete of that key with no put in between.
fn check_ignored_after_delete(writes: &[FlatWrite<'_>]) -> Result<(), MvccError> {
    for (i, w) in writes.iter().enumerate() {
        let FlatWrite::Put {
            key,
            needs_key: true,
        } = w
        else {
            continue;
        };
        for earlier in writes[..i].iter().rev() {
            match earlier {
                FlatWrite::Put { key: k, .. } if k == key => break,
                FlatWrite::Delete(range) if range.contains(key) => {
                    return Err(MvccError::KeyNotFound)
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// etcd's compareKV.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let int = |v: Option<i64>| v.unwrap_or(0);
    let result: Ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int(match c.target_union {
            Some(TargetUnion::CreateRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&int(match c.target_union {
            Some(TargetUnion::ModRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Version) => kv.version.cmp(&int(match c.target_union {
            Some(TargetUnion::Version(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&int(match c.target_union {
            Some(TargetUnion::Lease(v)) => Some(v),
            _ => None,
        })),
        // An unknown target compares as equal in etcd (its switch has no case).
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => result == Ordering::Equal,
        Ok(CompareResult::NotEqual) => result != Ordering::Equal,
        Ok(CompareResult::Greater) => result == Ordering::Greater,
        Ok(CompareResult::Less) => result == Ordering::Less,
        Err(_) => true,
    }
}
