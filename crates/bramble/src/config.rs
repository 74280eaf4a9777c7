//! The command line: etcd's flags and `ETCD_*` environment variables, so a
//! kubeadm static-pod manifest or a k3s/systemd unit starts Bramble unchanged.
//!
//! etcd flags that Bramble does not implement are accepted with a warning
//! and ignored, so an etcd command line starts unchanged, unless ignoring one
//! would change safety: those refuse to start unless set off
//! (`crate::unsupported_flags`). Any other unknown flag is an error. The TLS flags
//! are in `tls_flags`, read by `crate::tls`.
//!
//! Defaults are etcd's, from `crate::defaults`. The Go-duration flags keep
//! their default as text for `--help`; a test checks it is the same value.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;

use bramble_server::auto_compaction::AutoCompaction;
use bramble_server::corruption::CorruptionChecks;

pub use self::tls_flags::TlsFlags;
use crate::config_file;
use crate::defaults;
use crate::unsupported_flags::{self, Verdict};

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

    /// Path to the server configuration file (etcd's YAML). Note that if a configuration
    /// file is provided, other command line flags and environment variables will be ignored.
    #[arg(long = "config-file", env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

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

    /// Force to create a new one member cluster: restart this member of a cluster
    /// that lost its quorum as the only member, keeping its data, cluster id and
    /// member id (then add new members with `member add`). Use only when the other
    /// members are gone for good; no effect on an empty data dir.
    #[arg(
        long = "force-new-cluster",
        env = "ETCD_FORCE_NEW_CLUSTER",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        value_parser = parse_go_bool
    )]
    pub force_new_cluster: bool,

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

    /// Specify auth token type and its options ('simple' or 'jwt'; JWT is refused:
    /// not implemented yet).
    #[arg(long = "auth-token", env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// The lifetime in seconds of the auth token.
    #[arg(
        long = "auth-token-ttl",
        env = "ETCD_AUTH_TOKEN_TTL",
        default_value_t = bramble_server::auth::DEFAULT_TOKEN_TTL_SECS
    )]
    pub auth_token_ttl: u64,

    /// Specify bcrypt algorithm cost factor for auth password hashing (4 to 31).
    #[arg(
        long = "bcrypt-cost",
        env = "ETCD_BCRYPT_COST",
        default_value_t = bramble_server::auth::DEFAULT_BCRYPT_COST
    )]
    pub bcrypt_cost: u32,

    /// Configures log level: debug, info, warn, error, panic, or fatal.
    #[arg(long = "log-level", env = "ETCD_LOG_LEVEL", default_value = defaults::LOG_LEVEL)]
    pub log_level: String,

    /// Configures log format. Only supports json, console. (Bramble's default is console;
    /// etcd 3.6's is json.)
    #[arg(long = "log-format", env = "ETCD_LOG_FORMAT", default_value = defaults::LOG_FORMAT)]
    pub log_format: String,

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
        long = "snapshot-catchup-entries",
        env = "ETCD_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = defaults::SNAPSHOT_CATCHUP_ENTRIES
    )]
    pub snapshot_catchup_entries: u64,

    /// Sets the maximum revisions deleted in each compaction batch (0: etcd's
    /// default, 1000).
    #[arg(
        long = "compaction-batch-limit",
        env = "ETCD_COMPACTION_BATCH_LIMIT",
        default_value_t = 0
    )]
    pub compaction_batch_limit: usize,

    /// Sets the sleep interval between each compaction batch (0: etcd's default,
    /// 10ms).
    #[arg(
        long = "compaction-sleep-interval",
        env = "ETCD_COMPACTION_SLEEP_INTERVAL",
        default_value = "0s",
        value_parser = parse_go_duration
    )]
    pub compaction_sleep_interval: std::time::Duration,

    /// Duration of periodic watch progress notifications (a Go duration such as `10m0s`).
    #[arg(
        long = "watch-progress-notify-interval",
        env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m0s",
        value_parser = parse_go_duration
    )]
    pub watch_progress_notify_interval: std::time::Duration,

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

    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(
        long = "auto-compaction-mode",
        env = "ETCD_AUTO_COMPACTION_MODE",
        default_value = "periodic"
    )]
    pub auto_compaction_mode: String,

    /// Auto compaction retention for mvcc key value store. 0 means disable auto
    /// compaction. For periodic: hours (`1`) or a duration (`30m`); for revision: a
    /// number of revisions to keep.
    #[arg(
        long = "auto-compaction-retention",
        env = "ETCD_AUTO_COMPACTION_RETENTION",
        default_value = "0"
    )]
    pub auto_compaction_retention: String,

    /// Directory for scheduled backups (Bramble's own, etcd has none): snapshot files as
    /// `etcdctl snapshot save` writes them. Unset: no scheduled backups.
    #[arg(long = "backup-dir", env = "ETCD_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Time between two scheduled backups (a Go duration such as `30m`).
    #[arg(
        long = "backup-interval",
        env = "ETCD_BACKUP_INTERVAL",
        default_value = "1h",
        value_parser = parse_go_duration
    )]
    pub backup_interval: std::time::Duration,

    /// How many scheduled backups to keep (the oldest are removed).
    #[arg(
        long = "backup-retention",
        env = "ETCD_BACKUP_RETENTION",
        default_value_t = defaults::BACKUP_RETENTION
    )]
    pub backup_retention: usize,

    /// Duration of time between cluster corruption check passes (0: off).
    #[arg(
        long = "corrupt-check-time",
        env = "ETCD_CORRUPT_CHECK_TIME",
        default_value = "0s",
        value_parser = parse_go_duration
    )]
    pub corrupt_check_time: std::time::Duration,

    /// Duration of time between leader checks followers compaction hashes.
    #[arg(
        long = "compact-hash-check-time",
        env = "ETCD_COMPACT_HASH_CHECK_TIME",
        default_value = "1m0s",
        value_parser = parse_go_duration
    )]
    pub compact_hash_check_time: std::time::Duration,

    /// Comma-separated list of feature gates (Name=true|false): InitialCorruptCheck
    /// and CompactHashCheck are implemented, the others accepted and ignored.
    #[arg(long = "feature-gates", env = "ETCD_FEATURE_GATES", default_value = "")]
    pub feature_gates: String,

    /// Deprecated in etcd 3.6: `--feature-gates=InitialCorruptCheck=true`.
    #[arg(
        long = "experimental-initial-corrupt-check",
        env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = unsupported_flags::parse_go_bool
    )]
    pub experimental_initial_corrupt_check: Option<bool>,

    /// Deprecated in etcd 3.6: `--feature-gates=CompactHashCheck=true`.
    #[arg(
        long = "experimental-compact-hash-check-enabled",
        env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED",
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = unsupported_flags::parse_go_bool
    )]
    pub experimental_compact_hash_check_enabled: Option<bool>,

    /// The TLS flags of the client and peer ports.
    #[command(flatten)]
    pub tls: TlsFlags,
}

