//! Scheduled backups (`--backup-dir`, `--backup-interval`, `--backup-retention`), which etcd
//! lacks, on a real bramble process: backups rotate while clients write, every file left
//! verifies (etcd's envelope: length, SHA-256, Bramble's stream) and the newest holds the last
//! write and restores (`bramble snapshot restore`) into a member that serves it; a failing backup directory is logged while serving goes on; a schedule that would
//! never keep a backup is refused at start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bramble_api::etcdserverpb::RangeRequest;
use bramble_storage::mvcc::{verify_saved_snapshot, MvccOptions, MvccStore};
use bramble_tests::server::ServerConfig;
use bramble_tests::tools::bramble_bin;
use bramble_tests::{Cluster, ClusterConfig, Etcdctl, Kind, Server};

/// The finished backup files in `dir`, sorted (oldest first), and whether anything else is
/// there.
fn backups(dir: &Path) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut other = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list the backup dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("bramble-backup-") && name.ends_with(".db") {
            files.push(entry.path());
        } else {
            other.push(name);
        }
    }
    files.sort();
    (files, other)
}

/// Verifies a backup and loads it into a fresh store: its revision and the value of `key`.
fn open_backup(file: &Path, key: &str) -> (i64, Option<Vec<u8>>) {
    let bytes = std::fs::read(file).expect("read the backup");
    let saved = verify_saved_snapshot(&mut &bytes[..], bytes.len() as u64)
        .unwrap_or_else(|e| panic!("{} does not verify: {e}", file.display()));
    let dir = bramble_testkit::temp::dir("bramble-backup-check-");
    let store = MvccStore::open(&dir.path().join("db"), MvccOptions::default()).expect("open");
    let stream_len = usize::try_from(saved.stream.bytes).expect("length");
    store
        .install_snapshot(&mut &bytes[..stream_len])
        .expect("the backup installs");
    let resp = store
        .range(&RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .expect("range");
    (
        saved.stream.revision,
        resp.kvs.first().map(|kv| kv.value.clone()),
    )
}

/// The value of the unlabelled metric `name` on the member's client URL (`/metrics`).
fn metric(endpoint: &str, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("{endpoint}/metrics")])
        .output()
        .expect("run curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn with_backups(dir: &Path, interval: &str, retention: u32) -> ServerConfig {
    ServerConfig {
        extra_args: vec![
            format!("--backup-dir={}", dir.display()),
            format!("--backup-interval={interval}"),
            format!("--backup-retention={retention}"),
        ],
        ..ServerConfig::default()
    }
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn backups_rotate_while_writing_and_the_newest_holds_the_last_write() {
    let tmp = bramble_testkit::temp::dir("bramble-backups-e2e-");
    let dir = tmp.path().join("backups");
    let server = Server::start_with(Kind::Bramble, with_backups(&dir, "1s", 3));
    let ctl = server.etcdctl();
    // Writes for a few intervals, so backups are taken (and rotated) while clients write.
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(5) {
        ctl.run(&["put", &format!("k{i:05}"), &format!("v{i}")])
            .assert_ok();
        i += 1;
    }
    ctl.run(&["put", "last", "write"]).assert_ok();
    let status = ctl.run(&["endpoint", "status", "-w", "json"]);
    status.assert_ok();
    let text = status.stdout_str();
    let rev: i64 = text
        .split("\"revision\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {text}"));
    // The next backup after the last write holds it.
    wait_until(
        "a backup at the last revision",
        Duration::from_secs(10),
        || {
            let (files, _) = backups(&dir);
            files
                .last()
                .is_some_and(|newest| open_backup(newest, "last").0 == rev)
        },
    );
    let (files, other) = backups(&dir);
    assert!(
        (1..=3).contains(&files.len()),
        "retention 3, found {files:?}"
    );
    // A temporary file may exist only while a backup is being written.
    assert!(
        other.iter().all(|n| n.ends_with(".db.tmp")),
        "unexpected files {other:?}"
    );
    for file in &files {
        open_backup(file, "k00000");
    }
    let (newest_rev, last) = open_backup(files.last().expect("a backup"), "last");
    assert_eq!(newest_rev, rev);
    assert_eq!(last.as_deref(), Some(&b"write"[..]));
    let log = server.log();
    assert!(log.contains("backup written and verified"), "{log}");
    assert!(metric(&server.endpoint(), "bramble_backups_total") >= files.len() as f64);
    assert_eq!(
        metric(&server.endpoint(), "bramble_backup_last_size_bytes"),
        std::fs::metadata(files.last().expect("a backup"))
            .expect("stat")
            .len() as f64
    );
    assert!(
        metric(
            &server.endpoint(),
            "bramble_backup_last_success_timestamp_seconds"
        ) > 1.7e9
    );
    restore_serves_the_last_write(files.last().expect("a backup"));
    println!(
        "{i} puts in 5 s with a backup each second; {} backups kept",
        files.len()
    );
}

