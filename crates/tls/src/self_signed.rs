//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate for the member's listen
//! hosts, kept under `<data-dir>/fixtures/{client,peer}` as etcd keeps it, and reused
//! when it is already there.
//!
//! It encrypts, and authenticates nobody: a client cannot verify it (etcd's dialling
//! members skip verification for it, and so do Bramble's).

use std::path::{Path, PathBuf};

use crate::TlsError;

/// The certificate and key files of a self-signed certificate in `dir`.
pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The self-signed certificate in `dir`, generated for `hosts` (listen URLs' `host:port`,
/// ports dropped) and valid for `validity_years` if it does not exist yet. Blocking.
pub fn ensure(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = files(dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    if validity_years == 0 {
        return Err(TlsError::Config(
            "--self-signed-cert-validity must be at least 1 (year)".into(),
        ));
    }
    let mut names: Vec<String> = hosts.iter().map(|h| host_of(h)).collect();
    names.sort();
    names.dedup();
    let err = |e: rcgen::Error| TlsError::SelfSigned(e.to_string());
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years));
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write(&cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

/// The host of `host:port` (or `[v6]:port`), or the text itself if it has no port.
fn host_of(hostport: &str) -> String {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((host, _)) = rest.split_once(']') {
            return host.to_string();
        }
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => {
            host.to_string()
        }
        _ => hostport.to_string(),
    }
}

/// Writes `bytes` to `path` with `mode`, durably (a half-written key would not load).
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_ports() {
        assert_eq!(host_of("127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2379"), "::1");
        assert_eq!(host_of("pi1.local:2380"), "pi1.local");
        assert_eq!(host_of("pi1.local"), "pi1.local");
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixtures = dir.path().join("fixtures/peer");
        let hosts = ["127.0.0.1:2380".to_string(), "localhost:2380".to_string()];
        let (cert, key) = ensure(&fixtures, &hosts, 1).expect("generated");
        let first = std::fs::read(&cert).expect("cert");
        let der = crate::pem_files::certs(&cert, &first).expect("PEM")[0].clone();
        assert!(crate::verify::valid_for_host(&der, "127.0.0.1"));
        assert!(crate::verify::valid_for_host(&der, "localhost"));
        ensure(&fixtures, &hosts, 1).expect("reused");
        assert_eq!(std::fs::read(&cert).expect("cert"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
