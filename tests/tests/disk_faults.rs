//! A member whose disk fails must stop, loudly, and never lie meanwhile (issue 7, defects 3
//! and 5): real `bramble` processes, real faults.
//!
//! - fdatasync failing with EIO, injected by `strace` into the WAL's writer thread: the
//!   member exits non-zero within seconds with the cause on stderr, `/health?serializable=
//!   true` (kubeadm's liveness probe) never says true after the failure, and every write it
//!   acknowledged is there after a restart without the fault.
//! - The same fault on one follower of three: that follower exits, the cluster keeps serving.
//! - A full disk under the state machine (its directory on a small tmpfs): the redb commit of
//!   an apply fails, the member exits the same way, acknowledged writes survive.
//! - fsync of the database file failing (strace attached with `-P`): the checkpoint of a
//!   stop fails, and the member exits non-zero instead of reporting a clean stop.
//! - `member/wal` deleted: the member refuses to start instead of starting afresh at term 1
//!   with its vote forgotten (it could vote twice in one term), alone and in a cluster.
//!
//! The faults come from `bramble_tests::faults` (strace injection, a small tmpfs, a
//! background liveness probe); the tmpfs test needs root (mount), as the netns tests do.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bramble_testkit::disk::SmallDisk;
use bramble_tests::faults::{HealthProbe, Proc, Single, Tracer};
use bramble_tests::server::tail;
use bramble_tests::{Cluster, Etcdctl, Kind};

/// How long a member may take to exit after its disk failed. The member exits in
/// milliseconds; the margin is for a loaded CI box.
const EXIT_BOUND: Duration = Duration::from_secs(10);
/// The line the member logs once, naming the cause (crates/raft/src/fatal.rs).
const FATAL_LINE: &str = "fatal error, this member stops: ";
/// What a member with a database but no WAL says (crates/raft/src/node.rs).
const WAL_MISSING: &str = "no write-ahead log, but";

/// Puts `key` (the value through stdin, as big values do not fit on a command line).
fn put(ctl: &Etcdctl, key: &str, value: &str) -> bool {
    ctl.run_stdin(&["--command-timeout=5s", "put", key], Some(value))
        .code
        == 0
}

/// Asserts every key in `keys` reads back (linearizably) with `value`.
fn assert_all_present(ctl: &Etcdctl, keys: &[String], value: &str) {
    for key in keys {
        let out = ctl.run(&["get", "--print-value-only", key]);
        out.assert_ok();
        assert_eq!(
            out.stdout_str().trim_end(),
            value,
            "acknowledged key {key} is missing or wrong after the restart"
        );
    }
}

/// Writes `k0, k1, ...` until a put fails; returns the acknowledged keys and when the
/// failure was seen.
fn write_until_failure(
    ctl: &Etcdctl,
    prefix: &str,
    value: &str,
    max: usize,
) -> (Vec<String>, Instant) {
    let mut acked = Vec::new();
    for i in 0..max {
        let key = format!("{prefix}{i:04}");
        if !put(ctl, &key, value) {
            return (acked, Instant::now());
        }
        acked.push(key);
    }
    panic!("all {max} puts succeeded: the injected fault never hit");
}

/// Asserts the process exits non-zero within [`EXIT_BOUND`] of `since`, with the fatal line
/// naming one of `causes` and `detail` in its log; returns how long it took.
fn assert_fatal_exit(p: &mut Proc, since: Instant, causes: &[&str], detail: &str) -> Duration {
    let status = p.wait_exit(EXIT_BOUND.saturating_sub(since.elapsed()));
    let log = p.log();
    let Some(status) = status else {
        panic!(
            "the member is still running {EXIT_BOUND:?} after its disk failed; log:\n{}",
            tail(&log, 30)
        );
    };
    let took = since.elapsed();
    assert!(
        !status.success() && status.signal().is_none(),
        "expected a non-zero exit, got {status}; log:\n{}",
        tail(&log, 30)
    );
    let line = log
        .lines()
        .find(|l| l.contains(FATAL_LINE))
        .unwrap_or_else(|| panic!("no fatal line in the log ({status}):\n{log}"));
    assert!(
        causes.iter().any(|c| line.contains(c)) && line.contains(detail),
        "the fatal line should name one of {causes:?} and {detail:?}: {line}"
    );
    assert_eq!(
        log.matches(FATAL_LINE).count(),
        1,
        "one fatal line, not several:\n{log}"
    );
    took
}

