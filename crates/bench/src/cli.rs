//! The command line: the flags every workload takes, the workloads and their own
//! flags (clap). `crate::bench` runs what it describes.

use clap::{Args, Parser, Subcommand};

use crate::{compare, k8s, lease_keepalive, mixed, range, txn_mixed, watch, watch_latency};

/// Load generator for etcd v3 endpoints (Bramble or etcd) over gRPC.
#[derive(Parser, Debug)]
#[command(name = "bramble-bench", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) workload: Workload,
}

/// Flags every workload takes; accepted before or after the workload name
/// (`bramble-bench --clients 8 put` as with etcd's tool, or `put --clients 8`).
#[derive(Args, Debug)]
pub(crate) struct Common {
    /// Endpoints, comma-separated (host:port, http://host:port or
    /// https://host:port). Connections are spread over them round-robin.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub(crate) endpoints: Vec<String>,
    /// Concurrent clients (each has one request in flight at a time).
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Authenticate as this user (`name:password`, as etcdctl's `--user`): every
    /// request carries the token (servers with auth enabled).
    #[arg(long, global = true)]
    pub(crate) user: Option<String>,
    /// https endpoints: the CA that signed the servers' certificates.
    #[arg(long, global = true)]
    pub(crate) cacert: Option<std::path::PathBuf>,
    /// https endpoints: the client certificate to present.
    #[arg(long, global = true, requires = "cert_key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// https endpoints: the client certificate's key (etcd's benchmark calls it
    /// `--key`, which is the range workload's key here).
    #[arg(long = "cert-key", global = true, requires = "cert")]
    pub(crate) cert_key: Option<std::path::PathBuf>,
    /// gRPC (HTTP/2) connections the clients share round-robin; capped at
    /// --clients. etcd's benchmark defaults to 1 as well.
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) conns: usize,
    /// Requests to send in all.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub(crate) total: u64,
    /// Run for this many seconds instead of --total requests (requests in
    /// flight at the end still finish; --timeout stays the hard stop).
    #[arg(long, global = true, conflicts_with = "total")]
    pub(crate) duration: Option<u64>,
    /// Requests started per second across all clients (0: as fast as they go).
    #[arg(long, global = true, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Seconds per interval of the time series (--json and --report).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub(crate) interval: f64,
    /// Draw the live progress line on stderr even when it is not a terminal.
    #[arg(long, global = true)]
    pub(crate) progress: bool,
    /// What the run measured (e.g. `bramble`, `etcd`), shown by `report`.
    #[arg(long, global = true)]
    pub(crate) label: Option<String>,
    /// Also write a self-contained HTML page with charts to this file.
    #[arg(long = "report", global = true, value_name = "FILE")]
    pub(crate) html_report: Option<std::path::PathBuf>,
    /// Stop the whole run after this many seconds, finished or not.
    #[arg(long, global = true, default_value_t = 60)]
    pub(crate) timeout: u64,
    /// Seconds to wait for a connection (and for each Status call, and each
    /// of txn-cas's key-creating puts).
    #[arg(long, global = true, default_value_t = 5)]
    pub(crate) dial_timeout: u64,
    /// Server process to measure (bytes written, CPU, memory); repeatable.
    #[arg(long = "pid", global = true)]
    pub(crate) pid: Vec<u32>,
    /// Server processes to measure, comma-separated (adds to --pid).
    #[arg(long, global = true, value_delimiter = ',')]
    pub(crate) pids: Vec<u32>,
    /// After the run, wait this long before reading the servers' counters, so
    /// writes the servers batch on a timer are counted (etcd's backend commits
    /// every 100 ms; Bramble's database checkpoint comes every 30 s or 10,000
    /// entries, and what the run wrote after the last one is in its WAL).
    #[arg(long, global = true, default_value_t = 1500)]
    pub(crate) settle_ms: u64,
    /// Read each endpoint's Prometheus /metrics before and after the run:
    /// server CPU, memory, fsyncs and leader changes, from any machine.
    #[arg(long, global = true)]
    pub(crate) metrics: bool,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Don't print errors as they happen (the report still lists the first few).
    #[arg(long, global = true)]
    pub(crate) quiet: bool,
}

