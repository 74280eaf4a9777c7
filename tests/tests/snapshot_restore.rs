//! Disaster recovery end to end: `etcdctl snapshot save` from a one-member cluster, the
//! file restored into three data dirs (`etcdutl snapshot restore` for etcd 3.6,
//! `bramble snapshot restore` for Bramble), a NEW three-member cluster started on them
//! with the same flags: every member serves the data as it was (value, create and mod
//! revision, version, lease), at the same revision and HashKV, refuses compacted reads,
//! takes the next revision for a new write, and comes back after a restart of all three.
//! Then Bramble's `--bump-revision/--mark-compacted` against a watcher from before, and
//! its refusals, which leave nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bramble_tests::client::{all_keys_once_at, connect_endpoint, KeyRow};
use bramble_tests::cluster::{Cluster, ClusterConfig, MemberProcess};
use bramble_tests::{target, tools};
use bramble_tests::{Etcdctl, Kind, Server};

/// How long a restored follower may take to apply a revision before it is compared.
const CATCH_UP: Duration = Duration::from_secs(10);
use etcd_client::{Client, GetOptions, PutOptions, WatchOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// The history the scenario writes: a lease, several versions, a delete, a compaction.
/// Returns the lease id.
async fn write_history(c: &mut Client) -> i64 {
    let lease = c.lease_grant(600, None).await.expect("grant").id();
    c.put("a", "1", None).await.expect("put"); // 2
    c.put("a", "2", None).await.expect("put"); // 3
    c.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease"); // 4
    c.put("gone", "y", None).await.expect("put"); // 5
    c.delete("gone", None).await.expect("delete"); // 6
    c.compact(3, None).await.expect("compact");
    c.put("a", "3", None).await.expect("put"); // 7
    c.put("b", "1", None).await.expect("put"); // 8
    lease
}

/// The restore arguments of `member` from `file`, `extra` appended.
fn restore_with(member: &MemberProcess, file: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = member.restore_args(file);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `kind`'s restore tool with `args`; returns (exit code, stderr).
fn run_restore(kind: Kind, args: &[String]) -> (i32, String) {
    let bin: PathBuf = match kind {
        Kind::Etcd => tools::etcdutl_bin(),
        Kind::Bramble => tools::bramble_bin(),
    };
    let out = std::process::Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the original member held when it was saved.
struct Original {
    rev: i64,
    rows: Vec<KeyRow>,
    hash: u64,
    lease: i64,
}

/// Saves a snapshot of a fresh one-member `kind` cluster holding the history.
fn save_original(kind: Kind, file: &Path) -> Original {
    let rt = runtime();
    let server = Server::start(kind);
    let lease = rt.block_on(async {
        let mut c = connect_endpoint(&server.endpoint()).await;
        write_history(&mut c).await
    });
    let (rev, rows) = rt.block_on(all_keys_once_at(&server.endpoint(), 0, Duration::ZERO));
    let hash = Etcdctl::new(server.endpoint()).hashkv(rev);
    server
        .etcdctl()
        .run(&["snapshot", "save", file.to_str().expect("utf-8")])
        .assert_ok();
    Original {
        rev,
        rows,
        hash,
        lease,
    }
}

/// Starts a 3-member `kind` cluster on data dirs restored from `file`.
fn restored_cluster(kind: Kind, file: &Path, extra: &[&str]) -> Cluster {
    Cluster::start_prepared(kind, ClusterConfig::default(), |m| {
        let (code, stderr) = run_restore(kind, &restore_with(m, file, extra));
        assert_eq!(code, 0, "{kind} restore of {}: {stderr}", m.name());
    })
}

#[test]
fn a_new_cluster_restored_from_a_snapshot_serves_the_data_on_every_member() {
    let rt = runtime();
    let mut seen: Vec<(Kind, i64, Vec<KeyRow>)> = Vec::new();
    for kind in target::differential_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("snap.db");
        let original = save_original(kind, &file);
        let mut cluster = restored_cluster(kind, &file, &[]);

        for m in cluster.members() {
            let (rev, rows) = rt.block_on(all_keys_once_at(&m.endpoint(), 0, Duration::ZERO));
            assert_eq!(rev, original.rev, "{kind} {}: revision", m.name());
            assert_eq!(rows, original.rows, "{kind} {}: keys", m.name());
            assert_eq!(
                Etcdctl::new(m.endpoint()).hashkv(original.rev),
                original.hash,
                "{kind} {}: hashkv at {}",
                m.name(),
                original.rev
            );
            let old = m.etcdctl().run(&["get", "a", "--rev=2"]);
            assert_ne!(old.code, 0, "{kind}: a compacted read succeeded");
            assert!(
                old.stderr
                    .contains("etcdserver: mvcc: required revision has been compacted"),
                "{kind}: {old}"
            );
        }
        // The lease came along, with its key.
        let leases = cluster.etcdctl().run(&["lease", "list"]);
        leases.assert_ok();
        assert!(
            leases
                .stdout_str()
                .contains(&format!("{:x}", original.lease)),
            "{kind}: {leases}"
        );

        // A new write takes the next revision, everywhere.
        let put = rt.block_on(async {
            let mut c = connect_endpoint(&cluster.member(1).endpoint()).await;
            c.put("after", "restore", None)
                .await
                .expect("put after restore")
        });
        assert_eq!(
            put.header().expect("header").revision(),
            original.rev + 1,
            "{kind}: the next revision"
        );

        cluster.restart_all();
        let mut expected = original.rows.clone();
        for m in cluster.members() {
            let (rev, rows) =
                rt.block_on(all_keys_once_at(&m.endpoint(), original.rev + 1, CATCH_UP));
            assert_eq!(rev, original.rev + 1, "{kind} {} after restart", m.name());
            let after: Vec<_> = rows.iter().filter(|r| r.0 == b"after").cloned().collect();
            assert_eq!(after.len(), 1, "{kind} {}: {rows:?}", m.name());
            let before: Vec<KeyRow> = rows.into_iter().filter(|r| r.0 != b"after").collect();
            assert_eq!(before, expected, "{kind} {} after restart", m.name());
        }
        expected.sort();
        seen.push((kind, original.rev, expected));
    }
    // etcd and Bramble agree on every revision, version and value (lease ids are each
    // server's own).
    let masked = |rows: &Vec<KeyRow>| -> Vec<KeyRow> {
        rows.iter()
            .map(|r| (r.0.clone(), r.1.clone(), r.2, r.3, r.4, i64::from(r.5 != 0)))
            .collect()
    };
    for pair in seen.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].1,
            "revision: {:?} vs {:?}",
            pair[0].0, pair[1].0
        );
        assert_eq!(masked(&pair[0].2), masked(&pair[1].2), "keys");
    }
}

