//! etcd's gRPC errors: status codes and exact message strings.
//!
//! Go clients (kube-apiserver, etcdctl) compare on the message text, so these
//! strings are part of the wire protocol: they are copied from etcd's
//! `rpctypes/error.go` and must not change. Each text is written once: the
//! ones the MVCC store shares with etcd are [`MvccError`]'s (the lowest crate
//! that needs them), mapped to a status by `mvcc_status`; the rest are here.

use std::sync::Arc;

use bramble_storage::mvcc::{AuthError, MvccError};
use tonic::{Code, Status};

fn status(code: Code, msg: &'static str) -> Status {
    etcd_status(code, msg)
}

/// The source of every status this module builds with an `etcdserver: `
/// text, so code that must treat etcd's server errors apart (the lock and
/// election services, [`is_etcd_server_error`]) goes by type, not text. A
/// status's source stays in this process: clients see code and text only.
#[derive(Debug)]
struct EtcdServerError;

impl std::fmt::Display for EtcdServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an etcd server error")
    }
}

impl std::error::Error for EtcdServerError {}

/// One of etcd's server errors: `msg` with `code`, marked as such.
fn etcd_status(code: Code, msg: impl Into<String>) -> Status {
    let mut status = Status::new(code, msg);
    status.set_source(Arc::new(EtcdServerError));
    status
}

/// Whether `status` is one of etcd's server errors (the `etcdserver: ...`
/// statuses this module builds), as opposed to one of Bramble's own or of
/// gRPC's.
pub fn is_etcd_server_error(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|e| e.is::<EtcdServerError>())
}

