//! Why a TLS setting or file was refused.

use std::path::PathBuf;

/// A TLS configuration that cannot be used; the text says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{path}: {why}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The flags contradict each other or name something unsupported.
    #[error("{0}")]
    Config(String),
    /// rustls refused the configuration (a key that does not match the certificate, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// A self-signed certificate could not be generated or written.
    #[error("generating a self-signed certificate: {0}")]
    SelfSigned(String),
}