/// What to send.
#[derive(Subcommand, Debug)]
pub(crate) enum Workload {
    /// Put fixed-size values under fixed-size keys (as etcd's `benchmark put`).
    Put(PutArgs),
    /// Send the same Range again and again (as etcd's `benchmark range`).
    Range(RangeArgs),
    /// Txns of --txn-ops puts each, no compares (as etcd's `benchmark txn-put`).
    TxnPut(TxnPutArgs),
    /// Compare-and-swap updates, one key per client, as kube-apiserver updates objects.
    ///
    /// Each request is Txn(If mod_revision(key) == last seen, Then Put(key),
    /// Else Get(key)); failed compares are reported as conflicts.
    TxnCas(TxnCasArgs),
    /// Txns of one range or one put each, --rw-ratio reads per write (as etcd's `benchmark txn-mixed`).
    TxnMixed(txn_mixed::TxnMixedArgs),
    /// Puts and single-key reads, a --read-ratio of them reads; reads and writes reported apart.
    Mixed(mixed::MixedArgs),
    /// Watchers on key prefixes, writers putting under them: delivery latency, every event checked.
    ///
    /// --total puts by --clients writers; --streams x --watch-per-stream watchers.
    Watch(watch::WatchArgs),
    /// Puts to one key at --put-rate, many watchers of it (as etcd's `benchmark watch-latency`).
    WatchLatency(watch_latency::WatchLatencyArgs),
    /// Keep --leases leases alive over LeaseKeepAlive streams; checked alive, then revoked.
    LeaseKeepalive(lease_keepalive::LeaseKeepaliveArgs),
    /// What kube-apiserver sends to etcd for a cluster of --nodes nodes and --pods pods.
    ///
    /// Node Lease heartbeats and status updates by compare-and-swap, pod churn with its
    /// updates and events (on leases), paged LISTs, count-only ranges, one watch per
    /// resource prefix with progress requests, and the compactor's Txn on
    /// compact_rev_key, for --duration seconds; reported per operation kind. The cluster
    /// sets the concurrency: requests rotate over --clients KV stubs on --conns
    /// connections; --total and --timeout do not apply (--request-timeout bounds each
    /// request).
    K8s(k8s::K8sArgs),
    /// Not a workload: print several `--json` results side by side.
    Report(compare::ReportArgs),
}

