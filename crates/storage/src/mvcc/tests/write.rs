//! Puts, deletes, the apply loop: revisions, versions, errors, batching, rollback.

use super::super::RaftEntry;
use super::*;

#[test]
fn revisions_versions_and_generations() {
    let s = TestStore::new();
    assert_eq!(s.store.current_revision(), 1);
    assert_eq!(s.put("foo", "a"), 2);
    assert_eq!(s.put("foo", "b"), 3);
    let kv = s.get("foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(s.del("foo", ""), 1); // revision 4
    assert_eq!(s.store.current_revision(), 4);
    assert_eq!(s.get("foo"), None);
    // Re-created: a new generation, version 1, new create revision.
    assert_eq!(s.put("foo", "c"), 5);
    let kv = s.get("foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn put_prev_kv_lease_and_ignore_flags() {
    let s = TestStore::new();
    s.grant(77, 60).unwrap();
    s.grant(5, 60).unwrap();
    let mut p = put("k", "v1");
    p.lease = 77;
    p.prev_kv = true;
    let ApplyResult::Put(r) = s.apply(put_cmd(p)) else {
        panic!()
    };
    assert_eq!(r.prev_kv, None);
    assert_eq!(s.get("k").unwrap().lease, 77);

    let mut p = put("k", "v2");
    p.prev_kv = true;
    let ApplyResult::Put(r) = s.apply(put_cmd(p)) else {
        panic!()
    };
    let prev = r.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_slice(), prev.lease, prev.mod_revision),
        (&b"v1"[..], 77, 2)
    );
    // A put without ignore_lease replaces the lease (with 0 here).
    assert_eq!(s.get("k").unwrap().lease, 0);

    let mut p = put("k", "");
    p.ignore_value = true;
    p.lease = 5;
    s.apply(put_cmd(p));
    let kv = s.get("k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v2"[..], 5, 3)
    );

    let mut p = put("k", "v4");
    p.ignore_lease = true;
    s.apply(put_cmd(p));
    let kv = s.get("k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v4"[..], 5));
}

#[test]
fn ignore_value_on_missing_key_fails_and_only_advances_applied() {
    // etcd 3.4: "etcdserver: key not found", no revision taken.
    let s = TestStore::new();
    s.put("a", "1");
    for flag in [0, 1] {
        let mut p = put("missing", "");
        if flag == 0 {
            p.ignore_value = true;
        } else {
            p.ignore_lease = true;
        }
        let before = s.store.applied();
        assert_eq!(
            s.apply(put_cmd(p)),
            ApplyResult::Error(MvccError::KeyNotFound)
        );
        assert_eq!(s.store.applied().0, before.0 + 1);
        assert_eq!(s.store.current_revision(), 2);
    }
    assert_eq!(s.get("missing"), None);
}

#[test]
fn delete_range_prev_kvs_and_no_op_delete() {
    let s = TestStore::new();
    s.put("a", "1"); // 2
    s.put("b", "1"); // 3
    s.put("c", "1"); // 4
                     // etcd 3.4: delete [a, c) with prev_kv deletes 2 at revision 5.
    let mut d = del("a", "c");
    d.prev_kv = true;
    let ApplyResult::DeleteRange(r) = s.apply(Command {
        auth: None,
        op: Some(Op::DeleteRange(d)),
    }) else {
        panic!()
    };
    assert_eq!(r.deleted, 2);
    assert_eq!(r.header.unwrap().revision, 5);
    assert_eq!(keys_of(&r.prev_kvs), ["a", "b"]);
    assert_eq!(r.prev_kvs[1].mod_revision, 3);
    // Deleting nothing takes no revision; the header is the current one (etcd 3.4).
    let ApplyResult::DeleteRange(r) = s.apply(del_cmd("zz", "")) else {
        panic!()
    };
    assert_eq!((r.deleted, r.header.unwrap().revision), (0, 5));
    assert_eq!(s.store.current_revision(), 5);
    // A deleted key is not deleted again.
    assert_eq!(s.del("a", "z"), 1);
    assert_eq!(s.store.current_revision(), 6);
    assert_eq!(s.del("\0", "\0"), 0);
}

