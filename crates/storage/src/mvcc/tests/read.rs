//! Range reads: forms, limit/count/more, sort, filters, historical reads.

use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::RangeRequest;

use super::*;

/// a=1 (rev 2), b=1 (3), c=1 (4): etcd 3.4 session in which sorting was checked.
fn abc() -> TestStore {
    let s = TestStore::new();
    assert_eq!(s.put("a", "1"), 2);
    assert_eq!(s.put("b", "1"), 3);
    assert_eq!(s.put("c", "1"), 4);
    s
}

fn sorted(
    s: &TestStore,
    mut req: RangeRequest,
    order: SortOrder,
    target: SortTarget,
) -> Vec<String> {
    req.sort_order = order as i32;
    req.sort_target = target as i32;
    keys_of(&s.range(req).unwrap().kvs)
}

#[test]
fn fresh_store_reads_empty_at_revision_1() {
    let s = TestStore::new();
    let r = s.range(range("foo", "")).unwrap();
    assert_eq!(r.header.unwrap().revision, 1);
    assert!(r.kvs.is_empty());
    assert_eq!((r.count, r.more), (0, false));
    // Revision 1 exists (empty); 2 is in the future.
    assert_eq!(s.get_at("foo", 1).unwrap(), None);
    assert_eq!(s.get_at("foo", 2), Err(MvccError::FutureRevision));
}

#[test]
fn range_forms() {
    let s = TestStore::new();
    for k in ["a", "ab", "abc", "b", "\u{7f}"] {
        s.put(k, k);
    }
    let k = |key: &str, end: &str| keys_of(&s.range(range(key, end)).unwrap().kvs);
    assert_eq!(k("ab", ""), ["ab"]);
    assert_eq!(k("zz", ""), Vec::<String>::new());
    // Prefix: range_end = key + 1.
    assert_eq!(k("ab", "ac"), ["ab", "abc"]);
    assert_eq!(k("a", "b"), ["a", "ab", "abc"]);
    // From key: range_end = "\0".
    assert_eq!(k("abc", "\0"), ["abc", "b", "\u{7f}"]);
    // All keys: key = range_end = "\0".
    assert_eq!(k("\0", "\0"), ["a", "ab", "abc", "b", "\u{7f}"]);
    // range_end <= key: nothing (etcd 3.4).
    assert_eq!(k("c", "a"), Vec::<String>::new());
    assert_eq!(k("b", "b"), Vec::<String>::new());
}

#[test]
fn fields_of_returned_versions() {
    let s = TestStore::new();
    s.put("k", "v1"); // 2
    s.put("x", "x"); // 3
    s.put("k", "v2"); // 4
    let kv = s.get("k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.lease, 0);
}

#[test]
fn limit_count_more() {
    let s = TestStore::new();
    for i in 0..10 {
        s.put(&format!("k{i}"), "v");
    }
    let mut req = range("k", "l");
    req.limit = 3;
    let r = s.range(req.clone()).unwrap();
    assert_eq!(keys_of(&r.kvs), ["k0", "k1", "k2"]);
    assert_eq!((r.count, r.more), (10, true));
    req.limit = 10;
    let r = s.range(req.clone()).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (10, 10, false));
    req.limit = 9;
    assert!(s.range(req.clone()).unwrap().more);
    req.limit = 0;
    let r = s.range(req.clone()).unwrap();
    assert_eq!((r.kvs.len(), r.more), (10, false));
    req.limit = -5; // negative: no limit, as etcd
    assert_eq!(s.range(req).unwrap().kvs.len(), 10);
}

#[test]
fn count_only_and_keys_only() {
    let s = abc();
    let mut req = range("a", "z");
    req.count_only = true;
    req.limit = 1;
    let r = s.range(req).unwrap();
    // etcd 3.4: count 3 (all), no kvs, more unset even with a limit.
    assert_eq!((r.count, r.kvs.len(), r.more), (3, 0, false));
    assert_eq!(r.header.unwrap().revision, 4);

    let mut req = range("a", "z");
    req.keys_only = true;
    let r = s.range(req).unwrap();
    assert_eq!(keys_of(&r.kvs), ["a", "b", "c"]);
    assert!(r
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.version == 1));
    assert_eq!(r.kvs[1].mod_revision, 3);
}

