//! Serving etcd's gRPC API to clients over the network: binding the
//! listeners (the client ones, and the peer ones too, before any data is
//! touched, so a port in use fails the start),
//! and serving each once the member published itself, as etcd does. Used by
//! an embedded [`Node`](crate::Node) with `listen_client_addrs`, and by the
//! `bramble` binary.

use std::sync::Arc;
use std::time::Duration;

use bramble_server::{ClientServer, Keepalive, ServerContext};
use bramble_tls::ServerTls;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::node::ListenAddr;

/// How long a stop waits for client connections to finish their requests
/// before dropping them (as etcd bounds its GracefulStop).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A task serving one listener (or doing a server's other work until its
/// stop), as [`serve_when_published`] makes them.
pub(crate) type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A bound listener and the TLS it serves with (none: plain text).
pub(crate) type Listener = (TcpListener, Option<Arc<ServerTls>>);

/// Binds a listener on every address; the TLS ones serve with `tls`, which
/// must be there if one is. `what` names them in errors ("clients").
pub(crate) async fn bind(
    addrs: &[ListenAddr],
    tls: &Option<Arc<ServerTls>>,
    what: &str,
) -> Result<Vec<Listener>, Error> {
    let mut listeners = Vec::new();
    for a in addrs {
        let tls = match (a.tls, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(Error::invalid_argument(format!(
                    "listen on https://{} ({what}): TLS needs a certificate",
                    a.addr
                )))
            }
        };
        let l = TcpListener::bind(a.addr)
            .await
            .map_err(|e| Error::unavailable(format!("listen on {} ({what}): {e}", a.addr)))?;
        listeners.push((l, tls));
    }
    Ok(listeners)
}

/// Serves the member of `ctx` to clients on `listener` once `published`
/// turns true (the listener is bound already, so early clients wait rather
/// than fail), until `stop` is cancelled.
pub(crate) fn serve_when_published(
    ctx: Arc<ServerContext>,
    keepalive: Keepalive,
    (listener, tls): Listener,
    mut published: watch::Receiver<bool>,
    stop: CancellationToken,
) -> ServerTask {
    let server = ClientServer::new(ctx).with_keepalive(keepalive);
    tokio::spawn(async move {
        tokio::select! {
            _ = published.wait_for(|p| *p) => {}
            _ = stop.cancelled() => return Ok(()),
        }
        server.serve(listener, tls, stop.cancelled_owned()).await
    })
}

/// Waits for `servers`, whose stop was just signalled, to finish. A
/// graceful drain lets in-flight requests finish, but an idle client that
/// never answers HTTP/2's GOAWAY would hold it open forever: it is bounded
/// by [`DRAIN_TIMEOUT`], as etcd bounds its GracefulStop, then the
/// connections are dropped.
pub(crate) async fn drain(mut servers: Vec<ServerTask>) {
    let all = futures::future::join_all(servers.iter_mut());
    match tokio::time::timeout(DRAIN_TIMEOUT, all).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("client server: {e}"),
                    Err(e) => tracing::warn!("client server task: {e}"),
                }
            }
        }
        Err(_) => {
            tracing::warn!("client connections did not close in {DRAIN_TIMEOUT:?}; dropping them");
            for s in &servers {
                s.abort();
            }
            for s in servers {
                let _ = s.await;
            }
        }
    }
}
