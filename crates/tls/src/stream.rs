//! An accepted connection, plain or TLS, as tonic serves it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use tonic::transport::server::Connected;

/// What a request knows of its connection (in its extensions, from tonic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The subject common name of the client's verified certificate: with client
    /// certificate authentication, etcd's auth takes it as the user name.
    pub common_name: Option<String>,
}

/// An accepted connection, plain or TLS.
pub struct ServerStream(Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>);

impl ServerStream {
    /// A plain-text connection.
    pub fn plain(tcp: TcpStream) -> ServerStream {
        ServerStream(Either::Left(tcp))
    }

    /// A connection after its TLS handshake.
    pub fn tls(stream: tokio_rustls::server::TlsStream<TcpStream>) -> ServerStream {
        ServerStream(Either::Right(Box::new(stream)))
    }

    /// The protocol agreed by ALPN on a TLS connection (none on a plain one).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.0 {
            Either::Left(_) => None,
            Either::Right(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match &self.0 {
            Either::Left(s) => s,
            Either::Right(s) => s.get_ref().0,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Either::Right(_))
    }
}

impl Connected for ServerStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        let common_name = match &self.0 {
            Either::Left(_) => None,
            Either::Right(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| crate::verify::common_name(leaf)),
        };
        ConnInfo {
            remote_addr: self.tcp().peer_addr().ok(),
            common_name,
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
