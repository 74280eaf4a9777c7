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
            auth: None,
            op: Some(Op::Compaction(CompactionRequest {
                revision: 15,
                physical,
            })),
        });
        s.store.finish_compaction().unwrap();
        (s.rows(), s.dump(0), s.store.compact_revision())
    };
    assert_eq!(mk(true), mk(false));
}

#[test]
fn many_rows_are_deleted_in_chunks() {
    let s = TestStore::new();
    let n = DEFAULT_COMPACTION_BATCH_LIMIT * 2 + 500;
    s.put_many((0..n).map(|i| (format!("k{}", i % 10), i.to_string())));
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
    s.store.finish_compaction().unwrap();
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
    // Scheduled again, not run: opening does not wait for the deletion.
    assert!(s.store.compaction_pending());
    assert_eq!(s.rows(), 10);
    assert_eq!(s.get_at("k", 8), Err(MvccError::Compacted));
    s.store.finish_compaction().unwrap();
    assert!(!s.store.compaction_pending());
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

/// A store holding `n` revisions of 10 keys, compacted at its head with the deletion
/// left pending.
fn with_pending_compaction(n: usize) -> (TestStore, i64) {
    let s = TestStore::new();
    s.put_many((0..n).map(|i| (format!("k{}", i % 10), i.to_string())));
    let current = s.store.current_revision();
    assert_eq!(s.compact_scheduled(current), Ok(current));
    (s, current)
}

#[test]
fn the_apply_schedules_and_the_steps_delete_in_batches() {
    let (s, current) = with_pending_compaction(5000);
    let live = s.dump(0);
    // The apply deleted nothing, yet reads below the compaction are refused at once.
    assert!(s.store.compaction_pending());
    assert_eq!(s.rows(), 5000);
    assert_eq!(s.get_at("k1", current - 20), Err(MvccError::Compacted));
    assert_eq!(s.store.finished_compact_revision(), -1);

    // Each step looks at `batch` rows; applies go on in between.
    let mut steps = 0;
    loop {
        match s.store.compaction_step(700).unwrap() {
            CompactionStep::More => {
                steps += 1;
                s.put("other", &steps.to_string());
                assert_eq!(s.dump(current), live, "reads at the compaction unchanged");
            }
            CompactionStep::Finished(rev) => {
                assert_eq!(rev, current);
                break;
            }
            CompactionStep::Idle => panic!("idle while pending"),
        }
    }
    // 5000 rows at or below the compaction, 700 a step: 7 full steps, then the last.
    assert_eq!(steps, 7);
    assert_eq!(s.store.compaction_step(700).unwrap(), CompactionStep::Idle);
    assert_eq!(s.store.finished_compact_revision(), current);
    // 10 keys kept, plus the puts of "other" made during the deletion.
    assert_eq!(s.rows(), 10 + steps);
    // etcd's metrics: a pause per batch, one total, the rows deleted.
    let m = s.store.compaction_metrics();
    assert_eq!(m.pause.count, steps + 1);
    assert_eq!(m.total.count, 1);
    assert_eq!(m.rows_deleted, 5000 - 10);
    assert_eq!(m.pause.in_milliseconds().bounds[0], 1.0);
    assert_eq!(m.total.in_milliseconds().bounds[13], 819_200.0);
    let s = s.reopen();
    assert!(!s.store.compaction_pending());
    assert_eq!(s.rows(), 10 + steps);
}

#[test]
fn a_new_compaction_replaces_a_pending_one() {
    let (s, first) = with_pending_compaction(3000);
    assert_eq!(s.store.compaction_step(1000).unwrap(), CompactionStep::More);
    for i in 0..100 {
        s.put("k1", &format!("late{i}"));
    }
    let second = s.store.current_revision();
    assert_eq!(s.compact_scheduled(second), Ok(second));
    assert!(first < second);
    s.store.finish_compaction().unwrap();
    assert_eq!(s.store.finished_compact_revision(), second);
    // The keep set of the later compaction: one row per key.
    assert_eq!(s.rows(), 10);
    assert_eq!(s.get("k1").unwrap().value, b"late99");
}

#[test]
fn the_waker_is_called_when_a_deletion_is_scheduled() {
    let s = TestStore::new();
    for i in 0..10 {
        s.put("k", &i.to_string());
    }
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    s.store.set_compaction_waker(Box::new(move || {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    s.compact_scheduled(5).unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(s.store.compaction_pending());
}

#[test]
fn hash_kv_is_the_same_before_during_and_after_the_deletion() {
    let (s, current) = with_pending_compaction(3000);
    s.put("after", "1");
    let before = s.store.hash_kv(0).unwrap();
    assert_eq!(s.store.compaction_step(1000).unwrap(), CompactionStep::More);
    let during = s.store.hash_kv(0).unwrap();
    s.store.finish_compaction().unwrap();
    let after = s.store.hash_kv(0).unwrap();
    assert_eq!(before, during);
    assert_eq!(before, after);
    assert_eq!(after.compact_revision, current);
}

#[test]
fn a_snapshot_taken_mid_deletion_installs_and_finishes() {
    let (src, current) = with_pending_compaction(3000);
    assert_eq!(
        src.store.compaction_step(1000).unwrap(),
        CompactionStep::More
    );
    let mut bytes = Vec::new();
    src.store
        .begin_snapshot()
        .unwrap()
        .write_to(&mut bytes)
        .unwrap();
    let dst = TestStore::new();
    dst.store.install_snapshot(&mut bytes.as_slice()).unwrap();
    // The rows not deleted yet came along; the install schedules their deletion again.
    assert!(dst.store.compaction_pending());
    assert_eq!(dst.get_at("k1", current - 20), Err(MvccError::Compacted));
    dst.store.finish_compaction().unwrap();
    src.store.finish_compaction().unwrap();
    assert_eq!(dst.rows(), 10);
    assert_eq!(dst.dump(0), src.dump(0));
    assert_eq!(dst.store.hash_kv(0).unwrap(), src.store.hash_kv(0).unwrap());
}

#[test]
fn the_compaction_hash_is_hash_kv_just_before_it() {
    let s = TestStore::new();
    for i in 0..300 {
        s.put(&format!("k{}", i % 13), &i.to_string());
    }
    s.del("k3", "");
    let first = s.store.current_revision();
    s.compact_scheduled(first).unwrap();
    s.store.finish_compaction().unwrap();
    // The first compaction, from -1: one hash.
    assert_eq!(s.store.compaction_hashes().len(), 1);
    assert_eq!(s.store.compaction_hashes()[0].compact_revision, -1);
    for i in 0..500 {
        s.put(&format!("k{}", i % 17), &format!("b{i}"));
    }
    s.del("k5", "");
    let second = s.store.current_revision();
    let before = s.store.hash_kv(second).unwrap();
    assert_eq!(before.compact_revision, first);
    s.compact_scheduled(second).unwrap();
    // Batches smaller than the rows, with applies in between.
    let mut steps = 0;
    while s.store.compaction_step(37).unwrap() == CompactionStep::More {
        steps += 1;
        s.put("during", &steps.to_string());
    }
    assert!(steps > 5, "{steps}");
    let stored = s.store.compaction_hashes();
    let last = stored.last().copied().expect("a hash at the compaction");
    assert_eq!(
        (last.hash, last.compact_revision, last.hash_revision),
        (before.hash, first, second)
    );
    // Peers are answered from it at that revision (etcd 3.6's HashByRev).
    let answered = s.store.hash_kv(second).unwrap();
    assert_eq!(
        (answered.hash, answered.compact_revision),
        (before.hash, first)
    );
    assert_eq!(answered.current_revision, s.store.current_revision());
    // Without a stored hash, the compaction revision itself is hashed as 3.6 does.
    let other = s.store.hash_kv(0).unwrap();
    assert_eq!(other.compact_revision, second);
    assert_eq!(s.store.hash_kv(second - 1), Err(MvccError::Compacted));
}

#[test]
fn resumed_or_replaced_compactions_store_no_hash() {
    // Replaced while pending (etcd: the previous compaction was not completed).
    let (s, _) = with_pending_compaction(3000);
    assert_eq!(s.store.compaction_step(1000).unwrap(), CompactionStep::More);
    s.put("k1", "late");
    let second = s.store.current_revision();
    s.compact_scheduled(second).unwrap();
    s.store.finish_compaction().unwrap();
    assert!(s.store.compaction_hashes().is_empty());

    // Interrupted, then resumed when the store opens again.
    let (s, _) = with_pending_compaction(3000);
    assert_eq!(s.store.compaction_step(1000).unwrap(), CompactionStep::More);
    s.store.checkpoint().unwrap();
    let s = s.reopen();
    s.store.finish_compaction().unwrap();
    assert!(s.store.compaction_hashes().is_empty());
}
