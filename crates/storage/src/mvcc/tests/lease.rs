//! Leases: grant, revoke, attachments through put/delete/txn, persistence.

use bramble_api::mvccpb::event::EventType;

use super::super::lease::MAX_LEASE_TTL;
use super::*;

fn put_lease(s: &TestStore, key: &str, value: &str, lease: i64) -> ApplyResult {
    let mut p = put(key, value);
    p.lease = lease;
    s.apply(put_cmd(p))
}

fn keys_of(s: &TestStore, id: i64) -> Vec<String> {
    s.store
        .lease(id)
        .unwrap()
        .unwrap()
        .keys
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

#[test]
fn grant_answers_id_and_ttl_without_a_revision() {
    let s = TestStore::new();
    s.put("a", "1"); // 2
    let r = s.grant(7, 30).unwrap();
    assert_eq!((r.id, r.ttl, r.header.unwrap().revision), (7, 30, 2));
    assert_eq!(s.store.current_revision(), 2);
    // Negative ids and TTLs are the proposer's business (etcd accepts both).
    s.grant(-3, 0).unwrap();
    assert_eq!(s.store.leases().unwrap(), vec![(-3, 0), (7, 30)]);
    let info = s.store.lease(7).unwrap().unwrap();
    assert_eq!((info.id, info.ttl, info.keys.len()), (7, 30, 0));
    assert_eq!(s.store.lease(8).unwrap(), None);
}

#[test]
fn grant_errors_as_etcd() {
    let s = TestStore::new();
    s.grant(7, 30).unwrap();
    let applied = s.store.applied().0;
    assert_eq!(s.grant(0, 30), Err(MvccError::LeaseNotFound));
    assert_eq!(
        s.grant(8, MAX_LEASE_TTL + 1),
        Err(MvccError::LeaseTtlTooLarge)
    );
    assert_eq!(s.grant(7, 10), Err(MvccError::LeaseExists));
    // Too large is checked before exists, as etcd's lessor does.
    assert_eq!(
        s.grant(7, MAX_LEASE_TTL + 1),
        Err(MvccError::LeaseTtlTooLarge)
    );
    assert_eq!(s.store.applied().0, applied + 4);
    assert_eq!(s.store.lease(7).unwrap().unwrap().ttl, 30);
    s.grant(8, MAX_LEASE_TTL).unwrap();
}

#[test]
fn puts_and_deletes_keep_attachments() {
    let s = TestStore::new();
    s.grant(1, 60).unwrap();
    s.grant(2, 60).unwrap();
    assert_eq!(
        put_lease(&s, "k", "v", 3),
        ApplyResult::Error(MvccError::LeaseNotFound)
    );
    assert_eq!(s.store.current_revision(), 1);
    put_lease(&s, "b", "v", 1);
    put_lease(&s, "a", "v", 1);
    put_lease(&s, "c", "v", 2);
    assert_eq!(keys_of(&s, 1), ["a", "b"]);
    assert_eq!(keys_of(&s, 2), ["c"]);
    // A put moves the key to its new lease; ignore_lease keeps it; no lease detaches.
    put_lease(&s, "a", "v2", 2);
    assert_eq!(keys_of(&s, 1), ["b"]);
    assert_eq!(keys_of(&s, 2), ["a", "c"]);
    let mut p = put("a", "v3");
    p.ignore_lease = true;
    s.apply(put_cmd(p));
    assert_eq!(s.get("a").unwrap().lease, 2);
    assert_eq!(keys_of(&s, 2), ["a", "c"]);
    s.put("c", "plain");
    assert_eq!(keys_of(&s, 2), ["a"]);
    s.del("a", "");
    assert_eq!(keys_of(&s, 2), Vec::<String>::new());
    // In a txn.
    let r = s
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: b"t".to_vec(),
                        lease: 2,
                        ..Default::default()
                    })),
                },
                op_del("b", ""),
            ],
            failure: vec![],
        })
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(keys_of(&s, 1), Vec::<String>::new());
    assert_eq!(keys_of(&s, 2), ["t"]);
}

