//! `bramble-bench`: a load generator for any etcd v3 endpoints, Bramble or etcd.
//!
//! The command line mirrors etcd's `benchmark` tool (`--endpoints --conns
//! --clients --total`, then a workload: `put`, `range`, `txn-put`, `txn-cas`
//! (the compare-and-swap update kube-apiserver sends), `txn-mixed`, `mixed`,
//! `watch`, `watch-latency` and `lease-keepalive`), and adds what a
//! Raspberry Pi cluster cares about: bytes written to storage per request
//! (`--pid`, from `/proc/PID/io`), server CPU time and memory. `--json` prints
//! one JSON object so scripts (`scripts/compare-etcd`) can compare runs,
//! `--report out.html` a page of charts, and `bramble-bench report a.json
//! b.json` puts several `--json` results side by side.
//!
//! Exit status: 0 when every request succeeded, 2 when the report was
//! printed but some requests failed, the `--timeout` cut the run short or a
//! workload's check failed (a watch event never delivered, a lease expired),
//! 1 when nothing could be measured (bad flags, server unreachable).

mod charts;
#[cfg(test)]
mod cli_tests;
mod compare;
mod conn;
mod html;
mod k8s;
mod lease_keepalive;
mod mix;
mod mixed;
mod procfs;
mod progress;
mod put;
mod range;
mod report;
mod run;
mod section;
mod series;
mod server_metrics;
mod stats;
mod txn_cas;
mod txn_mixed;
mod txn_put;
mod watch;
mod watch_latency;
mod watch_tally;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio::time::Instant;

use crate::report::{EndpointReport, ProcessReport, Report};

/// Load generator for etcd v3 endpoints (Bramble or etcd) over gRPC.
#[derive(Parser, Debug)]
#[command(name = "bramble-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    workload: Workload,
}

