//! A TLS config built from files, built again when their bytes change.
//!
//! etcd reads the certificate and key on every handshake, so that a rotated certificate
//! (kubeadm renews them; cert-manager too) is used without a restart. Here the files are
//! read at most once per [`RELOAD_CHECK`] and the config rebuilt only when their bytes
//! changed; the trusted CA is reloaded the same way. A change that does not load (a
//! half-written file, a key that does not match) keeps the previous config, with one
//! warning, until the files are whole again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{pem_files, TlsError};

/// How often, at most, the files are read again to look for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Builds a config from the files' bytes, in the order of the paths.
pub(crate) type Build<C> = Box<dyn Fn(&[Vec<u8>]) -> Result<C, TlsError> + Send + Sync>;

/// A config of type `C` kept in step with its files.
pub(crate) struct Reloading<C> {
    paths: Vec<PathBuf>,
    build: Build<C>,
    loaded: Mutex<Loaded<C>>,
}

struct Loaded<C> {
    /// What the config was built from.
    files: Vec<Vec<u8>>,
    config: Arc<C>,
    checked: Instant,
    /// The bytes of the last change that failed to load, so it is warned about once.
    failed: Option<Vec<Vec<u8>>>,
}

impl<C> Reloading<C> {
    /// Reads and builds at once: files that cannot be used refuse the start.
    pub(crate) fn new(paths: Vec<PathBuf>, build: Build<C>) -> Result<Reloading<C>, TlsError> {
        let files = read_all(&paths)?;
        let config = build(&files)?;
        Ok(Reloading {
            paths,
            build,
            loaded: Mutex::new(Loaded {
                files,
                config: Arc::new(config),
                checked: Instant::now(),
                failed: None,
            }),
        })
    }

    /// The config for the next connection, rebuilt if the files changed. Reads files at
    /// most once a second: call it off the async runtime.
    pub(crate) fn current(&self) -> Arc<C> {
        let mut loaded = match self.loaded.lock() {
            Ok(l) => l,
            // A panic while rebuilding left the previous config in place: keep using it.
            Err(poisoned) => poisoned.into_inner(),
        };
        if loaded.checked.elapsed() < RELOAD_CHECK {
            return loaded.config.clone();
        }
        loaded.checked = Instant::now();
        let files = match read_all(&self.paths) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("TLS files unreadable, using the previous certificate: {e}");
                return loaded.config.clone();
            }
        };
        if files == loaded.files || loaded.failed.as_ref() == Some(&files) {
            return loaded.config.clone();
        }
        match (self.build)(&files) {
            Ok(config) => {
                tracing::info!(files = ?self.paths, "TLS files changed: reloaded");
                loaded.config = Arc::new(config);
                loaded.files = files;
                loaded.failed = None;
            }
            Err(e) => {
                tracing::warn!("TLS files changed but do not load, using the previous: {e}");
                loaded.failed = Some(files);
            }
        }
        loaded.config.clone()
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, TlsError> {
    paths.iter().map(|p| pem_files::read(p)).collect()
}