#[test]
fn bump_revision_and_mark_compacted_tell_an_old_watcher_to_resync() {
    for kind in target::differential_targets() {
        bump_and_mark_compacted(kind);
    }
}

/// `--bump-revision` and `--mark-compacted` on `kind`'s restore (etcdutl 3.6 for etcd).
fn bump_and_mark_compacted(kind: Kind) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    let original = save_original(kind, &file);
    // The old cluster went on after the backup: a watcher saw revisions the snapshot
    // does not hold, and will resume after the last one it saw.
    let last_seen = original.rev + 3;
    let bump = 1000;
    let cluster = restored_cluster(
        kind,
        &file,
        &[&format!("--bump-revision={bump}"), "--mark-compacted"],
    );
    let new_rev = original.rev + bump;
    rt.block_on(async {
        let mut c = connect_endpoint(&cluster.member(2).endpoint()).await;
        let mut stream = c
            .watch(
                "a",
                Some(WatchOptions::new().with_start_revision(last_seen + 1)),
            )
            .await
            .expect("watch");
        let resp = stream
            .message()
            .await
            .expect("watch response")
            .expect("a watch response");
        // Not silence (the revisions it waits for would be reused by new writes): the
        // watch is cancelled as compacted, so the client relists.
        let first = if resp.created() {
            stream
                .message()
                .await
                .expect("watch response")
                .expect("the cancellation")
        } else {
            resp
        };
        assert!(first.canceled(), "{first:?}");
        assert_eq!(first.compact_revision(), new_rev);

        let resp = c.get("a", None).await.expect("get");
        assert_eq!(resp.header().expect("header").revision(), new_rev);
        let old = c
            .get("a", Some(GetOptions::new().with_revision(original.rev)))
            .await
            .expect_err("a read from before the bump");
        assert!(
            old.to_string()
                .contains("etcdserver: mvcc: required revision has been compacted"),
            "{old}"
        );
        let put = c.put("a", "after", None).await.expect("put");
        assert_eq!(put.header().expect("header").revision(), new_rev + 1);
    });
    for m in cluster.members() {
        let (rev, rows) = rt.block_on(all_keys_once_at(&m.endpoint(), new_rev + 1, CATCH_UP));
        assert_eq!(rev, new_rev + 1, "{}", m.name());
        let b: Vec<_> = rows.iter().filter(|r| r.0 == b"b").collect();
        let was: Vec<_> = original.rows.iter().filter(|r| r.0 == b"b").collect();
        assert_eq!(b, was, "{}: an untouched key keeps its revisions", m.name());
    }
}

