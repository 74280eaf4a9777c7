//! [`ProposeError`], why a proposal or read barrier failed, and the mapping
//! onto it of openraft's errors and of the leader's answers to forwarded
//! requests.

use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};

use crate::admission::Refusal;
use crate::fatal::FatalError;
use crate::refusal::{self, Reason};

/// The message of the status a follower receives when the receiver is not
/// the leader (the sender goes by its [`Reason::NotLeader`], not this text).
const NOT_LEADER: &str = "bramble: not the leader";

/// The refusal of a request only the leader can take, by a member that does
/// not lead: nothing was done.
pub(crate) fn not_leader() -> tonic::Status {
    refusal::refusal(
        tonic::Code::FailedPrecondition,
        NOT_LEADER,
        Reason::NotLeader,
    )
}

/// Why a proposal or a read barrier failed; the server maps these to etcd's errors.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (etcd: `etcdserver: no leader`).
    #[error("no leader")]
    NoLeader,
    /// The leader changed while the request was in flight, outcome unknown.
    #[error("leader changed")]
    LeaderChanged,
    /// The request did not complete in time.
    #[error("request timed out")]
    Timeout,
    /// The member is shutting down.
    #[error("server stopped: {0}")]
    Stopped(String),
    /// The command failed this member's or the leader's request checks;
    /// nothing was proposed.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The member hit a fatal failure and is stopping (see [`crate::fatal`]).
    #[error("server stopped: {0}")]
    Fatal(FatalError),
}

pub(crate) fn write_error(
    e: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NoLeader,
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ProposeError::LeaderChanged,
        RaftError::APIError(other) => ProposeError::Stopped(other.to_string()),
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}

pub(crate) fn read_error(
    e: RaftError<crate::types::TypeConfig, LinearizableReadError<crate::types::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => ProposeError::NoLeader,
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => ProposeError::Timeout,
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}

/// Why forwarding to the leader failed.
pub(crate) enum ForwardError {
    /// The receiver was not the leader and proposed nothing, or the request
    /// never reached it: safe to retry.
    NotDelivered,
    /// Anything else; the command may or may not have been committed.
    Failed(ProposeError),
}

impl From<ProposeError> for ForwardError {
    fn from(e: ProposeError) -> Self {
        ForwardError::Failed(e)
    }
}

/// Maps the leader's answer to a forwarded request.
pub(crate) fn forward_status(status: &tonic::Status) -> ForwardError {
    use tonic::Code;
    if refusal::reason(status) == Some(Reason::NotLeader) {
        return ForwardError::NotDelivered;
    }
    match status.code() {
        Code::Unavailable if never_connected(status) => ForwardError::NotDelivered,
        Code::Aborted => ForwardError::Failed(ProposeError::LeaderChanged),
        Code::DeadlineExceeded | Code::Cancelled => ForwardError::Failed(ProposeError::Timeout),
        // The leader is unreachable: whether it got the command is unknown,
        // which etcd reports as a timeout too.
        Code::Unavailable => ForwardError::Failed(ProposeError::Timeout),
        // The connection to the leader broke while the request was in flight (the leader
        // was killed): tonic's `transport error`, with the transport's error as its source,
        // not a status the leader sent. The command may have been committed, and this
        // member is not stopping: etcd's follower answers a timeout here too.
        _ if std::error::Error::source(status).is_some() => {
            ForwardError::Failed(ProposeError::Timeout)
        }
        _ => ForwardError::Failed(ProposeError::Stopped(status.message().to_string())),
    }
}

/// Whether `status` is tonic's for a connection to the peer that could not
/// be made (a [`tonic::ConnectError`] in its source chain): the request was
/// never sent. A status the peer sent has no source, whatever its text.
fn never_connected(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bramble_api::bramblepb as pb;
    use tonic::body::Body;
    use tonic::codegen::http;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::network::PeerChannels;

    /// Asks the peer at `url` for its read index, as a follower does.
    async fn read_index(url: &str) -> tonic::Status {
        let channels = PeerChannels::new(Duration::from_secs(5), 1 << 20, Default::default());
        let channel = channels.channel(url).expect("channel");
        channels
            .client_on(channel)
            .read_index(pb::ReadIndexRequest { cluster_id: 1 })
            .await
            .expect_err("no read index")
    }

    /// A peer whose every request fails with `Unavailable` and the text
    /// tonic gives a connection it could not make.
    #[derive(Clone)]
    struct FailingPeer;

    impl tonic::server::NamedService for FailingPeer {
        const NAME: &'static str = "bramblepb.Peer";
    }

    impl tonic::codegen::Service<http::Request<Body>> for FailingPeer {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(
                tonic::Status::unavailable("tcp connect error").into_http()
            ))
        }
    }

    #[tokio::test]
    async fn a_peer_nobody_listens_on_never_got_the_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let status = read_index(&format!("http://{addr}")).await;
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(matches!(
            forward_status(&status),
            ForwardError::NotDelivered
        ));
    }

    #[tokio::test]
    async fn a_peer_that_got_the_request_and_failed_may_have_done_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(FailingPeer)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let status = read_index(&format!("http://{addr}")).await;
        server.abort();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "tcp connect error");
        assert!(matches!(
            forward_status(&status),
            ForwardError::Failed(ProposeError::Timeout)
        ));
    }

    /// A leader killed while it holds the request: the connection closes under it.
    #[tokio::test]
    async fn a_connection_that_breaks_mid_request_is_a_timeout_not_a_stop() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            // The client's preface and request, then the connection is gone.
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        });
        let status = read_index(&format!("http://{addr}")).await;
        peer.await.expect("peer");
        // tonic's `transport error` (Unknown), the hyper error as its source.
        assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
        assert!(
            std::error::Error::source(&status).is_some(),
            "a transport failure: {status:?}"
        );
        assert!(
            matches!(
                forward_status(&status),
                ForwardError::Failed(ProposeError::Timeout)
            ),
            "{status:?}"
        );
    }
}
