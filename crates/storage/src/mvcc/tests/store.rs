//! Opening, reopening, checkpoints and crashes, concurrent readers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

#[test]
fn fresh_store() {
    let s = TestStore::new();
    assert_eq!(s.store.applied(), (0, 0));
    assert_eq!(s.store.current_revision(), 1);
    assert_eq!(s.store.compact_revision(), -1);
    // Checkpointing nothing is fine, and reopening a fresh store too.
    s.store.checkpoint().unwrap();
    let s = s.reopen();
    assert_eq!(s.store.applied(), (0, 0));
    assert_eq!(s.store.current_revision(), 1);
}

fn busy_history(s: &TestStore) {
    for i in 0..50 {
        s.put(&format!("k{}", i % 7), &i.to_string());
        if i % 5 == 0 {
            s.del(&format!("k{}", i % 3), "");
        }
        if i % 11 == 0 {
            s.txn(TxnRequest {
                success: vec![op_put("t", &i.to_string()), op_del("k1", "k3")],
                ..Default::default()
            })
            .unwrap();
        }
    }
}

#[test]
fn reopen_rebuilds_the_index_identically() {
    let s = TestStore::new();
    busy_history(&s);
    let check = |s: TestStore, compact: Option<i64>| -> TestStore {
        if let Some(c) = compact {
            s.compact(c).unwrap();
        }
        let index = s.store.index_snapshot();
        let current = s.store.current_revision();
        let first = s.store.compact_revision().max(1);
        let dumps: Vec<_> = (first..=current).map(|r| s.dump(r)).collect();
        let applied = s.store.applied();
        let s = s.reopen();
        assert!(s.store.index_snapshot().same_as(&index));
        assert_eq!(s.store.current_revision(), current);
        assert_eq!(s.store.applied(), applied);
        for (i, r) in (first..=current).enumerate() {
            assert_eq!(s.dump(r), dumps[i], "at {r}");
        }
        s
    };
    let s = check(s, None);
    let s = check(s, Some(20));
    let s = check(s, Some(45));
    busy_history(&s);
    let current = s.store.current_revision();
    let s = check(s, Some(current));
    assert_eq!(s.store.compact_revision(), current);
}

/// The child half of the crash test: applies, checkpoints, applies more, and exits
/// without closing the store (as a `kill -9` would end it).
fn crash_child(dir: &str) -> ! {
    let store = MvccStore::open(&db_path(dir.as_ref()), MvccOptions::default()).unwrap();
    for i in 1..=100u64 {
        store
            .apply(i, 1, &put_cmd(put(&format!("k{}", i % 10), &i.to_string())))
            .unwrap();
    }
    store.apply(101, 2, &compact_cmd(50)).unwrap();
    store.checkpoint().unwrap();
    for i in 102..=200u64 {
        store
            .apply(i, 2, &put_cmd(put(&format!("k{}", i % 10), &i.to_string())))
            .unwrap();
    }
    store.apply(201, 2, &compact_cmd(150)).unwrap();
    // No checkpoint, no drop: the process ends with the redb file as it is.
    std::process::exit(0);
}

/// A command running `exe`, this test binary, as cargo ran it: under an emulator for another
/// architecture (`scripts/qemu-test` runs the suites for armv7 and aarch64 under qemu-user),
/// `BRAMBLE_TEST_RUNNER` holds the same runner as cargo's `CARGO_TARGET_<triple>_RUNNER`,
/// since the host cannot execute the binary itself.
fn test_runner_command(exe: std::path::PathBuf) -> std::process::Command {
    let runner = std::env::var("BRAMBLE_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => std::process::Command::new(exe),
    }
}