/// Flags every workload takes; accepted before or after the workload name
/// (`bramble-bench --clients 8 put` as with etcd's tool, or `put --clients 8`).
#[derive(Args, Debug)]
struct Common {
    /// Endpoints, comma-separated (host:port, http://host:port or
    /// https://host:port). Connections are spread over them round-robin.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Concurrent clients (each has one request in flight at a time).
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Authenticate as this user (`name:password`, as etcdctl's `--user`): every
    /// request carries the token (servers with auth enabled).
    #[arg(long, global = true)]
    user: Option<String>,
    /// https endpoints: the CA that signed the servers' certificates.
    #[arg(long, global = true)]
    cacert: Option<std::path::PathBuf>,
    /// https endpoints: the client certificate to present.
    #[arg(long, global = true, requires = "cert_key")]
    cert: Option<std::path::PathBuf>,
    /// https endpoints: the client certificate's key (etcd's benchmark calls it
    /// `--key`, which is the range workload's key here).
    #[arg(long = "cert-key", global = true, requires = "cert")]
    cert_key: Option<std::path::PathBuf>,
    /// gRPC (HTTP/2) connections the clients share round-robin; capped at
    /// --clients. etcd's benchmark defaults to 1 as well.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Requests to send in all.
    #[arg(long, global = true, default_value_t = 10_000)]
    total: u64,
    /// Run for this many seconds instead of --total requests (requests in
    /// flight at the end still finish; --timeout stays the hard stop).
    #[arg(long, global = true, conflicts_with = "total")]
    duration: Option<u64>,
    /// Requests started per second across all clients (0: as fast as they go).
    #[arg(long, global = true, default_value_t = 0)]
    rate: u64,
    /// Seconds per interval of the time series (--json and --report).
    #[arg(long, global = true, default_value_t = 1.0)]
    interval: f64,
    /// Draw the live progress line on stderr even when it is not a terminal.
    #[arg(long, global = true)]
    progress: bool,
    /// What the run measured (e.g. `bramble`, `etcd`), shown by `report`.
    #[arg(long, global = true)]
    label: Option<String>,
    /// Also write a self-contained HTML page with charts to this file.
    #[arg(long = "report", global = true, value_name = "FILE")]
    html_report: Option<std::path::PathBuf>,
    /// Stop the whole run after this many seconds, finished or not.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    /// Seconds to wait for a connection (and for each Status call, and each
    /// of txn-cas's key-creating puts).
    #[arg(long, global = true, default_value_t = 5)]
    dial_timeout: u64,
    /// Server process to measure (bytes written, CPU, memory); repeatable.
    #[arg(long = "pid", global = true)]
    pid: Vec<u32>,
    /// Server processes to measure, comma-separated (adds to --pid).
    #[arg(long, global = true, value_delimiter = ',')]
    pids: Vec<u32>,
    /// After the run, wait this long before reading the servers' counters, so
    /// writes the servers batch on a timer are counted (etcd's backend commits
    /// every 100 ms; Bramble's database checkpoint comes every 30 s or 10,000
    /// entries, and what the run wrote after the last one is in its WAL).
    #[arg(long, global = true, default_value_t = 1500)]
    settle_ms: u64,
    /// Read each endpoint's Prometheus /metrics before and after the run:
    /// server CPU, memory, fsyncs and leader changes, from any machine.
    #[arg(long, global = true)]
    metrics: bool,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Don't print errors as they happen (the report still lists the first few).
    #[arg(long, global = true)]
    quiet: bool,
}

/// What to send.
#[derive(Subcommand, Debug)]
enum Workload {
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
struct PutArgs {
    /// Bytes per key.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Number of distinct keys.
    #[arg(long, alias = "key-space-size", default_value_t = 100_000)]
    key_space: u64,
    /// Put key numbers 0, 1, 2, ... (wrapping at --key-space) instead of random ones.
    #[arg(long, alias = "sequential-keys")]
    seq_keys: bool,
    /// Seed for the random keys and value (same seed, same keys on every server).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `txn-put` flags: `put`'s, and the puts per txn.
#[derive(Args, Debug)]
struct TxnPutArgs {
    #[command(flatten)]
    keys: PutArgs,
    /// Puts per txn, all to different keys (a server refuses more than its
    /// --max-txn-ops, 128 by default).
    #[arg(long, default_value_t = 1)]
    txn_ops: u64,
}

/// `txn-cas` flags.
#[derive(Args, Debug)]
struct TxnCasArgs {
    /// Client i updates the key `<prefix><i>`.
    #[arg(long, default_value = "bench-cas/")]
    prefix: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Seed for the value's random bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `range` flags.
#[derive(Args, Debug)]
struct RangeArgs {
    /// Key to read (or start of the range).
    #[arg(long)]
    key: String,
    /// End of the range (exclusive).
    #[arg(long)]
    end: Option<String>,
    /// Read every key with --key as prefix.
    #[arg(long)]
    prefix: bool,
    /// At most this many keys per response (0: no limit).
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// l: linearizable, s: serializable.
    #[arg(long, value_enum, default_value = "l")]
    consistency: range::Consistency,
    /// Only count the keys (no keys or values in the response).
    #[arg(long, conflicts_with = "keys_only")]
    count_only: bool,
    /// Only return the keys, not the values.
    #[arg(long)]
    keys_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Workload::Report(args) = &cli.workload {
        return match compare::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bramble-bench report: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bramble-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(report) => {
            if report.1 {
                println!("{}", report.0.to_json());
            } else {
                print!("{}", report.0.to_text());
            }
            if report.0.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("bramble-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark `cli` describes; returns the report and whether it is
/// wanted as JSON.
async fn bench(cli: Cli) -> Result<(Report, bool)> {
    let c = cli.common;
    if c.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if c.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let conns = c.conns.min(c.clients);
    if conns < c.endpoints.len() && !c.json {
        eprintln!(
            "bramble-bench: {conns} connection(s) for {} endpoints: only the first {conns} endpoint(s) get load",
            c.endpoints.len()
        );
    }
    let mut pids = c.pid.clone();
    pids.extend(&c.pids);
    pids.sort_unstable();
    pids.dedup();
    let dial_timeout = Duration::from_secs(c.dial_timeout);

    // Build the workload first: bad flags should fail before any connection.
    let (name, params, op): (&'static str, serde_json::Value, Op) = match cli.workload {
        Workload::Put(a) => {
            let shape = mix::put_shape(&a)?;
            let params = serde_json::json!({
                "key_size": a.key_size, "val_size": a.val_size,
                "key_space": a.key_space, "seq_keys": a.seq_keys, "seed": a.seed,
            });
            ("put", params, Op::Put(shape))
        }
        Workload::Range(a) => {
            let mut shape =
                range::RangeShape::new(&a.key, a.end.as_deref(), a.prefix, a.limit, a.consistency)?;
            shape.count_only = a.count_only;
            shape.keys_only = a.keys_only;
            let params = serde_json::json!({
                "key": a.key, "end": a.end, "prefix": a.prefix,
                "limit": a.limit, "consistency": a.consistency,
                "count_only": a.count_only, "keys_only": a.keys_only,
            });
            ("range", params, Op::Range(shape))
        }
        Workload::TxnPut(a) => {
            let shape = txn_put::TxnPutShape {
                keys: put::PutShape {
                    key_size: a.keys.key_size,
                    val_size: a.keys.val_size,
                    key_space: a.keys.key_space,
                    seq_keys: a.keys.seq_keys,
                    seed: a.keys.seed,
                },
                ops: a.txn_ops,
            };
            shape.validate()?;
            let params = serde_json::json!({
                "key_size": a.keys.key_size, "val_size": a.keys.val_size,
                "key_space": a.keys.key_space, "seq_keys": a.keys.seq_keys,
                "seed": a.keys.seed, "txn_ops": a.txn_ops,
            });
            ("txn-put", params, Op::TxnPut(shape))
        }
        Workload::TxnCas(a) => {
            let shape = txn_cas::CasShape {
                prefix: a.prefix.clone(),
                value: put::random_value(a.val_size, a.seed),
            };
            shape.validate()?;
            let params = serde_json::json!({
                "prefix": a.prefix, "val_size": a.val_size, "seed": a.seed,
            });
            ("txn-cas", params, Op::TxnCas(shape))
        }
        Workload::TxnMixed(a) => {
            let shape = txn_mixed::TxnMixedShape::from_args(&a)?;
            ("txn-mixed", params(&a)?, Op::TxnMixed(shape))
        }
        Workload::Mixed(a) => {
            let shape = mixed::MixedShape::from_args(&a)?;
            ("mixed", params(&a)?, Op::Mixed(shape))
        }
        Workload::Watch(a) => {
            let shape = watch::WatchShape::from_args(&a)?;
            ("watch", params(&a)?, Op::Watch(shape))
        }
        Workload::WatchLatency(a) => {
            let shape = watch_latency::shape(&a)?;
            ("watch-latency", params(&a)?, Op::Watch(shape))
        }
        Workload::LeaseKeepalive(a) => ("lease-keepalive", params(&a)?, Op::LeaseKeepalive(a)),
        Workload::Report(_) => bail!("`report` reads results; it runs no workload"),
        Workload::K8s(a) => ("k8s", a.params(c.duration), Op::K8s(a.shape(c.duration)?)),
    };
    if !(c.interval > 0.0 && c.interval.is_finite()) {
        bail!("--interval must be a positive number of seconds");
    }
    if c.duration == Some(0) {
        bail!("--duration must be at least 1 second");
    }
    // Create the page's file now, so a bad path fails before the load does.
    let html_file = match &c.html_report {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("--report {}", path.display()))?,
        ),
        None => None,
    };

    let tls = conn::tls(c.cacert.clone(), c.cert.clone().zip(c.cert_key.clone()))?;
    let channels = conn::dial(&c.endpoints, conns, dial_timeout, tls.clone()).await?;
    let token = conn::authenticate(channels[0].clone(), c.user.as_deref(), dial_timeout).await?;
    let clients = conn::kv_clients(&channels, c.clients, &token);
    // txn-cas creates its keys now, before the Status calls and the process
    // counters, so neither the reported revisions nor the bytes written
    // include that setup.
    let cas_clients = match &op {
        Op::TxnCas(shape) => txn_cas::create_keys(&clients, shape, dial_timeout).await?,
        _ => Vec::new(),
    };
    // Likewise the watchers are created and the leases granted (with their
    // keep-alive streams opened) before the run and its counters.
    let mut watchers = match &op {
        Op::Watch(shape) => Some(watch::open(&channels, &token, shape, dial_timeout).await?),
        _ => None,
    };
    let mut leases = match &op {
        Op::LeaseKeepalive(a) => {
            let timeout = Duration::from_secs(c.timeout);
            Some(lease_keepalive::grant(&channels, &token, c.clients, a, timeout).await?)
        }
        _ => None,
    };
    // Channel i goes to endpoint i % n, so the first min(n, conns) channels
    // cover each used endpoint once.
    let used = c.endpoints.len().min(channels.len());
    let mut before = Vec::with_capacity(used);
    for (ep, ch) in c.endpoints.iter().zip(&channels).take(used) {
        match conn::status(ep, ch.clone(), &token, dial_timeout).await {
            Ok(s) => before.push(Some(s)),
            Err(e) => {
                eprintln!("bramble-bench: warning: {e:#}");
                before.push(None);
            }
        }
    }

    // Read the counters last, just before the load starts, so the
    // connection setup and Status calls above are not in the deltas.
    let mut samples = Vec::with_capacity(pids.len());
    for &pid in &pids {
        let name = procfs::name(pid).with_context(|| format!("--pid {pid}"))?;
        samples.push((pid, name, procfs::sample(pid)?));
    }
    let metrics_before = if c.metrics {
        server_metrics::scrape_all(&c.endpoints, tls.as_ref(), dial_timeout).await
    } else {
        Vec::new()
    };

    // watch and watch-latency take etcd's --put-rate: the writers' --rate.
    let rate = match &op {
        Op::Watch(shape) if c.rate == 0 => shape.put_rate,
        _ => c.rate,
    };
    let plan = run::Plan {
        total: if c.duration.is_some() {
            u64::MAX
        } else {
            c.total
        },
        duration: c.duration.map(Duration::from_secs),
        rate,
        deadline: Instant::now() + Duration::from_secs(c.timeout),
        quiet: c.quiet || c.json,
        interval: Duration::from_secs_f64(c.interval),
        progress: progress::wanted(c.progress),
    };
    let mut conflicts = None;
    let mut sections = Vec::new();
    let mut k8s_ran = false;
    let outcome = match op {
        Op::Put(shape) => run::drive(clients, plan, put::op(shape)).await,
        Op::Range(shape) => run::drive(clients, plan, range::op(shape)).await,
        Op::TxnPut(shape) => run::drive(clients, plan, txn_put::op(shape)).await,
        Op::TxnCas(shape) => {
            let failed_compares = Arc::new(AtomicU64::new(0));
            let op = txn_cas::op(&shape, failed_compares.clone());
            let outcome = run::drive(cas_clients, plan, op).await;
            conflicts = Some(failed_compares.load(Ordering::Relaxed));
            outcome
        }
        Op::Mixed(shape) => {
            let kinds = Arc::new(mix::Mix::default());
            let outcome = run::drive(clients, plan, mixed::op(shape, kinds.clone())).await;
            sections.push(kinds.section());
            outcome
        }
        Op::TxnMixed(shape) => {
            let kinds = Arc::new(mix::Mix::default());
            let outcome = run::drive(clients, plan, txn_mixed::op(shape, kinds.clone())).await;
            sections.push(kinds.section());
            outcome
        }
        Op::Watch(shape) => {
            let w = watchers.take().context("the watchers were not opened")?;
            let (outcome, section) = watch::run(clients, plan, &shape, w).await;
            sections.push(section);
            outcome
        }
        Op::LeaseKeepalive(_) => {
            let l = leases.as_mut().context("the leases were not granted")?;
            let outcome = run::drive(l.clients(), plan, lease_keepalive::op()).await;
            l.check_alive().await;
            outcome
        }
        Op::K8s(shape) => {
            let interval = plan.interval;
            let (outcome, k) =
                k8s::run(&channels, c.clients, &token, shape, plan.quiet, interval).await?;
            sections.push(k.section());
            k8s_ran = true;
            outcome
        }
    };

    let settle = !pids.is_empty() || c.metrics;
    if settle {
        tokio::time::sleep(Duration::from_millis(c.settle_ms)).await;
    }
    let ok = outcome.ok();
    if c.metrics {
        let after = server_metrics::scrape_all(&c.endpoints, tls.as_ref(), dial_timeout).await;
        let m = server_metrics::compare(&c.endpoints, &metrics_before, &after, ok);
        sections.push(server_metrics::section(&m));
    }
    // With --duration the run had no count to reach: report the requests it sent.
    let total = match c.duration {
        Some(_) => ok + outcome.errors.count,
        None => c.total,
    };
    let ticks = procfs::clock_ticks_per_sec();
    let mut processes = Vec::with_capacity(samples.len());
    for (pid, name, start) in samples {
        // A server that died during the run is a finding, not a reason to
        // lose the rest of the report: report its counters as unreadable.
        let end = match procfs::sample(pid).and_then(|s| Ok((s, procfs::memory(pid)?))) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("bramble-bench: warning: pid {pid} after the run: {e:#}");
                continue;
            }
        };
        processes.push(ProcessReport::new(
            pid,
            name,
            &start.io,
            &end.0.io,
            end.0.cpu.since(&start.cpu),
            ticks,
            end.1,
            ok,
        ));
    }

