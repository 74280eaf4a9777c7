//! etcd's corruption checks, on real 3-member clusters.
//!
//! - `healthy_cluster_raises_no_alarm` (etcd 3.6 and Bramble): with the initial check on,
//!   the periodic check every second and the compact hash check (compactions deleting in
//!   batches of 10 rows), a writer that never stops, physical
//!   compactions and a member restart raise no alarm and fail no write; the restarted member
//!   passes its initial check; on Bramble the leader's log shows both peers checked by
//!   the periodic check and a compaction checked on the whole cluster.
//! - `corrupted_member_is_detected` (Bramble): one follower's store is changed behind
//!   Raft's back while it is stopped (one stored value rewritten in its redb file).
//!   (a) With `InitialCorruptCheck` it refuses to start with etcd's error, `found data
//!   inconsistency with peers`. (b) Started without it, the compact hash check raises
//!   CORRUPT for that member after the next compaction: `etcdctl alarm list` shows it and
//!   writes fail with `etcdserver: corrupt cluster`. (c) After the alarm is disarmed on a
//!   cluster running only the periodic check, that check raises it again for the same
//!   member.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_api::mvccpb::KeyValue;
use bramble_tests::target::{differential_targets, system_under_test};
use bramble_tests::{Cluster, ClusterConfig, Etcdctl, Kind};
use prost::Message;
use redb::ReadableTable;

const CORRUPT: &str = "etcdserver: corrupt cluster";
const INCONSISTENT: &str = "found data inconsistency with peers";
/// The key whose stored value the test rewrites on one member.
const VICTIM: &str = "corrupt-me";

/// Puts `n` values over a few keys through etcdctl.
fn write(ctl: &Etcdctl, n: usize, tag: &str) {
    for i in 0..n {
        ctl.run(&["put", &format!("k{}", i % 7), &format!("{tag}-{i}")])
            .assert_ok();
    }
}

/// The current revision, from a read's header.
fn revision(ctl: &Etcdctl) -> i64 {
    let out = ctl.run(&["get", "none", "-w", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["header"]["revision"].as_i64().expect("revision")
}

/// `etcdctl compact --physical` at the current revision.
fn compact(ctl: &Etcdctl) -> i64 {
    let rev = revision(ctl);
    ctl.run(&["compact", "--physical", &rev.to_string()])
        .assert_ok();
    rev
}

fn alarms(ctl: &Etcdctl) -> String {
    let out = ctl.run(&["alarm", "list"]);
    out.assert_ok();
    out.stdout_str()
}

/// Polls `etcdctl alarm list` until it is not empty (or `timeout` passes).
fn wait_for_alarm(ctl: &Etcdctl, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let list = alarms(ctl);
        if !list.is_empty() || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A follower of the current leader.
fn follower(cluster: &Cluster) -> usize {
    (cluster.leader() + 1) % cluster.len()
}

#[test]
fn healthy_cluster_raises_no_alarm() {
    for kind in differential_targets() {
        // etcd 3.6's flags, on both.
        let checks: &[&str] = &[
            "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true",
            "--corrupt-check-time=1s",
            "--compact-hash-check-time=1s",
            // Compactions delete (and hash) in many batches.
            "--compaction-batch-limit=10",
        ];
        let mut cluster = Cluster::start_with(
            kind,
            ClusterConfig {
                extra_args: checks.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        );
        let ctl = cluster.etcdctl();
        // A writer of its own goes on through everything below: the checks hash while
        // revisions move.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (ctl, stop) = (ctl.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let out = ctl.run(&["put", &format!("bg{}", n % 11), &n.to_string()]);
                    if out.code != 0 {
                        failed.push(out.to_string());
                    }
                    n += 1;
                }
                (n, failed)
            })
        };
        write(&ctl, 20, "a");
        compact(&ctl);
        write(&ctl, 20, "b");
        ctl.run(&["del", "k3"]).assert_ok();
        compact(&ctl);
        // Checks run every second meanwhile.
        std::thread::sleep(Duration::from_secs(3));
        let other = follower(&cluster);
        cluster.member_mut(other).sigterm();
        write(&ctl, 10, "d");
        cluster.member_mut(other).restart();
        let log = cluster.member(other).log();
        let passed = "initial corruption checking passed; no corruption";
        assert!(
            log.contains(passed),
            "{kind}: the restarted member's initial check:\n{log}"
        );
        compact(&ctl);
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        let (written, failed) = writer.join().expect("writer");
        eprintln!("{kind}: {written} background puts");
        assert!(
            failed.is_empty(),
            "{kind}: background puts failed: {failed:?}"
        );
        for m in cluster.members() {
            assert_eq!(alarms(&m.etcdctl()), "", "{kind}: alarms on {}", m.name());
        }
        ctl.run(&["put", "after", "checks"]).assert_ok();
        if kind == Kind::Bramble {
            let log = cluster.member(cluster.leader()).log();
            assert!(
                log.contains("finished peer corruption check number_of_peers_checked=2"),
                "the leader's periodic check:\n{log}"
            );
            assert!(
                log.contains(
                    "successfully checked hash on whole cluster number_of_peers_checked=2"
                ),
                "the leader's compact hash check:\n{log}"
            );
        }
    }
}

