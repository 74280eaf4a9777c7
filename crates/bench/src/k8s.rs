//! The `k8s` workload: what kube-apiserver sends to etcd for a cluster of `--nodes` nodes
//! and `--pods` pods, replayed for `--duration` seconds.
//!
//! Setup creates each node's Lease and Node objects and the pods (untimed). Then, as an
//! apiserver starting up, it LISTs each resource in pages and watches each resource
//! prefix from the list's revision on one stream, and runs until the duration is over:
//!
//! - every node renews its Lease by compare-and-swap each `--heartbeat` seconds and
//!   writes its status each `--node-status` seconds;
//! - pods are created and deleted at `--churn` per second in all, each creation followed
//!   by `--pod-updates` updates (binding, status) and `--events-per-pod` events, each
//!   deletion by an update (deletionTimestamp), a Killing event and the Delete; events
//!   carry leases from apiserver's lease manager and expire after `--event-ttl`;
//! - every `--list-interval` a paged LIST of all pods, every `--count-interval` a
//!   count-only range per resource (apiserver's storage stats), every
//!   `--progress-interval` a progress request on the watch stream, and every
//!   `--compact-interval` the compactor's Txn on `compact_rev_key` and its Compact.
//!
//! At the end it waits for the watches to catch up with the last write (a progress
//! notification at or past its revision) and reports each kind of operation separately,
//! with every watched prefix's writes and delivered events. [`store`] holds the exact
//! request shapes, [`cluster`] the actors.

mod cluster;
mod ops;
mod periodic;
mod report;
mod store;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::lease_client::LeaseClient;
use clap::Args;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use self::cluster::Cluster;
use self::ops::{OpKind, Recorder};
use self::periodic::{compact, count, every, list};
pub(crate) use self::report::K8sReport;
use self::watch::{Watches, PREFIXES};
use crate::conn::{Kv, Token};
use crate::run::Outcome;

/// Seconds a k8s run lasts without `--duration`.
pub(crate) const DEFAULT_DURATION: u64 = 60;

/// `k8s` flags (the run's length is the global `--duration`).
#[derive(Args, Debug, Clone)]
pub(crate) struct K8sArgs {
    /// Nodes in the simulated cluster (each with a Lease and a Node object).
    #[arg(long, default_value_t = 100)]
    nodes: u64,
    /// Pods that exist when the run starts (churn keeps the number about level).
    #[arg(long, default_value_t = 3000)]
    pods: u64,
    /// Namespaces the pods are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: u64,
    /// Pod creations plus deletions per second (half each).
    #[arg(long, default_value_t = 2.0)]
    churn: f64,
    /// Seconds between a node's Lease renewals (kubelet's default is 10).
    #[arg(long, default_value_t = 10.0)]
    heartbeat: f64,
    /// Seconds between a node's status updates (kubelet: 1 min when nothing changes).
    #[arg(long, default_value_t = 60.0)]
    node_status: f64,
    /// Updates after each pod creation (the binding, then status).
    #[arg(long, default_value_t = 2)]
    pod_updates: u64,
    /// Events created per pod creation.
    #[arg(long, default_value_t = 4)]
    events_per_pod: u64,
    /// Events' TTL, seconds (kube-apiserver's --event-ttl is 1 h; shorter to see expiry).
    #[arg(long, default_value_t = 300)]
    event_ttl: u64,
    /// Most seconds an event lease is reused for (apiserver: 60, and at most 5% of the TTL).
    #[arg(long, default_value_t = 60)]
    lease_reuse: u64,
    /// Seconds between paged LISTs of all pods.
    #[arg(long, default_value_t = 30.0)]
    list_interval: f64,
    /// Keys per LIST page (what clients ask apiserver for; 500 is kubectl's and informers').
    #[arg(long, default_value_t = 500)]
    list_limit: i64,
    /// Seconds between count-only ranges of each resource (apiserver's storage stats).
    #[arg(long, default_value_t = 60.0)]
    count_interval: f64,
    /// Seconds between progress requests on the watch stream.
    #[arg(long, default_value_t = 5.0)]
    progress_interval: f64,
    /// Seconds between compactions (kube-apiserver's --etcd-compaction-interval: 5 min).
    #[arg(long, default_value_t = 300.0)]
    compact_interval: f64,
    /// Bytes per node Lease object.
    #[arg(long, default_value_t = 300)]
    lease_size: usize,
    /// Bytes per Node object.
    #[arg(long, default_value_t = 6000)]
    node_size: usize,
    /// Bytes per Pod object.
    #[arg(long, default_value_t = 3000)]
    pod_size: usize,
    /// Bytes per Event object.
    #[arg(long, default_value_t = 600)]
    event_size: usize,
    /// Seconds before a single request counts as failed.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
}

