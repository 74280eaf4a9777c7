//! Migration from etcd end to end: a real etcd (3.4 from Debian, 3.5 and 3.6 built from
//! etcd's Go modules by `scripts/etcd-build`) writes a history (3,000 keys in txns,
//! 100 KB values, overwrites, deletes, a range delete, a txn, leases with attached keys
//! and a lease revoke, a compaction at a tombstone's revision, more writes after it);
//! `etcdctl snapshot save` saves it; `bramble snapshot restore` turns the file into the
//! data dir of a one-member cluster and, run per member, of a three-member cluster; the
//! Bramble members then answer as the etcd that wrote the file, which keeps running
//! beside them: every key at every revision from the compaction revision to the
//! current one, the current revision, HashKV, compacted reads refused, the leases (ids,
//! granted TTL, attached keys), the users and roles (etcdctl's `user`/`role` views), and
//! the next write takes the next revision.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::client::{all_keys_at, connect_endpoint};
use bramble_tests::cluster::{Cluster, ClusterConfig};
use bramble_tests::ports::free_port;
use bramble_tests::server::single_member_args;
use bramble_tests::{tools, Etcdctl, Kind};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn,
    TxnOp,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// A source etcd process with its own data dir; killed on drop.
struct SourceEtcd {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl SourceEtcd {
    /// Starts `bin` as a fresh one-member etcd; returns once it serves a Range. Ports are
    /// probed, then bound by etcd later, so a start that exits early (another process took
    /// a port) is retried on new ports, twice.
    fn start(bin: &Path, rt: &tokio::runtime::Runtime) -> SourceEtcd {
        let mut last = String::new();
        for _ in 0..3 {
            match SourceEtcd::try_start(bin, rt) {
                Ok(etcd) => return etcd,
                Err(log) => last = log,
            }
        }
        panic!(
            "{} exited before serving (3 attempts):\n{last}",
            bin.display()
        );
    }

