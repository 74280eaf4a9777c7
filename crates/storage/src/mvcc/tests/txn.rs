//! Txn: compares, branches, nested txns, reads of own writes, checks.

use bramble_api::etcdserverpb::response_op::Response;

use super::*;

use CompareResult::{Equal, Greater, Less, NotEqual};
use CompareTarget::{Create, Lease, Mod, Value, Version};

fn t(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn range_resp(
    op: &bramble_api::etcdserverpb::ResponseOp,
) -> &bramble_api::etcdserverpb::RangeResponse {
    match &op.response {
        Some(Response::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}

#[test]
fn kube_apiserver_shapes() {
    let s = TestStore::new();
    // create: If mod_revision(k) == 0 Then Put.
    let create = |v: &str| {
        t(
            vec![cmp("/r/k", "", Mod, Equal, 0)],
            vec![op_put("/r/k", v)],
            vec![],
        )
    };
    let r = s.txn(create("v1")).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 2);
    assert!(!s.txn(create("v1")).unwrap().succeeded);
    // A failed txn without writes keeps the revision.
    assert_eq!(s.store.current_revision(), 2);

    // update: If mod_revision(k) == X Then Put Else Get.
    let update = |x: i64, v: &str| {
        t(
            vec![cmp("/r/k", "", Mod, Equal, x)],
            vec![op_put("/r/k", v)],
            vec![op_range(range("/r/k", ""))],
        )
    };
    let r = s.txn(update(1, "stale")).unwrap();
    assert!(!r.succeeded);
    let got = range_resp(&r.responses[0]);
    assert_eq!(got.kvs[0].value, b"v1");
    assert_eq!(got.header.as_ref().unwrap().revision, 2);
    let r = s.txn(update(2, "v2")).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);

    // delete: If mod_revision(k) == X Then DeleteRange Else Get.
    let r = s
        .txn(t(
            vec![cmp("/r/k", "", Mod, Equal, 3)],
            vec![op_del("/r/k", "")],
            vec![op_range(range("/r/k", ""))],
        ))
        .unwrap();
    assert!(r.succeeded);
    match &r.responses[0].response {
        Some(Response::ResponseDeleteRange(d)) => {
            assert_eq!((d.deleted, d.header.as_ref().unwrap().revision), (1, 4))
        }
        other => panic!("{other:?}"),
    }

    // compaction bookkeeping: If version("compact_rev_key") == t Then Put Else Get.
    let r = s
        .txn(t(
            vec![cmp("compact_rev_key", "", Version, Equal, 0)],
            vec![op_put("compact_rev_key", "4")],
            vec![op_range(range("compact_rev_key", ""))],
        ))
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(s.compact(4).unwrap(), 5);
}

#[test]
fn compare_targets_and_results() {
    let s = TestStore::new();
    s.grant(9, 60).unwrap();
    s.put("x", "0"); // 2
    let mut p = put("k", "5");
    p.lease = 9;
    s.apply(put_cmd(p)); // 3
    s.put("k", "5"); // 4: k version 2, create 3, mod 4, lease 0
    let mut p = put("k", "5");
    p.lease = 9;
    s.apply(put_cmd(p)); // 5: k version 3, mod 5, lease 9
    let ok = |c: Compare| s.txn(t(vec![c], vec![], vec![])).unwrap().succeeded;
    for (target, v) in [(Version, 3), (Create, 3), (Mod, 5), (Lease, 9), (Value, 5)] {
        assert!(ok(cmp("k", "", target, Equal, v)), "{target:?} == {v}");
        assert!(!ok(cmp("k", "", target, NotEqual, v)), "{target:?} != {v}");
        assert!(
            ok(cmp("k", "", target, Greater, v - 1)),
            "{target:?} > {}",
            v - 1
        );
        assert!(!ok(cmp("k", "", target, Greater, v)), "{target:?} > {v}");
        assert!(
            ok(cmp("k", "", target, Less, v + 1)),
            "{target:?} < {}",
            v + 1
        );
        assert!(!ok(cmp("k", "", target, Less, v)), "{target:?} < {v}");
    }
    // Values compare as bytes.
    assert!(ok(cmp_value("k", Greater, "4999")));
    assert!(ok(cmp_value("k", Less, "6")));
    // All compares must hold.
    let r = s
        .txn(t(
            vec![
                cmp("k", "", Version, Equal, 3),
                cmp("x", "", Version, Equal, 2),
            ],
            vec![],
            vec![],
        ))
        .unwrap();
    assert!(!r.succeeded);
}

#[test]
fn compares_on_missing_keys() {
    // etcd 3.4: a missing key compares as version/create/mod/lease 0; VALUE always fails.
    let s = TestStore::new();
    s.put("a", "1");
    let ok = |c: Compare| s.txn(t(vec![c], vec![], vec![])).unwrap().succeeded;
    assert!(ok(cmp("nope", "", Create, Equal, 0)));
    assert!(ok(cmp("nope", "", Version, Equal, 0)));
    assert!(ok(cmp("nope", "", Mod, Less, 1)));
    assert!(ok(cmp("nope", "", Lease, Equal, 0)));
    assert!(!ok(cmp_value("nope", Equal, "")));
    assert!(!ok(cmp_value("nope", NotEqual, "q")));
    // An empty range compares like a missing key.
    assert!(ok(cmp("x1", "x9", Lease, Equal, 0)));
    assert!(!ok(cmp("x1", "x9", Value, Equal, 0)));
}

#[test]
fn range_compares_need_every_key() {
    // etcd 3.4: a@2, b@3, c@4; mod < 4 over [a, d) fails (c has 4).
    let s = TestStore::new();
    s.put("a", "1");
    s.put("b", "1");
    s.put("c", "1");
    let ok = |c: Compare| s.txn(t(vec![c], vec![], vec![])).unwrap().succeeded;
    assert!(!ok(cmp("a", "d", Mod, Less, 4)));
    assert!(ok(cmp("a", "d", Mod, Less, 5)));
    assert!(ok(cmp("a", "c", Mod, Less, 4)));
    assert!(ok(cmp("a", "\0", Version, Equal, 1)));
    assert!(ok(cmp_value("a", Equal, "1")));
    let mut all_one = cmp_value("a", Equal, "1");
    all_one.range_end = b"d".to_vec();
    assert!(ok(all_one));
    s.put("b", "2");
    let mut all_one = cmp_value("a", Equal, "1");
    all_one.range_end = b"d".to_vec();
    assert!(!ok(all_one));
}

#[test]
fn nested_txn_as_etcd() {
    // etcd 3.4: a, b, c exist; txn(version(a)==1) { put d; txn(version(d)==0) { put e;
    // get d }; get [a, z) }. The nested compare sees the state before the txn (d absent),
    // the nested header is empty, op headers carry the revision only.
    let s = TestStore::new();
    s.put("a", "1");
    s.put("b", "1");
    s.put("c", "1");
    let nested = t(
        vec![cmp("d", "", Version, Equal, 0)],
        vec![op_put("e", "y"), op_range(range("d", ""))],
        vec![],
    );
    let r = s
        .txn(t(
            vec![cmp("a", "", Version, Equal, 1)],
            vec![op_put("d", "x"), op_txn(nested), op_range(range("a", "z"))],
            vec![],
        ))
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 5);
    match &r.responses[0].response {
        Some(Response::ResponsePut(p)) => assert_eq!(p.header.as_ref().unwrap().revision, 5),
        other => panic!("{other:?}"),
    }
    let Some(Response::ResponseTxn(inner)) = &r.responses[1].response else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(inner.header, Some(Default::default()));
    let d = range_resp(&inner.responses[1]);
    assert_eq!(keys_of(&d.kvs), ["d"]);
    assert_eq!((d.kvs[0].create_revision, d.kvs[0].version), (5, 1));
    assert_eq!(d.header.as_ref().unwrap().revision, 5);
    let all = range_resp(&r.responses[2]);
    assert_eq!(keys_of(&all.kvs), ["a", "b", "c", "d", "e"]);
    assert_eq!(all.count, 5);
    // Both writes share revision 5 with sub revisions 0 and 1.
    let ki = s.store.index_snapshot();
    assert_eq!(
        ki.get(b"d", 5).unwrap().modified,
        super::super::revision::Revision::new(5, 0)
    );
    assert_eq!(
        ki.get(b"e", 5).unwrap().modified,
        super::super::revision::Revision::new(5, 1)
    );

    // Nested txn on the failure path, itself failing.
    let r = s
        .txn(t(
            vec![cmp("a", "", Version, Equal, 7)],
            vec![op_put("never", "1")],
            vec![op_txn(t(
                vec![cmp("zz", "", Create, Greater, 0)],
                vec![op_put("never", "2")],
                vec![op_put("f", "1")],
            ))],
        ))
        .unwrap();
    assert!(!r.succeeded);
    let Some(Response::ResponseTxn(inner)) = &r.responses[0].response else {
        panic!()
    };
    assert!(!inner.succeeded);
    assert_eq!(s.get("never"), None);
    assert_eq!(s.get("f").unwrap().mod_revision, 6);
}