/// The validated parameters.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    /// `--nodes`.
    pub(crate) nodes: u64,
    /// `--pods`.
    pub(crate) pods: u64,
    /// `--namespaces`.
    pub(crate) namespaces: u64,
    /// `--duration`.
    pub(crate) duration: Duration,
    /// `--churn`.
    pub(crate) churn: f64,
    /// `--heartbeat`.
    pub(crate) heartbeat: Duration,
    /// `--node-status`.
    pub(crate) node_status: Duration,
    /// `--pod-updates`.
    pub(crate) pod_updates: u64,
    /// `--events-per-pod`.
    pub(crate) events_per_pod: u64,
    /// `--event-ttl`.
    pub(crate) event_ttl: u64,
    /// `--lease-reuse`.
    pub(crate) lease_reuse: u64,
    /// `--list-interval`.
    pub(crate) list_interval: Duration,
    /// `--list-limit`.
    pub(crate) list_limit: i64,
    /// `--count-interval`.
    pub(crate) count_interval: Duration,
    /// `--progress-interval`.
    pub(crate) progress_interval: Duration,
    /// `--compact-interval`.
    pub(crate) compact_interval: Duration,
    /// `--lease-size`.
    pub(crate) lease_size: usize,
    /// `--node-size`.
    pub(crate) node_size: usize,
    /// `--pod-size`.
    pub(crate) pod_size: usize,
    /// `--event-size`.
    pub(crate) event_size: usize,
    /// `--request-timeout`.
    pub(crate) request_timeout: Duration,
}

/// Seconds as a duration, refusing what is not a positive finite number.
fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("--{flag} must be a positive number of seconds, not {v}");
    }
    Duration::try_from_secs_f64(v).with_context(|| format!("--{flag} {v}"))
}

impl K8sArgs {
    /// Checks the flags; the shape to run for `duration` seconds (the global
    /// `--duration`, [`DEFAULT_DURATION`] without it).
    pub(crate) fn shape(&self, duration: Option<u64>) -> Result<Shape> {
        if self.nodes == 0 || self.namespaces == 0 || self.list_limit <= 0 || self.event_ttl == 0 {
            bail!("--nodes, --namespaces, --list-limit and --event-ttl must be at least 1");
        }
        if !(self.churn.is_finite() && self.churn >= 0.0) {
            bail!("--churn must be a number >= 0");
        }
        Ok(Shape {
            nodes: self.nodes,
            pods: self.pods,
            namespaces: self.namespaces,
            duration: Duration::from_secs(duration.unwrap_or(DEFAULT_DURATION)),
            churn: self.churn,
            heartbeat: seconds("heartbeat", self.heartbeat)?,
            node_status: seconds("node-status", self.node_status)?,
            pod_updates: self.pod_updates,
            events_per_pod: self.events_per_pod,
            event_ttl: self.event_ttl,
            lease_reuse: self.lease_reuse,
            list_interval: seconds("list-interval", self.list_interval)?,
            list_limit: self.list_limit,
            count_interval: seconds("count-interval", self.count_interval)?,
            progress_interval: seconds("progress-interval", self.progress_interval)?,
            compact_interval: seconds("compact-interval", self.compact_interval)?,
            lease_size: self.lease_size,
            node_size: self.node_size,
            pod_size: self.pod_size,
            event_size: self.event_size,
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
        })
    }

    /// The flags (and the run's `duration`, as for [`K8sArgs::shape`]) as the report's
    /// `params`.
    pub(crate) fn params(&self, duration: Option<u64>) -> serde_json::Value {
        serde_json::json!({
            "nodes": self.nodes, "pods": self.pods, "namespaces": self.namespaces,
            "duration_s": duration.unwrap_or(DEFAULT_DURATION), "churn": self.churn,
            "heartbeat_s": self.heartbeat, "node_status_s": self.node_status,
            "pod_updates": self.pod_updates, "events_per_pod": self.events_per_pod,
            "event_ttl_s": self.event_ttl, "lease_reuse_s": self.lease_reuse,
            "list_interval_s": self.list_interval, "list_limit": self.list_limit,
            "count_interval_s": self.count_interval,
            "progress_interval_s": self.progress_interval,
            "compact_interval_s": self.compact_interval,
            "lease_size": self.lease_size, "node_size": self.node_size,
            "pod_size": self.pod_size, "event_size": self.event_size,
        })
    }
}

