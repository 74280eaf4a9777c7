//! The command line's unit tests.

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn go_style_single_dash_flags_are_accepted() {
    let (out, warn) =
        preprocess_args(args(&["bramble", "-name", "n1", "--data-dir=/x"])).expect("accepted");
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
        "--experimental-peer-skip-client-san-verification=false",
        "--max-wals=5",
        "--client-crl-file",
        "",
        "--name",
        "x",
    ]))
    .expect("accepted");
    assert_eq!(out, args(&["bramble", "--name", "x"]));
    assert_eq!(warn.len(), 4);
}

#[test]
fn flags_that_change_safety_refuse_to_start() {
    for argv in [
        &[
            "bramble",
            "--experimental-peer-skip-client-san-verification",
        ][..],
        &[
            "bramble",
            "--experimental-peer-skip-client-san-verification=true",
        ],
        &["bramble", "-peer-crl-file", "/etc/etcd/crl.pem"],
        &["bramble", "--proxy", "on"],
    ] {
        let refusal = preprocess_args(args(argv)).expect_err("refused");
        assert!(refusal.contains("Refusing to start"), "{refusal}");
    }
}

#[test]
fn tls_flags_as_etcd_reads_them() {
    let parse = |argv: &[&str]| {
        let (out, _) = preprocess_args(args(argv)).expect("preprocessed");
        Flags::try_parse_from(out).expect("parses")
    };
    let f = parse(&["bramble"]);
    assert!(!f.tls.client_cert_auth && !f.tls.peer_client_cert_auth && !f.tls.auto_tls);
    assert_eq!(f.tls.tls_min_version, "TLS1.2");
    assert_eq!(f.tls.self_signed_cert_validity, 1);
    let f = parse(&[
        "bramble",
        "-cert-file",
        "/pki/server.crt",
        "--client-cert-auth",
        "--peer-client-cert-auth=true",
        "--peer-auto-tls",
        "--peer-cert-allowed-cn=node1,node2",
    ]);
    assert_eq!(f.tls.cert_file, Some(PathBuf::from("/pki/server.crt")));
    assert!(f.tls.client_cert_auth && f.tls.peer_client_cert_auth && f.tls.peer_auto_tls);
    assert_eq!(f.tls.peer_cert_allowed_cn, "node1,node2");
}

#[test]
fn force_new_cluster_is_a_go_boolean_flag() {
    let parse = |argv: &[&str]| {
        let (out, _) = preprocess_args(args(argv)).expect("preprocessed");
        Flags::try_parse_from(out).map(|f| f.force_new_cluster)
    };
    assert!(!parse(&["bramble"]).expect("parses"));
    assert!(parse(&["bramble", "--force-new-cluster"]).expect("parses"));
    assert!(parse(&["bramble", "-force-new-cluster"]).expect("parses"));
    assert!(parse(&["bramble", "--force-new-cluster=true"]).expect("parses"));
    assert!(!parse(&["bramble", "--force-new-cluster=false"]).expect("parses"));
    assert!(parse(&["bramble", "--force-new-cluster=yes"]).is_err());
    // A Go boolean flag takes no separate value: the next word is an argument.
    assert!(parse(&["bramble", "--force-new-cluster", "--name", "x"]).expect("parses"));
}

#[test]
fn force_new_cluster_refuses_to_join_an_existing_cluster() {
    let (out, _) = preprocess_args(args(&[
        "bramble",
        "--force-new-cluster",
        "--initial-cluster-state=existing",
    ]))
    .expect("preprocessed");
    let flags = Flags::try_parse_from(out).expect("parses");
    let err = crate::server::node_options(&flags).expect_err("refused");
    assert!(err.to_string().contains("--force-new-cluster"), "{err}");
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
    assert_eq!(f.backup_interval, Duration::from_secs(3600));
    assert_eq!(
        f.watch_progress_notify_interval,
        defaults::WATCH_PROGRESS_NOTIFY_INTERVAL
    );
    let (out, warn) = preprocess_args(args(&[
        "bramble",
        "--grpc-keepalive-interval=1s",
        "-grpc-keepalive-timeout",
        "500ms",
        "--grpc-keepalive-min-time=0",
    ]))
    .expect("accepted");
    assert!(warn.is_empty());
    let f = Flags::try_parse_from(out).expect("parses");
    assert_eq!(f.grpc_keepalive_interval, Duration::from_secs(1));
    assert_eq!(f.grpc_keepalive_timeout, Duration::from_millis(500));
    assert_eq!(f.grpc_keepalive_min_time, Duration::ZERO);
}

#[test]
fn flags_as_etcd_reads_them() {
    use std::time::Duration;
    let h = |n: u64| Duration::from_secs(n * 3600);
    assert_eq!(auto_compaction("periodic", "0"), Ok(None));
    assert_eq!(
        auto_compaction("periodic", "1"),
        Ok(Some(AutoCompaction::Periodic(h(1))))
    );
    assert_eq!(
        auto_compaction("periodic", "30m"),
        Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
    );
    assert_eq!(
        auto_compaction("revision", "1000"),
        Ok(Some(AutoCompaction::Revision(1000)))
    );
    assert_eq!(auto_compaction("revision", "0"), Ok(None));
    assert!(auto_compaction("revision", "10m").is_err());
    assert!(auto_compaction("weekly", "1").is_err());
    assert!(auto_compaction("periodic", "soon").is_err());
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
    let f = Flags::try_parse_from(args(&["bramble", "--watch-progress-notify-interval=2s"]))
        .expect("parses");
    assert_eq!(f.watch_progress_notify_interval, Duration::from_secs(2));
}