#[test]
fn reads_in_a_txn_see_its_writes() {
    let s = TestStore::new();
    s.put("k", "old"); // 2
    let r = s
        .txn(t(
            vec![],
            vec![
                op_range(range("k", "")),
                op_put("k", "new"),
                op_range(range("k", "")),
                op_del("k", ""),
                op_range(range("k", "")),
                op_put("k", "again"),
                op_put("k", "twice"),
                op_range(range("k", "")),
            ],
            vec![],
        ))
        .unwrap();
    let v = |i: usize| {
        let r = range_resp(&r.responses[i]);
        (
            r.kvs
                .first()
                .map(|kv| (kv.value.clone(), kv.version, kv.create_revision)),
            r.header.as_ref().unwrap().revision,
        )
    };
    assert_eq!(v(0), (Some((b"old".to_vec(), 1, 2)), 2));
    assert_eq!(v(2), (Some((b"new".to_vec(), 2, 2)), 3));
    assert_eq!(v(4), (None, 3));
    // Re-created in the same txn: a new generation at revision 3, put twice: version 2.
    assert_eq!(v(7), (Some((b"twice".to_vec(), 2, 3)), 3));
    assert_eq!(r.header.unwrap().revision, 3);
    assert_eq!(s.store.current_revision(), 3);
    // History: at 2 the old value.
    assert_eq!(s.get_at("k", 2).unwrap().unwrap().value, b"old");
}