/// Runs the workload over `channels`; the run's totals (every request) and its report.
pub(crate) async fn run(
    channels: &[Channel],
    clients: usize,
    token: &Token,
    shape: Shape,
    quiet: bool,
    interval: Duration,
) -> Result<(Outcome, K8sReport)> {
    let kvs: Vec<Kv> = crate::conn::kv_clients(channels, clients.max(channels.len()), token);
    let leases = LeaseClient::with_interceptor(channels[0].clone(), token.clone());
    let recorder = Arc::new(Recorder::new(quiet));
    let cluster = Arc::new(Cluster::new(shape.clone(), kvs, leases, recorder.clone()));

    // Setup: nodes first (their kubelets need the revisions), then the pods, 16 at a time.
    let setup_start = Instant::now();
    let node_revs = setup(&cluster, shape.nodes, |c, i| async move {
        c.setup_node(i).await
    })
    .await?;
    setup(&cluster, shape.pods, |c, _| async move {
        c.setup_pod().await.map(|()| (0, 0))
    })
    .await?;
    let setup_s = setup_start.elapsed().as_secs_f64();

    // apiserver starting: LIST every resource, then watch each from that revision on.
    let mut start_rev = 0;
    for p in PREFIXES {
        let rev = list(&cluster, p.as_bytes(), start_rev).await;
        if start_rev == 0 {
            start_rev = rev;
        }
    }
    if start_rev == 0 {
        bail!("the initial LISTs failed: see the errors above");
    }
    let watches = Arc::new(
        Watches::start(
            channels[0].clone(),
            token.clone(),
            start_rev + 1,
            cluster.deliveries.clone(),
            recorder.clone(),
            shape.request_timeout,
        )
        .await?,
    );

    let start = Instant::now();
    recorder.start(start);
    let end = start + shape.duration;
    let mut actors = JoinSet::new();
    for (node, revs) in (0..shape.nodes).zip(node_revs) {
        actors.spawn(cluster.clone().kubelet(node, revs, start, end));
    }
    let c = cluster.clone();
    actors.spawn(every(shape.list_interval, start, end, move || {
        let c = c.clone();
        async move {
            list(&c, PREFIXES[2].as_bytes(), 0).await;
        }
    }));
    let c = cluster.clone();
    actors.spawn(every(shape.count_interval, start, end, move || {
        let c = c.clone();
        async move {
            for p in PREFIXES {
                count(&c, p.as_bytes()).await;
            }
        }
    }));
    let w = watches.clone();
    actors.spawn(every(shape.progress_interval, start, end, move || {
        let w = w.clone();
        async move { w.request_progress().await }
    }));
    let compactor = Arc::new(tokio::sync::Mutex::new((
        store::Compactor::default(),
        0u64,
        0i64,
    )));
    let (c, state) = (cluster.clone(), compactor.clone());
    actors.spawn(every(shape.compact_interval, start, end, move || {
        let (c, state) = (c.clone(), state.clone());
        async move {
            let mut state = state.lock().await;
            let (compactor, done, to) = &mut *state;
            if let Some(rev) = compact(&c, compactor).await {
                *done += 1;
                *to = rev;
            }
        }
    }));
    let churn_skipped = churn(&cluster, start, end).await;
    while let Some(joined) = actors.join_next().await {
        if let Err(e) = joined {
            eprintln!("bramble-bench: a k8s task failed: {e}");
        }
    }
    let elapsed = start.elapsed();

    let last_write = cluster.deliveries.last_write();
    let caught_up = watches.caught_up(last_write, shape.request_timeout).await;
    if !caught_up {
        recorder.error(
            OpKind::WatchEvent,
            &tonic::Status::deadline_exceeded(format!(
                "the watches did not catch up with revision {last_write}"
            )),
        );
    }
    if let Ok(w) = Arc::try_unwrap(watches) {
        w.stop();
    }

    let (mut samples, error_ends, errors, ops) = recorder.finish();
    let series = crate::series::build(&mut samples, &error_ends, interval, elapsed);
    let latencies = samples.iter().map(|s| s.latency_ns).collect();
    let (compactions, compact_revision) = {
        let state = compactor.lock().await;
        (state.1, state.2)
    };
    let counts = &cluster.counts;
    let report = K8sReport {
        setup_s,
        setup_objects: 2 * shape.nodes + shape.pods,
        pods_at_end: cluster.pod_count() as u64,
        pods_created: counts.pods_created.load(Ordering::Relaxed),
        pods_deleted: counts.pods_deleted.load(Ordering::Relaxed),
        events_created: counts.events.load(Ordering::Relaxed),
        leases_granted: counts.leases_granted.load(Ordering::Relaxed),
        churn_skipped,
        compactions,
        compact_revision,
        watch_start_revision: start_rev,
        last_write_revision: last_write,
        watch_caught_up: caught_up,
        watch: cluster.deliveries.report(),
        ops,
    };
    let outcome = Outcome {
        latencies,
        errors,
        abandoned: 0,
        timed_out: false,
        elapsed,
        series,
    };
    Ok((outcome, report))
}