#[test]
fn revoke_deletes_the_keys_at_one_revision() {
    let s = TestStore::new();
    s.grant(1, 60).unwrap();
    s.grant(2, 60).unwrap();
    put_lease(&s, "c", "v", 1); // 2
    put_lease(&s, "a", "v", 1); // 3
    put_lease(&s, "b", "v", 2); // 4
    s.put("d", "v"); // 5
    assert_eq!(s.revoke(1), Ok(6));
    assert_eq!(s.store.current_revision(), 6);
    assert_eq!(s.get("a"), None);
    assert_eq!(s.get("c"), None);
    assert!(s.get("b").is_some());
    assert!(s.get("d").is_some());
    assert_eq!(s.store.lease(1).unwrap(), None);
    assert_eq!(s.store.leases().unwrap(), vec![(2, 60)]);
    // One revision, DELETE events in key order.
    let (events, _) = s.store.events(6, 100).unwrap();
    let got: Vec<(i32, String, i64)> = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8(kv.key.clone()).unwrap(),
                kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (EventType::Delete as i32, "a".to_string(), 6),
            (EventType::Delete as i32, "c".to_string(), 6)
        ]
    );
    // Unknown (or already revoked) lease.
    assert_eq!(s.revoke(1), Err(MvccError::LeaseNotFound));
    // A lease without keys is revoked without a revision.
    s.grant(3, 60).unwrap();
    assert_eq!(s.revoke(3), Ok(6));
    assert_eq!(s.store.current_revision(), 6);
    // A lease whose keys were deleted by hand, too.
    s.del("b", ""); // 7
    assert_eq!(s.revoke(2), Ok(7));
    assert_eq!(s.store.current_revision(), 7);
    // Puts with a revoked lease fail.
    assert_eq!(
        put_lease(&s, "x", "v", 2),
        ApplyResult::Error(MvccError::LeaseNotFound)
    );
}

#[test]
fn leases_and_attachments_survive_reopen_and_compaction() {
    let mut s = TestStore::new();
    s.grant(1, 60).unwrap();
    s.grant(2, 5).unwrap();
    put_lease(&s, "a", "v", 1); // 2
    put_lease(&s, "a", "v", 2); // 3
    put_lease(&s, "b", "v", 1); // 4
    put_lease(&s, "c", "v", 2); // 5
    s.del("c", ""); // 6
    put_lease(&s, "c", "v", 0); // 7
    put_lease(&s, "d", "v", 1); // 8
    let before = s.store.lease_table_snapshot();
    s = s.reopen();
    assert_eq!(s.store.lease_table_snapshot(), before);
    assert_eq!(keys_of(&s, 1), ["b", "d"]);
    assert_eq!(keys_of(&s, 2), ["a"]);
    s.compact(8).unwrap();
    s = s.reopen();
    assert_eq!(s.store.lease_table_snapshot(), before);
    assert_eq!(s.revoke(1), Ok(9));
    s = s.reopen();
    assert_eq!(s.store.leases().unwrap(), vec![(2, 5)]);
    assert_eq!(keys_of(&s, 2), ["a"]);
    assert_eq!(s.dump(0).len(), 2);
}

#[test]
fn a_failed_batch_reloads_the_lease_table() {
    use redb::{ReadableTable, WriteTransaction};
    let s = TestStore::new();
    s.grant(1, 60).unwrap();
    put_lease(&s, "a", "v", 1); // 2
    s.put("b", "1"); // 3
    let before = s.store.lease_table_snapshot();
    // Break b's row so that a batch reading it fails, after a grant and an attach.
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
    let mut p = put("b", "2");
    p.prev_kv = true;
    let grant = grant_cmd(2, 60);
    let mut attach = put("c", "v");
    attach.lease = 2;
    let attach = put_cmd(attach);
    let revoke = revoke_cmd(1);
    let bad = put_cmd(p);
    let (index, _) = s.store.applied();
    let batch = [
        (index + 1, 1, &grant),
        (index + 2, 1, &attach),
        (index + 3, 1, &revoke),
        (index + 4, 1, &bad),
    ];
    assert!(s.store.apply_batch(&batch).is_err());
    assert_eq!(s.store.lease_table_snapshot(), before);
}
