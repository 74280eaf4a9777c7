//! Maintenance.Snapshot end to end: `etcdctl snapshot save` against etcd and Bramble; the
//! file Bramble streams (its own snapshot format in etcd's envelope: see
//! docs/compatibility.md) checked and decoded by the storage layer against the live store;
//! `bramble snapshot status` on it; writes going on during a snapshot; a slow reader not
//! growing the server's memory.

use std::path::Path;
use std::time::{Duration, Instant};

use bramble_storage::mvcc::{verify_saved_snapshot, MvccOptions, MvccStore};
use bramble_tests::client::{all_keys_at, connect, KeyRow};
use bramble_tests::{target, tools};
use bramble_tests::{Kind, Server};
use etcd_client::{Client, PutOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// Keys as (key, value, create revision, mod revision, version, lease), sorted by key.
type Rows = Vec<KeyRow>;

/// Checks a saved Bramble snapshot file and loads its stream into a fresh store; returns
/// its revision and keys.
fn decode_saved(file: &Path) -> (i64, Rows) {
    let bytes = std::fs::read(file).expect("read the saved snapshot");
    assert_eq!(bytes.len() % 512, 32, "etcdctl's length rule");
    let saved = verify_saved_snapshot(&mut &bytes[..], bytes.len() as u64)
        .expect("the saved file verifies");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MvccStore::open(&dir.path().join("db"), MvccOptions::default()).expect("open");
    let stream_len = usize::try_from(saved.stream.bytes).expect("length");
    let info = store
        .install_snapshot(&mut &bytes[..stream_len])
        .expect("the stream installs");
    assert_eq!(info.revision, saved.stream.revision);
    let resp = store
        .range(&bramble_api::etcdserverpb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range the restored store");
    let rows = resp
        .kvs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.clone(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease,
            )
        })
        .collect();
    (info.revision, rows)
}