/// Runs `make(cluster, i)` for i in 0..n, 16 at a time; the results in order of `i`.
/// The first failure fails the setup.
async fn setup<F, Fut>(cluster: &Arc<Cluster>, n: u64, make: F) -> Result<Vec<(i64, i64)>>
where
    F: Fn(Arc<Cluster>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<(i64, i64), tonic::Status>> + Send + 'static,
{
    const WORKERS: u64 = 16;
    let mut results = vec![(0, 0); usize::try_from(n).context("too many objects")?];
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() as u64 >= WORKERS {
            collect(&mut set, &mut results).await?;
        }
        let fut = make(cluster.clone(), i);
        set.spawn(async move { (i, fut.await) });
    }
    while !set.is_empty() {
        collect(&mut set, &mut results).await?;
    }
    Ok(results)
}

/// A setup task's object number and the mod revisions it created.
type SetupResult = (u64, Result<(i64, i64), tonic::Status>);

/// Waits for one setup task and stores its result.
async fn collect(set: &mut JoinSet<SetupResult>, results: &mut [(i64, i64)]) -> Result<()> {
    let Some(joined) = set.join_next().await else {
        return Ok(());
    };
    let (i, result) = joined.context("a setup task failed")?;
    let revs = result.map_err(|s| anyhow::anyhow!("setup: {:?}: {}", s.code(), s.message()))?;
    if let Some(slot) = usize::try_from(i).ok().and_then(|i| results.get_mut(i)) {
        *slot = revs;
    }
    Ok(())
}

/// Creates and deletes pods at `--churn` per second until `end`, each in its own task
/// (apiserver requests do not wait for each other); the ticks skipped because 1000
/// were still in flight. Waits for those in flight at the end.
async fn churn(cluster: &Arc<Cluster>, start: Instant, end: Instant) -> u64 {
    const MAX_IN_FLIGHT: usize = 1000;
    let shape = &cluster.shape;
    let mut skipped = 0;
    let mut tasks = JoinSet::new();
    if shape.churn > 0.0 {
        let period = Duration::from_secs_f64(1.0 / shape.churn);
        let mut next = start + period;
        let mut tick: u64 = 0;
        while next < end {
            tokio::time::sleep_until(next).await;
            while tasks.try_join_next().is_some() {}
            if tasks.len() >= MAX_IN_FLIGHT {
                skipped += 1;
            } else {
                let c = cluster.clone();
                // Alternate, so the pod count stays about level; the tick number picks
                // which pod goes (a multiplicative hash, spread over the set).
                let pick = tick.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
                if tick.is_multiple_of(2) {
                    tasks.spawn(async move { c.create_pod().await });
                } else {
                    tasks.spawn(async move { c.delete_pod(pick).await });
                }
            }
            tick += 1;
            next += period;
        }
    }
    while tasks.join_next().await.is_some() {}
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> K8sArgs {
        let cli = crate::cli::Cli::try_parse_from([&["bramble-bench", "k8s"], args].concat())
            .expect("parses");
        match cli.workload {
            crate::cli::Workload::K8s(a) => a,
            _ => panic!("wrong workload"),
        }
    }

    #[test]
    fn flags_and_defaults() {
        let a = parse(&["--nodes", "5", "--heartbeat", "0.5"]);
        let s = a.shape(Some(3)).expect("valid");
        assert_eq!((s.nodes, s.pods), (5, 3000));
        assert_eq!(s.duration, Duration::from_secs(3));
        assert_eq!(s.heartbeat, Duration::from_millis(500));
        // kube-apiserver's defaults: 5 min compaction, 10 s node leases.
        let d = parse(&[]).shape(None).expect("valid");
        assert_eq!(d.duration, Duration::from_secs(DEFAULT_DURATION));
        assert_eq!(d.compact_interval, Duration::from_secs(300));
        assert_eq!(d.heartbeat, Duration::from_secs(10));
        assert_eq!(a.params(Some(3))["heartbeat_s"], 0.5);
        assert_eq!(a.params(Some(3))["duration_s"], 3);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--heartbeat", "0"]).shape(None).is_err());
        assert!(parse(&["--nodes", "0"]).shape(None).is_err());
        assert!(parse(&["--churn=-1"]).shape(None).is_err());
        assert!(parse(&["--compact-interval", "inf"]).shape(None).is_err());
    }
}
