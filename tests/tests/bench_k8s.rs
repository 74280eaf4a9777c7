//! `bramble-bench k8s` end to end: a short run of the kube-apiserver workload (20 nodes,
//! 100 pods, 10 s, a heartbeat a second, compaction every 3 s, events on 4 s leases)
//! against one real Bramble member, then its effects checked in the store with the
//! etcd-client crate: every node's Lease renewed once per heartbeat, the pods the report
//! says exist, events on leases, compact_rev_key written and the store compacted, and every
//! write under each watched prefix delivered to its watch.
//!
//! Like tests/tests/bench_workloads.rs, the test builds `bramble-bench` itself (see
//! bench_support) unless `BRAMBLE_BENCH_BIN` names one.

mod bench_support;

use bench_support::Bench;
use etcd_client::{GetOptions, LeaseTimeToLiveOptions};
use serde_json::Value;

const NODES: i64 = 20;
const PODS: i64 = 100;

#[test]
fn k8s_workload_leaves_what_an_apiserver_would() {
    let b = Bench::start();
    let (nodes, pods) = (NODES.to_string(), PODS.to_string());
    let report = b.run(&[
        "--clients",
        "4",
        "--duration",
        "10",
        "k8s",
        "--nodes",
        &nodes,
        "--pods",
        &pods,
        "--heartbeat",
        "1",
        "--node-status",
        "3",
        "--churn",
        "10",
        "--compact-interval",
        "3",
        "--event-ttl",
        "4",
        "--list-interval",
        "2",
        "--list-limit",
        "30",
        "--count-interval",
        "2",
        "--progress-interval",
        "1",
    ]);
    println!(
        "{}",
        serde_json::to_string_pretty(&report["k8s"]).unwrap_or_default()
    );
    assert_eq!(report["workload"], "k8s");
    assert_eq!(report["errors"]["count"], 0, "{report}");
    assert_eq!(report["ok"], report["total"], "{report}");
    assert_eq!(report["failed_checks"], serde_json::json!([]), "{report}");
    assert_eq!(report["bound"], "duration", "{report}");
    // The time series adds up to the run's requests (setup's are not in either).
    let series = report["series"].as_array().expect("a time series");
    let in_series: u64 = series.iter().filter_map(|i| i["ok"].as_u64()).sum();
    assert_eq!(Some(in_series), report["ok"].as_u64(), "{report}");
    let k8s = &report["k8s"];
    let int = |v: &Value| {
        v.as_i64()
            .unwrap_or_else(|| panic!("not a number: {v} in {k8s}"))
    };
    let op = |name: &str, field: &str| int(&k8s["ops"][name][field]);
    for name in [
        "lease-update",
        "node-update",
        "pod-create",
        "pod-update",
        "pod-delete",
        "event-create",
        "lease-grant",
        "list",
        "count",
        "compact-txn",
        "compact",
        "watch-event",
        "progress",
    ] {
        assert!(op(name, "count") > 0, "no {name}: {k8s}");
        assert_eq!(op(name, "errors"), 0, "{name}: {k8s}");
        let l = &k8s["ops"][name]["latency_ms"];
        let ms = |q: &str| {
            l[q].as_f64()
                .unwrap_or_else(|| panic!("{name}: no {q}: {k8s}"))
        };
        assert!(
            ms("p50") <= ms("p90") && ms("p90") <= ms("p99") && ms("p99") <= ms("max"),
            "{name}: {l}"
        );
    }
    // One writer per object: no compare should fail.
    for name in [
        "lease-update",
        "node-update",
        "pod-update",
        "pod-delete",
        "pod-create",
    ] {
        assert_eq!(op(name, "conflicts"), 0, "{name}: {k8s}");
    }

    let (runtime, mut c) = (&b.runtime, b.client.clone());
    let get_prefix = |c: &mut etcd_client::Client, prefix: &str| {
        runtime
            .block_on(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .unwrap_or_else(|e| panic!("get {prefix}: {e}"))
    };

    // Node heartbeats: every Lease exists, renewed about once a second for 10 s (version 1
    // is setup's create), and the versions add up to the updates the report counts.
    let leases = get_prefix(&mut c, "/registry/leases/kube-node-lease/");
    assert_eq!(leases.kvs().len() as i64, NODES);
    let mut renewals = 0;
    for kv in leases.kvs() {
        let n = kv.version() - 1;
        assert!(
            (8..=11).contains(&n),
            "{}: {n} renewals in 10 s at one a second",
            String::from_utf8_lossy(kv.key())
        );
        renewals += n;
    }
    assert_eq!(renewals, op("lease-update", "count"));
    let nodes = get_prefix(&mut c, "/registry/minions/");
    assert_eq!(nodes.kvs().len() as i64, NODES);

    // Pods: what the report says exists, and setup's plus the churn's creates minus deletes.
    let pods = get_prefix(&mut c, "/registry/pods/");
    assert_eq!(pods.kvs().len() as i64, int(&k8s["pods_at_end"]));
    assert_eq!(
        int(&k8s["pods_at_end"]),
        PODS + int(&k8s["pods_created"]) - int(&k8s["pods_deleted"])
    );
    assert!(int(&k8s["pods_created"]) > 0 && int(&k8s["pods_deleted"]) > 0);

    // Events: every one still there is attached to a lease, and the first ones' leases
    // (4 s) have run out.
    let events = get_prefix(&mut c, "/registry/events/");
    for kv in events.kvs() {
        assert_ne!(
            kv.lease(),
            0,
            "{} has no lease",
            String::from_utf8_lossy(kv.key())
        );
    }
    if let Some(kv) = events.kvs().last() {
        let ttl = runtime
            .block_on(c.lease_time_to_live(kv.lease(), Some(LeaseTimeToLiveOptions::new())))
            .expect("lease time to live");
        // -1 if it expired since the Get; else at most the granted TTL.
        assert!(ttl.ttl() <= 4, "event lease TTL {}", ttl.ttl());
    }
    assert!(events.kvs().len() as i64 <= int(&k8s["events_created"]));
    assert!(int(&k8s["leases_granted"]) > 0);

    // The compactor: compact_rev_key holds the last revision compacted to, its version is
    // the rounds won (3 s apart in 10 s: three), and revision 1 is gone.
    let key = runtime
        .block_on(c.get("compact_rev_key", None))
        .expect("get compact_rev_key");
    let kv = key.kvs().first().expect("compact_rev_key exists");
    assert_eq!(kv.version(), op("compact-txn", "count"), "{k8s}");
    assert!(int(&k8s["compactions"]) >= 1, "{k8s}");
    assert_eq!(
        String::from_utf8_lossy(kv.value()),
        int(&k8s["compact_revision"]).to_string()
    );
    let old = runtime.block_on(c.get("compact_rev_key", Some(GetOptions::new().with_revision(1))));
    let err = old.expect_err("revision 1 is compacted").to_string();
    assert!(err.contains("compacted"), "{err}");

    // Watches: every write under each prefix delivered, plus the events' lease expiries.
    assert_eq!(k8s["watch_caught_up"], true, "{k8s}");
    let mut writes = 0;
    for p in k8s["watch"].as_array().expect("watch is a list") {
        let (w, e, x) = (int(&p["writes"]), int(&p["events"]), int(&p["expired"]));
        assert!(w > 0, "no writes under {}", p["prefix"]);
        assert_eq!(e, w + x, "{p}");
        writes += w;
    }
    assert_eq!(op("watch-event", "count"), writes);
    assert!(
        int(&k8s["watch"][3]["expired"]) > 0,
        "no event lease expired in 10 s with a 4 s TTL: {k8s}"
    );
}
