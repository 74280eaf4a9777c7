//! Temp dirs for tests and benchmarks, removed when dropped.

use tempfile::TempDir;

/// A fresh temp dir whose name starts with `prefix` (e.g. `bramble-e2e-etcd-`), so a dir
/// left behind by a killed run says what made it.
pub fn dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("create a temp dir {prefix}*: {e}"))
}
