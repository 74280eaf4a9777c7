//! Where the binaries under test and the reference tools live.
//!
//! Each can be overridden by an environment variable so the suite runs against a release
//! build, a cross-built binary under qemu, or another etcd version.

use std::path::{Path, PathBuf};

/// The `bramble` binary: `$BRAMBLE_BIN`, else `<workspace>/target/debug/bramble`.
///
/// `scripts/test` builds it before `cargo test`; `cargo test` alone does not build binaries of
/// other packages, hence the explicit message when it is missing.
pub fn bramble_bin() -> PathBuf {
    let path = match std::env::var_os("BRAMBLE_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/bramble"),
    };
    assert!(
        path.is_file(),
        "bramble binary not found at {}: run `cargo build --bin bramble` first (scripts/test does), \
         or set BRAMBLE_BIN to its path",
        path.display()
    );
    path
}

/// The reference `etcd`: `$ETCD_BIN`, else `/usr/bin/etcd` (Debian `etcd-server`).
pub fn etcd_bin() -> PathBuf {
    tool("ETCD_BIN", "/usr/bin/etcd", "etcd-server")
}

/// `etcdctl`: `$ETCDCTL_BIN`, else `/usr/bin/etcdctl` (Debian `etcd-client`).
pub fn etcdctl_bin() -> PathBuf {
    tool("ETCDCTL_BIN", "/usr/bin/etcdctl", "etcd-client")
}

/// etcd 3.7 (for what it added, such as `KV.RangeStream`): `$ETCD_V37_BIN`, else the one
/// `scripts/etcd-build v3.7` builds from etcd's Go modules (reused once built).
pub fn etcd_v37_bin() -> PathBuf {
    match std::env::var_os("ETCD_V37_BIN") {
        Some(p) => PathBuf::from(p),
        None => built_etcd("v3.7"),
    }
}

/// The etcd server binary of `version` (`v3.5`, `v3.6`, `v3.7`: a directory under
/// `tests/etcd/`), built by `scripts/etcd-build` (reused when already built).
pub fn built_etcd(version: &str) -> PathBuf {
    let script = workspace_root().join("scripts/etcd-build");
    let out = std::process::Command::new(&script)
        .arg(version)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "scripts/etcd-build {version} failed");
    let printed = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    assert!(
        path.is_file(),
        "scripts/etcd-build printed {}",
        path.display()
    );
    path
}

/// The workspace root: this package lives in `<root>/tests`.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Resolves a tool from its override variable or default path, with an install hint.
fn tool(env: &str, default: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} not found: install Debian `{debian_package}` (scripts/test does) or set {env}",
        path.display()
    );
    path
}
