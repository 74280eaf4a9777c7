//! Compaction: checks, what is kept, physical deletion, resumption.

use super::*;

#[test]
fn compaction_checks_as_etcd() {
    // etcd 3.4 on a store at revision 5: compact(0) works the first time (the compact
    // revision starts at -1), then 0 is compacted; 100 is a future revision.
    let s = TestStore::new();
    assert_eq!(s.store.compact_revision(), -1);
    for i in 0..4 {
        s.put("k", &i.to_string());
    }
    assert_eq!(s.compact(0), Ok(5));
    assert_eq!(s.store.compact_revision(), 0);
    assert_eq!(s.compact(0), Err(MvccError::Compacted));
    assert_eq!(s.compact(100), Err(MvccError::FutureRevision));
    assert_eq!(s.compact(3), Ok(5));
    assert_eq!(s.compact(3), Err(MvccError::Compacted));
    assert_eq!(s.compact(2), Err(MvccError::Compacted));
    assert_eq!(s.compact(5), Ok(5));
    assert_eq!(s.store.compact_revision(), 5);
    // Compaction takes no revision.
    assert_eq!(s.store.current_revision(), 5);
    assert_eq!(s.get("k").unwrap().value, b"3");
}

#[test]
fn keeps_the_version_visible_at_the_compaction_revision() {
    let s = TestStore::new();
    s.put("a", "1"); // 2
    s.put("a", "2"); // 3
    s.put("b", "1"); // 4
    s.put("a", "3"); // 5
    s.del("b", ""); // 6
    s.put("c", "1"); // 7
    s.del("c", ""); // 8
    s.put("c", "2"); // 9
    assert_eq!(s.rows(), 8);
    let before: Vec<_> = (4..=9).map(|r| s.dump(r)).collect();
    s.compact(4).unwrap();
    // a@2 is gone (a@3 is what a reader at 4 sees); everything above 4 stays.
    assert_eq!(s.rows(), 7);
    for (i, rev) in (4..=9).enumerate() {
        assert_eq!(s.dump(rev), before[i], "reads at {rev} unchanged");
    }
    assert_eq!(s.get_at("a", 3), Err(MvccError::Compacted));
    s.compact(8).unwrap();
    // Left: a@5, c@9 (b and c's first generation ended at or below 8).
    assert_eq!(s.rows(), 2);
    assert_eq!(keys_of(&s.dump(8)), ["a"]);
    assert_eq!(keys_of(&s.dump(9)), ["a", "c"]);
    let a = s.get("a").unwrap();
    assert_eq!((a.version, a.create_revision, a.mod_revision), (3, 2, 5));
    let idx = s.store.index_snapshot();
    assert!(idx.key_index(b"b").is_none());
    assert_eq!(idx.key_index(b"c").unwrap().generations().len(), 1);
    // A later put continues the version count.
    s.put("a", "4");
    assert_eq!(s.get("a").unwrap().version, 4);
}

#[test]
fn physical_flag_makes_no_difference() {
    let mk = |physical| {
        let s = TestStore::new();
        for i in 0..20 {
            s.put(&format!("k{}", i % 3), "v");
        }
        s.apply(Command {
            op: Some(Op::Compaction(CompactionRequest {
                revision: 15,
                physical,
            })),
        });
        (s.rows(), s.dump(0), s.store.compact_revision())
    };
    assert_eq!(mk(true), mk(false));
}

#[test]
fn many_rows_are_deleted_in_chunks() {
    let s = TestStore::new();
    let n = super::super::compaction::DELETE_CHUNK * 2 + 500;
    let cmds: Vec<Command> = (0..n)
        .map(|i| put_cmd(put(&format!("k{}", i % 10), &i.to_string())))
        .collect();
    let entries: Vec<(u64, u64, &Command)> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, 1, c))
        .collect();
    s.store.apply_batch(&entries).unwrap();
    let current = s.store.current_revision();
    let live = s.dump(0);
    s.compact(current).unwrap();
    assert_eq!(s.rows(), 10);
    assert_eq!(s.dump(0), live);
    let s = s.reopen();
    assert_eq!(s.rows(), 10);
    assert_eq!(s.dump(0), live);
    assert_eq!(s.store.compact_revision(), current);
}

#[test]
fn compaction_mid_batch_then_more_entries() {
    let s = TestStore::new();
    let cmds = [
        put_cmd(put("a", "1")), // 2
        put_cmd(put("a", "2")), // 3
        compact_cmd(3),
        put_cmd(put("a", "3")), // 4
        compact_cmd(3),         // already compacted
        del_cmd("a", ""),       // 5
    ];
    let entries: Vec<(u64, u64, &Command)> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, 1, c))
        .collect();
    let r = s.store.apply_batch(&entries).unwrap();
    assert_eq!(r.len(), 6);
    assert!(matches!(r[2], ApplyResult::Compaction(_)));
    assert_eq!(r[4], ApplyResult::Error(MvccError::Compacted));
    assert_eq!(s.store.applied(), (6, 1));
    assert_eq!(s.store.current_revision(), 5);
    // a@3 and a@4 and the tombstone at 5.
    assert_eq!(s.rows(), 3);
    assert_eq!(s.get_at("a", 3).unwrap().unwrap().value, b"2");
}

#[test]
fn interrupted_compaction_resumes_on_open() {
    use redb::ReadableDatabase;
    let s = TestStore::new();
    for i in 0..10 {
        s.put("k", &i.to_string()); // 2..=11
    }
    // Simulate a crash between scheduling and deleting: the schedule is stored, no row
    // is deleted, the finished mark is older.
    {
        let txn = s.store.db().begin_write().unwrap();
        {
            let mut meta = txn.open_table(super::super::schema::META).unwrap();
            super::super::schema::write_compact(
                &mut meta,
                super::super::schema::META_SCHEDULED_COMPACT,
                9,
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(s.rows(), 10);
    let s = s.reopen();
    assert_eq!(s.store.compact_revision(), 9);
    assert_eq!(s.rows(), 3); // k@9, k@10, k@11
    assert_eq!(s.get_at("k", 8), Err(MvccError::Compacted));
    assert_eq!(s.get_at("k", 9).unwrap().unwrap().value, b"7");
    let r = s.store.db().begin_read().unwrap();
    let meta = super::super::schema::read_meta(&r.open_table(super::super::schema::META).unwrap())
        .unwrap();
    assert_eq!((meta.scheduled_compact, meta.finished_compact), (9, 9));
    drop(r);
    assert_eq!(s.compact(9), Err(MvccError::Compacted));
}