#[test]
fn txn_without_writes_keeps_the_revision() {
    let s = TestStore::new();
    s.put("a", "1");
    // etcd 3.4: failure branch deleting a missing key: header revision stays 2.
    let r = s
        .txn(t(
            vec![cmp_value("nope", Equal, "")],
            vec![op_put("f", "x")],
            vec![op_del("nope", "")],
        ))
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.header.unwrap().revision, 2);
    match &r.responses[0].response {
        Some(Response::ResponseDeleteRange(d)) => {
            assert_eq!((d.deleted, d.header.as_ref().unwrap().revision), (0, 2))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.store.current_revision(), 2);
    // An empty txn, and a read-only one.
    assert_eq!(
        s.txn(TxnRequest::default())
            .unwrap()
            .header
            .unwrap()
            .revision,
        2
    );
    let r = s
        .txn(t(vec![], vec![op_range(range("a", ""))], vec![]))
        .unwrap();
    assert_eq!(r.header.unwrap().revision, 2);
    assert_eq!(s.store.current_revision(), 2);
}

#[test]
fn range_revision_checks_fail_the_whole_txn() {
    let s = TestStore::new();
    for i in 0..4 {
        s.put("k", &i.to_string()); // 2..=5
    }
    let at = |rev: i64| {
        let mut r = range("k", "");
        r.revision = rev;
        t(vec![], vec![op_put("w", "1"), op_range(r)], vec![])
    };
    // etcd 3.4: a txn reading revision current+1 fails as a future revision, unwritten.
    assert_eq!(s.txn(at(6)), Err(MvccError::FutureRevision));
    assert_eq!(s.get("w"), None);
    assert_eq!(s.store.current_revision(), 5);
    let r = s.txn(at(3)).unwrap();
    assert_eq!(range_resp(&r.responses[1]).kvs[0].value, b"1");
    assert_eq!(s.store.current_revision(), 6);
    // Before any compaction -1 reads the current revision.
    let r = s.txn(at(-1)).unwrap();
    assert_eq!(range_resp(&r.responses[1]).kvs[0].value, b"3");
    s.compact(4).unwrap();
    assert_eq!(s.txn(at(3)), Err(MvccError::Compacted));
    // etcd 3.4 quirk: a negative revision in a txn is compacted once compacted.
    assert_eq!(s.txn(at(-1)), Err(MvccError::Compacted));
    assert_eq!(s.store.current_revision(), 7);
    // Only the executed branch is checked.
    let mut bad = range("k", "");
    bad.revision = 100;
    let r = s
        .txn(t(
            vec![cmp("k", "", Version, Equal, 99)],
            vec![op_range(bad)],
            vec![],
        ))
        .unwrap();
    assert!(!r.succeeded);
    let mut bad = range("k", "");
    bad.sort_order = 42;
    assert_eq!(
        s.txn(t(vec![], vec![op_put("w", "2"), op_range(bad)], vec![])),
        Err(MvccError::InvalidSortOption)
    );
}

