//! Tests of `../defrag.rs`.

use std::sync::Arc;

use super::*;

/// 2,000 keys of 1 KiB put, all but 10 deleted and compacted: the file shrinks, the
/// data is intact, applies after it work, and the store reopens to the same state.
#[test]
fn defragment_shrinks_the_file_and_keeps_the_data() {
    let s = TestStore::new();
    let value = "v".repeat(1024);
    for i in 0..2000 {
        s.put(&format!("k{i:05}"), &value);
    }
    s.del("k00010", "k99999");
    let rev = s.store.current_revision();
    s.compact(rev).unwrap();
    s.store.checkpoint().unwrap();
    let before = s.dump(0);
    assert_eq!(before.len(), 10);
    let in_use_before = s.store.space().unwrap().in_use;

    let path = db_path(s.dir.path());
    let info = s.store.defragment(&path).unwrap();
    assert!(
        info.size_after * 4 < info.size_before,
        "file did not shrink: {info:?}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), info.size_after);
    assert!(s.store.space().unwrap().in_use <= in_use_before);
    assert!(s.store.space().unwrap().in_use <= info.size_after);
    assert!(s.dump(0) == before, "data changed by defragment");
    assert_eq!(s.store.current_revision(), rev);

    let next = s.put("after", "defrag");
    assert_eq!(next, rev + 1);
    let s = s.reopen();
    let mut expected = before;
    expected.insert(0, s.get("after").unwrap());
    assert!(
        s.dump(0) == expected,
        "data changed across defragment and reopen"
    );
    assert_eq!(s.store.compact_revision(), rev);
}

/// A reader holding a snapshot (one long read transaction) delays the defragmentation,
/// which completes once the reader is done; concurrent applies wait and then succeed.
#[test]
fn defragment_waits_for_readers_and_applies_wait_for_it() {
    let s = Arc::new(TestStore::new());
    for i in 0..200 {
        s.put(&format!("k{i:05}"), "value");
    }
    let snap = s.store.begin_snapshot().unwrap();
    let path = db_path(s.dir.path());
    let defrag = {
        let s = s.clone();
        std::thread::spawn(move || s.store.defragment(&path))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !defrag.is_finished(),
        "defragmentation ran under a live reader"
    );
    let mut out = Vec::new();
    snap.write_to(&mut out).unwrap();
    drop(snap);
    let info = defrag.join().unwrap().unwrap();
    assert!(info.held >= std::time::Duration::from_millis(300));
    assert_eq!(s.put("after", "v"), 202);
    assert_eq!(s.dump(0).len(), 201);
}
