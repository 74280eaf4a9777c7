//! Request checks done before a request is proposed, as etcd's
//! `v3rpc/key.go` does them: the same order, the same errors.

use std::collections::HashSet;

use bramble_api::etcdserverpb::{
    request_op::Request as Op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::Status;

use crate::errors;

/// Range: a key is required.
pub fn check_range(r: &RangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    Ok(())
}

/// Put: a key is required; `ignore_value`/`ignore_lease` exclude a value/lease.
pub fn check_put(r: &PutRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(errors::value_provided());
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(errors::lease_provided());
    }
    Ok(())
}

/// DeleteRange: a key is required.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(errors::empty_key());
    }
    Ok(())
}

/// Txn: the op count limit, keys present, and no key written twice.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    check_txn_ops(r, max_txn_ops)?;
    // Overlaps are checked after the cheap checks, as etcd does, so a huge
    // request cannot make this quadratic before it is rejected.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(errors::too_many_ops());
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(errors::empty_key());
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), Status> {
    match &op.request {
        Some(Op::RequestRange(r)) => check_range(r),
        Some(Op::RequestPut(r)) => check_put(r),
        Some(Op::RequestDeleteRange(r)) => check_delete(r),
        Some(Op::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        // etcd answers an empty op with "key not found".
        None => Err(errors::key_not_found()),
    }
}

/// A key interval as etcd's `adt` affine intervals see it: `[begin, end)`
/// where an empty `end` is +infinity.
#[derive(Clone, Debug)]
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    /// The interval a DeleteRange covers, as etcd's checkIntervals builds it.
    fn of_delete(r: &DeleteRangeRequest) -> Interval {
        if r.range_end.is_empty() {
            Interval::point(&r.key)
        } else {
            Interval {
                begin: r.key.clone(),
                end: r.range_end.clone(),
            }
        }
    }

    fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval {
            begin: key.to_vec(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// Deleted intervals of one txn level (with its nested txns).
#[derive(Default)]
struct Deletes(Vec<Interval>);

impl Deletes {
    fn intersects_point(&self, key: &[u8]) -> bool {
        self.0.iter().any(|iv| iv.contains(key))
    }
}

/// etcd's checkIntervals: puts and deletes of one branch must not overlap,
/// also across nested txns (then/else of one nested txn may put the same key,
/// since only one of them runs). Returns the puts and deletes for the caller.
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Deletes), Status> {
    let mut dels = Deletes::default();
    for req in reqs {
        if let Some(Op::RequestDeleteRange(d)) = &req.request {
            dels.0.push(Interval::of_delete(d));
        }
    }

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for req in reqs {
        let Some(Op::RequestTxn(t)) = &req.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.intersects_point(k) {
                return Err(errors::duplicate_key());
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(errors::duplicate_key());
            }
            if dels.intersects_point(k) {
                return Err(errors::duplicate_key());
            }
            puts.insert(k.clone());
        }
        dels.0.extend(dels_then.0);
        dels.0.extend(dels_else.0);
    }

    for req in reqs {
        let Some(Op::RequestPut(p)) = &req.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.intersects_point(&p.key) {
            return Err(errors::duplicate_key());
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestTxn(t)),
        }
    }
    fn msg(r: Result<(), Status>) -> String {
        r.err().map(|s| s.message().to_string()).unwrap_or_default()
    }

    #[test]
    fn duplicate_puts_are_rejected() {
        let t = txn(vec![put("a"), put("a")], vec![]);
        assert_eq!(
            msg(check_txn(&t, 128)),
            "etcdserver: duplicate key given in txn request"
        );
    }

    #[test]
    fn put_inside_deleted_range_is_rejected() {
        let t = txn(vec![del("a", "c"), put("b")], vec![]);
        assert!(check_txn(&t, 128).is_err());
        let ok = txn(vec![del("a", "c"), put("c")], vec![]);
        assert!(check_txn(&ok, 128).is_ok());
    }

    #[test]
    fn same_key_in_then_and_else_of_a_nested_txn_is_fine() {
        let inner = txn(vec![put("k")], vec![put("k")]);
        assert!(check_txn(&txn(vec![nested(inner)], vec![]), 128).is_ok());
        let clash = txn(vec![nested(txn(vec![put("k")], vec![])), put("k")], vec![]);
        assert!(check_txn(&clash, 128).is_err());
    }

    #[test]
    fn put_in_success_and_failure_branches_is_fine() {
        assert!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128).is_ok());
    }

    #[test]
    fn op_limit_and_empty_keys() {
        let many: Vec<RequestOp> = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(
            msg(check_txn(&txn(many, vec![]), 128)),
            "etcdserver: too many operations in txn request"
        );
        let t = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(msg(check_txn(&t, 128)), "etcdserver: key is not provided");
        let empty_op = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(msg(check_txn(&empty_op, 128)), "etcdserver: key not found");
    }

    #[test]
    fn put_flags() {
        let p = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(msg(check_put(&p)), "etcdserver: value is provided");
        let p = PutRequest {
            key: b"k".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(msg(check_put(&p)), "etcdserver: lease is provided");
    }
}
