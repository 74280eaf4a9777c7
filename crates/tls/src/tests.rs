//! Handshakes over real sockets: who each setting lets in, and rotation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;

use crate::protocol::Protocol;
use crate::test_pki::{CertSpec, TestCa, Usage};
use crate::{Allowed, ConnInfo, ServerTls, TlsSettings};

/// A server certificate for 127.0.0.1 from `ca`, written in `dir`.
fn server_files(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let spec = CertSpec::new("server", &["127.0.0.1", "localhost"], Usage::Both);
    let (cert, key) = ca.issue_files(&spec, dir, "server");
    (cert, key, ca.write_cert(&dir.join("ca.crt")))
}

fn settings(cert: PathBuf, key: PathBuf, ca: Option<PathBuf>) -> TlsSettings {
    TlsSettings {
        cert_file: cert,
        key_file: key,
        client_cert_auth: ca.is_some(),
        trusted_ca_file: ca,
        client_cert: None,
        allowed: Allowed::Any,
        self_signed: false,
        protocol: Protocol::default(),
    }
}

/// A client that trusts `ca_pem` and presents `identity` (certificate and key PEM).
fn client_config(ca_pem: &str, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("cert PEM");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client cert")
        }
    };
    Arc::new(config)
}

/// Accepts one connection with `tls` while `client` connects: the server's outcome
/// (what the connection knows of its client, or why the handshake failed).
async fn handshake(
    tls: &Arc<ServerTls>,
    client: Arc<rustls::ClientConfig>,
) -> Result<ConnInfo, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dial = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        // The client may finish before the server refuses it (TLS 1.3): a write and a
        // read make sure both sides are done.
        if let Ok(mut s) = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
        {
            let _ = s.write_all(b"ping").await;
            let mut buf = [0u8; 4];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        }
    });
    let (tcp, _) = listener.accept().await.expect("accept");
    let result = crate::incoming::handshake(tls, tcp).await;
    let outcome = match result {
        Ok(mut stream) => {
            let info = stream.connect_info();
            let mut buf = [0u8; 4];
            match stream.read_exact(&mut buf).await {
                Ok(_) => {
                    let _ = stream.write_all(b"pong").await;
                    Ok(info)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    dial.await.expect("client task");
    outcome
}

#[tokio::test]
async fn without_client_auth_anyone_with_the_ca_connects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let (cert, key, _) = server_files(&ca, dir.path());
    let tls = ServerTls::new(settings(cert, key, None), &[b"h2"]).expect("tls");
    let info = handshake(&tls, client_config(ca.cert_pem(), None))
        .await
        .expect("no client certificate needed");
    assert_eq!(info.common_name, None);
}

#[tokio::test]
async fn client_cert_auth_lets_in_only_certificates_of_the_trusted_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let other = TestCa::new("other");
    let (cert, key, ca_file) = server_files(&ca, dir.path());
    let tls = ServerTls::new(settings(cert, key, Some(ca_file)), &[b"h2"]).expect("tls");
    let alice = ca.issue(&CertSpec::new("alice", &[], Usage::Client));
    let info = handshake(&tls, client_config(ca.cert_pem(), Some(&alice)))
        .await
        .expect("alice is let in");
    assert_eq!(info.common_name.as_deref(), Some("alice"));

    handshake(&tls, client_config(ca.cert_pem(), None))
        .await
        .expect_err("no certificate: refused");
    let foreign = other.issue(&CertSpec::new("alice", &[], Usage::Client));
    handshake(&tls, client_config(ca.cert_pem(), Some(&foreign)))
        .await
        .expect_err("another CA's certificate: refused");
    let mut expired = CertSpec::new("alice", &[], Usage::Client);
    expired.valid_days = -1;
    let expired = ca.issue(&expired);
    handshake(&tls, client_config(ca.cert_pem(), Some(&expired)))
        .await
        .expect_err("an expired certificate: refused");
}

#[tokio::test]
async fn allowed_names_and_hostnames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let (cert, key, ca_file) = server_files(&ca, dir.path());
    let mut by_cn = settings(cert.clone(), key.clone(), Some(ca_file.clone()));
    by_cn.allowed = Allowed::CommonNames(vec!["member-1".into(), "member-2".into()]);
    let tls = ServerTls::new(by_cn, &[b"h2"]).expect("tls");
    let member = ca.issue(&CertSpec::new("member-2", &[], Usage::Both));
    handshake(&tls, client_config(ca.cert_pem(), Some(&member)))
        .await
        .expect("an allowed name");
    let intruder = ca.issue(&CertSpec::new("intruder", &[], Usage::Both));
    handshake(&tls, client_config(ca.cert_pem(), Some(&intruder)))
        .await
        .expect_err("same CA, a name not allowed");

    let mut by_host = settings(cert, key, Some(ca_file));
    by_host.allowed = Allowed::Hostnames(vec!["pi1.local".into()]);
    let tls = ServerTls::new(by_host, &[b"h2"]).expect("tls");
    let pi1 = ca.issue(&CertSpec::new("x", &["pi1.local"], Usage::Both));
    handshake(&tls, client_config(ca.cert_pem(), Some(&pi1)))
        .await
        .expect("valid for the allowed host");
    let pi2 = ca.issue(&CertSpec::new("pi1.local", &["pi2.local"], Usage::Both));
    handshake(&tls, client_config(ca.cert_pem(), Some(&pi2)))
        .await
        .expect_err("valid for another host (a CN is not a SAN)");
}

#[tokio::test]
async fn rotated_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = TestCa::new("old");
    let (cert, key, _) = server_files(&old_ca, dir.path());
    let tls = ServerTls::new(settings(cert.clone(), key.clone(), None), &[b"h2"]).expect("tls");
    handshake(&tls, client_config(old_ca.cert_pem(), None))
        .await
        .expect("the old certificate");

    // A half-written rotation keeps the old certificate in service.
    crate::test_pki::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    handshake(&tls, client_config(old_ca.cert_pem(), None))
        .await
        .expect("still the old certificate");

    let new_ca = TestCa::new("new");
    server_files(&new_ca, dir.path());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    handshake(&tls, client_config(new_ca.cert_pem(), None))
        .await
        .expect("the new certificate");
    handshake(&tls, client_config(old_ca.cert_pem(), None))
        .await
        .expect_err("the old CA no longer matches");
}

#[tokio::test]
async fn the_connector_dials_https_with_the_peer_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let (cert, key, ca_file) = server_files(&ca, dir.path());
    let peer = settings(cert, key, Some(ca_file));
    let server = ServerTls::new(peer.clone(), &[b"h2"]).expect("server");
    let client = crate::ClientTls::new(peer).expect("client");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let stream = crate::incoming::handshake(&server, tcp)
            .await
            .expect("handshake");
        (
            stream.connect_info(),
            stream.alpn_protocol().map(|p| p.to_vec()),
        )
    });
    let connector = crate::Connector::new(Some(client));
    let uri: http::Uri = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .expect("uri");
    let stream = connector.connect(uri).await.expect("dialled");
    let (info, alpn) = accept.await.expect("accepted");
    assert_eq!(
        info.common_name.as_deref(),
        Some("server"),
        "the peer certificate"
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    drop(stream);

    let plain = crate::Connector::default();
    let uri: http::Uri = "https://127.0.0.1:1".parse().expect("uri");
    let err = plain
        .connect(uri)
        .await
        .expect_err("no TLS to dial https with");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no peer TLS"), "{err}");
}