#[test]
fn sort_orders_and_targets() {
    let s = TestStore::new();
    s.put("b", "2"); // 2
    s.put("a", "3"); // 3
    s.put("c", "1"); // 4
    s.put("b", "2"); // 5: b version 2
    s.put("b", "2"); // 6: b version 3
    s.put("a", "3"); // 7: a version 2
    let all = || range("\0", "\0");
    use SortOrder::*;
    use SortTarget::*;
    assert_eq!(sorted(&s, all(), None, Key), ["a", "b", "c"]);
    assert_eq!(sorted(&s, all(), Ascend, Key), ["a", "b", "c"]);
    assert_eq!(sorted(&s, all(), Descend, Key), ["c", "b", "a"]);
    assert_eq!(sorted(&s, all(), Ascend, Value), ["c", "b", "a"]);
    assert_eq!(sorted(&s, all(), Descend, Value), ["a", "b", "c"]);
    assert_eq!(sorted(&s, all(), Ascend, Version), ["c", "a", "b"]);
    assert_eq!(sorted(&s, all(), Descend, Version), ["b", "a", "c"]);
    // create: b 2, a 3, c 4
    assert_eq!(sorted(&s, all(), Ascend, Create), ["b", "a", "c"]);
    assert_eq!(sorted(&s, all(), Descend, Create), ["c", "a", "b"]);
    // mod: c 4, b 6, a 7
    assert_eq!(sorted(&s, all(), Ascend, Mod), ["c", "b", "a"]);
    assert_eq!(sorted(&s, all(), Descend, Mod), ["a", "b", "c"]);
    // NONE with a target other than KEY sorts ascending (etcd's applier).
    assert_eq!(sorted(&s, all(), None, Mod), ["c", "b", "a"]);
    assert_eq!(sorted(&s, all(), None, Version), ["c", "a", "b"]);
}

#[test]
fn sort_ties_keep_key_order_as_etcd() {
    // etcd 3.4: a=1,b=1,c=1 sorted by VALUE DESCEND gives a, b, c.
    let s = abc();
    assert_eq!(
        sorted(&s, range("a", "d"), SortOrder::Descend, SortTarget::Value),
        ["a", "b", "c"]
    );
    assert_eq!(
        sorted(&s, range("a", "d"), SortOrder::Ascend, SortTarget::Version),
        ["a", "b", "c"]
    );
}

#[test]
fn sort_with_limit_is_top_k_and_sets_more() {
    let s = TestStore::new();
    for i in 0..20 {
        // Values in reverse key order, so sorting by value reverses the keys.
        s.put(&format!("k{i:02}"), &format!("{:02}", 19 - i));
    }
    let mut req = range("k", "l");
    req.limit = 3;
    req.sort_order = SortOrder::Ascend as i32;
    req.sort_target = SortTarget::Value as i32;
    let r = s.range(req.clone()).unwrap();
    assert_eq!(keys_of(&r.kvs), ["k19", "k18", "k17"]);
    assert_eq!((r.count, r.more), (20, true));
    req.sort_order = SortOrder::Descend as i32;
    req.sort_target = SortTarget::Key as i32;
    let r = s.range(req.clone()).unwrap();
    assert_eq!(keys_of(&r.kvs), ["k19", "k18", "k17"]);
    req.limit = 20;
    assert!(!s.range(req).unwrap().more);
}

#[test]
fn sort_order_none_with_a_target_and_limit_sorts_only_the_first_limit_plus_one_keys() {
    // etcd's applier reads limit + 1 keys in key order when sort_order is NONE,
    // sorts those by the target, then truncates (the limit is only lifted for
    // an explicit order).
    let s = TestStore::new();
    for i in 0..20 {
        s.put(&format!("k{i:02}"), &format!("{:02}", 19 - i));
    }
    let mut req = range("k", "l");
    req.limit = 2;
    req.sort_order = SortOrder::None as i32;
    req.sort_target = SortTarget::Value as i32;
    let r = s.range(req.clone()).unwrap();
    // k00..k02 are read; by value ascending that is k02, k01, k00.
    assert_eq!(keys_of(&r.kvs), ["k02", "k01"]);
    assert_eq!((r.count, r.more), (20, true));
    req.limit = 20;
    let r = s.range(req).unwrap();
    assert_eq!(r.kvs.len(), 20);
    assert_eq!(keys_of(&r.kvs)[0], "k19");
    assert!(!r.more);
}