/// Rewrites the newest stored value of [`VICTIM`] in the store of a stopped member, in
/// place and without Raft: same length, other bytes. Returns the revision it changed.
fn corrupt_store(data_dir: &std::path::Path) -> i64 {
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("key");
    let db = redb::Database::open(data_dir.join("member/snap/db")).expect("open the member's db");
    let txn = db.begin_write().expect("write txn");
    let changed = {
        let mut rows = txn.open_table(table).expect("key table");
        let mut newest: Option<(Vec<u8>, KeyValue)> = None;
        for entry in rows.iter().expect("iter") {
            let (k, v) = entry.expect("row");
            let kv = KeyValue::decode(v.value()).expect("stored KeyValue");
            if kv.key == VICTIM.as_bytes() {
                newest = Some((k.value().to_vec(), kv));
            }
        }
        let (key, mut kv) = newest.expect("the victim key is stored");
        let rev = kv.mod_revision;
        for b in kv.value.iter_mut() {
            *b = b.to_ascii_uppercase();
        }
        rows.insert(key.as_slice(), kv.encode_to_vec().as_slice())
            .expect("rewrite");
        rev
    };
    txn.commit().expect("commit");
    changed
}

#[test]
fn corrupted_member_is_detected() {
    let kind = system_under_test();
    if kind != Kind::Bramble {
        // Rewriting etcd's bbolt file is not what this test does.
        return;
    }
    // Phase (a) and (b): the compact hash check only, so that nothing else can raise
    // the alarm before the compaction that must.
    let mut cluster = Cluster::start_with(
        kind,
        ClusterConfig {
            extra_args: vec![
                "--feature-gates=CompactHashCheck=true".into(),
                "--compact-hash-check-time=1s".into(),
            ],
            ..Default::default()
        },
    );
    let ctl = cluster.etcdctl();
    write(&ctl, 30, "a");
    ctl.run(&["put", VICTIM, "the original value"]).assert_ok();
    write(&ctl, 30, "b");
    compact(&ctl);
    write(&ctl, 10, "c");

    let bad = follower(&cluster);
    let bad_id = cluster.member(bad).id().expect("member id");
    cluster.member_mut(bad).sigterm();
    let rev = corrupt_store(&cluster.member(bad).data_dir());
    eprintln!("rewrote {VICTIM}@{rev} on {}", cluster.member(bad).name());

    // (a) The initial check refuses to start it.
    cluster.member_mut(bad).set_flag(
        "feature-gates",
        "CompactHashCheck=true,InitialCorruptCheck=true",
    );
    cluster.member_mut(bad).respawn();
    let exit = cluster
        .member_mut(bad)
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running:\n{}", cluster.member(bad).log()));
    let log = cluster.member(bad).log();
    assert!(!exit.success(), "{exit}: {log}");
    assert!(
        log.contains(&format!("{bad_id:x} {INCONSISTENT}")),
        "the initial check's error:\n{log}"
    );
    assert!(
        log.contains("found different hash values from remote peer"),
        "{log}"
    );

    // (b) Without the initial check it starts; the next compaction's hashes differ.
    cluster
        .member_mut(bad)
        .set_flag("feature-gates", "CompactHashCheck=true");
    cluster.member_mut(bad).restart();
    assert_eq!(alarms(&ctl), "", "no alarm before a compaction");
    write(&ctl, 10, "d");
    compact(&ctl);
    let list = wait_for_alarm(&ctl, Duration::from_secs(20));
    assert_eq!(
        list,
        format!("memberID:{bad_id} alarm:CORRUPT \n"),
        "the compact hash check's alarm; leader log:\n{}",
        cluster.member(cluster.leader()).log()
    );
    let put = ctl.run(&["put", "x", "y"]);
    assert_ne!(put.code, 0, "{put}");
    assert!(put.stderr.contains(CORRUPT), "{put}");

    // (c) The periodic check alone: after a disarm it raises the alarm again.
    for i in 0..cluster.len() {
        let m = cluster.member_mut(i);
        m.set_flag("feature-gates", "CompactHashCheck=false");
        m.set_flag("corrupt-check-time", "1s");
        m.sigterm();
        m.restart();
    }
    cluster.wait_ready();
    let ctl = cluster.etcdctl();
    ctl.run(&["alarm", "disarm"]).assert_ok();
    let list = wait_for_alarm(&ctl, Duration::from_secs(20));
    let leader = cluster.leader();
    let leader_log = cluster.member(leader).log();
    assert!(list.ends_with("alarm:CORRUPT \n"), "{list}\n{leader_log}");
    if leader != bad {
        assert_eq!(
            list,
            format!("memberID:{bad_id} alarm:CORRUPT \n"),
            "{leader_log}"
        );
        assert!(
            leader_log.contains("same compact revision then hashes must match"),
            "{leader_log}"
        );
    }
    let put = ctl.run(&["put", "x", "y"]);
    assert!(put.stderr.contains(CORRUPT), "{put}");
}
