//! The dialling side of the peer port: a member connecting to another presents its peer
//! certificate (or `--peer-client-cert-file`) and checks the other's against the peer
//! trusted CA, as etcd's peer transport does. [`Connector`] makes tonic channels over it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::protocol::Protocol;
use crate::reload::Reloading;
use crate::settings::TlsSettings;
use crate::verify::SelfSignedServers;
use crate::{pem_files, TlsError};

/// What a dialling side presents and trusts.
#[derive(Debug, Clone)]
pub struct DialSettings {
    /// The certificate and key to present (none: no client certificate).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The CA the server's certificate must chain to.
    pub trusted_ca_file: Option<PathBuf>,
    /// Trust any server certificate (a self-signed peer, `--peer-auto-tls`): the
    /// connection is encrypted, the server unauthenticated.
    pub skip_verify: bool,
    /// Versions and cipher suites.
    pub protocol: Protocol,
}

impl DialSettings {
    /// How a member dials its peers, from the peer port's settings: with its peer
    /// certificate (or `--peer-client-cert-file`), trusting the peer CA.
    pub fn for_peers(settings: &TlsSettings) -> DialSettings {
        let (cert, key) = settings.dial_cert();
        DialSettings {
            identity: Some((cert.clone(), key.clone())),
            trusted_ca_file: settings.trusted_ca_file.clone(),
            skip_verify: settings.self_signed,
            protocol: settings.protocol.clone(),
        }
    }
}

/// A dialling side's TLS, reloading its files when they change.
pub struct ClientTls {
    config: Reloading<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// How a member dials its peers ([`DialSettings::for_peers`]).
    pub fn new(settings: TlsSettings) -> Result<Arc<ClientTls>, TlsError> {
        if settings.trusted_ca_file.is_none() && !settings.self_signed {
            return Err(TlsError::Config(
                "peer TLS: a trusted CA file is needed to verify the other members' \
                 certificates (or use auto TLS)"
                    .into(),
            ));
        }
        ClientTls::dial(DialSettings::for_peers(&settings))
    }

    /// Loads the files at once: a certificate that cannot be used is an error now.
    pub fn dial(settings: DialSettings) -> Result<Arc<ClientTls>, TlsError> {
        if settings.trusted_ca_file.is_none() && !settings.skip_verify {
            return Err(TlsError::Config(
                "a trusted CA file is needed to verify the server's certificate".into(),
            ));
        }
        let mut paths = Vec::new();
        if let Some((cert, key)) = &settings.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        paths.extend(settings.trusted_ca_file.clone());
        let config = Reloading::new(paths, Box::new(move |files| build(&settings, files)))?;
        Ok(Arc::new(ClientTls { config }))
    }

    /// The config for the next connection (reads files: call it off the async runtime).
    pub fn current(&self) -> Arc<ClientConfig> {
        self.config.current()
    }
}

/// A client config from the bytes of the identity's certificate and key (if any) and
/// the trusted CA (if any), in that order.
fn build(settings: &DialSettings, files: &[Vec<u8>]) -> Result<ClientConfig, TlsError> {
    let provider = crate::provider(&settings.protocol);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&settings.protocol.versions())?;
    let ca_at = if settings.identity.is_some() { 2 } else { 0 };
    let builder = match (&settings.trusted_ca_file, files.get(ca_at)) {
        (Some(path), Some(ca)) if !settings.skip_verify => {
            builder.with_root_certificates(pem_files::roots(path, ca)?)
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SelfSignedServers(provider))),
    };
    let mut config = match &settings.identity {
        Some((cert_path, key_path)) => {
            let certs = pem_files::certs(cert_path, &files[0])?;
            let key = pem_files::key(key_path, &files[1])?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Dials `http://` and `https://` URIs for tonic (`Endpoint::connect_with_connector`):
/// plain TCP for http, TLS with [`ClientTls`] for https.
#[derive(Clone, Debug, Default)]
pub struct Connector {
    tls: Option<Arc<ClientTls>>,
}

impl Connector {
    /// A connector that dials https with `tls` (none: https URIs are refused).
    pub fn new(tls: Option<Arc<ClientTls>>) -> Connector {
        Connector { tls }
    }

    /// Connects to `uri`.
    pub async fn connect(&self, uri: Uri) -> io::Result<ClientStream> {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?;
        // A bracketed IPv6 literal is a host without its brackets here.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported URI scheme {other:?}"),
                ))
            }
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (&self.tls, https) {
            (_, false) => None,
            (Some(tls), true) => Some(tls.clone()),
            (None, true) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{uri} is https but this member has no peer TLS (--peer-cert-file and \
                         --peer-key-file, or --peer-auto-tls)"
                    ),
                ))
            }
        };
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Either::Left(tcp));
        };
        let name = ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let config = tokio::task::spawn_blocking(move || tls.current())
            .await
            .map_err(io::Error::other)?;
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Either::Right(Box::new(stream)))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}

/// A dialled connection, plain or TLS.
pub type ClientStream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;