#[test]
fn fdatasync_failure_ends_the_member_and_loses_no_acknowledged_write() {
    let s = Single::new();
    // A fresh member's WAL writer syncs 5 times while it starts (segment, vote, membership,
    // blank entry, publish); then once per write here. The 16th sync and all later fail.
    let mut p = Proc::spawn(
        &s.args(),
        Some("fdatasync:error=EIO:when=16+"),
        &s.file("faulty.log"),
    );
    p.wait_serving(&s.endpoint());
    let probe = HealthProbe::start(s.metrics_port());
    let ctl = Etcdctl::new(s.endpoint());
    let (acked, failed_at) = write_until_failure(&ctl, "k", "v", 100);
    assert!(!acked.is_empty(), "no write succeeded before the fault");
    let took = assert_fatal_exit(&mut p, failed_at, &["write-ahead log failed"], "fdatasync");
    let records = probe.finish();
    assert!(
        records.iter().any(|(_, a)| *a == Some(true)),
        "the probe never saw the member healthy before the fault: it proves nothing"
    );
    let lies: Vec<_> = records
        .iter()
        .filter(|(asked, a)| *asked >= failed_at && *a == Some(true))
        .collect();
    assert!(
        lies.is_empty(),
        "/health?serializable=true said true {} times after a write failed",
        lies.len()
    );
    eprintln!(
        "{} writes acknowledged; exited {took:?} after the failed write",
        acked.len()
    );
    drop(p);

    // Without the fault: everything acknowledged is there.
    let mut p = Proc::spawn(&s.args(), None, &s.file("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &acked, "v");
}

#[test]
fn a_follower_whose_disk_fails_exits_and_the_cluster_keeps_serving() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "before", "v"), "first put");

    // Restart the follower with a disk whose fdatasync fails from the WAL writer's 10th call
    // on (its restart needs a few: the vote, the entries it missed).
    let args = cluster.member(f).args().to_vec();
    let endpoint = cluster.member(f).endpoint();
    cluster.member_mut(f).kill9();
    let log = cluster.member(f).data_dir().with_file_name("faulty.log");
    let mut p = Proc::spawn(&args, Some("fdatasync:error=EIO:when=10+"), &log);
    p.wait_serving(&endpoint);

    // Every write goes on succeeding on the majority, while the follower fails and exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let since = loop {
        let key = format!("during{i:04}");
        assert!(
            put(&ctl, &key, "v"),
            "write {key} failed with one follower down"
        );
        i += 1;
        if p.try_exit().is_some() {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the follower is still running after {i} writes with its fdatasync failing; log:\n{}",
            tail(&p.log(), 30)
        );
    };
    assert_fatal_exit(&mut p, since, &["write-ahead log failed"], "fdatasync");
    for j in 0..5 {
        assert!(
            put(&ctl, &format!("after{j}"), "v"),
            "write after the follower exited"
        );
    }
    let out = ctl.run(&["get", "--print-value-only", "after4"]);
    out.assert_ok();
    assert_eq!(out.stdout_str().trim_end(), "v");
}

