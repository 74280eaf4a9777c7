//! `bramble-bench`'s streaming and mixed workloads end to end against one real Bramble member:
//! `watch` and `watch-latency` (every event delivered to every watcher that should see it, one
//! revision per put), `lease-keepalive` (the leases alive during the run and gone after it,
//! seen with the etcd-client crate), `mixed` and `txn-mixed` (reads and writes counted apart,
//! one revision per write), and `range --count-only`. Each report must say every request
//! succeeded with ordered percentiles.

mod bench_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bench_support::{assert_clean, report_of, status_revision_delta, Bench};
use etcd_client::GetOptions;
use serde_json::Value;

#[test]
fn watch_workloads_deliver_every_event() {
    let mut b = Bench::start();

    // watch: 6 watchers on 2 streams over 2 connections, 3 prefixes (2 watchers each),
    // 2 writers putting 300 keys round-robin under the prefixes.
    let (rev0, _) = b.revision_and_key_count();
    let watch = b.run(&[
        "--clients",
        "2",
        "--conns",
        "2",
        "--total",
        "300",
        "watch",
        "--streams",
        "2",
        "--watch-per-stream",
        "3",
        "--prefixes",
        "3",
        "--prefix",
        "bench-watch-test/",
        "--key-space",
        "10",
    ]);
    assert_clean(&watch, "watch", 300);
    let w = &watch["watch"];
    assert_eq!(
        (w["watchers"].as_u64(), w["targets"].as_u64()),
        (Some(6), Some(3))
    );
    assert_delivered(&watch, 300 * 2);
    let (rev1, _) = b.revision_and_key_count();
    assert_eq!(rev1 - rev0, 300, "one revision per put");
    assert_eq!(status_revision_delta(&watch), 300);
    // 100 puts per prefix over 10 keys each: 30 keys, each written 10 times.
    let keys = b
        .runtime
        .block_on(
            b.client
                .get("bench-watch-test/", Some(GetOptions::new().with_prefix())),
        )
        .expect("get the watched keys");
    assert_eq!(keys.kvs().len(), 30);
    assert!(keys.kvs().iter().all(|kv| kv.version() == 10));

    // watch-latency: 4 watchers of one key, 60 puts at 300 per second (at least 0.19 s).
    let latency = b.run(&[
        "--total",
        "60",
        "watch-latency",
        "--streams",
        "2",
        "--watchers-per-stream",
        "2",
        "--put-rate",
        "300",
        "--key",
        "bench-watch-latency-test",
    ]);
    assert_clean(&latency, "watch-latency", 60);
    assert_delivered(&latency, 60 * 4);
    let elapsed = latency["elapsed_s"].as_f64().expect("elapsed_s");
    assert!(elapsed >= 59.0 / 300.0, "--put-rate 300 kept: {elapsed} s");
    let key = b
        .runtime
        .block_on(b.client.get("bench-watch-latency-test", None))
        .expect("get the key");
    assert_eq!(key.kvs().first().map(|kv| kv.version()), Some(60));
    let (rev2, _) = b.revision_and_key_count();
    assert_eq!(rev2 - rev1, 60);
}

