//! The command line: etcd's flags and `ETCD_*` environment variables, so a
//! kubeadm static-pod manifest or a k3s/systemd unit starts Bramble unchanged.
//!
//! etcd flags that Bramble does not implement are accepted with a warning
//! and ignored (`IGNORED_ETCD_FLAGS`), so an etcd command line starts
//! unchanged. Some of them change where or how etcd keeps its data
//! (`--wal-dir`, `--unsafe-no-fsync`, `--force-new-cluster`): Bramble keeps
//! its own behaviour (the WAL under the data dir, every write fsynced) and
//! only warns. Any other unknown flag is an error, and TLS listener URLs
//! refuse to start (`listen_addrs`).
//!
//! Defaults are etcd's, from `crate::defaults`. The Go-duration flags keep
//! their default as text for `--help`; a test checks it is the same value.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;

use crate::defaults;

/// Bramble: an etcd v3 compatible key-value store for Raspberry Pi clusters.
#[derive(Debug, Clone, Parser)]
#[command(name = "bramble", version = crate::VERSION_LINE, disable_version_flag = true)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,

    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = defaults::NAME)]
    pub name: String,

    /// Path to the data directory.
    #[arg(long = "data-dir", env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(
        long = "listen-client-urls",
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = defaults::CLIENT_URL
    )]
    pub listen_client_urls: String,

    /// List of additional URLs to listen on for /health, /livez, /readyz and /metrics.
    #[arg(long = "listen-metrics-urls", env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,

    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long = "advertise-client-urls",
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = defaults::CLIENT_URL
    )]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(
        long = "listen-peer-urls",
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = defaults::PEER_URL
    )]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = defaults::PEER_URL
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping (name=peer-url,...).
    #[arg(long = "initial-cluster", env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ('new' or 'existing').
    #[arg(
        long = "initial-cluster-state",
        env = "ETCD_INITIAL_CLUSTER_STATE",
        default_value = defaults::INITIAL_CLUSTER_STATE
    )]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long = "initial-cluster-token",
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = defaults::INITIAL_CLUSTER_TOKEN
    )]
    pub initial_cluster_token: String,

    /// Maximum client request size in bytes the server will accept.
    #[arg(
        long = "max-request-bytes",
        env = "ETCD_MAX_REQUEST_BYTES",
        default_value_t = defaults::MAX_REQUEST_BYTES
    )]
    pub max_request_bytes: usize,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long = "max-txn-ops", env = "ETCD_MAX_TXN_OPS", default_value_t = defaults::MAX_TXN_OPS)]
    pub max_txn_ops: usize,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space
    /// quota; a negative value turns the quota off).
    #[arg(
        long = "quota-backend-bytes",
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,

    /// Configures log level: debug, info, warn, error, panic, or fatal.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = defaults::LOG_LEVEL)]
    pub log_level: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(
        long = "heartbeat-interval",
        env = "ETCD_HEARTBEAT_INTERVAL",
        default_value_t = defaults::HEARTBEAT_INTERVAL_MS
    )]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(
        long = "election-timeout",
        env = "ETCD_ELECTION_TIMEOUT",
        default_value_t = defaults::ELECTION_TIMEOUT_MS
    )]
    pub election_timeout: u64,

    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(
        long = "snapshot-count",
        env = "ETCD_SNAPSHOT_COUNT",
        default_value_t = defaults::SNAPSHOT_COUNT
    )]
    pub snapshot_count: u64,

    /// Number of entries for a slow follower to catch-up after compacting the raft storage entries.
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = defaults::SNAPSHOT_CATCHUP_ENTRIES
    )]
    pub experimental_snapshot_catchup_entries: u64,

    /// Duration of periodic watch progress notifications (a Go duration such as `10m0s`).
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m0s",
        value_parser = parse_go_duration
    )]
    pub experimental_watch_progress_notify_interval: std::time::Duration,

    /// Minimum interval duration that a client should wait before pinging server.
    /// Accepted for compatibility but not enforced: the HTTP/2 server answers
    /// every ping (see docs/robustness.md).
    #[arg(
        long = "grpc-keepalive-min-time",
        env = "ETCD_GRPC_KEEPALIVE_MIN_TIME",
        default_value = "5s",
        value_parser = parse_go_duration
    )]
    pub grpc_keepalive_min_time: std::time::Duration,

    /// Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).
    #[arg(
        long = "grpc-keepalive-interval",
        env = "ETCD_GRPC_KEEPALIVE_INTERVAL",
        default_value = "2h",
        value_parser = parse_go_duration
    )]
    pub grpc_keepalive_interval: std::time::Duration,

    /// Additional duration of wait before closing a non-responsive connection (0 to disable).
    #[arg(
        long = "grpc-keepalive-timeout",
        env = "ETCD_GRPC_KEEPALIVE_TIMEOUT",
        default_value = "20s",
        value_parser = parse_go_duration
    )]
    pub grpc_keepalive_timeout: std::time::Duration,
}

