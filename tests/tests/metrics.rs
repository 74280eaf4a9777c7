//! `/metrics` with etcd's names: Bramble and etcd 3.4 are scraped in one
//! run, the expositions parsed (prometheus-parse), and the metrics that
//! etcd's dashboards and alerts use compared by name, type, help text,
//! label names and (for the disk latency histograms) bucket bounds. Then
//! values must move after writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bramble_tests::{Cluster, Kind, Server};
use prometheus_parse::{Scrape, Value};

/// The metrics both servers must expose alike.
const COMPARED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_is_learner",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_version",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
];

/// GET /metrics on the client URL (HTTP/1.1, next to gRPC).
fn scrape_text(server: &Server) -> String {
    scrape_url(&server.endpoint())
}

/// GET /metrics on the client URL `endpoint`.
fn scrape_url(endpoint: &str) -> String {
    let addr = endpoint.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "{}",
        &raw[..raw.len().min(200)]
    );
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

/// The body of a chunked HTTP/1.1 response (etcd's Go server sends one).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// What is compared of one metric family.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    kind: &'static str,
    help: String,
    labels: BTreeSet<String>,
    /// Histogram bucket bounds, as printed.
    buckets: Vec<String>,
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("a valid exposition")
}

fn shapes(scrape: &Scrape) -> BTreeMap<String, Shape> {
    let mut out: BTreeMap<String, Shape> = BTreeMap::new();
    for s in &scrape.samples {
        let (kind, buckets) = match &s.value {
            Value::Counter(_) => ("counter", vec![]),
            Value::Gauge(_) => ("gauge", vec![]),
            Value::Histogram(h) => (
                "histogram",
                h.iter().map(|b| b.less_than.to_string()).collect(),
            ),
            Value::Summary(_) => ("summary", vec![]),
            Value::Untyped(_) => ("untyped", vec![]),
        };
        let shape = out.entry(s.metric.clone()).or_insert_with(|| Shape {
            kind,
            help: scrape.docs.get(&s.metric).cloned().unwrap_or_default(),
            labels: BTreeSet::new(),
            buckets,
        });
        shape
            .labels
            .extend(s.labels.keys().filter(|k| *k != "le").cloned());
    }
    out
}

/// The value of the sample `name` whose labels include `labels`, summed.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[test]
fn metrics_have_etcds_names_types_labels_and_buckets() {
    let etcd = Server::start(Kind::Etcd);
    let bramble = Server::start(Kind::Bramble);
    for server in [&etcd, &bramble] {
        server.etcdctl().run(&["put", "warm", "up"]).assert_ok();
    }
    let etcd_shapes = shapes(&parse(&scrape_text(&etcd)));
    let bramble_shapes = shapes(&parse(&scrape_text(&bramble)));
    for name in COMPARED {
        let want = etcd_shapes
            .get(*name)
            .unwrap_or_else(|| panic!("etcd 3.4 has no {name}"));
        let got = bramble_shapes
            .get(*name)
            .unwrap_or_else(|| panic!("bramble has no {name}"));
        assert_eq!(got, want, "{name}: bramble (left) vs etcd 3.4");
    }
    assert_eq!(
        bramble_shapes["etcd_disk_wal_fsync_duration_seconds"]
            .buckets
            .len(),
        15,
        "1 ms .. 8.192 s and +Inf"
    );
    for own in [
        "bramble_wal_fsyncs_total",
        "bramble_wal_entries_written_total",
    ] {
        assert_eq!(bramble_shapes[own].kind, "counter", "{own}");
    }
}

