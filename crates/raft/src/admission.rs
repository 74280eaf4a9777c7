//! What a member lets into its Raft log: etcd's checks on a write before it is
//! proposed (its `v3rpc/key.go` request checks, in the same order, and its
//! `--max-request-bytes`), plus the one bound that keeps every entry readable
//! (txn nesting, see [`crate::log_codec::MAX_DECODED_DEPTH`]).
//!
//! One place for both ways a command reaches the log: a client of this member
//! ([`crate::RaftNode::propose`]) and a follower's forwarded proposal on the
//! leader (`peer_service`), which the leader checks with its own limits: a
//! follower started with larger ones, or a hostile peer, cannot put into the
//! log what this member's clients could not.

use std::collections::HashSet;

use bramble_api::bramblepb::forward_reply::Refused;
use bramble_api::bramblepb::{command::Op as CommandOp, Command};
use bramble_api::etcdserverpb::{
    request_op::Request as Op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use prost::Message;

use crate::log_codec::{txn_nests_deeper_than, MAX_DECODED_DEPTH};

/// The request limits a member enforces (etcd's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest command proposed through Raft, encoded.
    pub max_request_bytes: usize,
    /// Most operations in one txn branch.
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: crate::defaults::MAX_REQUEST_BYTES,
            max_txn_ops: crate::defaults::MAX_TXN_OPS,
        }
    }
}

/// Why a command was refused; the server maps each to etcd's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `etcdserver: key is not provided`
    #[error("key is not provided")]
    EmptyKey,
    /// `etcdserver: key not found` (etcd's answer to an empty txn op)
    #[error("empty txn operation")]
    EmptyOp,
    /// `etcdserver: value is provided`
    #[error("value is provided")]
    ValueProvided,
    /// `etcdserver: lease is provided`
    #[error("lease is provided")]
    LeaseProvided,
    /// `etcdserver: too many operations in txn request`
    #[error("too many operations in txn request")]
    TooManyOps,
    /// `etcdserver: duplicate key given in txn request`
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A txn nested deeper than an entry can be decoded (Bramble's own bound:
    /// the gRPC layer never decodes such a request, an embedding program could
    /// build one).
    #[error("txn nested deeper than {MAX_DECODED_DEPTH} protobuf messages")]
    TooDeep,
    /// `etcdserver: request is too large`
    #[error("request is too large")]
    TooLarge,
    /// A command without an operation (only a broken or hostile peer sends one).
    #[error("command without an operation")]
    EmptyCommand,
}

impl Refusal {
    /// The refusal as the leader's answer to a forwarded proposal.
    pub(crate) fn to_pb(self) -> Refused {
        match self {
            Refusal::EmptyKey => Refused::EmptyKey,
            Refusal::EmptyOp => Refused::EmptyOp,
            Refusal::ValueProvided => Refused::ValueProvided,
            Refusal::LeaseProvided => Refused::LeaseProvided,
            Refusal::TooManyOps => Refused::TooManyOps,
            Refusal::DuplicateKey => Refused::DuplicateKey,
            Refusal::TooDeep => Refused::TooDeep,
            Refusal::TooLarge => Refused::TooLarge,
            Refusal::EmptyCommand => Refused::EmptyCommand,
        }
    }

    /// The refusal in a leader's answer: `Ok(None)` when it proposed the
    /// command, `Err` with the raw value for a reason this version does not know.
    pub(crate) fn from_pb(value: i32) -> Result<Option<Refusal>, i32> {
        Ok(Some(match Refused::try_from(value).map_err(|_| value)? {
            Refused::None => return Ok(None),
            Refused::EmptyKey => Refusal::EmptyKey,
            Refused::EmptyOp => Refusal::EmptyOp,
            Refused::ValueProvided => Refusal::ValueProvided,
            Refused::LeaseProvided => Refusal::LeaseProvided,
            Refused::TooManyOps => Refusal::TooManyOps,
            Refused::DuplicateKey => Refusal::DuplicateKey,
            Refused::TooDeep => Refusal::TooDeep,
            Refused::TooLarge => Refusal::TooLarge,
            Refused::EmptyCommand => Refusal::EmptyCommand,
        }))
    }
}

/// Checks a command before it is proposed: the request's own checks, then
/// its encoded size, as etcd orders them.
pub fn check_command(cmd: &Command, limits: &Limits) -> Result<(), Refusal> {
    match &cmd.op {
        Some(CommandOp::Put(r)) => check_put(r)?,
        Some(CommandOp::DeleteRange(r)) => check_delete(r)?,
        Some(CommandOp::Txn(r)) => check_txn(r, limits.max_txn_ops)?,
        Some(
            CommandOp::Compaction(_)
            | CommandOp::LeaseGrant(_)
            | CommandOp::LeaseRevoke(_)
            | CommandOp::Alarm(_)
            | CommandOp::AuthEnable(_)
            | CommandOp::AuthDisable(_)
            | CommandOp::AuthUserAdd(_)
            | CommandOp::AuthUserDelete(_)
            | CommandOp::AuthUserChangePassword(_)
            | CommandOp::AuthUserGrantRole(_)
            | CommandOp::AuthUserRevokeRole(_)
            | CommandOp::AuthRoleAdd(_)
            | CommandOp::AuthRoleDelete(_)
            | CommandOp::AuthRoleGrantPermission(_)
            | CommandOp::AuthRoleRevokePermission(_)
            | CommandOp::AuthAuthenticate(_),
        ) => {}
        None => return Err(Refusal::EmptyCommand),
    }
    // etcd limits the size of what it proposes, not of the gRPC message.
    if cmd.encoded_len() > limits.max_request_bytes {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}

/// Range: a key is required.
pub fn check_range(r: &RangeRequest) -> Result<(), Refusal> {
    if r.key.is_empty() {
        return Err(Refusal::EmptyKey);
    }
    Ok(())
}

/// Put: a key is required; `ignore_value`/`ignore_lease` exclude a value/lease.
pub fn check_put(r: &PutRequest) -> Result<(), Refusal> {
    if r.key.is_empty() {
        return Err(Refusal::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Refusal::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Refusal::LeaseProvided);
    }
    Ok(())
}

/// DeleteRange: a key is required.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), Refusal> {
    if r.key.is_empty() {
        return Err(Refusal::EmptyKey);
    }
    Ok(())
}

/// Txn: a nesting the log can store, the op count limit, keys present, and no
/// key written twice.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Refusal> {
    // First, so that the recursive checks below walk a bounded depth. A
    // request that came through gRPC always passes (it was decoded with the
    // same budget).
    if txn_nests_deeper_than(r, MAX_DECODED_DEPTH) {
        return Err(Refusal::TooDeep);
    }
    check_txn_ops(r, max_txn_ops)?;
    // Overlaps are checked after the cheap checks, as etcd does, so a huge
    // request cannot make this quadratic before it is rejected.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Refusal> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(Refusal::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Refusal::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), Refusal> {
    match &op.request {
        Some(Op::RequestRange(r)) => check_range(r),
        Some(Op::RequestPut(r)) => check_put(r),
        Some(Op::RequestDeleteRange(r)) => check_delete(r),
        Some(Op::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        None => Err(Refusal::EmptyOp),
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
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Deletes), Refusal> {
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
                return Err(Refusal::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(Refusal::DuplicateKey);
            }
            if dels.intersects_point(k) {
                return Err(Refusal::DuplicateKey);
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
            return Err(Refusal::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}