/// The corruption checks the flags turn on (etcd 3.6's `--feature-gates`
/// `InitialCorruptCheck` and `CompactHashCheck`, `--corrupt-check-time`,
/// `--compact-hash-check-time`, and the deprecated `--experimental-*` flags that
/// set the gates), with the warnings to log.
pub(crate) fn corruption_checks(flags: &Flags) -> Result<(CorruptionChecks, Vec<String>), String> {
    let gates = unsupported_flags::feature_gates(&flags.feature_gates)?;
    let mut warnings = gates.warnings.clone();
    // etcd's `SetFeatureGatesFromExperimentalFlags`: an old flag sets its gate,
    // unless the gate is named too, which is an error.
    let gate = |flag: &str, value: Option<bool>, name: &str, warnings: &mut Vec<String>| {
        let named = gates.get(name);
        match (value, named) {
            (Some(v), Some(_)) => Err(format!(
                "cannot specify both flags: --{flag}={v} and --feature-gates={name}={v} at the \
                 same time, please just use --feature-gates={name}={v}"
            )),
            (Some(v), None) => {
                warnings.push(format!(
                    "--{flag} is deprecated in 3.6 and will be decommissioned in 3.7. Use \
                     '--feature-gates={name}=true' instead."
                ));
                Ok(v)
            }
            (None, named) => Ok(named.unwrap_or(false)),
        }
    };
    let initial = gate(
        "experimental-initial-corrupt-check",
        flags.experimental_initial_corrupt_check,
        "InitialCorruptCheck",
        &mut warnings,
    )?;
    let compact_hash = gate(
        "experimental-compact-hash-check-enabled",
        flags.experimental_compact_hash_check_enabled,
        "CompactHashCheck",
        &mut warnings,
    )?;
    if flags.compact_hash_check_time.is_zero() {
        return Err(format!(
            "--compact-hash-check-time must be >0 (set to {:?})",
            flags.compact_hash_check_time
        ));
    }
    let checks = CorruptionChecks {
        initial,
        periodic: (!flags.corrupt_check_time.is_zero()).then_some(flags.corrupt_check_time),
        compact_hash: compact_hash.then_some(flags.compact_hash_check_time),
    };
    Ok((checks, warnings))
}

