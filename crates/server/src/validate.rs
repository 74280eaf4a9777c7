//! Request checks done before a request is proposed, as etcd's
//! `v3rpc/key.go` does them: the same order, the same errors. The checks
//! themselves are `bramble_raft::admission`'s, which a leader also applies to
//! the commands its followers forward; this module gives them etcd's errors.

use bramble_api::etcdserverpb::{RangeRequest, TxnRequest};
use bramble_raft::admission::{self, Refusal};
use tonic::Status;

use crate::errors;

/// etcd's error for a refused request.
pub(crate) fn refusal_status(r: Refusal) -> Status {
    match r {
        Refusal::EmptyKey => errors::empty_key(),
        Refusal::EmptyOp => errors::key_not_found(),
        Refusal::ValueProvided => errors::value_provided(),
        Refusal::LeaseProvided => errors::lease_provided(),
        Refusal::TooManyOps => errors::too_many_ops(),
        Refusal::DuplicateKey => errors::duplicate_key(),
        Refusal::TooDeep => errors::txn_too_deep(),
        Refusal::TooLarge => errors::request_too_large(),
        Refusal::EmptyCommand => errors::internal(r),
    }
}

/// Range: a key is required.
pub(crate) fn check_range(r: &RangeRequest) -> Result<(), Status> {
    admission::check_range(r).map_err(refusal_status)
}

/// Txn: a nesting the log can store (see `bramble_raft::log_codec::MAX_DECODED_DEPTH`),
/// the op count limit, keys present, and no key written twice.
pub(crate) fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    admission::check_txn(r, max_txn_ops).map_err(refusal_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::bramblepb::Command;
    use bramble_api::etcdserverpb::{request_op::Request as Op, Compare, RequestOp};
    use bramble_api::etcdserverpb::{DeleteRangeRequest, PutRequest};
    use bramble_raft::admission::Limits;
    use bramble_raft::log_codec::MAX_DECODED_DEPTH;
    use prost::Message;

    // Puts and whole commands are checked on the propose path (`RaftNode::propose`),
    // which maps a refusal with `refusal_status` too; these give the same mapping here.
    fn check_put(r: &PutRequest) -> Result<(), Status> {
        admission::check_put(r).map_err(refusal_status)
    }

    fn check_command(cmd: &Command, limits: &Limits) -> Result<(), Status> {
        admission::check_command(cmd, limits).map_err(refusal_status)
    }

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

    /// The nesting bound: the deepest txn prost decodes (51 levels with the
    /// innermost empty, here the put one level up) passes, one level more is
    /// refused with a clear InvalidArgument. A client cannot send the deeper
    /// one through gRPC (it does not decode); an embedding program could.
    #[test]
    fn txn_nesting_bound() {
        let mut deepest = txn(vec![put("k"), nested(txn(vec![], vec![]))], vec![]);
        for _ in 2..51 {
            deepest = txn(vec![nested(deepest)], vec![]);
        }
        assert!(TxnRequest::decode(deepest.encode_to_vec().as_slice()).is_ok());
        assert!(check_txn(&deepest, 128).is_ok());
        let deeper = txn(vec![nested(deepest)], vec![]);
        assert!(TxnRequest::decode(deeper.encode_to_vec().as_slice()).is_err());
        let err = check_txn(&deeper, 128).expect_err("too deep");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            format!(
                "etcdserver: txn request nested deeper than {MAX_DECODED_DEPTH} protobuf messages"
            )
        );
    }

    #[test]
    fn commands_are_checked_for_size_after_their_request() {
        use bramble_api::bramblepb::command::Op as CommandOp;
        let limits = Limits {
            max_request_bytes: 100,
            max_txn_ops: 128,
        };
        let big = |key: &str| Command {
            auth: None,
            op: Some(CommandOp::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: vec![b'x'; 200],
                ..Default::default()
            })),
        };
        assert_eq!(
            msg(check_command(&big("k"), &limits)),
            "etcdserver: request is too large"
        );
        assert_eq!(
            msg(check_command(&big(""), &limits)),
            "etcdserver: key is not provided"
        );
        let small = Command {
            auth: None,
            op: Some(CommandOp::Put(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        };
        assert!(check_command(&small, &limits).is_ok());
    }
}