    let mut servers = Vec::with_capacity(used);
    for ((ep, ch), b) in c.endpoints.iter().zip(&channels).zip(before) {
        let Some(b) = b else { continue };
        let after = conn::status(ep, ch.clone(), &token, dial_timeout)
            .await
            .ok();
        servers.push(EndpointReport { before: b, after });
    }

    let mut report = Report::new(
        name,
        c.endpoints.clone(),
        c.clients,
        conns,
        total,
        params,
        outcome,
        if settle { c.settle_ms } else { 0 },
    );
    report.set_processes(processes);
    report.servers = servers;
    report.conflicts = conflicts;
    report.label = c.label.clone();
    if let Some(d) = c.duration {
        report.bound = report::Bound::Duration;
        report.duration_s = Some(d as f64);
    }
    report.rate = rate;
    report.interval_s = c.interval;
    for s in sections {
        report.add_section(s);
    }
    // Revoked last, after the servers' counters and revisions are read.
    if let Some(l) = leases {
        report.add_section(l.finish().await);
    }
    if k8s_ran {
        // k8s always runs for a duration: every request it sent is the total.
        report.total = report.ok + report.errors.count;
        report.bound = report::Bound::Duration;
        report.duration_s = Some(c.duration.unwrap_or(k8s::DEFAULT_DURATION) as f64);
    }
    if let (Some(file), Some(path)) = (html_file, &c.html_report) {
        html::write_run(&report, file).with_context(|| format!("--report {}", path.display()))?;
    }
    Ok((report, c.json))
}

/// A workload's flags as the report's `params`.
fn params(args: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(args).context("serializing the workload's flags")
}

/// A validated workload, ready to run.
enum Op {
    /// `put`.
    Put(put::PutShape),
    /// `range`.
    Range(range::RangeShape),
    /// `txn-put`.
    TxnPut(txn_put::TxnPutShape),
    /// `txn-cas`.
    TxnCas(txn_cas::CasShape),
    /// `txn-mixed`.
    TxnMixed(txn_mixed::TxnMixedShape),
    /// `mixed`.
    Mixed(mixed::MixedShape),
    /// `watch` and `watch-latency`.
    Watch(watch::WatchShape),
    /// `lease-keepalive`.
    LeaseKeepalive(lease_keepalive::LeaseKeepaliveArgs),
    /// `k8s`.
    K8s(k8s::Shape),
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