/// Rewrites argv for clap: Go-style `-flag` becomes `--flag`, and etcd flags that
/// Bramble does not implement are dropped with a warning (returned as text, since
/// logging is not set up yet), or refuse to start when ignoring them would change
/// safety (see `crate::unsupported_flags`; `Err` is the reason).
pub fn preprocess_args(
    args: impl IntoIterator<Item = String>,
) -> Result<(Vec<String>, Vec<String>), String> {
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
        if let Some(renamed) = DEPRECATED_NAMES.iter().find(|r| r.old == name) {
            warnings.push(renamed.warning());
            out.push(match inline_value {
                Some(v) => format!("--{}={v}", renamed.new),
                None => format!("--{}", renamed.new),
            });
            continue;
        }
        if let Verdict::Dropped { takes_value } = unsupported_flags::lookup(&name) {
            let value = match inline_value {
                Some(v) => Some(v),
                None if takes_value => it.next_if(|next| !next.starts_with('-')),
                None => None,
            };
            let shown = value.as_ref().map(|v| format!("={v}")).unwrap_or_default();
            warnings.push(unsupported_flags::judge(
                &name,
                &format!("flag --{name}{shown}"),
                value.as_deref(),
            )?);
            continue;
        }
        out.push(arg);
    }
    // The old names' variables, unless the new name is given too (on the command line
    // or as its own variable, which win as they would in etcd).
    for renamed in DEPRECATED_NAMES {
        let Some(value) = std::env::var_os(env_name(renamed.old)) else {
            continue;
        };
        let given = out.iter().any(|a| {
            a.strip_prefix("--")
                .is_some_and(|b| b.split('=').next() == Some(renamed.new))
        });
        if !given && std::env::var_os(env_name(renamed.new)).is_none() {
            warnings.push(renamed.warning());
            out.push(format!("--{}={}", renamed.new, value.to_string_lossy()));
        }
    }
    Ok((out, warnings))
}

/// An etcd flag that 3.6 renamed: the old name still works, with etcd's warning.
struct Renamed {
    old: &'static str,
    new: &'static str,
}

impl Renamed {
    /// etcd 3.6's deprecation warning for the old name (etcd writes "v3.6" in all
    /// but one of them).
    fn warning(&self) -> String {
        let v = if self.old == "experimental-compact-hash-check-time" {
            ""
        } else {
            "v"
        };
        format!(
            "--{} is deprecated in {v}3.6 and will be decommissioned in {v}3.7. Use '--{}' instead.",
            self.old, self.new
        )
    }
}

/// The renamed flags Bramble implements (etcd 3.6 dropped their `experimental-`).
const DEPRECATED_NAMES: &[Renamed] = &[
    Renamed {
        old: "experimental-snapshot-catchup-entries",
        new: "snapshot-catchup-entries",
    },
    Renamed {
        old: "experimental-watch-progress-notify-interval",
        new: "watch-progress-notify-interval",
    },
    Renamed {
        old: "experimental-compaction-batch-limit",
        new: "compaction-batch-limit",
    },
    Renamed {
        old: "experimental-compaction-sleep-interval",
        new: "compaction-sleep-interval",
    },
    Renamed {
        old: "experimental-corrupt-check-time",
        new: "corrupt-check-time",
    },
    Renamed {
        old: "experimental-compact-hash-check-time",
        new: "compact-hash-check-time",
    },
];

/// A boolean as Go's `strconv.ParseBool` reads it (etcd's boolean flags and
/// variables).
pub(crate) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("parse error: invalid boolean value {other:?}")),
    }
}

/// The `ETCD_*` variable of flag `name`, as etcd names it.
pub(crate) fn env_name(name: &str) -> String {
    format!("ETCD_{}", name.to_uppercase().replace('-', "_"))
}

/// The warnings for `ETCD_*` variables of unsupported flags, or the reason to refuse
/// to start (see [`preprocess_args`]).
/// Why the command line cannot start a server.
#[derive(Debug)]
pub enum CommandLineError {
    /// A setting Bramble refuses, or a config file it cannot read: the reason.
    Refused(String),
    /// clap's own outcome: a parse error, or `--help` (printed by [`clap::Error::exit`]).
    Clap(clap::Error),
}

impl From<String> for CommandLineError {
    fn from(reason: String) -> Self {
        CommandLineError::Refused(reason)
    }
}

impl From<clap::Error> for CommandLineError {
    fn from(e: clap::Error) -> Self {
        CommandLineError::Clap(e)
    }
}

