//! Certificate checks beyond rustls' own: etcd's allowed names and host names for client
//! certificates, and a dialler that trusts a self-signed (`--peer-auto-tls`) server.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::settings::Allowed;

/// The subject common name of a DER certificate, if it has one.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Whether the certificate is valid for `host` (Go's `x509.Certificate.VerifyHostname`):
/// an address must be one of its IP SANs, a name one of its DNS SANs, where `*.` matches
/// exactly one leftmost label; names compare without case.
pub(crate) fn valid_for_host(der: &[u8], host: &str) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<IpAddr> = host.parse().ok();
    sans.value
        .general_names
        .iter()
        .any(|name| match (name, ip) {
            (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
                IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
                IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
            },
            (GeneralName::DNSName(pattern), None) => dns_matches(pattern, host),
            _ => false,
        })
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// A client verifier that lets in only what [`Allowed`] allows, after the CA's check.
#[derive(Debug)]
pub(crate) struct AllowedClients {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) allowed: Allowed,
}

impl ClientCertVerifier for AllowedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let ok = match &self.allowed {
            Allowed::Any => true,
            Allowed::CommonNames(cns) => {
                common_name(end_entity).is_some_and(|cn| cns.contains(&cn))
            }
            Allowed::Hostnames(hosts) => hosts.iter().any(|h| valid_for_host(end_entity, h)),
        };
        if ok {
            Ok(verified)
        } else {
            tracing::warn!(
                common_name = common_name(end_entity).unwrap_or_default(),
                "rejected a client certificate: not among the allowed names"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server verifier for self-signed peers (`--peer-auto-tls`): etcd dials them with
/// `InsecureSkipVerify`. The handshake signature is still checked, so the connection is
/// encrypted to whoever holds the key; who that is, nobody vouches.
#[derive(Debug)]
pub(crate) struct SelfSignedServers(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for SelfSignedServers {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_match_as_go_matches_them() {
        assert!(dns_matches("etcd.example.com", "ETCD.example.com"));
        assert!(dns_matches("*.example.com", "etcd.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("etcd.example.com", "etcd2.example.com"));
    }

    #[test]
    fn names_and_addresses_of_a_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["pi1.local".into(), "127.0.0.1".into()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "member-1");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der();
        assert_eq!(common_name(der).as_deref(), Some("member-1"));
        assert!(valid_for_host(der, "pi1.local"));
        assert!(valid_for_host(der, "127.0.0.1"));
        assert!(!valid_for_host(der, "127.0.0.2"));
        assert!(!valid_for_host(der, "pi2.local"));
        assert!(!valid_for_host(der, "member-1"), "a CN is not a host name");
    }
}
