//! The TLS of the client and peer ports, from etcd's flags (`crate::config::TlsFlags`),
//! with etcd's rules:
//!
//! - a port gets TLS on its `https://` URLs; an `http://` URL beside them serves plain
//!   text, as etcd allows (with etcd's warning when certificates are given);
//! - certificates come from the files, or are generated (`--auto-tls`,
//!   `--peer-auto-tls`) when no files are given;
//! - a trusted CA file, or `--client-cert-auth`, requires client certificates.
//!
//! One stricter rule than etcd: `--peer-client-cert-auth` with an `http://` listen peer
//! URL refuses to start. etcd warns and serves that URL to anyone, who can then vote,
//! append entries and install snapshots; an operator who asked for peer authentication
//! cannot have meant that.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bramble_tls::protocol::Protocol;
use bramble_tls::{Allowed, ClientTls, ServerTls, TlsSettings};

use crate::config::{is_https, split_urls, Flags, TlsFlags};
use crate::node::PeerTls;

/// ALPN on the client port, most preferred first. gRPC clients offer only `h2`; an
/// HTTP client (curl, Prometheus) that offers both gets HTTP/1.1, which the client
/// port's HTTP endpoints speak.
const CLIENT_ALPN: &[&[u8]] = &[b"http/1.1", b"h2"];
/// ALPN on the peer port: gRPC only.
const PEER_ALPN: &[&[u8]] = &[b"h2"];

/// Versions and cipher suites, shared by both ports as in etcd.
fn protocol(t: &TlsFlags) -> anyhow::Result<Protocol> {
    Ok(Protocol::from_flags(
        &t.cipher_suites,
        &t.tls_min_version,
        &t.tls_max_version,
    )?)
}

/// The https URLs of a list, and whether it has http ones too.
fn https_urls(lists: &[&str]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut https, mut http) = (Vec::new(), Vec::new());
    for list in lists {
        for url in split_urls(list) {
            if is_https(&url).map_err(anyhow::Error::msg)? {
                https.push(url);
            } else {
                http.push(url);
            }
        }
    }
    Ok((https, http))
}

/// The `host:port` of a URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.trim_end_matches('/').to_string()
}

/// The certificate and key files: both given, neither (then auto TLS, if asked, in
/// `fixtures`), or an error.
fn cert_and_key(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    auto: bool,
    fixtures: &Path,
    urls: &[String],
    validity_years: u32,
) -> anyhow::Result<Option<(PathBuf, PathBuf, bool)>> {
    match (cert, key) {
        (Some(c), Some(k)) => {
            if auto {
                tracing::warn!("ignoring auto TLS since certs given");
            }
            Ok(Some((c.clone(), k.clone(), false)))
        }
        (None, None) if auto => {
            let hosts: Vec<String> = urls.iter().map(|u| host_port(u)).collect();
            let (c, k) = bramble_tls::self_signed::ensure(fixtures, &hosts, validity_years)?;
            Ok(Some((c, k, true)))
        }
        (None, None) => Ok(None),
        (c, k) => bail!(
            "KeyFile and CertFile must both be present[key: {}, cert: {}]",
            k.as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            c.as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        ),
    }
}

/// A second certificate to dial with (`--client-cert-file`/`--client-key-file`).
fn dial_cert(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        (None, None) => Ok(None),
        _ => bail!("ClientKeyFile and ClientCertFile must both be present or both absent"),
    }
}

fn list(text: &str) -> Vec<String> {
    split_urls(text)
}

/// The client port's TLS (also the metrics port's `https://` URLs), if any client URL is
/// `https://`.
pub(crate) fn client_tls(flags: &Flags, data_dir: &Path) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let t = &flags.tls;
    let metrics = flags.listen_metrics_urls.clone().unwrap_or_default();
    let (https, http) = https_urls(&[&flags.listen_client_urls, &metrics])?;
    let protocol = protocol(t)?;
    let files = cert_and_key(
        &t.cert_file,
        &t.key_file,
        t.auto_tls && !https.is_empty(),
        &data_dir.join("fixtures").join("client"),
        &https,
        t.self_signed_cert_validity,
    )?;
    if https.is_empty() {
        if files.is_some() {
            tracing::warn!(
                "scheme is http or unix while key and cert files are present; ignoring key \
                 and cert files"
            );
        }
        if t.client_cert_auth {
            tracing::warn!(
                "--client-cert-auth has no effect: no client URL is https, so clients are \
                 not authenticated by certificate"
            );
        }
        return Ok(None);
    }
    let Some((cert_file, key_file, self_signed)) = files else {
        bail!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with \
             HTTPS scheme",
            https[0]
        );
    };
    for url in &http {
        tracing::warn!(
            url,
            "this client URL is http: it serves plain text, and its clients are not \
             authenticated by certificate"
        );
    }
    let settings = TlsSettings {
        cert_file,
        key_file,
        trusted_ca_file: t.trusted_ca_file.clone(),
        client_cert_auth: t.client_cert_auth,
        client_cert: dial_cert(&t.client_cert_file, &t.client_key_file)?,
        allowed: Allowed::from_lists(Vec::new(), list(&t.client_cert_allowed_hostname))?,
        self_signed,
        protocol,
    };
    let tls = ServerTls::new(settings, CLIENT_ALPN).context("client TLS")?;
    Ok(Some(tls))
}

/// The peer port's TLS, both sides, if peer certificates are given or generated.
pub(crate) fn peer_tls(flags: &Flags, data_dir: &Path) -> anyhow::Result<Option<PeerTls>> {
    let t = &flags.tls;
    let (https, http) = https_urls(&[&flags.listen_peer_urls])?;
    let protocol = protocol(t)?;
    let files = cert_and_key(
        &t.peer_cert_file,
        &t.peer_key_file,
        t.peer_auto_tls,
        &data_dir.join("fixtures").join("peer"),
        &https,
        t.self_signed_cert_validity,
    )?;
    let Some((cert_file, key_file, self_signed)) = files else {
        if let Some(url) = https.first() {
            bail!(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer \
                 url {url} with HTTPS scheme (or --peer-auto-tls)"
            );
        }
        if t.peer_client_cert_auth {
            bail!(
                "--peer-client-cert-auth needs peer TLS (--peer-cert-file and --peer-key-file \
                 and https:// peer URLs): refusing to start rather than let any peer in"
            );
        }
        return Ok(None);
    };
    if let Some(url) = http.first() {
        if t.peer_client_cert_auth {
            bail!(
                "--peer-client-cert-auth is set but listen peer URL {url} is http: anyone \
                 could reach the peer protocol there without a certificate. Use https:// \
                 for every listen peer URL"
            );
        }
        tracing::warn!(
            url,
            "scheme is HTTP while key and cert files are present; ignoring key and cert files"
        );
    }
    let settings = TlsSettings {
        cert_file,
        key_file,
        trusted_ca_file: t.peer_trusted_ca_file.clone(),
        client_cert_auth: t.peer_client_cert_auth,
        client_cert: dial_cert(&t.peer_client_cert_file, &t.peer_client_key_file)?,
        allowed: Allowed::from_lists(
            list(&t.peer_cert_allowed_cn),
            list(&t.peer_cert_allowed_hostname),
        )?,
        self_signed,
        protocol,
    };
    let server = ServerTls::new(settings.clone(), PEER_ALPN).context("peer TLS")?;
    let client = ClientTls::new(settings).context("peer TLS")?;
    Ok(Some(PeerTls { server, client }))
}
