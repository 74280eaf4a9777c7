//! etcd's cmux on the client port: gRPC and the plain-HTTP endpoints
//! (`/health`, `/version`, `/metrics`, ...) share one listener, as they do
//! in etcd, where kubeadm's preflight GETs `<client URL>/version`.
//!
//! Each accepted plain connection is classified by its first bytes: HTTP/2's
//! connection preface means gRPC (tonic gets the very same `TcpStream`, so
//! gRPC pays one `peek` per connection and nothing per request); anything
//! else is HTTP/1.1 for [`crate::http`]. A TLS connection is classified by the
//! protocol its handshake agreed (ALPN): `h2` is gRPC, anything else HTTP/1.1
//! (as Go's HTTP server, which serves etcd's TLS port, treats a client that
//! names no protocol). Waiting for those bytes is bounded:
//! a connection that stays silent or trickles is closed after
//! [`CLASSIFY_TIMEOUT`], and at most [`MAX_UNCLASSIFIED`] connections wait
//! at once (further ones wait in the kernel's listen backlog).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bramble_tls::{ServerStream, ServerTls};
use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::ServerContext;

/// HTTP/2's client connection preface (RFC 9113, section 3.4): the first
/// bytes of every gRPC connection.
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a new connection may take to send enough bytes to classify it.
const CLASSIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections waiting to be classified at once.
const MAX_UNCLASSIFIED: usize = 256;
/// `peek` returns at once while any byte is buffered, so after a partial
/// preface the classifier pauses this long before it looks again rather
/// than spin. Clients send the whole preface in one write: this is rare.
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(5);
/// Classified gRPC connections waiting for tonic to take them.
const GRPC_QUEUE: usize = 64;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// HTTP/2 with prior knowledge: gRPC.
    Grpc,
    /// Anything else: served as HTTP/1.1.
    Http1,
}

/// Whether the bytes seen so far decide the protocol (`None`: they are a
/// proper prefix of the HTTP/2 preface, more are needed).
fn decide(seen: &[u8]) -> Option<Protocol> {
    if !HTTP2_PREFACE.starts_with(seen) {
        Some(Protocol::Http1)
    } else if seen.len() == HTTP2_PREFACE.len() {
        Some(Protocol::Grpc)
    } else {
        None
    }
}

/// Peeks at `stream` (consuming nothing) until its first bytes decide the
/// protocol; `None` if the client closed before sending any.
async fn classify(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut buf = [0u8; HTTP2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(protocol) = decide(&buf[..n]) {
            return Ok(Some(protocol));
        }
        tokio::time::sleep(PARTIAL_PREFACE_PAUSE).await;
    }
}

/// The protocol a TLS connection's handshake agreed.
fn decide_tls(alpn: Option<&[u8]>) -> Protocol {
    match alpn {
        Some(b"h2") => Protocol::Grpc,
        _ => Protocol::Http1,
    }
}

/// Accepts from `incoming` (through a TLS handshake with `tls` if given)
/// until `stop` is cancelled or the returned stream is dropped, serves the
/// HTTP/1.1 connections itself and yields the gRPC ones, for tonic's
/// `serve_with_incoming_shutdown`.
pub(crate) fn split(
    ctx: Arc<ServerContext>,
    incoming: TcpIncoming,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
) -> impl Stream<Item = io::Result<ServerStream>> {
    // Accept errors are paused on and logged there; handshakes are bounded
    // there too.
    let mut incoming = Box::pin(bramble_tls::incoming::incoming(incoming, tls));
    let (grpc, grpc_rx) = mpsc::channel(GRPC_QUEUE);
    let unclassified = Arc::new(Semaphore::new(MAX_UNCLASSIFIED));
    let http_slots = Arc::new(Semaphore::new(crate::http::MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => return,
                _ = grpc.closed() => return,
                permit = unclassified.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // Never closed: this task owns the semaphore.
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                _ = grpc.closed() => return,
                accepted = incoming.next() => accepted,
            };
            match accepted {
                None => return,
                Some(Ok(stream)) => {
                    let route = route(
                        ctx.clone(),
                        stream,
                        permit,
                        grpc.clone(),
                        http_slots.clone(),
                    );
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = route => {}
                        }
                    });
                }
                Some(Err(e)) => tracing::warn!("client accept: {e}"),
            }
        }
    });
    ReceiverStream::new(grpc_rx)
}

/// Classifies one connection (holding `permit`, its classification slot)
/// and hands it to gRPC or serves its HTTP request.
async fn route(
    ctx: Arc<ServerContext>,
    stream: ServerStream,
    permit: OwnedSemaphorePermit,
    grpc: mpsc::Sender<io::Result<ServerStream>>,
    http_slots: Arc<Semaphore>,
) {
    let protocol = if stream.is_tls() {
        Ok(Ok(Some(decide_tls(stream.alpn_protocol()))))
    } else {
        tokio::time::timeout(CLASSIFY_TIMEOUT, classify(stream.tcp())).await
    };
    match protocol {
        Ok(Ok(Some(Protocol::Grpc))) => {
            // The slot is held until tonic has the connection, so that
            // connections waiting for it are bounded too. Fails only when
            // the server stopped: the connection just closes.
            let _ = grpc.send(Ok(stream)).await;
            drop(permit);
        }
        Ok(Ok(Some(Protocol::Http1))) => {
            // HTTP connections have their own bound, and must not keep new
            // gRPC connections from being classified.
            drop(permit);
            match http_slots.try_acquire_owned() {
                Ok(_slot) => crate::http::serve_one(ctx, stream).await,
                Err(_) => tracing::debug!("client port: too many HTTP connections, closing one"),
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::debug!("client port: {e}"),
        Err(_) => tracing::debug!("client port: no request within {CLASSIFY_TIMEOUT:?}, closing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_decides() {
        assert_eq!(decide(HTTP2_PREFACE), Some(Protocol::Grpc));
        assert_eq!(decide(b"PRI * HTTP/2"), None);
        assert_eq!(decide(b"P"), None);
        assert_eq!(decide(b"POST /v3/kv/range"), Some(Protocol::Http1));
        assert_eq!(decide(b"GET /version HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(
            decide(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(decide(b"\x16\x03\x01"), Some(Protocol::Http1));
        assert_eq!(decide_tls(Some(b"h2")), Protocol::Grpc);
        assert_eq!(decide_tls(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(decide_tls(None), Protocol::Http1);
    }

    /// A preface split over two writes is waited for, and classifying
    /// consumes nothing: the server still reads every byte the client sent.
    #[tokio::test]
    async fn classifying_waits_for_the_preface_and_consumes_nothing() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(&HTTP2_PREFACE[..10]).await.expect("write");
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.write_all(&HTTP2_PREFACE[10..]).await.expect("write");
            c
        });
        let (mut server, _) = listener.accept().await.expect("accept");
        let protocol = classify(&server).await.expect("classified");
        assert_eq!(protocol, Some(Protocol::Grpc));
        let mut read = [0u8; HTTP2_PREFACE.len()];
        server.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, HTTP2_PREFACE);
        drop(client.await);

        let http = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"GET /version HTTP/1.1\r\n")
                .await
                .expect("write");
            c
        });
        let (server, _) = listener.accept().await.expect("accept");
        assert_eq!(
            classify(&server).await.expect("classified"),
            Some(Protocol::Http1)
        );
        drop(http.await);
    }
}
