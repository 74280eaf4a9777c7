//! Reading PEM certificates, keys and CA bundles from files.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The largest certificate, key or CA file read: far above any real one, so a wrong path
/// (a device, a huge file) cannot fill memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads a whole file of at most [`MAX_FILE_BYTES`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(content(path, "larger than 4 MiB: not a PEM file"));
    }
    Ok(bytes)
}

fn content(path: &Path, why: impl Into<String>) -> TlsError {
    TlsError::Content {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// The certificate chain in `pem` (read from `path`), leaf first.
pub(crate) fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("reading certificates: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no certificate found (expected PEM)"));
    }
    Ok(certs)
}

/// The private key in `pem` (read from `path`).
pub(crate) fn key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| content(path, format!("reading the key: {e}")))
}

/// The CA certificates in `pem` (read from `path`) as a trust store.
pub(crate) fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path, pem)? {
        store
            .add(cert)
            .map_err(|e| content(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}