#[test]
fn renamed_flags_take_both_names_and_warn_on_the_old_one() {
    let (out, warn) = preprocess_args(args(&[
        "bramble",
        "--experimental-snapshot-catchup-entries=7",
        "-experimental-watch-progress-notify-interval",
        "3s",
    ]))
    .expect("accepted");
    assert_eq!(
        warn,
        [
            "--experimental-snapshot-catchup-entries is deprecated in v3.6 and will be \
             decommissioned in v3.7. Use '--snapshot-catchup-entries' instead.",
            "--experimental-watch-progress-notify-interval is deprecated in v3.6 and will \
             be decommissioned in v3.7. Use '--watch-progress-notify-interval' instead."
        ]
    );
    let f = Flags::try_parse_from(out).expect("parses");
    assert_eq!(f.snapshot_catchup_entries, 7);
    assert_eq!(
        f.watch_progress_notify_interval,
        std::time::Duration::from_secs(3)
    );
    let (out, warn) =
        preprocess_args(args(&["bramble", "--snapshot-catchup-entries=9"])).expect("accepted");
    assert!(warn.is_empty());
    assert_eq!(
        Flags::try_parse_from(out)
            .expect("parses")
            .snapshot_catchup_entries,
        9
    );
}

#[test]
fn compaction_batch_flags_take_both_names() {
    let (out, warn) = preprocess_args(args(&[
        "bramble",
        "--experimental-compaction-batch-limit=50",
        "--compaction-sleep-interval",
        "25ms",
    ]))
    .expect("accepted");
    assert_eq!(
        warn,
        [
            "--experimental-compaction-batch-limit is deprecated in v3.6 and will be \
          decommissioned in v3.7. Use '--compaction-batch-limit' instead."
        ]
    );
    let f = Flags::try_parse_from(out).expect("parses");
    assert_eq!(f.compaction_batch_limit, 50);
    assert_eq!(
        f.compaction_sleep_interval,
        std::time::Duration::from_millis(25)
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
    assert_eq!(f.snapshot_catchup_entries, 5_000);
    // 0 stands for etcd's defaults (1000 revisions, 10 ms), as etcd reads these flags.
    assert_eq!(f.compaction_batch_limit, 0);
    assert_eq!(f.compaction_sleep_interval, std::time::Duration::ZERO);
}

#[test]
fn a_misspelt_flag_is_an_error() {
    let (out, _) = preprocess_args(args(&["bramble", "--data-dri", "/x"])).expect("passed on");
    assert!(Flags::try_parse_from(out).is_err());
}

#[test]
fn initial_cluster_groups_urls_by_name() {
    let m =
        parse_initial_cluster("a=http://1:2380,b=http://2:2380,a=http://3:2380").expect("parses");
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
    assert_eq!(
        listen_addrs("https://127.0.0.1:2379").expect("ok")[0].port(),
        2379
    );
    assert!(listen_addrs("unixs://sock").is_err());
    assert!(listen_addrs("127.0.0.1:2379").is_err());
}

#[test]
fn corruption_check_flags_as_etcd_3_6() {
    use std::time::Duration;
    let checks = |argv: &[&str]| {
        let (out, warn) = preprocess_args(args(argv)).expect("accepted");
        let f = Flags::try_parse_from(out).expect("parses");
        corruption_checks(&f).map(|(c, w)| (c, [warn, w].concat()))
    };
    let (off, warn) = checks(&["bramble"]).expect("ok");
    assert_eq!(off, CorruptionChecks::default());
    assert!(warn.is_empty());

    let (on, warn) = checks(&[
        "bramble",
        "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true",
        "--corrupt-check-time=5s",
        "--compact-hash-check-time=2s",
    ])
    .expect("ok");
    assert_eq!(
        on,
        CorruptionChecks {
            initial: true,
            periodic: Some(Duration::from_secs(5)),
            compact_hash: Some(Duration::from_secs(2)),
        }
    );
    assert!(warn.is_empty(), "{warn:?}");

    // The 3.4/3.5 names, with etcd 3.6's deprecation warnings.
    let (old, warn) = checks(&[
        "bramble",
        "--experimental-initial-corrupt-check",
        "--experimental-corrupt-check-time=3s",
        "--experimental-compact-hash-check-enabled=true",
        "--experimental-compact-hash-check-time=4s",
    ])
    .expect("ok");
    assert_eq!(
        old,
        CorruptionChecks {
            initial: true,
            periodic: Some(Duration::from_secs(3)),
            compact_hash: Some(Duration::from_secs(4)),
        }
    );
    assert!(warn.contains(
        &"--experimental-corrupt-check-time is deprecated in v3.6 and will be decommissioned \
          in v3.7. Use '--corrupt-check-time' instead."
            .to_string()
    ));
    assert!(warn.contains(
        &"--experimental-compact-hash-check-time is deprecated in 3.6 and will be \
          decommissioned in 3.7. Use '--compact-hash-check-time' instead."
            .to_string()
    ));
    assert!(warn.contains(
        &"--experimental-compact-hash-check-enabled is deprecated in 3.6 and will be \
          decommissioned in 3.7. Use '--feature-gates=CompactHashCheck=true' instead."
            .to_string()
    ));
    assert_eq!(warn.len(), 4, "{warn:?}");

    let (off, _) = checks(&["bramble", "--experimental-initial-corrupt-check=false"]).expect("ok");
    assert!(!off.initial);
    // Both the old flag and its gate: etcd's error.
    let both = checks(&[
        "bramble",
        "--experimental-initial-corrupt-check=true",
        "--feature-gates=InitialCorruptCheck=true",
    ])
    .expect_err("refused");
    assert!(both.contains("cannot specify both flags"), "{both}");
    assert!(checks(&["bramble", "--compact-hash-check-time=0s"]).is_err());
    assert!(checks(&["bramble", "--feature-gates=InitialCorruptCheck=maybe"]).is_err());
}