#[test]
fn ignore_value_checks_in_txns() {
    let s = TestStore::new();
    s.put("k", "v"); // 2
    let ignore = |key: &str| {
        let mut p = put(key, "");
        p.ignore_value = true;
        RequestOp {
            request: Some(Request::RequestPut(p)),
        }
    };
    // Missing before the txn: fails even if an earlier op creates it (etcd checks first).
    assert_eq!(
        s.txn(t(vec![], vec![op_put("n", "1"), ignore("n")], vec![])),
        Err(MvccError::KeyNotFound)
    );
    // Deleted earlier in the txn: fails too, before writing anything.
    assert_eq!(
        s.txn(t(vec![], vec![op_del("a", "z"), ignore("k")], vec![])),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(
        s.txn(t(
            vec![],
            vec![
                op_txn(t(vec![], vec![op_del("k", "")], vec![])),
                ignore("k")
            ],
            vec![]
        )),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(s.store.current_revision(), 2);
    assert_eq!(s.get("k").unwrap().value, b"v");
    // Deleted then put again then ignore_value: fine, takes the new value.
    let r = s
        .txn(t(
            vec![],
            vec![op_del("k", ""), op_put("k", "w"), ignore("k")],
            vec![],
        ))
        .unwrap();
    assert_eq!(r.header.unwrap().revision, 3);
    let kv = s.get("k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.create_revision),
        (&b"w"[..], 2, 3)
    );
}

#[test]
fn empty_request_ops_answer_empty() {
    let s = TestStore::new();
    let r = s
        .txn(t(
            vec![],
            vec![RequestOp { request: None }, op_put("a", "1")],
            vec![],
        ))
        .unwrap();
    assert_eq!(r.responses.len(), 2);
    assert_eq!(r.responses[0].response, None);
    assert_eq!(s.get("a").unwrap().mod_revision, 2);
}

#[test]
fn read_only_txns_read_the_same_as_applied_ones() {
    use CompareResult::*;
    use CompareTarget::*;
    let s = TestStore::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")] {
        s.put(k, v);
    }
    s.del("c", "");
    let mut old = range("a", "d");
    old.revision = 3;
    let mut sorted = range("a", "z");
    sorted.sort_order = 2;
    sorted.sort_target = 4;
    sorted.limit = 1;
    let mut future = range("a", "");
    future.revision = 100;
    let cases = vec![
        t(
            vec![cmp("a", "", Version, Equal, 2)],
            vec![op_range(range("a", ""))],
            vec![],
        ),
        t(
            vec![cmp("a", "", Version, Equal, 9)],
            vec![],
            vec![op_range(old.clone()), op_range(sorted.clone())],
        ),
        t(
            vec![cmp_value("c", Equal, "3")],
            vec![],
            vec![op_range(range("a", "z"))],
        ),
        t(
            vec![cmp("a", "c", Mod, Greater, 1)],
            vec![op_range(range("b", ""))],
            vec![],
        ),
        t(vec![], vec![op_range(future)], vec![]),
        t(vec![], vec![], vec![]),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        assert!(crate::mvcc::is_read_only(&case));
        let read = s.store.txn_read_only(&case);
        let applied = s.txn(case);
        assert_eq!(read, applied, "case {i}");
    }
    s.compact(4).unwrap();
    let stale = t(vec![], vec![op_range(old)], vec![]);
    assert_eq!(s.store.txn_read_only(&stale), Err(MvccError::Compacted));
    assert!(s
        .store
        .txn_read_only(&t(vec![], vec![op_put("x", "1")], vec![]))
        .is_err());
}
