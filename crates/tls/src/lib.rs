//! TLS for Bramble's client and peer ports, with etcd's flags and their meaning.
//!
//! - [`settings`]: what the operator asked for (`--cert-file`, `--trusted-ca-file`,
//!   `--client-cert-auth`, `--peer-cert-allowed-cn`, ...), checked as etcd checks it.
//! - [`protocol`]: `--cipher-suites`, `--tls-min-version`, `--tls-max-version`.
//! - [`server`]: the accepting side; certificates and the trusted CA are read again when
//!   their files change (kubeadm rotates them), without a restart (`reload`).
//! - [`client`]: the dialling side of the peer port, with the peer certificate as the
//!   client certificate, and [`client::Connector`] for tonic channels.
//! - [`incoming`]: a listener's connections, TLS handshakes done concurrently and bounded,
//!   as [`stream::ServerStream`]s that tonic serves and that carry the client's certificate
//!   name ([`stream::ConnInfo`]).
//! - [`self_signed`]: `--auto-tls` and `--peer-auto-tls`.
//!
//! The crypto is rustls with ring: pure Rust and assembly that cross-compiles for armv7 and
//! aarch64 with the plain cross gcc.

#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod error;
pub mod incoming;
mod pem_files;
pub mod protocol;
mod reload;
pub mod self_signed;
pub mod server;
pub mod settings;
pub mod stream;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;
#[cfg(test)]
mod tests;
mod verify;

pub use client::{ClientTls, Connector, DialSettings};
pub use error::TlsError;
pub use server::ServerTls;
pub use settings::{Allowed, TlsSettings};
pub use stream::{ConnInfo, ServerStream};

/// The crypto provider every config is built with (ring), restricted to the configured
/// cipher suites.
fn provider(suites: &protocol::Protocol) -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites.cipher_suites();
    std::sync::Arc::new(provider)
}
