//! Command-line parsing of the workloads added after the first four (those are
//! tested in `crate::cli` itself).

use clap::Parser;

use crate::cli::{Cli, Workload};

/// Parses `bramble-bench <args>`, failing the test on a parse error.
fn parse(args: &[&str]) -> Cli {
    let mut argv = vec!["bramble-bench"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn watch_flags_and_etcd_aliases() {
    let w = parse(&[
        "--clients",
        "4",
        "watch",
        "--streams",
        "3",
        "--watch-per-stream",
        "5",
        "--watched-key-total",
        "7",
        "--key-space-size",
        "9",
        "--put-rate",
        "100",
        "--total",
        "50",
    ]);
    assert_eq!((w.common.clients, w.common.total), (4, 50));
    match w.workload {
        Workload::Watch(a) => {
            assert_eq!(
                (a.stream.streams, a.watch_per_stream, a.prefixes),
                (3, 5, 7)
            );
            assert_eq!((a.key_space, a.put_rate), (9, 100));
            assert_eq!(a.prefix, "bench-watch/");
        }
        _ => panic!("wrong workload"),
    }
    let l = parse(&["watch-latency", "--watchers-per-stream", "2", "--prevkv"]);
    match l.workload {
        Workload::WatchLatency(a) => {
            assert_eq!(
                (a.stream.streams, a.watchers_per_stream, a.put_rate),
                (10, 2, 100)
            );
            assert!(a.stream.prev_kv);
        }
        _ => panic!("wrong workload"),
    }
}

#[test]
fn lease_and_mix_flags() {
    let l = parse(&["lease-keepalive", "--leases", "1000", "--ttl", "30"]);
    match l.workload {
        Workload::LeaseKeepalive(a) => assert_eq!((a.leases, a.ttl), (1000, 30)),
        _ => panic!("wrong workload"),
    }
    let m = parse(&[
        "mixed",
        "--read-ratio",
        "0.9",
        "--serializable",
        "--seq-keys",
    ]);
    match m.workload {
        Workload::Mixed(a) => {
            assert!((a.read_ratio - 0.9).abs() < 1e-12);
            assert!(a.serializable && a.keys.seq_keys);
        }
        _ => panic!("wrong workload"),
    }
    assert!(
        Cli::try_parse_from(["b", "mixed", "--serializable", "--consistency", "l"]).is_err(),
        "--serializable and --consistency together"
    );
    let t = parse(&[
        "txn-mixed",
        "--rw-ratio",
        "4",
        "--limit",
        "10",
        "--end-key",
        "z",
        "--key",
        "a",
        "--consistency",
        "s",
    ]);
    match t.workload {
        Workload::TxnMixed(a) => {
            assert_eq!((a.rw_ratio, a.limit), (4.0, 10));
            assert_eq!((a.key.as_str(), a.end_key.as_deref()), ("a", Some("z")));
        }
        _ => panic!("wrong workload"),
    }
}

#[test]
fn range_count_and_keys_only() {
    let r = parse(&["range", "--key", "k", "--prefix", "--count-only"]);
    match r.workload {
        Workload::Range(a) => assert!(a.count_only && !a.keys_only),
        _ => panic!("wrong workload"),
    }
    assert!(
        Cli::try_parse_from(["b", "range", "--key", "k", "--count-only", "--keys-only"]).is_err()
    );
}

#[test]
fn workload_flags_become_report_params() {
    let m = parse(&["mixed", "--read-ratio", "0.25"]);
    let Workload::Mixed(a) = m.workload else {
        panic!("wrong workload")
    };
    let p = crate::bench::params(&a).expect("serializes");
    assert_eq!(p["read_ratio"], 0.25);
    assert_eq!(p["key_space"], 100_000, "put's flags flattened in: {p}");
}
