//! `--cipher-suites`, `--tls-min-version` and `--tls-max-version`, read as etcd reads them
//! (Go's names), for rustls.
//!
//! rustls implements only AEAD suites with forward secrecy. A suite Go knows and rustls
//! does not (CBC, RC4, 3DES, RSA key exchange: all of them on Go's insecure list or
//! close to it) is refused rather than dropped: the operator asked for a list, and serving
//! something else would surprise them. TLS 1.0 and 1.1 are refused the same way; etcd
//! accepts only 1.2 and 1.3 too.

use rustls::crypto::ring::cipher_suite as suite;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use crate::TlsError;

/// A TLS protocol version etcd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// TLS 1.2 (`TLS1.2`).
    Tls12,
    /// TLS 1.3 (`TLS1.3`).
    Tls13,
}

impl Version {
    /// etcd's `tlsutil.GetTLSVersion`: `TLS1.2`, `TLS1.3`, or empty for "the default".
    pub fn parse(text: &str) -> Result<Option<Version>, TlsError> {
        match text {
            "" => Ok(None),
            "TLS1.2" => Ok(Some(Version::Tls12)),
            "TLS1.3" => Ok(Some(Version::Tls13)),
            other => Err(TlsError::Config(format!(
                "unexpected TLS version {other:?} (must be one of: TLS1.2, TLS1.3)"
            ))),
        }
    }
}

/// Go's TLS 1.2 cipher suites that rustls implements, by Go's names (with the two aliases
/// etcd adds).
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Go's TLS 1.3 suite names: Go accepts them in the list and ignores them (TLS 1.3 suites
/// are not configurable there); so does Bramble.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go's other cipher suite names (`tls.CipherSuites()` and `tls.InsecureCipherSuites()`):
/// known to etcd, not implemented by rustls.
const UNSUPPORTED_NAMES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The protocol versions and cipher suites of every TLS config, client and peer.
#[derive(Debug, Clone)]
pub struct Protocol {
    min: Version,
    max: Version,
    /// The TLS 1.2 suites allowed, in the operator's order; `None`: rustls' defaults.
    tls12_suites: Option<Vec<SupportedCipherSuite>>,
}

impl Default for Protocol {
    /// etcd's defaults: TLS 1.2 and 1.3, every suite.
    fn default() -> Self {
        Protocol {
            min: Version::Tls12,
            max: Version::Tls13,
            tls12_suites: None,
        }
    }
}

impl Protocol {
    /// Reads the three flags (`cipher_suites` as the comma-separated list etcd takes) and
    /// checks them as etcd's `Config.Validate` does.
    pub fn from_flags(cipher_suites: &str, min: &str, max: &str) -> Result<Protocol, TlsError> {
        let min = Version::parse(min)?.unwrap_or(Version::Tls12);
        let max = Version::parse(max)?.unwrap_or(Version::Tls13);
        if min > max {
            return Err(TlsError::Config(format!(
                "min version ({}) is greater than max version ({})",
                name(min),
                name(max)
            )));
        }
        let names: Vec<&str> = cipher_suites
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Protocol {
                min,
                max,
                tls12_suites: None,
            });
        }
        if min == Version::Tls13 {
            return Err(TlsError::Config(
                "cipher suites cannot be configured when only TLS1.3 is enabled".into(),
            ));
        }
        let mut suites = Vec::new();
        for n in names {
            if let Some((_, s)) = TLS12_SUITES.iter().find(|(go, _)| *go == n) {
                if !suites.contains(s) {
                    suites.push(*s);
                }
            } else if TLS13_NAMES.contains(&n) {
                continue;
            } else if UNSUPPORTED_NAMES.contains(&n) {
                return Err(TlsError::Config(format!(
                    "TLS cipher suite {n:?} is not supported by bramble (rustls implements only \
                     the ECDHE suites with AES-GCM or ChaCha20-Poly1305)"
                )));
            } else {
                return Err(TlsError::Config(format!(
                    "unexpected TLS cipher suite {n:?}"
                )));
            }
        }
        if suites.is_empty() && min == Version::Tls12 && max == Version::Tls12 {
            return Err(TlsError::Config(
                "--cipher-suites names no TLS 1.2 suite, and TLS 1.3 is disabled".into(),
            ));
        }
        Ok(Protocol {
            min,
            max,
            tls12_suites: Some(suites),
        })
    }

    /// The protocol versions to offer.
    pub(crate) fn versions(&self) -> Vec<&'static SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.min <= Version::Tls13 && self.max >= Version::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        if self.min <= Version::Tls12 && self.max >= Version::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        v
    }

    /// The cipher suites of the crypto provider: every TLS 1.3 suite, and the TLS 1.2
    /// suites named (all of them if none was).
    pub(crate) fn cipher_suites(&self) -> Vec<SupportedCipherSuite> {
        let all = rustls::crypto::ring::DEFAULT_CIPHER_SUITES;
        match &self.tls12_suites {
            None => all.to_vec(),
            Some(tls12) => all
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .chain(tls12.iter().copied())
                .collect(),
        }
    }
}

fn name(v: Version) -> &'static str {
    match v {
        Version::Tls12 => "TLS1.2",
        Version::Tls13 => "TLS1.3",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_etcd_reads_them() {
        let p = Protocol::from_flags("", "", "").expect("defaults");
        assert_eq!(p.versions().len(), 2);
        let only13 = Protocol::from_flags("", "TLS1.3", "").expect("1.3 only");
        assert_eq!(only13.versions(), vec![&rustls::version::TLS13]);
        let only12 = Protocol::from_flags("", "", "TLS1.2").expect("1.2 only");
        assert_eq!(only12.versions(), vec![&rustls::version::TLS12]);
        let err = Protocol::from_flags("", "TLS1.3", "TLS1.2").expect_err("min > max");
        assert_eq!(
            err.to_string(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        let err = Protocol::from_flags("", "TLS1.1", "").expect_err("1.1");
        assert_eq!(
            err.to_string(),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
    }

    #[test]
    fn cipher_suites_by_go_names() {
        let p = Protocol::from_flags(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "",
            "",
        )
        .expect("two suites");
        let tls12: Vec<_> = p
            .cipher_suites()
            .into_iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(
            tls12,
            vec![
                suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(
            Protocol::from_flags("TLS_FOO", "", "")
                .expect_err("unknown")
                .to_string(),
            "unexpected TLS cipher suite \"TLS_FOO\""
        );
        let cbc = Protocol::from_flags("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "", "")
            .expect_err("CBC")
            .to_string();
        assert!(cbc.contains("not supported by bramble"), "{cbc}");
        assert_eq!(
            Protocol::from_flags("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS1.3", "")
                .expect_err("1.3 only")
                .to_string(),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
    }
}