#[test]
fn snapshot_save_succeeds_and_bramble_file_holds_the_live_store() {
    let rt = runtime();
    for kind in target::differential_targets() {
        let server = Server::start(kind);
        let (rev, rows) = rt.block_on(async {
            let mut c = connect(&server).await;
            let lease = c.lease_grant(600, None).await.expect("grant").id();
            for i in 0..100 {
                c.put(format!("key/{i:03}"), format!("value {i}"), None)
                    .await
                    .expect("put");
            }
            c.put("key/050", "again", None).await.expect("put");
            c.delete("key/007", None).await.expect("delete");
            c.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
                .await
                .expect("put with lease");
            all_keys_at(&mut c, 0).await
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("snap.db");
        let out = server
            .etcdctl()
            .run(&["snapshot", "save", file.to_str().unwrap()]);
        out.assert_ok();
        assert!(
            out.stdout_str().contains("Snapshot saved at"),
            "{kind}: {out}"
        );
        if kind == Kind::Bramble {
            let (snap_rev, snap_rows) = decode_saved(&file);
            assert_eq!(snap_rev, rev, "snapshot revision");
            assert_eq!(snap_rows, rows, "snapshot keys");
            check_status_tool(&file, rev);
        }
    }
}

/// `bramble snapshot status` on a good file (every output format) and a corrupt one.
fn check_status_tool(file: &Path, rev: i64) {
    let status = |args: &[&str]| {
        std::process::Command::new(tools::bramble_bin())
            .args(["snapshot", "status"])
            .arg(file)
            .args(args)
            .output()
            .expect("run bramble snapshot status")
    };
    let json = status(&["-w", "json"]);
    assert!(json.status.success(), "{json:?}");
    let json = String::from_utf8_lossy(&json.stdout).to_string();
    assert!(json.contains(&format!("\"revision\":{rev},")), "{json}");
    let size = std::fs::metadata(file).expect("metadata").len();
    assert!(json.contains(&format!("\"totalSize\":{size}}}")), "{json}");
    let table = status(&[]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    // The HASH column is as wide as the hash's hex (etcdutl's `%x`: 7 digits when it
    // starts with a zero), so only its neighbour is fixed.
    let header = table
        .lines()
        .find(|l| l.contains("HASH"))
        .unwrap_or_default();
    assert!(
        header.trim_start_matches(['|', ' ']).starts_with("HASH")
            && header.contains(" | REVISION |"),
        "{table}"
    );
    assert!(table.contains(&format!(" {rev} |")), "{table}");

    let mut bytes = std::fs::read(file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(file, &bytes).expect("write corrupt copy");
    let bad = status(&[]);
    assert!(!bad.status.success(), "a corrupt file passed: {bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Error:"),
        "{bad:?}"
    );
}

/// Puts `count` values of `len` bytes (keys `big/NNNN`).
async fn load(c: &mut Client, count: usize, len: usize) {
    for i in 0..count {
        c.put(format!("big/{i:04}"), vec![b'x'; len], None)
            .await
            .expect("put");
    }
}

/// The longest put latency while `busy` runs, with a writer putting as fast as it can.
async fn longest_put_during(c: &Client, busy: impl std::future::Future<Output = ()>) -> Duration {
    let mut writer = c.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = stop.clone();
    let handle = tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        let mut i = 0u64;
        while !stop_w.load(std::sync::atomic::Ordering::SeqCst) {
            let start = Instant::now();
            writer
                .put(format!("w/{}", i % 100), "v", None)
                .await
                .expect("writer put");
            longest = longest.max(start.elapsed());
            i += 1;
        }
        (longest, i)
    });
    busy.await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (longest, puts) = handle.await.expect("writer");
    println!("  {puts} puts, longest {longest:?}");
    longest
}

#[test]
fn writes_go_on_during_a_snapshot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = Server::start(Kind::Bramble);
    rt.block_on(async {
        let mut c = connect(&server).await;
        load(&mut c, 40, 1024 * 1024).await;
        let baseline = longest_put_during(&c, tokio::time::sleep(Duration::from_secs(3))).await;
        let mut snap_client = c.clone();
        let mut snap_bytes = 0usize;
        let snap_time = Instant::now();
        let during = longest_put_during(&c, async {
            let mut stream = snap_client
                .snapshot()
                .await
                .expect("snapshot stream");
            let mut messages = 0u64;
            while let Some(msg) = stream.message().await.expect("snapshot message") {
                snap_bytes += msg.blob().len();
                messages += 1;
                // Paced (about 4 s for 40 MiB), so a stall of the writer shows.
                if messages.is_multiple_of(64) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .await;
        let snap_time = snap_time.elapsed();
        println!(
            "snapshot of {snap_bytes} bytes in {snap_time:?}; longest put: {baseline:?} without, {during:?} during"
        );
        assert!(snap_bytes > 40 * 1024 * 1024);
        // Not stalled: no put waits for the snapshot (a stalled writer would wait for
        // all of it).
        assert!(
            during < snap_time / 2,
            "a put took {during:?} during a {snap_time:?} snapshot (baseline {baseline:?})"
        );
    });
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn a_slow_reader_does_not_grow_server_memory() {
    let rt = runtime();
    let server = Server::start(Kind::Bramble);
    let pid = server.pid().expect("pid");
    rt.block_on(async {
        let mut c = connect(&server).await;
        load(&mut c, 50, 1024 * 1024).await;
        let before = rss(pid);
        let mut stream = c.snapshot().await.expect("snapshot stream");
        let mut got = 0usize;
        let mut peak = before;
        // Read a little, then stall with most of the 50 MB still to come.
        for _ in 0..8 {
            got += stream
                .message()
                .await
                .expect("message")
                .expect("more")
                .blob()
                .len();
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(rss(pid));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        peak = peak.max(rss(pid));
        while let Some(msg) = stream.message().await.expect("message") {
            got += msg.blob().len();
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "slow reader: {got} bytes; server RSS {:.1} MiB before, peak {:.1} MiB while stalled",
            mib(before),
            mib(peak)
        );
        assert!(got > 50 * 1024 * 1024);
        assert!(
            peak < before + 20 * 1024 * 1024,
            "RSS grew from {:.1} to {:.1} MiB for a stalled 50 MiB snapshot",
            mib(before),
            mib(peak)
        );
    });
}
