//! etcd's defaults, in one place: the command line ([`crate::config::Flags`])
//! and [`crate::NodeOptions::new`] both take them from here. The member's
//! name, addresses and cluster bootstrap settings are defined here; the Raft
//! and client-facing ones in the lower crates, re-exported. Each says which
//! etcd flag it is the default of.

pub(crate) use bramble_server::defaults::*;

/// `--name`: the member's human-readable name.
pub(crate) const NAME: &str = "default";

/// `--listen-client-urls` and `--advertise-client-urls`.
pub(crate) const CLIENT_URL: &str = "http://localhost:2379";

/// `--listen-peer-urls` and `--initial-advertise-peer-urls`.
pub(crate) const PEER_URL: &str = "http://localhost:2380";

/// `--initial-cluster-state`: create a new cluster.
#[cfg(feature = "cli")]
pub(crate) const INITIAL_CLUSTER_STATE: &str = "new";

/// `--initial-cluster-token`: mixed into the member and cluster ids.
pub(crate) const INITIAL_CLUSTER_TOKEN: &str = "etcd-cluster";

/// `--log-level`.
#[cfg(feature = "cli")]
pub(crate) const LOG_LEVEL: &str = "info";
/// `--log-format`: tracing's readable lines. etcd 3.6 defaults to json; a terminal or
/// `journalctl` reader is better served by lines, and `--log-format json` gives etcd's.
#[cfg(feature = "cli")]
pub(crate) const LOG_FORMAT: &str = "console";

/// `--backup-retention`: with the flag's default interval of one hour (`1h`, in
/// the flag's attribute), a day of backups.
#[cfg(feature = "cli")]
pub(crate) const BACKUP_RETENTION: usize = 24;