#[test]
fn lease_and_mixed_workloads() {
    let mut b = Bench::start();

    // lease-keepalive, in the background so the leases can be seen alive while it runs.
    let lease_args = [
        "--clients",
        "4",
        "--total",
        "20000",
        "lease-keepalive",
        "--leases",
        "25",
        "--ttl",
        "30",
    ];
    let (rev0, _) = b.revision_and_key_count();
    let child = b
        .command(&lease_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bramble-bench lease-keepalive");
    let started = Instant::now();
    let mut seen_alive = None;
    while seen_alive.is_none() && started.elapsed() < Duration::from_secs(20) {
        let leases = b.runtime.block_on(b.client.leases()).expect("list leases");
        if leases.leases().len() == 25 {
            let id = leases.leases()[0].id();
            let ttl = b
                .runtime
                .block_on(b.client.lease_time_to_live(id, None))
                .expect("lease TTL");
            seen_alive = Some(ttl.ttl());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait for bramble-bench");
    let lease = report_of(&out, b.pid, &lease_args);
    let ttl = seen_alive.expect("the 25 leases were never all listed during the run");
    assert!(0 < ttl && ttl <= 30, "TTL {ttl} of a kept-alive lease");
    assert_clean(&lease, "lease-keepalive", 20000);
    let l = &lease["leases"];
    assert_eq!(l["leases"], 25, "{l}");
    assert_eq!(l["alive_after_run"], 25, "{l}");
    assert_eq!(l["revoked"], 25, "{l}");
    assert_eq!(lease["failed_checks"], serde_json::json!([]));
    let after = b.runtime.block_on(b.client.leases()).expect("list leases");
    assert!(after.leases().is_empty(), "revoked: {:?}", after.leases());
    let (rev1, _) = b.revision_and_key_count();
    assert_eq!(rev1, rev0, "leases without keys change no revision");

    // mixed: half reads; one revision per write, and reads write nothing.
    let (reads, writes) = run_mixed(
        &mut b,
        "mixed",
        400,
        &[
            "--clients",
            "2",
            "--total",
            "400",
            "mixed",
            "--read-ratio",
            "0.5",
            "--key-size",
            "16",
            "--key-space",
            "50",
        ],
    );
    assert!(
        reads > 100 && writes > 100,
        "{reads} reads, {writes} writes"
    );

    // mixed, serializable reads only: no writes at all.
    let reads_only = run_mixed(
        &mut b,
        "mixed",
        100,
        &[
            "--total",
            "100",
            "mixed",
            "--read-ratio",
            "1",
            "--serializable",
            "--key-size",
            "16",
            "--key-space",
            "50",
        ],
    );
    assert_eq!(reads_only, (100, 0));

    // txn-mixed: txns of one range (of the keys mixed wrote, at most 20) or one put.
    let (reads, writes) = run_mixed(
        &mut b,
        "txn-mixed",
        300,
        &[
            "--clients",
            "2",
            "--total",
            "300",
            "txn-mixed",
            "--rw-ratio",
            "2",
            "--key-size",
            "16",
            "--key-space",
            "50",
            "--seq-keys",
            "--limit",
            "20",
        ],
    );
    assert!(
        reads > writes && writes > 30,
        "{reads} reads, {writes} writes"
    );

    // range --count-only (etcd's flag): answered, writes nothing.
    let count = b.run(&[
        "--total",
        "50",
        "range",
        "--key",
        "bench",
        "--prefix",
        "--count-only",
        "--consistency",
        "s",
    ]);
    assert_clean(&count, "range", 50);
    assert_eq!(count["params"]["count_only"], true);
    assert_eq!(status_revision_delta(&count), 0);
}

/// Checks a watch report's `watch` section: `expected` events, all delivered once, in order,
/// with ordered delivery latencies.
fn assert_delivered(report: &Value, expected: u64) {
    let w = &report["watch"];
    assert_eq!(w["expected"], expected, "{w}");
    assert_eq!(w["received"], expected, "{w}");
    for zero in ["missing", "duplicates", "out_of_order", "unexpected"] {
        assert_eq!(w[zero], 0, "{zero}: {w}");
    }
    assert_eq!(w["stream_failures"], serde_json::json!([]), "{w}");
    assert_eq!(report["failed_checks"], serde_json::json!([]), "{report}");
    for name in [
        "create_latency_ms",
        "delivery_from_ack_ms",
        "delivery_from_send_ms",
    ] {
        assert_ordered(&w[name], name);
    }
    // An event cannot arrive before its put was sent.
    assert!(
        w["delivery_from_send_ms"]["min"].as_f64() > Some(0.0),
        "{w}"
    );
}

/// Runs `bramble-bench <args>` of a mixed `workload` (`mixed` or `txn-mixed`) of `total`
/// requests, checks its report ([`assert_clean`], [`assert_kinds`]) and that the store moved
/// one revision per successful write (reads, and a txn of a range, write nothing); returns
/// the successful (reads, writes).
fn run_mixed(b: &mut Bench, workload: &str, total: u64, args: &[&str]) -> (u64, u64) {
    let (before, _) = b.revision_and_key_count();
    let report = b.run(args);
    assert_clean(&report, workload, total);
    let (reads, writes) = assert_kinds(&report, total);
    let (after, _) = b.revision_and_key_count();
    assert_eq!(
        after - before,
        writes as i64,
        "{workload}: one revision per write"
    );
    (reads, writes)
}

/// Checks a mixed report's `ops` section adds up to `total` and has ordered latencies for each
/// kind that ran; returns the successful (reads, writes).
fn assert_kinds(report: &Value, total: u64) -> (u64, u64) {
    let ops = &report["ops"];
    let count = |kind: &str, field: &str| {
        ops[kind][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no ops.{kind}.{field}: {ops}"))
    };
    let (reads, writes) = (count("read", "ok"), count("write", "ok"));
    assert_eq!(reads + writes, total, "{ops}");
    assert_eq!(
        count("read", "sent") + count("write", "sent"),
        total,
        "{ops}"
    );
    assert_eq!(
        count("read", "errors") + count("write", "errors"),
        0,
        "{ops}"
    );
    for (kind, n) in [("read", reads), ("write", writes)] {
        if n > 0 {
            assert_ordered(&ops[kind]["latency_ms"], kind);
        } else {
            assert!(ops[kind]["latency_ms"].is_null(), "{ops}");
        }
    }
    (reads, writes)
}

/// Checks a latency object's percentiles are present and in order.
fn assert_ordered(latency: &Value, what: &str) {
    let get = |p: &str| {
        latency[p]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: no {p} in {latency}"))
    };
    let (min, p50, p90, p99, max) = (get("min"), get("p50"), get("p90"), get("p99"), get("max"));
    assert!(
        0.0 <= min && min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{what}: {latency}"
    );
}