/// `bramble snapshot restore` of a backup into a new one-member cluster, which serves the
/// backup's last write.
fn restore_serves_the_last_write(backup: &Path) {
    let config = ClusterConfig {
        size: 1,
        ..ClusterConfig::default()
    };
    let cluster = Cluster::start_prepared(Kind::Bramble, config, |m| {
        let flag = |name: &str| m.flag(name).expect("member flag").to_string();
        let out = Command::new(bramble_bin())
            .args(["snapshot", "restore"])
            .arg(backup)
            .arg(format!("--name={}", m.name()))
            .arg(format!("--data-dir={}", m.data_dir().display()))
            .arg(format!("--initial-cluster={}", flag("initial-cluster")))
            .arg(format!(
                "--initial-cluster-token={}",
                flag("initial-cluster-token")
            ))
            .arg(format!(
                "--initial-advertise-peer-urls={}",
                flag("initial-advertise-peer-urls")
            ))
            .output()
            .expect("run bramble snapshot restore");
        assert!(
            out.status.success(),
            "restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let member = &cluster.members()[0];
    let got = Etcdctl::new(member.endpoint()).run(&["get", "last", "--print-value-only"]);
    got.assert_ok();
    assert_eq!(got.stdout_str().trim(), "write");
}

#[test]
fn a_failing_backup_directory_does_not_stop_serving() {
    let tmp = bramble_testkit::temp::dir("bramble-backups-e2e-");
    // A regular file where a directory must be: every backup fails.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let server = Server::start_with(
        Kind::Bramble,
        with_backups(&blocker.join("backups"), "1s", 2),
    );
    let ctl = server.etcdctl();
    wait_until("a logged backup failure", Duration::from_secs(10), || {
        server.log().contains("backup failed")
    });
    for i in 0..20 {
        ctl.run(&["put", &format!("k{i}"), "v"]).assert_ok();
    }
    let got = ctl.run(&["get", "k19", "--print-value-only"]);
    got.assert_ok();
    assert_eq!(got.stdout_str().trim(), "v");
    assert!(metric(&server.endpoint(), "bramble_backup_failures_total") >= 1.0);
    assert_eq!(metric(&server.endpoint(), "bramble_backups_total"), 0.0);
}

#[test]
fn a_schedule_that_keeps_nothing_is_refused() {
    for bad in [
        &["--backup-retention=0"][..],
        &["--backup-interval=10ms"],
        &["--backup-interval=soon"],
    ] {
        let tmp = bramble_testkit::temp::dir("bramble-backups-e2e-");
        let data = tmp.path().join("data");
        let out = Command::new(bramble_bin())
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--backup-dir={}", tmp.path().join("b").display()))
            .args(["--listen-client-urls", "http://127.0.0.1:0"])
            .args(["--listen-peer-urls", "http://127.0.0.1:0"])
            .args(bad)
            .stdin(Stdio::null())
            .output()
            .expect("run bramble");
        assert!(!out.status.success(), "{bad:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("backup"), "{bad:?}: {stderr}");
        assert!(!data.exists(), "{bad:?}: the data dir was created");
    }
}