#[test]
fn empty_command_is_a_deterministic_error() {
    let s = TestStore::new();
    assert_eq!(
        s.apply(Command {
            auth: None,
            op: None
        }),
        ApplyResult::Error(MvccError::EmptyCommand)
    );
    assert_eq!(s.store.applied(), (1, 1));
    assert_eq!(s.store.current_revision(), 1);
}

#[test]
fn entries_must_follow_the_applied_one() {
    let s = TestStore::new();
    s.store.apply(5, 2, &put_cmd(put("a", "1"))).unwrap();
    let err = |i, t| s.store.apply(i, t, &put_cmd(put("a", "2"))).unwrap_err();
    assert!(matches!(err(5, 2), MvccError::OutOfOrder { .. }));
    assert!(matches!(err(4, 2), MvccError::OutOfOrder { .. }));
    assert!(matches!(err(6, 1), MvccError::OutOfOrder { .. }));
    assert!(s.store.apply_noop(5, 3, None).is_err());
    // A batch out of order inside is refused whole.
    let c = put_cmd(put("b", "1"));
    assert!(s.store.apply_batch(&[(6, 2, &c), (6, 2, &c)]).is_err());
    assert_eq!(s.store.applied(), (5, 2));
    assert_eq!(s.store.current_revision(), 2);
    s.store.apply_noop(9, 3, None).unwrap();
    assert_eq!(s.store.applied(), (9, 3));
    assert_eq!(s.store.current_revision(), 2);
}

#[test]
fn batch_equals_one_by_one() {
    let cmds = vec![
        put_cmd(put("a", "1")),
        put_cmd(put("b", "2")),
        del_cmd("a", ""),
        Command {
            auth: None,
            op: None,
        },
        put_cmd({
            let mut p = put("zz", "");
            p.ignore_value = true;
            p
        }),
        put_cmd(put("a", "3")),
        txn_cmd(TxnRequest {
            success: vec![op_put("c", "4"), op_del("b", "")],
            ..Default::default()
        }),
        compact_cmd(4),
        put_cmd(put("d", "5")),
        compact_cmd(2),
        del_cmd("\0", "\0"),
    ];
    let one = TestStore::new();
    let mut one_results = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        one_results.push(one.store.apply(i as u64 + 1, 1, c).unwrap());
    }
    let batch = TestStore::new();
    let entries: Vec<(u64, u64, &Command)> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, 1, c))
        .collect();
    let batch_results = batch.store.apply_batch(&entries).unwrap();
    assert_eq!(one_results, batch_results);
    assert_eq!(
        batch_results[3],
        ApplyResult::Error(MvccError::EmptyCommand)
    );
    assert_eq!(batch_results[9], ApplyResult::Error(MvccError::Compacted));
    assert_eq!(one.store.applied(), batch.store.applied());
    assert_eq!(one.store.current_revision(), batch.store.current_revision());
    assert_eq!(one.store.compact_revision(), 4);
    assert_eq!(batch.store.compact_revision(), 4);
    for rev in 4..=one.store.current_revision() {
        assert_eq!(one.dump(rev), batch.dump(rev), "at {rev}");
    }
    assert!(one
        .store
        .index_snapshot()
        .same_as(&batch.store.index_snapshot()));
    assert_eq!(one.rows(), batch.rows());
}

#[test]
fn mixed_entries_with_noops() {
    let s = TestStore::new();
    let c = put_cmd(put("a", "1"));
    let r = s
        .store
        .apply_entries(&[
            (1, 1, RaftEntry::Blank),
            (2, 1, RaftEntry::Command(&c)),
            (3, 2, RaftEntry::Membership(b"m1")),
        ])
        .unwrap();
    assert_eq!(r.len(), 3);
    assert!(r[0].is_none() && r[2].is_none());
    assert!(matches!(r[1], Some(ApplyResult::Put(_))));
    assert_eq!(s.store.applied(), (3, 2));
    assert_eq!(
        s.store.raft_membership().unwrap().as_deref(),
        Some(&b"m1"[..])
    );
    assert!(s.store.apply_batch(&[]).unwrap().is_empty());
}