/// etcd flags Bramble accepts and ignores for now, with whether they take a
/// value. Listed so a typo in a real flag is still an error.
const IGNORED_ETCD_FLAGS: &[(&str, bool)] = &[
    ("auto-compaction-retention", true),
    ("auto-compaction-mode", true),
    ("client-cert-auth", false),
    ("peer-client-cert-auth", false),
    ("cert-file", true),
    ("key-file", true),
    ("trusted-ca-file", true),
    ("peer-cert-file", true),
    ("peer-key-file", true),
    ("peer-trusted-ca-file", true),
    ("auto-tls", false),
    ("peer-auto-tls", false),
    ("metrics", true),
    ("logger", true),
    ("log-outputs", true),
    ("enable-v2", true),
    ("enable-pprof", false),
    ("strict-reconfig-check", false),
    ("pre-vote", false),
    ("max-snapshots", true),
    ("max-wals", true),
    ("cipher-suites", true),
    ("tls-min-version", true),
    ("tls-max-version", true),
    ("experimental-initial-corrupt-check", false),
    ("experimental-corrupt-check-time", true),
    ("experimental-compact-hash-check-enabled", false),
    ("experimental-enable-distributed-tracing", false),
    ("experimental-backend-bbolt-freelist-type", true),
    ("backend-bbolt-freelist-type", true),
    ("socket-reuse-port", false),
    ("socket-reuse-address", false),
    ("force-new-cluster", false),
    ("unsafe-no-fsync", false),
    ("discovery", true),
    ("discovery-srv", true),
    ("proxy", true),
    ("wal-dir", true),
    ("config-file", true),
    ("cors", true),
    ("host-whitelist", true),
    ("auth-token", true),
    ("bcrypt-cost", true),
    ("debug", false),
];

/// Rewrites argv for clap: Go-style `-flag` becomes `--flag`, and etcd flags
/// that Bramble ignores are removed with a warning (returned as text, since
/// logging is not set up yet).
pub fn preprocess_args(args: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut it = args.into_iter().peekable();
    if let Some(program) = it.next() {
        out.push(program);
    }
    while let Some(arg) = it.next() {
        // Go's flag package takes one or two dashes for long flags.
        let arg = if arg.starts_with('-') && !arg.starts_with("--") && arg.len() > 2 {
            format!("-{arg}")
        } else {
            arg
        };
        let Some(body) = arg.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, inline_value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if let Some((_, takes_value)) = IGNORED_ETCD_FLAGS.iter().find(|(n, _)| *n == name) {
            let value = match inline_value {
                Some(v) => Some(v),
                None if *takes_value => it.next_if(|next| !next.starts_with('-')),
                None => None,
            };
            let shown = value.map(|v| format!("={v}")).unwrap_or_default();
            warnings.push(format!(
                "flag --{name}{shown} is not supported by bramble yet; ignoring it"
            ));
            continue;
        }
        out.push(arg);
    }
    (out, warnings)
}

/// `ETCD_*` variables for flags Bramble ignores: warned about, not fatal.
pub fn ignored_env_warnings() -> Vec<String> {
    IGNORED_ETCD_FLAGS
        .iter()
        .filter_map(|(name, _)| {
            let var = format!("ETCD_{}", name.to_uppercase().replace('-', "_"));
            std::env::var_os(&var)
                .map(|_| format!("{var} is not supported by bramble yet; ignoring it"))
        })
        .collect()
}

/// Parses a Go `time.Duration` string as etcd's flags take it: a sequence of
/// decimal numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, such as
/// `10m0s`, `1.5s` or `500ms`; `0` alone is zero. Negative durations are refused.
pub(crate) fn parse_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = tail;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_nanos(nanos as u64))
}

/// Splits etcd's comma-separated URL lists.
pub(crate) fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Resolves an `http://host:port` listen URL to socket addresses.
pub(crate) fn listen_addrs(url: &str) -> Result<Vec<SocketAddr>, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") || url.starts_with("unixs://") {
        return Err(format!(
            "{url}: TLS listeners are not supported by bramble yet"
        ));
    } else {
        return Err(format!("{url}: expected an http:// URL"));
    };
    let hostport = rest.trim_end_matches('/');
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{url}: resolves to no address"));
    }
    Ok(addrs)
}