#[test]
fn crash_after_checkpoint_reopens_at_the_checkpoint() {
    const VAR: &str = "BRAMBLE_MVCC_CRASH_CHILD_DIR";
    if let Ok(dir) = std::env::var(VAR) {
        crash_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let status = test_runner_command(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mvcc::tests::store::crash_after_checkpoint_reopens_at_the_checkpoint",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(VAR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the crashing child: {status}");

    let store = MvccStore::open(&db_path(dir.path()), MvccOptions::default()).unwrap();
    // The state of the checkpoint: 100 puts (revisions 2..=101), compacted at 50.
    assert_eq!(store.applied(), (101, 2));
    assert_eq!(store.current_revision(), 101);
    assert_eq!(store.compact_revision(), 50);
    let all = store.range(&range("\0", "\0")).unwrap();
    assert_eq!(all.kvs.len(), 10);
    assert_eq!(all.kvs[0].value, b"100"); // k0
                                          // Replaying the lost entries gives the same result as never crashing.
    for i in 102..=200u64 {
        store
            .apply(i, 2, &put_cmd(put(&format!("k{}", i % 10), &i.to_string())))
            .unwrap();
    }
    store.apply(201, 2, &compact_cmd(150)).unwrap();
    assert_eq!(store.current_revision(), 200);
    let k3 = store.range(&range("k3", "")).unwrap().kvs[0].clone();
    assert_eq!((k3.value.as_slice(), k3.version), (&b"193"[..], 20));
}

#[test]
fn clean_close_keeps_unchekpointed_applies() {
    let s = TestStore::new();
    s.put("a", "1");
    s.store.checkpoint().unwrap();
    s.put("b", "1");
    let s = s.reopen();
    assert_eq!(s.store.applied(), (2, 1));
    assert_eq!(keys_of(&s.dump(0)), ["a", "b"]);
}

#[test]
fn readers_run_concurrently_with_applies() {
    let s = Arc::new(TestStore::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for t in 0..3 {
        let (s, stop) = (s.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut last_rev = 0;
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Atomicity: every txn writes a and b with the same value.
                let r = s.range(range("a", "c")).unwrap();
                let rev = r.header.unwrap().revision;
                assert!(rev >= last_rev, "revision went back");
                last_rev = rev;
                if r.kvs.len() == 2 {
                    assert_eq!(r.kvs[0].value, r.kvs[1].value, "torn txn at {rev}");
                    assert_eq!(r.kvs[0].mod_revision, r.kvs[1].mod_revision);
                } else {
                    assert!(r.kvs.is_empty(), "half a txn at {rev}");
                }
                // Historical reads either work or are compacted; never corrupt.
                let mut h = range("a", "c");
                h.revision = (rev - (t + 1) * 7).max(1);
                match s.range(h) {
                    Ok(r) => assert!(r.kvs.len() == 2 || r.kvs.is_empty()),
                    Err(MvccError::Compacted) => {}
                    Err(e) => panic!("historical read failed: {e}"),
                }
                reads += 1;
            }
            reads
        }));
    }
    let mut index = 0u64;
    for i in 0..300 {
        let t = txn_cmd(TxnRequest {
            success: vec![op_put("a", &i.to_string()), op_put("b", &i.to_string())],
            ..Default::default()
        });
        let noise = put_cmd(put(&format!("n{}", i % 13), "x"));
        let del = del_cmd("a", "c");
        let mut cmds = vec![&t, &noise];
        if i % 17 == 0 {
            cmds.push(&del);
        }
        let entries: Vec<(u64, u64, &Command)> = cmds
            .into_iter()
            .map(|c| {
                index += 1;
                (index, 1, c)
            })
            .collect();
        s.store.apply_batch(&entries).unwrap();
        if i % 25 == 24 {
            let c = s.store.current_revision() - 10;
            index += 1;
            s.store.apply(index, 1, &compact_cmd(c)).unwrap();
        }
        if i % 50 == 0 {
            s.store.checkpoint().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// Each durable commit (a checkpoint with changes) is timed for
/// `etcd_disk_backend_commit_duration_seconds`; an empty checkpoint commits
/// nothing and is not counted. The key index counts keys for
/// `etcd_debugging_mvcc_keys_total`.
#[test]
fn checkpoints_are_timed_and_keys_counted() {
    let s = TestStore::new();
    s.store.checkpoint().unwrap();
    assert_eq!(s.store.commit_latency().count, 0);
    for i in 1..=3u64 {
        s.store
            .apply(i, 1, &put_cmd(put(&format!("k{i}"), "v")))
            .unwrap();
    }
    assert_eq!(s.store.index_keys(), 3);
    s.store.checkpoint().unwrap();
    let latency = s.store.commit_latency();
    assert_eq!(latency.count, 1);
    assert!(latency.sum_seconds > 0.0);
}
