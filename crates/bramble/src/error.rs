//! The embedding API's error: what went wrong as an [`ErrorKind`] to match on,
//! with the gRPC code and text etcd would answer, and the member's fatal
//! failure when that is the cause.

use bramble_raft::FatalError;
pub use bramble_server::errors::ErrorKind;

/// An error from an embedded member: its [`kind`](Error::kind) says what went
/// wrong in etcd's terms, and [`code`](Error::code) and
/// [`message`](Error::message) are what a gRPC client of a `bramble` (or
/// `etcd`) server would get for the same request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bramble::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use bramble::{ErrorKind, Node, NodeOptions};
///
/// let node = Node::open(NodeOptions::new(dir.path())).await?;
/// let err = node.put("", "no key").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::EmptyKey);
/// assert_eq!(err.message(), "etcdserver: key is not provided");
/// # node.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    code: tonic::Code,
    message: String,
    fatal: Option<FatalError>,
    compact_revision: Option<i64>,
}

impl Error {
    /// An error of `kind` with etcd's `code` and `message`.
    pub(crate) fn new(kind: ErrorKind, code: tonic::Code, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            fatal: None,
            compact_revision: None,
        }
    }

    /// A refusal of the caller's arguments (Bramble's own text, not etcd's).
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Other, tonic::Code::InvalidArgument, message)
    }

    /// The member could not do it now (a port in use, a start that failed).
    pub(crate) fn unavailable(message: impl std::fmt::Display) -> Self {
        Error::new(
            ErrorKind::Other,
            tonic::Code::Unavailable,
            message.to_string(),
        )
    }

    /// etcd's watch answer for a start revision that was compacted away:
    /// [`ErrorKind::Compacted`], with the revision history now starts after.
    pub(crate) fn watch_compacted(compact_revision: i64) -> Self {
        let status = bramble_server::errors::compacted();
        let mut e = Error::from(status);
        e.compact_revision = Some(compact_revision);
        e
    }

    /// What went wrong, in etcd's terms.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The gRPC status code etcd would answer with.
    pub fn code(&self) -> tonic::Code {
        self.code
    }

    /// etcd's error text (e.g. `etcdserver: mvcc: required revision has been
    /// compacted`), which is also this error's `Display`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Set when the member failed for good (its disk or Raft core): it
    /// serves nothing more and must be closed (and may be reopened).
    pub fn fatal(&self) -> Option<&FatalError> {
        self.fatal.as_ref()
    }

    /// For a watch that started before the compacted revision
    /// ([`ErrorKind::Compacted`]): the compaction's revision, so the watch can
    /// be made again from `compact_revision` (etcd's
    /// `WatchResponse.compact_revision`).
    pub fn compact_revision(&self) -> Option<i64> {
        self.compact_revision
    }

    /// Whether trying the same request again later may succeed: the cluster
    /// had no leader, changed it, or timed out, and the member is not
    /// stopped for good.
    pub fn is_retryable(&self) -> bool {
        self.fatal.is_none()
            && matches!(
                self.kind,
                ErrorKind::NoLeader
                    | ErrorKind::LeaderChanged
                    | ErrorKind::Timeout
                    | ErrorKind::TooManyRequests
            )
    }
}

impl From<tonic::Status> for Error {
    /// A service's answer: typed by the service where it is one of etcd's
    /// errors ([`bramble_server::errors::error_kind`]), else
    /// [`ErrorKind::Other`].
    fn from(s: tonic::Status) -> Self {
        let kind = bramble_server::errors::error_kind(&s).unwrap_or(ErrorKind::Other);
        Error::new(kind, s.code(), s.message())
    }
}

impl From<FatalError> for Error {
    /// etcd's answer from a stopped server, with the cause attached.
    fn from(e: FatalError) -> Self {
        let mut err = Error::from(bramble_server::errors::stopped());
        err.fatal = Some(e);
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_kind_code_and_text() {
        let e = Error::from(bramble_server::errors::stopped());
        assert_eq!(e.kind(), ErrorKind::Stopped);
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert_eq!(e.to_string(), "etcdserver: server stopped");
        assert!(!e.is_retryable());
        let other = Error::from(tonic::Status::cancelled("gone"));
        assert_eq!(other.kind(), ErrorKind::Other);
        assert_eq!(other.code(), tonic::Code::Cancelled);
        let compacted = Error::watch_compacted(7);
        assert_eq!(compacted.kind(), ErrorKind::Compacted);
        assert_eq!(compacted.compact_revision(), Some(7));
        assert_eq!(
            compacted.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