#[test]
fn metrics_move_after_writes() {
    let server = Server::start(Kind::Bramble);
    let before = parse(&scrape_text(&server));
    assert_eq!(value(&before, "etcd_server_has_leader", &[]), 1.0);
    assert_eq!(value(&before, "etcd_server_is_leader", &[]), 1.0);
    assert!(value(&before, "etcd_server_leader_changes_seen_total", &[]) >= 1.0);
    assert!(value(&before, "process_resident_memory_bytes", &[]) > 0.0);
    const WRITES: usize = 20;
    for i in 0..WRITES {
        server
            .etcdctl()
            .run(&["put", &format!("key{i}"), "value"])
            .assert_ok();
    }
    let after = parse(&scrape_text(&server));
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (value(&before, name, labels), value(&after, name, labels));
        assert!(a - b >= by, "{name}{labels:?}: {b} -> {a}, expected +{by}");
    };
    let writes = WRITES as f64;
    grew("etcd_server_proposals_committed_total", &[], writes);
    grew("etcd_server_proposals_applied_total", &[], writes);
    grew("etcd_debugging_mvcc_current_revision", &[], writes);
    grew("etcd_debugging_mvcc_keys_total", &[], writes);
    grew("bramble_wal_entries_written_total", &[], writes);
    grew("bramble_wal_fsyncs_total", &[], 1.0);
    grew("etcd_disk_wal_fsync_duration_seconds", &[], 1.0);
    let put = [("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV")];
    grew("grpc_server_started_total", &put, writes);
    grew(
        "grpc_server_handled_total",
        &[put[0], put[1], ("grpc_code", "OK")],
        writes,
    );
    assert_eq!(value(&after, "etcd_server_proposals_pending", &[]), 0.0);
    assert_eq!(
        value(&after, "etcd_server_proposals_failed_total", &[]),
        0.0
    );

    // A failed call is counted with its code.
    let out = server.etcdctl().run(&["get", "key0", "--rev=1000"]);
    assert_ne!(out.code, 0, "a future revision fails");
    let failed = parse(&scrape_text(&server));
    let range = [("grpc_method", "Range"), ("grpc_code", "OutOfRange")];
    assert_eq!(value(&failed, "grpc_server_handled_total", &range), 1.0);

    // A physical compaction after each key was put again: its batches, its total time,
    // and the rows it deleted (the 20 superseded first versions).
    for i in 0..WRITES {
        server
            .etcdctl()
            .run(&["put", &format!("key{i}"), "again"])
            .assert_ok();
    }
    let rev = value(
        &parse(&scrape_text(&server)),
        "etcd_debugging_mvcc_current_revision",
        &[],
    );
    server
        .etcdctl()
        .run(&["compact", &(rev as i64).to_string(), "--physical"])
        .assert_ok();
    let compacted = parse(&scrape_text(&server));
    let moved = |name: &str| value(&compacted, name, &[]) - value(&failed, name, &[]);
    assert_eq!(
        moved("etcd_debugging_mvcc_db_compaction_keys_total"),
        writes
    );
    // A histogram's value here is its observation count.
    assert_eq!(
        moved("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds"),
        1.0
    );
    assert!(moved("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds") >= 1.0);

    // etcd_disk_backend_commit_duration_seconds moves with checkpoints,
    // 30 s apart by default: bramble-storage's
    // checkpoints_are_timed_and_keys_counted checks it.
}

/// etcd's `etcd_network_peer_round_trip_time_seconds{To}` on the leader of
/// a 3-member cluster: one histogram per peer, labelled with its member id
/// in hex, etcd's buckets (0.1 ms .. 3.2768 s). etcd 3.4 observes its first
/// probe 5 s after start; Bramble times every heartbeat.
#[test]
fn peer_round_trip_times_per_peer_as_etcd() {
    const NAME: &str = "etcd_network_peer_round_trip_time_seconds";
    let mut shapes_by_kind = Vec::new();
    for kind in [Kind::Etcd, Kind::Bramble] {
        let cluster = Cluster::start(kind, 3);
        let leader = cluster.wait_for_leader(Duration::from_secs(30));
        let peers: BTreeSet<String> = (0..cluster.len())
            .filter(|&i| i != leader)
            .map(|i| format!("{:x}", cluster.member(i).id().expect("a member id")))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let scrape = loop {
            let scrape = parse(&scrape_url(&cluster.member(leader).endpoint()));
            let to: BTreeSet<String> = scrape
                .samples
                .iter()
                .filter(|s| s.metric == NAME)
                .filter_map(|s| s.labels.get("To").map(str::to_string))
                .collect();
            let observed = value(&scrape, NAME, &[]) >= 1.0;
            if to == peers && observed {
                break scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{kind}: round trips to {to:?}, expected {peers:?} (observed: {observed})"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        let shape = shapes(&scrape).remove(NAME).expect("the family");
        assert_eq!(shape.buckets.len(), 17, "{kind}: 16 bounds and +Inf");
        shapes_by_kind.push(shape);
    }
    assert_eq!(
        shapes_by_kind[1], shapes_by_kind[0],
        "bramble (left) vs etcd 3.4"
    );
}
