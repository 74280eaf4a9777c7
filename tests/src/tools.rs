//! Where the binaries under test and the reference tools live.
//!
//! Each can be overridden by an environment variable so the suite runs against a release
//! build, a cross-built binary under qemu, or another etcd version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// The etcd release the differential tests compare with: what kubeadm installs today.
pub const REFERENCE_ETCD: &str = "v3.6";

/// The reference `etcd`: `$ETCD_BIN`, else etcd 3.6 built from its Go modules
/// ([`built_etcd`] of [`REFERENCE_ETCD`]).
pub fn etcd_bin() -> PathBuf {
    override_or("ETCD_BIN", || reference_release().join("etcd"))
}

/// The reference `etcdctl`: `$ETCDCTL_BIN`, else etcdctl 3.6 built next to [`etcd_bin`].
pub fn etcdctl_bin() -> PathBuf {
    override_or("ETCDCTL_BIN", || reference_release().join("etcdctl"))
}

/// The reference `etcdutl` (since etcd 3.6 it, not etcdctl, restores snapshots):
/// `$ETCDUTL_BIN`, else etcdutl 3.6 built next to [`etcd_bin`].
pub fn etcdutl_bin() -> PathBuf {
    override_or("ETCDUTL_BIN", || reference_release().join("etcdutl"))
}

/// Debian's etcd 3.4 server (`etcd-server`), for the few tests where an etcd 3.4 matters:
/// migrating its data, and what its clients see.
pub fn debian_etcd_bin() -> PathBuf {
    tool("DEBIAN_ETCD_BIN", "/usr/bin/etcd", "etcd-server")
}

/// Debian's etcdctl 3.4 (`etcd-client`): the client many Pi clusters still have installed.
pub fn debian_etcdctl_bin() -> PathBuf {
    tool("DEBIAN_ETCDCTL_BIN", "/usr/bin/etcdctl", "etcd-client")
}

/// The etcd server binary of `version` (`v3.5`, `v3.6`, `v3.7`: a directory under
/// `tests/etcd/`), built from etcd's Go modules by `scripts/etcd-build` (reused when already
/// built; the script holds a lock, so parallel tests wait for one build). Its etcdctl and
/// etcdutl, where that version has them, are in the same directory.
pub fn built_etcd(version: &str) -> PathBuf {
    built_by("scripts/etcd-build", &[version])
}

/// Runs a build script of `scripts/` (one that builds once and caches, such as
/// `scripts/etcd-build` or `scripts/k8s-storage-build`) and returns the file whose path it
/// printed last.
pub fn built_by(script: &str, args: &[&str]) -> PathBuf {
    let script = workspace_root().join(script);
    let out = Command::new(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "{} {args:?} failed", script.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        path.is_file(),
        "{} printed {}",
        script.display(),
        path.display()
    );
    path
}

/// The directory of the reference release's binaries, built once per test process.
fn reference_release() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        built_etcd(REFERENCE_ETCD)
            .parent()
            .expect("a built etcd is in a version directory")
            .to_path_buf()
    })
    .clone()
}

/// The path in `env` if set (checked to exist), else `default()`.
fn override_or(env: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(default);
    assert!(
        path.is_file(),
        "{} not found (set by {env}, or built by scripts/etcd-build)",
        path.display()
    );
    path
}

/// etcd 3.7 (for what it added, such as `KV.RangeStream`): `$ETCD_V37_BIN`, else the one
/// `scripts/etcd-build v3.7` builds from etcd's Go modules (reused once built).
pub fn etcd_v37_bin() -> PathBuf {
    override_or("ETCD_V37_BIN", || built_etcd("v3.7"))
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
