//! Certificate authorities and certificates for tests (feature `test-pki`): a CA, and
//! server, client and peer certificates signed by it, written as PEM files the way an
//! operator (or kubeadm) lays them out.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that can issue certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Serving only.
    Server,
    /// Client authentication only.
    Client,
    /// Both (kubeadm's etcd server and peer certificates).
    Both,
}

/// A certificate to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name.
    pub common_name: String,
    /// Subject alternative names: IP addresses or DNS names.
    pub sans: Vec<String>,
    /// Server or client authentication, or both.
    pub usage: Usage,
    /// Days it is valid from an hour ago; negative: it expired that many days ago.
    pub valid_days: i64,
}

impl CertSpec {
    /// A certificate for `common_name`, valid for `sans`, for a year.
    pub fn new(common_name: &str, sans: &[&str], usage: Usage) -> CertSpec {
        CertSpec {
            common_name: common_name.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            usage,
            valid_days: 365,
        }
    }
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> PathBuf {
        write(path, &self.cert_pem);
        path.to_path_buf()
    }

    /// Issues a certificate: (certificate PEM, key PEM).
    pub fn issue(&self, spec: &CertSpec) -> (String, String) {
        let mut params = CertificateParams::new(spec.sans.clone()).expect("SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.clone());
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        if spec.valid_days >= 0 {
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(spec.valid_days);
        } else {
            params.not_before = now - time::Duration::days(-spec.valid_days + 30);
            params.not_after = now - time::Duration::days(-spec.valid_days);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Issues a certificate and writes it to `<dir>/<name>.crt` and `<dir>/<name>.key`
    /// (kubeadm's names); returns both paths.
    pub fn issue_files(&self, spec: &CertSpec, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(spec);
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        write(&cert_path, &cert);
        write(&key_path, &key);
        (cert_path, key_path)
    }
}

/// Writes `text` to `path` (through a rename, so a reader never sees half of it),
/// creating the directory.
pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the directory");
    }
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
