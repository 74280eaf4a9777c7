//! A listener's connections as [`ServerStream`]s: TLS handshakes run concurrently, each
//! bounded in time, and only so many at once, so that a client that opens connections
//! and never finishes a handshake cannot keep others out or grow memory.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use crate::{ServerStream, ServerTls};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the listen backlog.
const MAX_HANDSHAKES: usize = 256;
/// Completed connections waiting for the server to take them.
const QUEUE: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors), so that the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connections of `incoming`, through a TLS handshake with `tls` if given. Accepting
/// stops when the returned stream is dropped. A failed handshake is logged (at debug: a
/// port scanner should not fill the log) and the connection dropped.
pub fn incoming(
    mut incoming: TcpIncoming,
    tls: Option<Arc<ServerTls>>,
) -> impl Stream<Item = io::Result<ServerStream>> + Send + 'static {
    let (out, out_rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                _ = out.closed() => return,
                accepted = incoming.next() => accepted,
            };
            let tcp = match accepted {
                None => return,
                Some(Ok(tcp)) => tcp,
                Some(Err(e)) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Some(tls) = tls.clone() else {
                if out.send(Ok(ServerStream::plain(tcp))).await.is_err() {
                    return;
                }
                continue;
            };
            let out = out.clone();
            tokio::spawn(async move {
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&tls, tcp)).await {
                    Ok(Ok(stream)) => {
                        drop(permit);
                        let _ = out.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(?peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(out_rx)
}

/// Runs the server side of a TLS handshake on `tcp`.
pub async fn handshake(
    tls: &Arc<ServerTls>,
    tcp: tokio::net::TcpStream,
) -> io::Result<ServerStream> {
    let for_config = tls.clone();
    let config = tokio::task::spawn_blocking(move || for_config.current())
        .await
        .map_err(io::Error::other)?;
    let stream = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
    Ok(ServerStream::tls(stream))
}