    /// One attempt: the etcd, or its log if it exited before serving.
    fn try_start(bin: &Path, rt: &tokio::runtime::Runtime) -> Result<SourceEtcd, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(bin)
            .args(single_member_args(&dir.path().join("data"), client, peer))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let endpoint = format!("http://127.0.0.1:{client}");
        let mut etcd = SourceEtcd {
            child,
            endpoint,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = rt.block_on(async {
                match bramble_tests::client::try_connect_endpoint(&etcd.endpoint).await {
                    Ok(mut c) => c.get("health", None).await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok {
                return Ok(etcd);
            }
            let log = std::fs::read_to_string(etcd.dir.path().join("etcd.log")).unwrap_or_default();
            if let Ok(Some(status)) = etcd.child.try_wait() {
                return Err(format!("exit status {status}:\n{log}"));
            }
            assert!(
                Instant::now() < deadline,
                "{} did not serve:\n{log}",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SourceEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the source etcd holds after the history.
struct History {
    /// The compaction revision.
    compacted: i64,
    /// The current revision.
    current: i64,
}

/// Writes the history into `c` (see the module docs).
async fn write_history(c: &mut Client) -> History {
    let kept = c.lease_grant(600, None).await.expect("grant").id();
    let _empty = c.lease_grant(3000, None).await.expect("grant").id();
    let revoked = c.lease_grant(900, None).await.expect("grant").id();
    for batch in 0..30 {
        let ops: Vec<TxnOp> = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                TxnOp::put(format!("/bulk/{n:04}"), format!("value-{n}"), None)
            })
            .collect();
        c.txn(Txn::new().and_then(ops)).await.expect("bulk txn");
    }
    for i in 0..10u8 {
        c.put(format!("/big/{i}"), vec![b'a' + i; 100_000], None)
            .await
            .expect("big put");
    }
    for i in 0..5 {
        c.put(
            format!("/leased/{i}"),
            "l",
            Some(PutOptions::new().with_lease(kept)),
        )
        .await
        .expect("leased put");
    }
    for i in 0..3 {
        c.put(
            format!("/revoked/{i}"),
            "r",
            Some(PutOptions::new().with_lease(revoked)),
        )
        .await
        .expect("leased put");
    }
    for i in 0..60 {
        c.put(format!("/bulk/{:04}", i % 20), format!("over-{i}"), None)
            .await
            .expect("overwrite");
    }
    c.delete("/bulk/0100", None).await.expect("delete");
    c.delete("/bulk/02", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("range delete");
    // Compacted at a tombstone's revision: etcd drops the tombstone, and the current
    // revision must still come back as this one.
    let del = c.delete("/bulk/0999", None).await.expect("delete");
    let compacted = del.header().expect("header").revision();
    c.compact(compacted, None).await.expect("compact");
    let txn = Txn::new()
        .when(vec![Compare::version("/bulk/0003", CompareOp::Greater, 0)])
        .and_then(vec![
            TxnOp::put("/bulk/0003", "txn", None),
            TxnOp::delete("/bulk/0004", None),
            TxnOp::put("/txn/new", "t", Some(PutOptions::new().with_lease(kept))),
        ])
        .or_else(vec![TxnOp::put("/txn/else", "e", None)]);
    assert!(c.txn(txn).await.expect("txn").succeeded());
    c.lease_revoke(revoked).await.expect("revoke");
    c.put("/bulk/0100", "recreated", None).await.expect("put");
    c.put("/big/0", vec![b'z'; 120_000], None)
        .await
        .expect("put");
    c.delete("/big/1", None).await.expect("delete");
    for i in 0..20 {
        c.put(format!("/bulk/{:04}", i % 5), format!("after-{i}"), None)
            .await
            .expect("put");
        c.put(format!("/tail/{i}"), "t", None).await.expect("put");
    }
    let current = c
        .get("/tail/0", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    History { compacted, current }
}

/// Users and roles made on the source etcd before its snapshot.
const AUTH_SETUP: &[&str] = &[
    "user add --interactive=false mig:pw",
    "user add --interactive=false other:pw2",
    "role add migrole",
    "role add empty",
    "role grant-permission migrole readwrite /m --prefix",
    "role grant-permission migrole read /r /s",
    "user grant-role mig migrole",
    "user grant-role other empty",
];

/// What etcdctl shows of the users and roles.
fn auth_views(ctl: &Etcdctl) -> Vec<String> {
    [
        "user list",
        "role list",
        "user get mig --detail",
        "role get migrole",
        "user get other",
    ]
    .iter()
    .map(|step| {
        let args: Vec<&str> = step.split_whitespace().collect();
        let out = ctl.run(&args);
        out.assert_ok();
        out.stdout_str()
    })
    .collect()
}

/// Leases as (id, granted TTL, attached keys), by id.
async fn leases(c: &mut Client) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    let list = c.leases().await.expect("lease leases");
    for l in list.leases() {
        let ttl = c
            .lease_time_to_live(l.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("time to live");
        assert!(ttl.ttl() > 0 && ttl.ttl() <= ttl.granted_ttl(), "{ttl:?}");
        let mut keys = ttl.keys().to_vec();
        keys.sort();
        out.push((l.id(), ttl.granted_ttl(), keys));
    }
    out.sort();
    out
}

/// A Bramble cluster of `size` whose members were restored from `file`; returns it
/// and how long the restores took.
fn restored_cluster(file: &Path, size: usize) -> (Cluster, Duration) {
    let mut took = Duration::ZERO;
    let cluster = Cluster::start_prepared(
        Kind::Bramble,
        ClusterConfig {
            size,
            ..ClusterConfig::default()
        },
        |m| {
            let start = Instant::now();
            let out = Command::new(tools::bramble_bin())
                .args(m.restore_args(file))
                .output()
                .expect("run bramble snapshot restore");
            took += start.elapsed();
            assert!(
                out.status.success(),
                "restore of {}: {}",
                m.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        },
    );
    (cluster, took)
}

/// The migration of one etcd version: history, save, restore into 1 and 3 members,
/// compare with the source.
fn migrate_from(label: &str, version: &str, etcd_bin: &Path) {
    let rt = runtime();
    let started = Instant::now();
    let source = SourceEtcd::start(etcd_bin, &rt);
    let mut src = rt.block_on(connect_endpoint(&source.endpoint));
    let status = rt.block_on(src.status()).expect("status");
    assert!(
        status.version().starts_with(version),
        "{label}: {} is etcd {}",
        etcd_bin.display(),
        status.version()
    );
    let history = rt.block_on(write_history(&mut src));
    assert!(history.current - history.compacted > 40, "{label}");
    // Users and roles travel too (auth stays off: a snapshot with it on is refused).
    let source_ctl = Etcdctl::new(source.endpoint.clone());
    for step in AUTH_SETUP {
        let args: Vec<&str> = step.split_whitespace().collect();
        source_ctl.run(&args).assert_ok();
    }
    let expected_auth = auth_views(&source_ctl);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd.db");
    Etcdctl::new(source.endpoint.clone())
        .run(&["snapshot", "save", file.to_str().expect("utf-8")])
        .assert_ok();
    let bytes = std::fs::metadata(&file).expect("snapshot file").len();
    let expected_leases = rt.block_on(leases(&mut src));
    assert_eq!(expected_leases.len(), 2, "{label}: {expected_leases:?}");
    let expected_hash = rt
        .block_on(src.hash_kv(history.current))
        .expect("hashkv")
        .hash();
    let wrote = started.elapsed();

    for size in [1, 3] {
        let (cluster, restore_took) = restored_cluster(&file, size);
        for (i, m) in cluster.members().iter().enumerate() {
            let mut c = rt.block_on(connect_endpoint(&m.endpoint()));
            // Every revision on the first member; a sample on the others.
            let step = if i == 0 { 1 } else { 7 };
            let mut revs: Vec<i64> = (history.compacted..=history.current)
                .step_by(step)
                .collect();
            revs.push(history.current);
            for rev in revs {
                let (_, want) = rt.block_on(all_keys_at(&mut src, rev));
                let (_, got) = rt.block_on(all_keys_at(&mut c, rev));
                assert!(
                    want == got,
                    "{label}, {size} members, {}: keys at revision {rev} differ \
                     ({} rows from etcd, {} from bramble)",
                    m.name(),
                    want.len(),
                    got.len()
                );
            }
            let (rev, _) = rt.block_on(all_keys_at(&mut c, 0));
            assert_eq!(
                rev,
                history.current,
                "{label} {}: current revision",
                m.name()
            );
            let old = rt.block_on(c.get(
                "/bulk/0001",
                Some(GetOptions::new().with_revision(history.compacted - 1)),
            ));
            let err = old.expect_err("a compacted read").to_string();
            assert!(
                err.contains("etcdserver: mvcc: required revision has been compacted"),
                "{label}: {err}"
            );
            let hash = rt
                .block_on(c.hash_kv(history.current))
                .expect("hashkv")
                .hash();
            assert_eq!(hash, expected_hash, "{label} {}: hashkv", m.name());
            assert_eq!(
                rt.block_on(leases(&mut c)),
                expected_leases,
                "{label} {}: leases",
                m.name()
            );
            assert_eq!(
                auth_views(&m.etcdctl()),
                expected_auth,
                "{label} {}: users and roles",
                m.name()
            );
        }
        let put = rt
            .block_on(async {
                let mut c = connect_endpoint(&cluster.member(0).endpoint()).await;
                c.put("/after/migration", "x", None).await
            })
            .expect("put after the migration");
        assert_eq!(
            put.header().expect("header").revision(),
            history.current + 1,
            "{label}, {size} members: the next revision"
        );
        eprintln!(
            "{label}: {} revisions ({} compacted), snapshot {bytes} bytes, restore of {size} \
             member(s) {:.2} s",
            history.current,
            history.compacted,
            restore_took.as_secs_f64()
        );
    }
    eprintln!(
        "{label}: history written in {:.1} s, whole scenario {:.1} s",
        wrote.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn migrates_from_etcd_3_4() {
    migrate_from("etcd 3.4", "3.4.", &tools::etcd_bin());
}

#[test]
fn migrates_from_etcd_3_5() {
    migrate_from("etcd 3.5", "3.5.", &tools::built_etcd("v3.5"));
}

#[test]
fn migrates_from_etcd_3_6() {
    migrate_from("etcd 3.6", "3.6.", &tools::built_etcd("v3.6"));
}

/// The import does not carry an enabled auth state over yet, so a snapshot with
/// authentication on is refused (and nothing is written) rather than restored into a
/// cluster that would serve it with auth off.
#[test]
fn a_snapshot_with_authentication_on_is_refused() {
    let rt = runtime();
    let source = SourceEtcd::start(&tools::etcd_bin(), &rt);
    let ctl = Etcdctl::new(source.endpoint.clone());
    ctl.run(&["put", "k", "v"]).assert_ok();
    ctl.run(&["user", "add", "root:secret"]).assert_ok();
    ctl.run(&["auth", "enable"]).assert_ok();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd.db");
    ctl.run(&[
        "--user=root:secret",
        "snapshot",
        "save",
        file.to_str().expect("utf-8"),
    ])
    .assert_ok();
    let data = dir.path().join("data");
    let out = Command::new(tools::bramble_bin())
        .args(["snapshot", "restore", file.to_str().expect("utf-8")])
        .arg(format!("--data-dir={}", data.display()))
        .output()
        .expect("run bramble snapshot restore");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("authentication is enabled in this etcd snapshot"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused restore wrote {}", data.display());
}