/// `put` flags. Defaults differ from etcd's tool (1 key, 8-byte values),
/// which measure little; pass `--key-space 1 --val-size 8` to match it.
#[derive(Args, Debug, serde::Serialize)]
pub(crate) struct PutArgs {
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    pub(crate) key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub(crate) val_size: usize,
    /// Number of distinct keys.
    #[arg(long, alias = "key-space-size", default_value_t = 100_000)]
    pub(crate) key_space: u64,
    /// Put key numbers 0, 1, 2, ... (wrapping at --key-space) instead of random ones.
    #[arg(long, alias = "sequential-keys")]
    pub(crate) seq_keys: bool,
    /// Seed for the random keys and value (same seed, same keys on every server).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// `txn-put` flags: `put`'s, and the puts per txn.
#[derive(Args, Debug)]
pub(crate) struct TxnPutArgs {
    #[command(flatten)]
    pub(crate) keys: PutArgs,
    /// Puts per txn, all to different keys (a server refuses more than its
    /// --max-txn-ops, 128 by default).
    #[arg(long, default_value_t = 1)]
    pub(crate) txn_ops: u64,
}

/// `txn-cas` flags.
#[derive(Args, Debug)]
pub(crate) struct TxnCasArgs {
    /// Client i updates the key `<prefix><i>`.
    #[arg(long, default_value = "bench-cas/")]
    pub(crate) prefix: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub(crate) val_size: usize,
    /// Seed for the value's random bytes.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// `range` flags.
#[derive(Args, Debug)]
pub(crate) struct RangeArgs {
    /// Key to read (or start of the range).
    #[arg(long)]
    pub(crate) key: String,
    /// End of the range (exclusive).
    #[arg(long)]
    pub(crate) end: Option<String>,
    /// Read every key with --key as prefix.
    #[arg(long)]
    pub(crate) prefix: bool,
    /// At most this many keys per response (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub(crate) limit: i64,
    /// l: linearizable, s: serializable.
    #[arg(long, value_enum, default_value = "l")]
    pub(crate) consistency: range::Consistency,
    /// Only count the keys (no keys or values in the response).
    #[arg(long, conflicts_with = "keys_only")]
    pub(crate) count_only: bool,
    /// Only return the keys, not the values.
    #[arg(long)]
    pub(crate) keys_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_before_or_after_the_workload() {
        let a = Cli::try_parse_from([
            "bramble-bench",
            "--clients",
            "64",
            "put",
            "--conns",
            "8",
            "--pid",
            "10",
            "--pids",
            "11,12",
            "--key-space-size",
            "5",
        ])
        .expect("parses");
        assert_eq!((a.common.clients, a.common.conns), (64, 8));
        assert_eq!(a.common.pid, [10]);
        assert_eq!(a.common.pids, [11, 12]);
        match a.workload {
            Workload::Put(p) => assert_eq!(p.key_space, 5),
            _ => panic!("wrong workload"),
        }
        let r = Cli::try_parse_from([
            "bramble-bench",
            "range",
            "--key",
            "k",
            "--consistency",
            "s",
            "--endpoints",
            "a:1,b:2",
        ])
        .expect("parses");
        assert_eq!(r.common.endpoints, ["a:1", "b:2"]);
    }

    #[test]
    fn duration_rate_and_output_flags() {
        let a = Cli::try_parse_from([
            "bramble-bench",
            "--duration",
            "30",
            "--rate",
            "200",
            "put",
            "--label",
            "etcd",
            "--report",
            "out.html",
            "--interval",
            "0.5",
            "--progress",
        ])
        .expect("parses");
        assert_eq!((a.common.duration, a.common.rate), (Some(30), 200));
        assert_eq!(a.common.label.as_deref(), Some("etcd"));
        assert_eq!(
            a.common.html_report.as_deref(),
            Some(std::path::Path::new("out.html"))
        );
        assert_eq!(a.common.interval, 0.5);
        assert!(a.common.progress);
        // One bound or the other.
        assert!(
            Cli::try_parse_from(["bramble-bench", "--duration", "3", "--total", "9", "put"])
                .is_err()
        );
        let r =
            Cli::try_parse_from(["bramble-bench", "report", "a.json", "b.json"]).expect("parses");
        assert!(matches!(r.workload, Workload::Report(_)));
        assert!(Cli::try_parse_from(["bramble-bench", "report"]).is_err());
    }

    #[test]
    fn txn_workload_flags() {
        let t = Cli::try_parse_from([
            "bramble-bench",
            "txn-put",
            "--txn-ops",
            "3",
            "--seq-keys",
            "--key-space",
            "300",
            "--total",
            "100",
        ])
        .expect("parses");
        assert_eq!(t.common.total, 100);
        match t.workload {
            Workload::TxnPut(a) => {
                assert_eq!((a.txn_ops, a.keys.key_space), (3, 300));
                assert!(a.keys.seq_keys);
            }
            _ => panic!("wrong workload"),
        }
        let c =
            Cli::try_parse_from(["bramble-bench", "--clients", "4", "txn-cas"]).expect("parses");
        match c.workload {
            Workload::TxnCas(a) => assert_eq!((a.prefix.as_str(), a.val_size), ("bench-cas/", 256)),
            _ => panic!("wrong workload"),
        }
    }
}