/// Every file and directory under `dir`, as relative paths.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            out.push(p.strip_prefix(dir).expect("under").display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A refused restore: its arguments, the snapshot file's content for it (the good file
/// if `None`), the exit code and a part of the message.
type Case = (Vec<String>, Option<Vec<u8>>, i32, &'static str);

#[test]
fn refusals_write_nothing() {
    let kind = target::system_under_test();
    if kind != Kind::Bramble {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    save_original(kind, &file);
    let good = std::fs::read(&file).expect("read");
    let bramble = |args: &[&str]| {
        let mut full = vec!["snapshot".to_string(), "restore".to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        run_restore(Kind::Bramble, &full)
    };
    let target = dir.path().join("new").join("data");
    let target_arg = format!("--data-dir={}", target.display());
    let file_arg = file.display().to_string();
    let before = listing(dir.path());

    let cases: Vec<Case> = vec![
        (
            vec![
                file_arg.clone(),
                target_arg.clone(),
                "--mark-compacted".into(),
            ],
            None,
            128,
            "Error: --mark-compacted required if --revision-bump > 0",
        ),
        (
            vec![
                file_arg.clone(),
                target_arg.clone(),
                "--bump-revision=10".into(),
            ],
            None,
            128,
            "Error: --mark-compacted required if --revision-bump > 0",
        ),
        (
            vec![file_arg.clone(), target_arg.clone(), "--name=nobody".into()],
            None,
            1,
            "couldn't find local name \"nobody\" in the initial cluster configuration",
        ),
        (
            vec![file_arg.clone(), target_arg.clone()],
            Some(good[..good.len() - 1].to_vec()),
            1,
            "Error: snapshot missing hash but --skip-hash-check=false",
        ),
        (
            vec![file_arg.clone(), target_arg.clone()],
            Some({
                let mut b = good.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            }),
            1,
            "sha256 mismatch",
        ),
        (
            vec![
                file_arg.clone(),
                target_arg.clone(),
                "--skip-hash-check".into(),
            ],
            Some({
                let mut b = good.clone();
                b[40] ^= 1;
                b
            }),
            1,
            "Error: ",
        ),
    ];
    for (args, content, code, message) in cases {
        if let Some(bytes) = &content {
            std::fs::write(&file, bytes).expect("write the bad file");
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, stderr) = bramble(&args);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(
            listing(dir.path()),
            before,
            "{args:?} left something behind"
        );
        std::fs::write(&file, &good).expect("restore the good file");
    }

    // A data dir that is not empty is refused and left as it was.
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("mine"), b"keep").expect("write");
    let before = listing(dir.path());
    let (got, stderr) = bramble(&[&file_arg, &target_arg]);
    assert_eq!(got, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Error: data-dir {:?} not empty or could not be read",
            target.display().to_string()
        )),
        "{stderr}"
    );
    assert_eq!(listing(dir.path()), before);

    // etcd's etcdutl says the same about a file without its hash.
    let mut cut = good.clone();
    cut.truncate(good.len() - 1);
    std::fs::write(&file, &cut).expect("write");
    let etcd_target = dir.path().join("etcd-data");
    let (code, stderr) = run_restore(
        Kind::Etcd,
        &[
            "snapshot".into(),
            "restore".into(),
            file_arg.clone(),
            format!("--data-dir={}", etcd_target.display()),
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("snapshot missing hash but --skip-hash-check=false"),
        "{stderr}"
    );
}
