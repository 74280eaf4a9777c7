//! HashKV and the whole-store hash: etcd's values, etcd's formula, errors, agreement.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};

use super::*;
use crate::mvcc::revision::Revision;
use crate::mvcc::schema::KEYS;
use crate::mvcc::KvHash;

/// etcd 3.4's answers (`etcdctl endpoint hashkv`) on a fresh member for: nothing; put a 1;
/// then put a 2, compact 3, del a.
const ETCD_EMPTY: u32 = 1_084_519_789;
const ETCD_AFTER_PUT: u32 = 2_587_454_935;
const ETCD_AFTER_COMPACT_AND_DELETE: u32 = 573_317_793;

#[test]
fn equals_etcd_on_a_small_history() {
    let s = TestStore::new();
    let h = s.store.hash_kv(0).unwrap();
    assert_eq!(
        h,
        KvHash {
            hash: ETCD_EMPTY,
            compact_revision: -1,
            hash_revision: 1,
            current_revision: 1
        }
    );
    s.put("a", "1");
    assert_eq!(s.store.hash_kv(0).unwrap().hash, ETCD_AFTER_PUT);
    assert_eq!(s.store.hash_kv(2).unwrap().hash, ETCD_AFTER_PUT);
    assert_eq!(s.store.hash_kv(1).unwrap().hash, ETCD_EMPTY);
    s.put("a", "2");
    s.compact(3).unwrap();
    s.del("a", "");
    // Everything is deleted at 4, so a compaction at 4 would keep nothing: etcd then
    // skips no row, and a@3 (kept by the compaction at 3) is hashed.
    let h = s.store.hash_kv(0).unwrap();
    assert_eq!(
        h,
        KvHash {
            hash: ETCD_AFTER_COMPACT_AND_DELETE,
            compact_revision: 3,
            hash_revision: 4,
            current_revision: 4
        }
    );
    // A negative revision hashes no row (etcd gives the empty hash too).
    let h = s.store.hash_kv(-1).unwrap();
    assert_eq!(
        (h.hash, h.hash_revision, h.compact_revision),
        (ETCD_EMPTY, -1, 3)
    );
    // Reopening rebuilds the index from disk: same answer.
    let s = s.reopen();
    assert_eq!(
        s.store.hash_kv(4).unwrap().hash,
        ETCD_AFTER_COMPACT_AND_DELETE
    );
}

#[test]
fn errors_as_etcd_3_6() {
    let s = TestStore::new();
    for i in 0..5 {
        s.put("k", &i.to_string()); // 2..=6
    }
    assert_eq!(s.store.hash_kv(7), Err(MvccError::FutureRevision));
    s.compact(4).unwrap();
    // etcd 3.6: below the compaction revision is compacted, the revision itself is hashed
    // (3.4 and 3.5 refused it too).
    assert_eq!(s.store.hash_kv(3), Err(MvccError::Compacted));
    assert_eq!(s.store.hash_kv(2), Err(MvccError::Compacted));
    assert_eq!(s.store.hash_kv(4).unwrap().hash_revision, 4);
    assert_eq!(s.store.hash_kv(5).unwrap().compact_revision, 4);
    // Compacting at the current revision: revision 0 and the revision itself hash it.
    s.compact(6).unwrap();
    let h = s.store.hash_kv(0).unwrap();
    assert_eq!((h.hash_revision, h.compact_revision), (6, 6));
    assert_eq!(s.store.hash_kv(6).unwrap().hash_revision, 6);
    assert_eq!(s.store.hash_kv(5), Err(MvccError::Compacted));
}

/// etcd's formula, literally: every row of an uncompacted copy of the history, with
/// etcd's full keep set.
fn etcd_formula(full: &TestStore, compact: i64, at: i64) -> u32 {
    let keep: HashSet<Revision> = full.store.index_snapshot().keep(at);
    let rtxn = full.store.db().begin_read().unwrap();
    let table = rtxn.open_table(KEYS).unwrap();
    let mut crc = crc32c::crc32c(b"key");
    for entry in table.iter().unwrap() {
        let (k, v) = entry.unwrap();
        let (rev, tombstone) = Revision::from_key(k.value()).unwrap();
        if rev.main > at {
            continue;
        }
        if rev.main <= compact && !keep.is_empty() && !keep.contains(&rev) {
            continue;
        }
        let mut key = Vec::new();
        key.extend_from_slice(&rev.main.to_be_bytes());
        key.push(b'_');
        key.extend_from_slice(&rev.sub.to_be_bytes());
        if tombstone {
            key.push(b't');
        }
        crc = crc32c::crc32c_append(crc, &key);
        crc = crc32c::crc32c_append(crc, v.value());
    }
    crc
}

