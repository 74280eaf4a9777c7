//! Which servers a test runs against.
//!
//! etcd is the specification and Bramble is the implementation under test, so by default a
//! differential test runs on both and compares. While Bramble cannot serve yet (or to check a
//! test itself against the spec), `BRAMBLE_E2E_ONLY_ETCD=1` runs everything on etcd alone.

use std::fmt;

/// The kind of server process a test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The `bramble` binary from this workspace.
    Bramble,
    /// A real etcd, the reference: etcd 3.6 built from its Go modules ([`crate::tools::etcd_bin`]).
    Etcd,
}

impl Kind {
    /// The server binary of this kind.
    pub fn binary(self) -> std::path::PathBuf {
        match self {
            Kind::Bramble => crate::tools::bramble_bin(),
            Kind::Etcd => crate::tools::etcd_bin(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bramble => "bramble",
            Kind::Etcd => "etcd",
        })
    }
}

/// Environment variable that restricts every test to etcd.
pub(crate) const ONLY_ETCD_ENV: &str = "BRAMBLE_E2E_ONLY_ETCD";

/// True when `BRAMBLE_E2E_ONLY_ETCD` is set to something other than empty or `0`.
pub(crate) fn only_etcd() -> bool {
    flag(ONLY_ETCD_ENV)
}

/// The servers a differential test compares: etcd first (the reference), then Bramble.
pub fn differential_targets() -> Vec<Kind> {
    if only_etcd() {
        vec![Kind::Etcd]
    } else {
        vec![Kind::Etcd, Kind::Bramble]
    }
}

/// The server a Bramble-only test (such as the crash test) runs against: Bramble, unless
/// `BRAMBLE_E2E_ONLY_ETCD=1` asks to prove the test itself on etcd.
pub fn system_under_test() -> Kind {
    if only_etcd() {
        Kind::Etcd
    } else {
        Kind::Bramble
    }
}

/// Reads a boolean environment flag: set, non-empty and not `0`/`false`.
fn flag(name: &str) -> bool {
    match std::env::var(name) {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}
