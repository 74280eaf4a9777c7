//! etcd's gRPC errors: status codes and exact message strings.
//!
//! Go clients (kube-apiserver, etcdctl) compare on the message text, so these
//! strings are part of the wire protocol: they are copied from etcd's
//! `rpctypes/error.go` and must not change.

use tonic::{Code, Status};

fn status(code: Code, msg: &'static str) -> Status {
    Status::new(code, msg)
}

/// `etcdserver: key is not provided`
pub fn empty_key() -> Status {
    status(Code::InvalidArgument, "etcdserver: key is not provided")
}
/// `etcdserver: key not found` (also etcd's answer to an empty txn op)
pub fn key_not_found() -> Status {
    status(Code::InvalidArgument, "etcdserver: key not found")
}
/// `etcdserver: value is provided`
pub fn value_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: value is provided")
}
/// `etcdserver: lease is provided`
pub fn lease_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: lease is provided")
}
/// `etcdserver: too many operations in txn request`
pub fn too_many_ops() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    )
}
/// `etcdserver: duplicate key given in txn request`
pub fn duplicate_key() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    )
}
/// Bramble's own (etcd has no nesting limit): a txn nested deeper than a
/// Raft log entry can be decoded. Only an embedding program can build one; the
/// gRPC layer does not decode such a request (docs/compatibility.md).
pub fn txn_too_deep() -> Status {
    Status::new(
        Code::InvalidArgument,
        format!(
            "etcdserver: txn request nested deeper than {} protobuf messages",
            bramble_raft::codec::MAX_DECODED_DEPTH
        ),
    )
}
/// `etcdserver: mvcc: required revision has been compacted`
pub fn compacted() -> Status {
    status(
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    )
}
/// `etcdserver: mvcc: required revision is a future revision`
pub fn future_revision() -> Status {
    status(
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    )
}
/// `etcdserver: requested lease not found`
pub fn lease_not_found() -> Status {
    status(Code::NotFound, "etcdserver: requested lease not found")
}
/// `etcdserver: lease already exists`
pub fn lease_exists() -> Status {
    status(Code::FailedPrecondition, "etcdserver: lease already exists")
}
/// `etcdserver: too large lease TTL`
pub fn lease_ttl_too_large() -> Status {
    status(Code::OutOfRange, "etcdserver: too large lease TTL")
}
/// `etcdserver: invalid sort option`
pub fn invalid_sort_option() -> Status {
    status(Code::InvalidArgument, "etcdserver: invalid sort option")
}
/// `etcdserver: too many requests` (etcd's ErrTooManyRequests)
pub fn too_many_requests() -> Status {
    status(Code::ResourceExhausted, "etcdserver: too many requests")
}
/// `etcdserver: request is too large`
pub fn request_too_large() -> Status {
    status(Code::InvalidArgument, "etcdserver: request is too large")
}
/// `etcdserver: no leader`
pub fn no_leader() -> Status {
    status(Code::Unavailable, "etcdserver: no leader")
}
/// `etcdserver: leader changed`
pub fn leader_changed() -> Status {
    status(Code::Unavailable, "etcdserver: leader changed")
}
/// `etcdserver: request timed out`
pub fn timeout() -> Status {
    status(Code::Unavailable, "etcdserver: request timed out")
}
/// `etcdserver: server stopped`
pub fn stopped() -> Status {
    status(Code::Unavailable, "etcdserver: server stopped")
}
/// An internal failure (storage I/O): etcd reports these as Unknown with the cause.
pub fn internal(msg: impl std::fmt::Display) -> Status {
    Status::new(Code::Unknown, format!("etcdserver: {msg}"))
}
/// An RPC of a service that a later issue implements.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("bramble: {what} is not implemented yet"))
}
/// `etcdserver: member ID already exist`
pub fn member_exists() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: member ID already exist",
    )
}
/// `etcdserver: Peer URLs already exists`
pub fn peer_urls_exist() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    )
}
/// `etcdserver: re-configuration failed due to not enough started members`
pub fn member_not_enough_started() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members",
    )
}
/// `etcdserver: given member URLs are invalid`
pub fn member_bad_urls() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
}
/// `etcdserver: member not found`
pub fn member_not_found() -> Status {
    status(Code::NotFound, "etcdserver: member not found")
}
/// `etcdserver: can only promote a learner member`
pub fn member_not_learner() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    )
}
/// `etcdserver: can only promote a learner member which is in sync with leader`
pub fn learner_not_ready() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    )
}
/// `etcdserver: too many learner members in cluster`
pub fn too_many_learners() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    )
}
/// `etcdserver: unhealthy cluster`
pub fn unhealthy() -> Status {
    status(Code::Unavailable, "etcdserver: unhealthy cluster")
}
/// `etcdserver: not leader`
pub fn not_leader() -> Status {
    status(Code::FailedPrecondition, "etcdserver: not leader")
}
/// `etcdserver: bad leader transferee`
pub fn bad_leader_transferee() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: bad leader transferee",
    )
}
/// `etcdserver: request timed out, leader transfer took too long` (etcd has
/// no gRPC mapping for it, so it reaches clients as Unknown)
pub fn leader_transfer_timeout() -> Status {
    status(
        Code::Unknown,
        "etcdserver: request timed out, leader transfer took too long",
    )
}
/// `etcdserver: rpc not supported for learner`
pub fn not_supported_for_learner() -> Status {
    status(
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    )
}