/// Puts, deletes, a multi-write txn, a lease put, a key deleted and created again.
fn history(s: &TestStore) {
    s.grant(7, 100).unwrap();
    s.put("a", "1");
    s.put("b", "1");
    s.put("a", "2");
    let mut p = put("l", "leased");
    p.lease = 7;
    s.apply(put_cmd(p));
    s.txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(put("c", "1"))),
            },
            RequestOp {
                request: Some(Request::RequestPut(put("a", "3"))),
            },
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"b".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    })
    .unwrap();
    s.put("b", "2");
    s.del("c", "");
    s.put("a", "4");
    s.del("a", "b");
    s.put("c", "2");
    s.put("d", "1");
}

#[test]
fn streaming_equals_etcds_formula_at_every_revision_and_compaction() {
    let full = TestStore::new();
    history(&full);
    let current = full.store.current_revision();
    for compact_at in [-1, 2, 3, 5, 6, 8, current - 1, current] {
        let s = TestStore::new();
        history(&s);
        if compact_at >= 0 {
            s.compact(compact_at).unwrap();
        }
        for at in (compact_at + 1).max(1)..=current {
            let got = s.store.hash_kv(at).unwrap();
            assert_eq!(
                got.hash,
                etcd_formula(&full, compact_at, at),
                "hash at {at}, compacted at {compact_at}"
            );
            assert_eq!(got.compact_revision, compact_at);
            assert_eq!(got.hash_revision, at);
        }
        let now = s.store.hash_kv(0).unwrap();
        assert_eq!(now.hash, etcd_formula(&full, compact_at, current));
    }
}

#[test]
fn two_compactions_or_one_give_the_same_hash() {
    // Members compact at the revisions the leader chose, but one may have restarted in
    // between: the hash depends on the last compaction only.
    let (one, two) = (TestStore::new(), TestStore::new());
    history(&one);
    history(&two);
    two.compact(3).unwrap();
    let two = two.reopen();
    two.compact(7).unwrap();
    one.compact(7).unwrap();
    for at in 8..=one.store.current_revision() {
        assert_eq!(one.store.hash_kv(at), two.store.hash_kv(at));
    }
}

#[test]
fn store_hash_covers_data_not_the_raft_position() {
    let (a, b) = (TestStore::new(), TestStore::new());
    history(&a);
    history(&b);
    let ha = a.store.hash_tables().unwrap();
    assert_eq!(ha, b.store.hash_tables().unwrap());
    assert_eq!(ha.revision, a.store.current_revision());
    // A lease grant changes the lease table, not the revision; b applies it at another
    // raft position (as if b had applied entries that change no data).
    let (index, _) = b.store.applied();
    b.store.apply(index + 10, 3, &grant_cmd(8, 100)).unwrap();
    let hb = b.store.hash_tables().unwrap();
    assert_ne!(ha.hash, hb.hash);
    assert_eq!(ha.revision, hb.revision);
    a.grant(8, 100).unwrap();
    assert_ne!(a.store.applied(), b.store.applied());
    assert_eq!(a.store.hash_tables().unwrap(), hb);
    // A checkpoint or a reopen changes nothing that is hashed.
    a.store.checkpoint().unwrap();
    let a = a.reopen();
    assert_eq!(a.store.hash_tables().unwrap(), hb);
    a.put("x", "1");
    assert_ne!(a.store.hash_tables().unwrap(), hb);
}

#[test]
fn a_revision_hashes_the_same_while_writes_and_compactions_go_on() {
    let (full, s) = (TestStore::new(), TestStore::new());
    history(&full);
    history(&s);
    let at = s.store.current_revision();
    // The hash at `at` depends on the compaction revision it was computed with.
    let want = |compact: i64| etcd_formula(&full, compact, at);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..300 {
                s.put(&format!("w{}", i % 7), &i.to_string());
                if i % 50 == 0 {
                    s.put("a", &i.to_string());
                }
                if i == 150 {
                    s.compact(at - 2).unwrap();
                }
            }
        });
        while !writer.is_finished() {
            let h = s.store.hash_kv(at).unwrap();
            assert!([-1, at - 2].contains(&h.compact_revision), "{h:?}");
            assert_eq!(h.hash, want(h.compact_revision), "{h:?}");
        }
    });
    let h = s.store.hash_kv(at).unwrap();
    assert_eq!((h.hash, h.compact_revision), (want(at - 2), at - 2));
}