/// The command line, parsed: the settings of a `--config-file` alone when one is named
/// (etcd then ignores every other flag and `ETCD_*` variable), else the flags and the
/// variables. Returns the flags and the warnings to log once logging is set up.
pub fn parse_command_line(argv: Vec<String>) -> Result<(Flags, Vec<String>), CommandLineError> {
    let program = argv.first().cloned().unwrap_or_else(|| "bramble".into());
    let Some(file) = config_file::named(&argv) else {
        let (args, mut warnings) = preprocess_args(argv)?;
        let flags = Flags::try_parse_from(args)?;
        warnings.extend(unsupported_env_warnings()?);
        return Ok((flags, warnings));
    };
    let from_file = config_file::args_from_file(std::path::Path::new(&file))?;
    let (args, mut warnings) = preprocess_args(std::iter::once(program).chain(from_file))?;
    // The file's settings alone: without the variables clap would fill in.
    let command = <Flags as clap::CommandFactory>::command().mut_args(|a| a.env(None));
    let matches = command.try_get_matches_from(args)?;
    let mut flags = <Flags as clap::FromArgMatches>::from_arg_matches(&matches)?;
    flags.config_file = Some(PathBuf::from(&file));
    // etcd logs this line at info on every start from a file; as a warning here, since
    // it says that flags given beside the file do nothing.
    warnings.push(format!(
        "loaded server configuration from {file}, other configuration command line flags \
         and environment variables will be ignored if provided"
    ));
    Ok((flags, warnings))
}

/// The `ETCD_*` variables of unsupported flags: warnings for the harmless ones, an error
/// for those that change safety.
pub fn unsupported_env_warnings() -> Result<Vec<String>, String> {
    unsupported_flags::judge_env()
}

/// `--auto-compaction-mode` and `--auto-compaction-retention` as etcd reads them: a retention of `0` turns it off (`None`); for
/// `periodic` a bare integer means hours, otherwise a Go duration (`30m`); for
/// `revision` a number of revisions. etcd also reads a duration given to the
/// revision mode, as nanoseconds counted as revisions, which never compacts
/// anything useful: that is refused here.
pub(crate) fn auto_compaction(
    mode: &str,
    retention: &str,
) -> Result<Option<AutoCompaction>, String> {
    let integer = retention.parse::<i64>().ok().filter(|n| *n >= 0);
    let policy = match (mode, integer) {
        ("periodic", Some(hours)) => {
            let secs = u64::try_from(hours)
                .ok()
                .and_then(|h| h.checked_mul(3600))
                .ok_or_else(|| format!("--auto-compaction-retention {retention} is too large"))?;
            AutoCompaction::Periodic(std::time::Duration::from_secs(secs))
        }
        ("periodic", None) => AutoCompaction::Periodic(
            parse_go_duration(retention)
                .map_err(|e| format!("--auto-compaction-retention: {e}"))?,
        ),
        ("revision", Some(revisions)) => AutoCompaction::Revision(revisions),
        ("revision", None) => {
            return Err(format!(
                "--auto-compaction-retention {retention:?}: the revision mode takes a number \
                 of revisions"
            ))
        }
        (other, _) => return Err(format!("unknown auto-compaction-mode {other:?}")),
    };
    Ok(match policy {
        AutoCompaction::Periodic(d) if d.is_zero() => None,
        AutoCompaction::Revision(0) => None,
        p => Some(p),
    })
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

/// Whether a listen URL is `https://` (TLS); an error for a scheme Bramble does not
/// listen on.
pub(crate) fn is_https(url: &str) -> Result<bool, String> {
    if url.starts_with("http://") {
        Ok(false)
    } else if url.starts_with("https://") {
        Ok(true)
    } else if url.starts_with("unix://") || url.starts_with("unixs://") {
        Err(format!(
            "{url}: unix socket listeners are not supported by bramble yet"
        ))
    } else {
        Err(format!("{url}: expected an http:// or https:// URL"))
    }
}

/// Resolves an `http://host:port` or `https://host:port` listen URL to socket addresses.
pub(crate) fn listen_addrs(url: &str) -> Result<Vec<SocketAddr>, String> {
    let https = is_https(url)?;
    let rest = &url[if https {
        "https://".len()
    } else {
        "http://".len()
    }..];
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

mod tls_flags;

#[cfg(test)]
mod tests;

/// The auth options of `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`,
/// checked: a JWT or unknown token type and a bcrypt cost outside 4..=31 are
/// refused rather than replaced.
pub(crate) fn auth_options(flags: &Flags) -> Result<bramble_server::auth::AuthOptions, String> {
    use bramble_server::auth;
    Ok(auth::AuthOptions {
        token: auth::parse_auth_token(&flags.auth_token)?,
        token_ttl: std::time::Duration::from_secs(flags.auth_token_ttl),
        bcrypt_cost: auth::check_bcrypt_cost(flags.bcrypt_cost)?,
        client_cert_auth: flags.tls.client_cert_auth,
    })
}