/// `etcdserver: key is not provided`
pub(crate) fn empty_key() -> Status {
    status(Code::InvalidArgument, "etcdserver: key is not provided")
}
/// etcd's gRPC error for an error of the MVCC store. The text is the
/// store's, which is etcd's: etcd's gRPC layer prefixes its `mvcc: ...`
/// errors with `etcdserver: `, and so does this. Failures of this member
/// (storage, corruption) are [`internal`].
pub(crate) fn mvcc_status(e: &MvccError) -> Status {
    let code = match e {
        // `etcdserver: mvcc: required revision has been compacted`,
        // `etcdserver: mvcc: required revision is a future revision`
        MvccError::Compacted | MvccError::FutureRevision => {
            return etcd_status(Code::OutOfRange, format!("etcdserver: {e}"))
        }
        // `etcdserver: key not found`
        MvccError::KeyNotFound => Code::InvalidArgument,
        // `etcdserver: requested lease not found`
        MvccError::LeaseNotFound => Code::NotFound,
        // `etcdserver: lease already exists`
        MvccError::LeaseExists => Code::FailedPrecondition,
        // `etcdserver: too large lease TTL`
        MvccError::LeaseTtlTooLarge => Code::OutOfRange,
        // `etcdserver: invalid sort option`
        MvccError::InvalidSortOption => Code::InvalidArgument,
        // `etcdserver: mvcc: database space exceeded`
        MvccError::NoSpace => return no_space(),
        // `etcdserver: corrupt cluster`
        MvccError::CorruptCluster => Code::DataLoss,
        MvccError::Auth(a) => return auth_status(*a),
        MvccError::EmptyCommand
        | MvccError::OutOfOrder { .. }
        | MvccError::Corrupt(_)
        | MvccError::Storage(_)
        | MvccError::BadSnapshot(_)
        | MvccError::StoreReplaced => return internal(e),
    };
    etcd_status(code, e.to_string())
}
/// etcd's gRPC error for an auth store error: the text is [`AuthError`]'s
/// (etcd's), the code etcd's `rpctypes` gives it.
pub(crate) fn auth_status(e: AuthError) -> Status {
    let code = match e {
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::AuthNotEnabled => Code::FailedPrecondition,
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::PermissionNotGiven
        | AuthError::InvalidAuthMgmt
        | AuthError::AuthOldRevision => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidAuthToken => Code::Unauthenticated,
        // Not one of etcd's gRPC errors: grpc-go sends it as Unknown.
        AuthError::NoPasswordUser => Code::Unknown,
    };
    etcd_status(code, e.to_string())
}
/// `bramble: authentication cannot be enabled yet: ...`: Bramble's own refusal
/// of AuthEnable until every service checks permissions (enabling auth without
/// enforcing it would let anyone do anything while claiming otherwise).
pub(crate) fn auth_enable_refused() -> Status {
    Status::failed_precondition(
        "bramble: authentication cannot be enabled yet: permission checks are not implemented",
    )
}
/// `bcrypt: password length exceeds 72 bytes`: Go's bcrypt refuses longer
/// passwords and etcd 3.6 passes the error on, which grpc-go sends as Unknown.
pub(crate) fn password_too_long() -> Status {
    Status::unknown("bcrypt: password length exceeds 72 bytes")
}
/// `etcdserver: mvcc: database space exceeded` (etcd's `ErrGRPCNoSpace`): the
/// space quota is exhausted or a NOSPACE alarm is raised.
pub(crate) fn no_space() -> Status {
    etcd_status(
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded".to_string(),
    )
}
/// An RPC Bramble does not serve: not one of etcd's errors (tests use it as
/// such; every etcd RPC is served now).
#[cfg(test)]
pub(crate) fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("bramble: {what} is not implemented yet"))
}
/// `etcdserver: invalid downgrade target version` (etcd 3.6)
pub(crate) fn invalid_downgrade_target_version() -> Status {
    etcd_status(
        Code::InvalidArgument,
        "etcdserver: invalid downgrade target version",
    )
}
/// `etcdserver: wrong downgrade target version format` (etcd 3.6)
pub(crate) fn wrong_downgrade_version_format() -> Status {
    etcd_status(
        Code::InvalidArgument,
        "etcdserver: wrong downgrade target version format",
    )
}
/// etcd's `ErrUnknownMethod`: not one of its gRPC errors, so grpc-go sends it
/// as Unknown with its text.
pub(crate) fn unknown_method() -> Status {
    etcd_status(Code::Unknown, "etcdserver: unknown method")
}
/// `etcdserver: key not found` (also etcd's answer to an empty txn op)
pub(crate) fn key_not_found() -> Status {
    mvcc_status(&MvccError::KeyNotFound)
}
/// `etcdserver: value is provided`
pub(crate) fn value_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: value is provided")
}
/// `etcdserver: lease is provided`
pub(crate) fn lease_provided() -> Status {
    status(Code::InvalidArgument, "etcdserver: lease is provided")
}
/// `etcdserver: too many operations in txn request`
pub(crate) fn too_many_ops() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    )
}
/// `etcdserver: duplicate key given in txn request`
pub(crate) fn duplicate_key() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    )
}
/// Bramble's own (etcd has no nesting limit): a txn nested deeper than a
/// Raft log entry can be decoded. Only an embedding program can build one; the
/// gRPC layer does not decode such a request (docs/compatibility.md).
pub(crate) fn txn_too_deep() -> Status {
    etcd_status(
        Code::InvalidArgument,
        format!(
            "etcdserver: txn request nested deeper than {} protobuf messages",
            bramble_raft::log_codec::MAX_DECODED_DEPTH
        ),
    )
}
/// `etcdserver: too many requests` (etcd's ErrTooManyRequests)
pub(crate) fn too_many_requests() -> Status {
    status(Code::ResourceExhausted, "etcdserver: too many requests")
}
/// `etcdserver: request is too large`
pub(crate) fn request_too_large() -> Status {
    status(Code::InvalidArgument, "etcdserver: request is too large")
}
/// `etcdserver: no leader`
pub(crate) fn no_leader() -> Status {
    status(Code::Unavailable, "etcdserver: no leader")
}
/// `etcdserver: leader changed`
pub(crate) fn leader_changed() -> Status {
    status(Code::Unavailable, "etcdserver: leader changed")
}
/// `etcdserver: request timed out`
pub(crate) fn timeout() -> Status {
    status(Code::Unavailable, "etcdserver: request timed out")
}
/// `etcdserver: server stopped`
pub fn stopped() -> Status {
    status(Code::Unavailable, "etcdserver: server stopped")
}
/// An internal failure (storage I/O): etcd reports these as Unknown with the cause.
pub(crate) fn internal(msg: impl std::fmt::Display) -> Status {
    etcd_status(Code::Unknown, format!("etcdserver: {msg}"))
}
/// `etcdserver: member ID already exist`
pub(crate) fn member_exists() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: member ID already exist",
    )
}
/// `etcdserver: Peer URLs already exists`
pub(crate) fn peer_urls_exist() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    )
}
/// `etcdserver: re-configuration failed due to not enough started members`
pub(crate) fn member_not_enough_started() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members",
    )
}
/// `etcdserver: given member URLs are invalid`
pub(crate) fn member_bad_urls() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
}
/// `etcdserver: member not found`
pub(crate) fn member_not_found() -> Status {
    status(Code::NotFound, "etcdserver: member not found")
}
/// `etcdserver: can only promote a learner member`
pub(crate) fn member_not_learner() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    )
}
/// `etcdserver: can only promote a learner member which is in sync with leader`
pub(crate) fn learner_not_ready() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    )
}
/// `etcdserver: too many learner members in cluster`
pub(crate) fn too_many_learners() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    )
}
/// `etcdserver: unhealthy cluster`
pub(crate) fn unhealthy() -> Status {
    status(Code::Unavailable, "etcdserver: unhealthy cluster")
}
/// `etcdserver: not leader`
pub(crate) fn not_leader() -> Status {
    status(Code::FailedPrecondition, "etcdserver: not leader")
}
/// `etcdserver: bad leader transferee`
pub(crate) fn bad_leader_transferee() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: bad leader transferee",
    )
}
/// `etcdserver: request timed out, leader transfer took too long` (etcd has
/// no gRPC mapping for it, so it reaches clients as Unknown)
pub(crate) fn leader_transfer_timeout() -> Status {
    status(
        Code::Unknown,
        "etcdserver: request timed out, leader transfer took too long",
    )
}
/// `etcdserver: rpc not supported for learner`
pub(crate) fn not_supported_for_learner() -> Status {
    status(
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's errors reach clients with etcd's exact code and text.
    #[test]
    fn mvcc_errors_are_etcds() {
        let cases = [
            (
                MvccError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                MvccError::FutureRevision,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                MvccError::KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                MvccError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                MvccError::LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                MvccError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                MvccError::InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                MvccError::Storage("disk full".into()),
                Code::Unknown,
                "etcdserver: mvcc: storage error: disk full",
            ),
        ];
        for (error, code, text) in cases {
            let status = mvcc_status(&error);
            assert_eq!((status.code(), status.message()), (code, text), "{error:?}");
            assert!(is_etcd_server_error(&status), "{error:?}");
        }
    }

    /// Every `etcdserver: ` status built here is typed as etcd's; the same
    /// text built elsewhere (or received from a peer) and Bramble's own
    /// statuses are not.
    #[test]
    fn etcd_server_errors_are_typed() {
        let built = [
            empty_key(),
            key_not_found(),
            value_provided(),
            lease_provided(),
            too_many_ops(),
            duplicate_key(),
            txn_too_deep(),
            too_many_requests(),
            request_too_large(),
            no_leader(),
            leader_changed(),
            timeout(),
            stopped(),
            internal("disk full"),
            member_exists(),
            peer_urls_exist(),
            member_not_enough_started(),
            member_bad_urls(),
            member_not_found(),
            member_not_learner(),
            learner_not_ready(),
            too_many_learners(),
            unhealthy(),
            not_leader(),
            bad_leader_transferee(),
            leader_transfer_timeout(),
            not_supported_for_learner(),
        ];
        for status in built {
            assert!(status.message().starts_with("etcdserver: "), "{status:?}");
            assert!(is_etcd_server_error(&status), "{status:?}");
        }
        assert!(!is_etcd_server_error(&unimplemented("x")));
        assert!(!is_etcd_server_error(&Status::unavailable(
            "etcdserver: no leader"
        )));
    }
}