/// Parses `--initial-cluster` (`name=url,name=url2,other=url3`) into
/// members with their peer URLs, in the order given.
pub(crate) fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for part in split_urls(spec) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster: {part:?} is not name=url"))?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_style_single_dash_flags_are_accepted() {
        let (out, warn) = preprocess_args(args(&["bramble", "-name", "n1", "--data-dir=/x"]));
        assert_eq!(out, args(&["bramble", "--name", "n1", "--data-dir=/x"]));
        assert!(warn.is_empty());
        let f = Flags::try_parse_from(out).expect("parses");
        assert_eq!(f.name, "n1");
    }

    #[test]
    fn ignored_flags_are_dropped_with_their_values() {
        let (out, warn) = preprocess_args(args(&[
            "bramble",
            "--max-snapshots",
            "10",
            "--client-cert-auth",
            "--name",
            "x",
        ]));
        assert_eq!(out, args(&["bramble", "--name", "x"]));
        assert_eq!(warn.len(), 2);
    }

    #[test]
    fn grpc_keepalive_flags() {
        use std::time::Duration;
        let f = Flags::try_parse_from(["bramble"]).expect("parses");
        assert_eq!(f.grpc_keepalive_min_time, Duration::from_secs(5));
        assert_eq!(f.grpc_keepalive_interval, Duration::from_secs(7200));
        assert_eq!(f.grpc_keepalive_timeout, Duration::from_secs(20));
        // The texts in the attributes are the shared defaults.
        assert_eq!(f.grpc_keepalive_min_time, defaults::GRPC_KEEPALIVE_MIN_TIME);
        assert_eq!(f.grpc_keepalive_interval, defaults::GRPC_KEEPALIVE_INTERVAL);
        assert_eq!(f.grpc_keepalive_timeout, defaults::GRPC_KEEPALIVE_TIMEOUT);
        assert_eq!(
            f.experimental_watch_progress_notify_interval,
            defaults::WATCH_PROGRESS_NOTIFY_INTERVAL
        );
        let (out, warn) = preprocess_args(args(&[
            "bramble",
            "--grpc-keepalive-interval=1s",
            "-grpc-keepalive-timeout",
            "500ms",
            "--grpc-keepalive-min-time=0",
        ]));
        assert!(warn.is_empty());
        let f = Flags::try_parse_from(out).expect("parses");
        assert_eq!(f.grpc_keepalive_interval, Duration::from_secs(1));
        assert_eq!(f.grpc_keepalive_timeout, Duration::from_millis(500));
        assert_eq!(f.grpc_keepalive_min_time, Duration::ZERO);
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "5x", "-1s", "s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        let f = Flags::try_parse_from(args(&[
            "bramble",
            "--experimental-watch-progress-notify-interval=2s",
        ]))
        .expect("parses");
        assert_eq!(
            f.experimental_watch_progress_notify_interval,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn flag_defaults_are_etcds() {
        let f = Flags::try_parse_from(["bramble"]).expect("parses");
        assert_eq!(f.name, "default");
        assert_eq!(f.listen_client_urls, "http://localhost:2379");
        assert_eq!(f.advertise_client_urls, "http://localhost:2379");
        assert_eq!(f.listen_peer_urls, "http://localhost:2380");
        assert_eq!(f.initial_advertise_peer_urls, "http://localhost:2380");
        assert_eq!(f.initial_cluster_state, "new");
        assert_eq!(f.initial_cluster_token, "etcd-cluster");
        assert_eq!(f.max_request_bytes, 1_572_864);
        assert_eq!(f.max_txn_ops, 128);
        assert_eq!(f.log_level, "info");
        assert_eq!(f.heartbeat_interval, 100);
        assert_eq!(f.election_timeout, 1000);
        assert_eq!(f.snapshot_count, 100_000);
        assert_eq!(f.experimental_snapshot_catchup_entries, 5_000);
    }

    #[test]
    fn a_misspelt_flag_is_an_error() {
        let (out, _) = preprocess_args(args(&["bramble", "--data-dri", "/x"]));
        assert!(Flags::try_parse_from(out).is_err());
    }

    #[test]
    fn initial_cluster_groups_urls_by_name() {
        let m = parse_initial_cluster("a=http://1:2380,b=http://2:2380,a=http://3:2380")
            .expect("parses");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, args(&["http://1:2380", "http://3:2380"]));
        assert!(parse_initial_cluster("nonsense").is_err());
    }

    #[test]
    fn listen_urls() {
        assert_eq!(
            listen_addrs("http://127.0.0.1:2379").expect("ok")[0].port(),
            2379
        );
        assert!(listen_addrs("https://127.0.0.1:2379").is_err());
        assert!(listen_addrs("127.0.0.1:2379").is_err());
    }
}