#[test]
fn a_full_disk_under_the_state_machine_ends_the_member() {
    let s = Single::new();
    // The WAL stays on the real disk; the state machine (member/snap) gets 6 MiB.
    let disk = SmallDisk::mount(&s.data_dir().join("member").join("snap"), "6m");
    let mut p = Proc::spawn(&s.args(), None, &s.file("full.log"));
    p.wait_serving(&s.endpoint());
    let probe = HealthProbe::start(s.metrics_port());
    let ctl = Etcdctl::new(s.endpoint());
    let value = "x".repeat(700_000);
    let (acked, failed_at) = write_until_failure(&ctl, "big", &value, 40);
    assert!(
        !acked.is_empty(),
        "no write succeeded before the disk filled"
    );
    // Usually an apply's commit fails; a periodic checkpoint may get there first.
    let took = assert_fatal_exit(
        &mut p,
        failed_at,
        &[
            "applying to the state machine failed",
            "state machine checkpoint failed",
        ],
        "No space left on device",
    );
    let records = probe.finish();
    assert!(
        records.iter().any(|(_, a)| *a == Some(true)),
        "the probe never saw the member healthy"
    );
    assert!(
        !records
            .iter()
            .any(|(asked, a)| *asked >= failed_at && *a == Some(true)),
        "/health?serializable=true said true after a write failed"
    );
    eprintln!(
        "{} writes acknowledged; exited {took:?} after the failed write",
        acked.len()
    );
    drop(p);

    // Space freed: the acknowledged writes are all there (replayed from the WAL).
    disk.unmount_keeping_files(&s.file("snap-copy"));
    let mut p = Proc::spawn(&s.args(), None, &s.file("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &acked, &value);
}

#[test]
fn a_failing_checkpoint_commit_exits_non_zero() {
    let s = Single::new();
    let mut p = Proc::spawn(&s.args(), None, &s.file("server.log"));
    p.wait_serving(&s.endpoint());
    let ctl = Etcdctl::new(s.endpoint());
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert!(put(&ctl, k, "v"), "put {k}");
    }
    // Every sync of the database file fails from now on. The stop's last checkpoint (a
    // durable redb commit) hits it: a member must not report a clean stop then.
    let db = s.data_dir().join("member").join("snap").join("db");
    let tracer = Tracer::attach(p.pid(), &db, &s.file("strace.log"));
    let status = Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert_fatal_exit(
        &mut p,
        Instant::now(),
        &["state machine checkpoint failed"],
        "Input/output error",
    );
    drop(tracer);
    drop(p);

    // The WAL has every acknowledged write: a restart replays them.
    let mut p = Proc::spawn(&s.args(), None, &s.file("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &keys, "v");
}

/// Deletes a member's `member/wal`.
fn delete_wal(data_dir: &Path) {
    let wal = data_dir.join("member").join("wal");
    assert!(wal.is_dir(), "{} should exist", wal.display());
    std::fs::remove_dir_all(&wal).expect("delete member/wal");
}

#[test]
fn a_member_without_its_wal_refuses_to_start() {
    let s = Single::new();
    let mut p = Proc::spawn(&s.args(), None, &s.file("first.log"));
    p.wait_serving(&s.endpoint());
    assert!(put(&Etcdctl::new(s.endpoint()), "k", "v"));
    drop(p);
    delete_wal(&s.data_dir());

    let mut p = Proc::spawn(&s.args(), None, &s.file("no-wal.log"));
    let status = p
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("started without its WAL:\n{}", tail(&p.log(), 20)));
    assert!(!status.success(), "exit status {status}");
    let log = p.log();
    assert!(
        log.contains(WAL_MISSING) && log.contains("member/wal"),
        "the refusal should say the WAL is missing:\n{log}"
    );
    // It did not recreate an empty WAL on the way out.
    assert!(!s.data_dir().join("member").join("wal").exists());
}

/// Restarts cluster member `f` and checks it refuses to start: a non-zero exit whose log
/// contains `needle` (`why` says what the refusal should say).
fn expect_refusal(cluster: &mut Cluster, f: usize, needle: &str, why: &str) {
    cluster.member_mut(f).respawn();
    let status = cluster
        .member_mut(f)
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("started anyway:\n{}", tail(&cluster.member(f).log(), 20)));
    assert!(!status.success(), "exit status {status}");
    let log = cluster.member(f).log();
    assert!(log.contains(needle), "{why}:\n{log}");
}

#[test]
fn a_cluster_member_without_its_wal_refuses_to_start_and_the_cluster_goes_on() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "k", "v"));
    cluster.member_mut(f).sigterm();
    delete_wal(&cluster.member(f).data_dir());
    expect_refusal(
        &mut cluster,
        f,
        WAL_MISSING,
        "the refusal should say the WAL is missing",
    );
    assert!(put(&ctl, "k2", "v2"), "the other two go on serving");
}

#[test]
fn a_cluster_member_that_lost_its_wal_and_database_refuses_to_bootstrap_again() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "k", "v"));
    cluster.member_mut(f).sigterm();
    // Its identity file survives, its raft state does not: as etcd, it asks its peers and
    // learns it was bootstrapped before.
    let data = cluster.member(f).data_dir();
    delete_wal(&data);
    std::fs::remove_dir_all(data.join("member").join("snap")).expect("delete member/snap");
    expect_refusal(
        &mut cluster,
        f,
        "has already been bootstrapped",
        "the refusal should be etcd's",
    );
    assert!(put(&ctl, "k2", "v2"), "the other two go on serving");
}
