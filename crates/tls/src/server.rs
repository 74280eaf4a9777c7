//! The accepting side of a TLS port: a rustls server config built from the settings'
//! files, reloaded when they change (`reload.rs`).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::reload::Reloading;
use crate::settings::TlsSettings;
use crate::verify::AllowedClients;
use crate::{pem_files, TlsError};

/// A port's server-side TLS.
pub struct ServerTls {
    settings: TlsSettings,
    config: Reloading<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ServerTls {
    /// Loads the files at once: a certificate that cannot be served refuses the start.
    /// `alpn` lists the application protocols offered, most preferred first.
    pub fn new(settings: TlsSettings, alpn: &[&[u8]]) -> Result<Arc<ServerTls>, TlsError> {
        settings.check("TLS")?;
        let mut paths = vec![settings.cert_file.clone(), settings.key_file.clone()];
        paths.extend(settings.trusted_ca_file.clone());
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let for_build = settings.clone();
        let config = Reloading::new(
            paths,
            Box::new(move |files| build(&for_build, &alpn, files)),
        )?;
        Ok(Arc::new(ServerTls { settings, config }))
    }

    /// The settings this port serves with.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The config to accept the next connection with (reads files: call it off the
    /// async runtime).
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.current()
    }
}

/// A server config from the bytes of the certificate, key and trusted CA files.
fn build(
    settings: &TlsSettings,
    alpn: &[Vec<u8>],
    files: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    let provider = crate::provider(&settings.protocol);
    let certs = pem_files::certs(&settings.cert_file, &files[0])?;
    let key = pem_files::key(&settings.key_file, &files[1])?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&settings.protocol.versions())?;
    // `check` made sure that a port requiring client certificates has a CA file.
    let mut config = match (&settings.trusted_ca_file, files.get(2)) {
        (Some(ca_path), Some(ca)) => {
            let roots = Arc::new(pem_files::roots(ca_path, ca)?);
            let inner = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(format!("{}: {e}", ca_path.display())))?;
            let verifier = Arc::new(AllowedClients {
                inner,
                allowed: settings.allowed.clone(),
            });
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        _ => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}