#[test]
fn revision_filters() {
    let s = abc(); // a@2, b@3, c@4
    s.put("d", "x"); // 5
    s.put("e", "y"); // 6
                     // etcd 3.4 (same data): min_create_revision 3 with limit 1 gives [b], count 5, more.
    let mut req = range("a", "z");
    req.min_create_revision = 3;
    req.limit = 1;
    let r = s.range(req).unwrap();
    assert_eq!(keys_of(&r.kvs), ["b"]);
    assert_eq!((r.count, r.more), (5, true));

    let f = |min_mod, max_mod, min_create, max_create| {
        let mut req = range("a", "z");
        req.min_mod_revision = min_mod;
        req.max_mod_revision = max_mod;
        req.min_create_revision = min_create;
        req.max_create_revision = max_create;
        let r = s.range(req).unwrap();
        assert_eq!(r.count, 5, "count ignores filters");
        keys_of(&r.kvs)
    };
    assert_eq!(f(3, 0, 0, 0), ["b", "c", "d", "e"]);
    assert_eq!(f(0, 3, 0, 0), ["a", "b"]);
    assert_eq!(f(3, 4, 0, 0), ["b", "c"]);
    assert_eq!(f(0, 0, 5, 0), ["d", "e"]);
    assert_eq!(f(0, 0, 0, 2), ["a"]);
    assert_eq!(f(0, 0, 7, 0), Vec::<String>::new());

    // Filters with a limit that all pass: more is false.
    let mut req = range("a", "z");
    req.max_mod_revision = 3;
    req.limit = 2;
    let r = s.range(req).unwrap();
    assert_eq!(
        (keys_of(&r.kvs), r.more),
        (vec!["a".into(), "b".into()], false)
    );
}

#[test]
fn historical_reads() {
    let s = TestStore::new();
    s.put("k", "v1"); // 2
    s.put("k", "v2"); // 3
    s.del("k", ""); // 4
    s.put("k", "v3"); // 5
    let v = |rev| {
        s.get_at("k", rev)
            .unwrap()
            .map(|kv| (kv.value, kv.version, kv.create_revision))
    };
    assert_eq!(v(1), None);
    assert_eq!(v(2), Some((b"v1".to_vec(), 1, 2)));
    assert_eq!(v(3), Some((b"v2".to_vec(), 2, 2)));
    assert_eq!(v(4), None);
    assert_eq!(v(5), Some((b"v3".to_vec(), 1, 5)));
    assert_eq!(v(0), v(5));
    assert_eq!(v(-1), v(5)); // negative: current, as etcd's range
    assert_eq!(s.get_at("k", 6), Err(MvccError::FutureRevision));
    // The header is the current revision, not the read revision (etcd).
    let mut req = range("k", "");
    req.revision = 2;
    assert_eq!(s.range(req).unwrap().header.unwrap().revision, 5);
}

#[test]
fn compacted_reads() {
    let s = TestStore::new();
    s.put("k", "v1"); // 2
    s.put("k", "v2"); // 3
    s.put("k", "v3"); // 4
    s.compact(3).unwrap();
    assert_eq!(s.get_at("k", 2), Err(MvccError::Compacted));
    // Reading exactly at the compaction revision works (etcd 3.4).
    assert_eq!(s.get_at("k", 3).unwrap().unwrap().value, b"v2");
    assert_eq!(s.get_at("k", 4).unwrap().unwrap().value, b"v3");
    assert_eq!(s.get_at("k", 5), Err(MvccError::FutureRevision));
}

#[test]
fn invalid_sort_option() {
    let s = abc();
    let mut req = range("a", "z");
    req.sort_order = 9;
    assert_eq!(s.range(req), Err(MvccError::InvalidSortOption));
    let mut req = range("a", "z");
    req.sort_target = 9;
    assert_eq!(s.range(req), Err(MvccError::InvalidSortOption));
}

#[test]
fn ranges_spanning_many_index_chunks() {
    let s = TestStore::new();
    let n = super::super::read::CHUNK_KEYS * 2 + 100;
    s.put_many((0..n).map(|i| (format!("k{i:05}"), format!("{}", i % 7))));
    // Delete every other key so chunks hold dead keys too.
    s.del("k00000", "k00500");
    let all = s.range(range("k", "l")).unwrap();
    assert_eq!(all.count as usize, n - 500);
    assert_eq!(all.kvs.len(), n - 500);

    let mut req = range("k", "l");
    req.limit = 5;
    let r = s.range(req.clone()).unwrap();
    assert_eq!(
        keys_of(&r.kvs),
        ["k00500", "k00501", "k00502", "k00503", "k00504"]
    );
    assert!(r.more);

    req.sort_order = SortOrder::Descend as i32;
    req.sort_target = SortTarget::Value as i32;
    let r = s.range(req.clone()).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value == b"6"));
    assert_eq!(keys_of(&r.kvs)[0], "k00503"); // smallest live key with value 6

    req.sort_target = SortTarget::Key as i32;
    req.sort_order = SortOrder::None as i32;
    req.min_mod_revision = n as i64 - 1; // the last three puts (revisions n-1..=n+1)
    let r = s.range(req).unwrap();
    assert_eq!(r.kvs.len(), 3);
    assert!(!r.more);
}
