//! `/metrics`: etcd's Prometheus metrics, with etcd's names, types, help
//! texts, labels and buckets so that etcd's dashboards and alerts work
//! unchanged, plus a few of Bramble's own (`bramble_*`).
//!
//! Two kinds of values. Events the server sees itself (proposals pending
//! and failed, gRPC calls, the process) are live Prometheus collectors in
//! [`Metrics`]' registry, updated with atomic operations where they happen.
//! Everything the lower layers count (Raft status, leader changes, the
//! WAL's fsyncs and their latencies, the database's commits, sizes and
//! revisions) is read when scraped, from counters those layers keep
//! without knowing about Prometheus (`bramble_storage::latency`).

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

use bramble_storage::latency::LatencySnapshot;

use crate::ServerContext;

pub(crate) mod grpc;
#[cfg(target_os = "linux")]
mod process;

/// The live collectors of one member.
pub struct Metrics {
    registry: Registry,
    /// etcd's `etcd_server_proposals_pending` (see [`Metrics::pending_proposal`]).
    proposals_pending: IntGauge,
    /// etcd's `etcd_server_proposals_failed_total`.
    pub(crate) proposals_failed: IntCounter,
    /// go-grpc-prometheus' server counters.
    pub(crate) grpc: grpc::GrpcMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with etcd's collectors (and the process collector
    /// on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let proposals_pending = IntGauge::new(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )
        .expect("a valid metric name");
        let proposals_failed = IntCounter::new(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )
        .expect("a valid metric name");
        let grpc = grpc::GrpcMetrics::new();
        // Registering distinct, valid names into a fresh registry cannot fail.
        let _ = registry.register(Box::new(proposals_pending.clone()));
        let _ = registry.register(Box::new(proposals_failed.clone()));
        grpc.register(&registry);
        #[cfg(target_os = "linux")]
        let _ = registry.register(Box::new(process::ProcessMetrics::for_self()));
        Metrics {
            registry,
            proposals_pending,
            proposals_failed,
            grpc,
        }
    }
}

impl Metrics {
    /// Adds collectors that upper layers own (the `bramble` crate's scheduled
    /// backups); an invalid or duplicate name is an error.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Counts one proposal in `etcd_server_proposals_pending` until the
    /// returned guard is dropped, also when the caller's future is (a client
    /// that went away).
    pub(crate) fn pending_proposal(&self) -> PendingProposal<'_> {
        self.proposals_pending.inc();
        PendingProposal(&self.proposals_pending)
    }
}

/// One proposal counted as pending ([`Metrics::pending_proposal`]).
pub(crate) struct PendingProposal<'a>(&'a IntGauge);

impl Drop for PendingProposal<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The exposition of every metric of the member behind `ctx`, in
/// Prometheus' text format 0.0.4.
pub(crate) async fn render(ctx: &ServerContext) -> String {
    let mut families = ctx.metrics.registry.gather();
    families.extend(read_at_scrape(ctx).await);
    // A family without samples (no peers yet) is left out, as Go's client
    // does; the encoder refuses it.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!("encoding /metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The metrics read from the lower layers' counters at each scrape.
async fn read_at_scrape(ctx: &ServerContext) -> Vec<MetricFamily> {
    let s = ctx.node.status();
    let store = ctx.node.store();
    let wal = ctx.node.wal_meter();
    let wal_stats = wal.stats();
    let db_bytes = ctx.db_file_size().await;
    let db_size = db_bytes as f64;
    let compaction = store.compaction_metrics();
    let bit = |b: bool| if b { 1.0 } else { 0.0 };
    vec![
        gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            bit(s.leader != 0),
        ),
        gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            bit(s.leader != 0 && s.leader == ctx.identity.member_id),
        ),
        gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            bit(s.is_learner),
        ),
        counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            ctx.node.leader_changes() as f64,
        ),
        // etcd's types: gauges, despite the `_total`.
        gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            s.commit_index as f64,
        ),
        gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            s.applied_index as f64,
        ),
        labelled_gauge(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            crate::version::ETCD_VERSION,
        ),
        histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &wal.fsync_latency(),
        ),
        histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            &store.commit_latency(),
        ),
        gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size,
        ),
        // The last background measurement, as Status' db_size_in_use.
        gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            ctx.space_in_use.get(db_bytes) as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            store.index_keys() as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            store.current_revision() as f64,
        ),
        gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            store.compact_revision() as f64,
        ),
        histogram(
            "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
            "Bucketed histogram of db compaction pause duration.",
            &compaction.pause.in_milliseconds(),
        ),
        histogram(
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
            "Bucketed histogram of db compaction total duration.",
            &compaction.total.in_milliseconds(),
        ),
        counter(
            "etcd_debugging_mvcc_db_compaction_keys_total",
            "Total number of db keys compacted.",
            compaction.rows_deleted as f64,
        ),
        peer_round_trips(ctx),
        counter(
            "bramble_wal_fsyncs_total",
            "The total number of fdatasync calls on WAL segments (one per commit group).",
            wal_stats.syncs as f64,
        ),
        counter(
            "bramble_wal_entries_written_total",
            "The total number of Raft log entries written to the WAL.",
            wal_stats.entries_written as f64,
        ),
        counter(
            "bramble_wal_bytes_written_total",
            "The total number of bytes written to WAL segments (records, headers, preallocation fill).",
            wal_stats.bytes_written as f64,
        ),
    ]
}

/// etcd's `etcd_network_peer_round_trip_time_seconds`, one sample per
/// peer labelled `To` with its member id in hex (as etcd prints ids).
fn peer_round_trips(ctx: &ServerContext) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name("etcd_network_peer_round_trip_time_seconds".to_string());
    f.set_help("Round-Trip-Time histogram between peers".to_string());
    f.set_field_type(MetricType::HISTOGRAM);
    let metrics = ctx
        .node
        .peer_round_trips()
        .into_iter()
        .map(|(peer, snap)| {
            let mut m = histogram_metric(&snap);
            let mut to = proto::LabelPair::default();
            to.set_name("To".to_string());
            to.set_value(format!("{peer:x}"));
            m.set_label(vec![to]);
            m
        })
        .collect();
    f.set_metric(metrics);
    f
}

/// A family of one sample.
fn family(name: &str, help: &str, kind: MetricType, metric: proto::Metric) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(vec![metric]);
    f
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::default();
    m.set_gauge(g);
    family(name, help, MetricType::GAUGE, m)
}

/// A gauge of value 1 whose label carries the information.
fn labelled_gauge(name: &str, help: &str, label: &str, value: &str) -> MetricFamily {
    let mut f = gauge(name, help, 1.0);
    let mut pair = proto::LabelPair::default();
    pair.set_name(label.to_string());
    pair.set_value(value.to_string());
    if let Some(m) = f.mut_metric().first_mut() {
        m.set_label(vec![pair]);
    }
    f
}

fn counter(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, m)
}

/// A histogram of one sample.
fn histogram(name: &str, help: &str, snap: &LatencySnapshot) -> MetricFamily {
    family(name, help, MetricType::HISTOGRAM, histogram_metric(snap))
}

/// One histogram sample, with the buckets `snap` has.
fn histogram_metric(snap: &LatencySnapshot) -> proto::Metric {
    let buckets = snap
        .bounds
        .iter()
        .zip(&snap.cumulative)
        .map(|(&bound, &count)| {
            let mut b = proto::Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(count);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(snap.count);
    h.set_sample_sum(snap.sum_seconds);
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    m
}