#[test]
fn membership_is_stored_with_the_applied_position() {
    let s = TestStore::new();
    assert_eq!(s.store.raft_membership().unwrap(), None);
    s.store.apply_noop(1, 1, Some(b"voters: 1")).unwrap();
    s.store.apply_noop(2, 1, None).unwrap();
    assert_eq!(s.store.applied(), (2, 1));
    assert_eq!(
        s.store.raft_membership().unwrap().as_deref(),
        Some(&b"voters: 1"[..])
    );
    s.store.apply_noop(3, 2, Some(b"voters: 1, 2")).unwrap();
    let s = s.reopen();
    assert_eq!(
        s.store.raft_membership().unwrap().as_deref(),
        Some(&b"voters: 1, 2"[..])
    );
    assert_eq!(s.store.applied(), (3, 2));
}

#[test]
fn puts_need_a_granted_lease() {
    let s = TestStore::new();
    s.grant(10, 60).unwrap();
    let mut p = put("k", "v");
    p.lease = 11;
    assert_eq!(
        s.apply(put_cmd(p.clone())),
        ApplyResult::Error(MvccError::LeaseNotFound)
    );
    p.lease = 10;
    assert!(matches!(s.apply(put_cmd(p)), ApplyResult::Put(_)));
    // In a txn: only the executed branch is checked.
    let mut bad = put("t", "v");
    bad.lease = 12;
    let t = TxnRequest {
        compare: vec![cmp_value("k", CompareResult::Equal, "v")],
        success: vec![op_put("x", "1")],
        failure: vec![RequestOp {
            request: Some(Request::RequestPut(bad.clone())),
        }],
    };
    assert!(s.txn(t).unwrap().succeeded);
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("y", "1"),
            RequestOp {
                request: Some(Request::RequestPut(bad)),
            },
        ],
        failure: vec![],
    };
    assert_eq!(s.txn(t), Err(MvccError::LeaseNotFound));
    assert_eq!(s.get("y"), None);
}

#[test]
fn storage_failure_aborts_the_batch_and_rolls_back_the_index() {
    use redb::{ReadableTable, WriteTransaction};
    let s = TestStore::new();
    s.put("a", "1"); // 2
    s.put("b", "1"); // 3
    let index_before = s.store.index_snapshot();
    // Break the store behind its back: drop b's row, so reading b fails as corrupt.
    {
        let txn: WriteTransaction = s.store.db().begin_write().unwrap();
        {
            let mut t = txn.open_table(super::super::schema::KEYS).unwrap();
            let k = super::super::revision::Revision::new(3, 0).to_key(false);
            assert!(t.get(k.as_slice()).unwrap().is_some());
            t.remove(k.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    // A batch whose second entry writes, then needs b's value.
    let c1 = put_cmd(put("c", "1"));
    let c2 = txn_cmd(TxnRequest {
        success: vec![op_put("d", "1"), op_del("a", ""), op_put("e", "1"), {
            let mut p = put("b", "2");
            p.prev_kv = true;
            RequestOp {
                request: Some(Request::RequestPut(p)),
            }
        }],
        ..Default::default()
    });
    let applied = s.store.applied();
    let err = s
        .store
        .apply_batch(&[(10, 1, &c1), (11, 1, &c2)])
        .unwrap_err();
    assert!(matches!(err, MvccError::Corrupt(_)), "{err:?}");
    assert_eq!(s.store.applied(), applied);
    assert_eq!(s.store.current_revision(), 3);
    assert!(s.store.index_snapshot().same_as(&index_before));
    assert_eq!(s.get("c"), None);
    assert_eq!(s.get("a").unwrap().value, b"1");
    // The store goes on working.
    assert_eq!(s.put("f", "1"), 4);
}
