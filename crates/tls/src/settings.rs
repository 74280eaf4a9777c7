//! The TLS settings of one port (client or peer), as etcd's `transport.TLSInfo`.

use std::path::PathBuf;

use crate::protocol::Protocol;
use crate::TlsError;

/// Which verified client certificates a port lets in, beyond being signed by the trusted
/// CA (etcd's `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`,
/// `--client-cert-allowed-hostname`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Allowed {
    /// Any certificate the trusted CA signed.
    #[default]
    Any,
    /// Only a certificate whose subject common name is one of these.
    CommonNames(Vec<String>),
    /// Only a certificate valid for one of these host names or addresses (its SANs).
    Hostnames(Vec<String>),
}

impl Allowed {
    /// etcd's rule: names and host names are mutually exclusive.
    pub fn from_lists(cns: Vec<String>, hostnames: Vec<String>) -> Result<Allowed, TlsError> {
        match (cns.is_empty(), hostnames.is_empty()) {
            (true, true) => Ok(Allowed::Any),
            (false, true) => Ok(Allowed::CommonNames(cns)),
            (true, false) => Ok(Allowed::Hostnames(hostnames)),
            (false, false) => Err(TlsError::Config(format!(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns={cns:?}, \
                 hostnames={hostnames:?})"
            ))),
        }
    }
}

/// The TLS settings of one port.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificate this member serves (and, without [`Self::client_cert`], presents
    /// when it dials).
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The CA that signs acceptable client certificates, and that a dialling member
    /// checks the server's certificate against.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--client-cert-file`/`--client-key-file` (peer: `--peer-client-*`): another
    /// certificate to present when dialling.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Which client certificates are let in.
    pub allowed: Allowed,
    /// The certificate is self-signed (`--auto-tls`): a dialling member cannot verify the
    /// server's, and does not try (as etcd).
    pub self_signed: bool,
    /// Versions and cipher suites.
    pub protocol: Protocol,
}

impl TlsSettings {
    /// Whether connections must present a client certificate signed by the trusted CA.
    /// As etcd: a trusted CA file alone turns it on too.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    /// Refuses settings that cannot be served as asked.
    pub fn check(&self, port: &str) -> Result<(), TlsError> {
        // Self-signed certificates (auto TLS) have no CA either: client certificate
        // authentication needs one, whatever else is set.
        if self.requires_client_cert() && self.trusted_ca_file.is_none() {
            return Err(TlsError::Config(format!(
                "{port}: client certificate authentication needs a trusted CA file to verify \
                 client certificates against"
            )));
        }
        if self.allowed != Allowed::Any && !self.requires_client_cert() {
            return Err(TlsError::Config(format!(
                "{port}: allowed certificate names or host names need client certificate \
                 authentication (a trusted CA file)"
            )));
        }
        Ok(())
    }

    /// The certificate and key this member presents when it dials.
    pub(crate) fn dial_cert(&self) -> (&PathBuf, &PathBuf) {
        match &self.client_cert {
            Some((cert, key)) => (cert, key),
            None => (&self.cert_file, &self.key_file),
        }
    }
}
