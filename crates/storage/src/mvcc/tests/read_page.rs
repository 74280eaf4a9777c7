//! Paged range reads (`read_page.rs`): pages at one revision cover the range once, in key
//! order, within their byte and key bounds, whatever is written between them.

use super::super::{kv_encoded_len, PageRequest, RangePage};
use super::*;

fn page(
    s: &TestStore,
    revision: i64,
    after: Option<&[u8]>,
    max_keys: usize,
    max_bytes: usize,
) -> Result<RangePage, MvccError> {
    s.store.range_page(&PageRequest {
        key: b"k",
        range_end: b"l",
        revision,
        after,
        keys_only: false,
        max_keys,
        max_bytes,
    })
}

/// Reads the whole range page by page, calling `between` after each page.
fn all_pages(
    s: &TestStore,
    max_keys: usize,
    max_bytes: usize,
    mut between: impl FnMut(usize),
) -> (i64, Vec<RangePage>) {
    let first = page(s, 0, None, max_keys, max_bytes).unwrap();
    let rev = first.revision;
    let mut pages = vec![first];
    while pages.last().unwrap().more {
        between(pages.len());
        let after = pages.last().unwrap().kvs.last().unwrap().key.clone();
        pages.push(page(s, rev, Some(&after), max_keys, max_bytes).unwrap());
    }
    (rev, pages)
}

#[test]
fn pages_read_one_revision_while_writes_go_on() {
    let s = TestStore::new();
    // 3,000 keys, every third deleted: pages cross the index's visiting chunks and skip
    // keys that do not exist at the read revision.
    s.put_many((0..3000).map(|i| (format!("k{i:05}"), "v".repeat(i % 50))));
    for i in (0..3000).step_by(3) {
        s.del(&format!("k{i:05}"), "");
    }
    let (rev, pages) = all_pages(&s, usize::MAX, 4096, |n| {
        s.put(&format!("k{:05}", n * 3), "new");
        s.del(&format!("k{:05}", n * 3 + 1), "");
    });
    let want = s.range(RangeRequest {
        revision: rev,
        ..range("k", "l")
    });
    let got: Vec<KeyValue> = pages.iter().flat_map(|p| p.kvs.clone()).collect();
    assert_eq!(got, want.unwrap().kvs);
    assert_eq!(got.len(), 2000);
    assert!(pages.len() > 10);
    for p in &pages {
        let bytes: usize = p.kvs.iter().map(kv_encoded_len).sum();
        assert!(bytes <= 4096 && !p.kvs.is_empty(), "{bytes} bytes");
        assert_eq!(p.revision, rev);
    }
    assert!(s.store.current_revision() > rev);
}

#[test]
fn a_page_holds_at_least_one_value_and_at_most_max_keys() {
    let s = TestStore::new();
    s.put("k1", &"x".repeat(10_000));
    s.put("k2", "y");
    s.put("k3", "z");
    let p = page(&s, 0, None, 10, 100).unwrap();
    assert_eq!((keys_of(&p.kvs), p.more), (vec!["k1".to_string()], true));
    let p = page(&s, 0, Some(b"k1"), 1, 1 << 20).unwrap();
    assert_eq!((keys_of(&p.kvs), p.more), (vec!["k2".to_string()], true));
    // The last key: nothing after it, so no `more`.
    let p = page(&s, 0, Some(b"k2"), 1, 1 << 20).unwrap();
    assert_eq!((keys_of(&p.kvs), p.more), (vec!["k3".to_string()], false));
    let p = page(&s, 0, Some(b"k3"), 1, 1 << 20).unwrap();
    assert_eq!((p.kvs.len(), p.more), (0, false));
}

#[test]
fn keys_only_pages_have_neither_values_nor_leases() {
    let s = TestStore::new();
    s.grant(7, 600).unwrap();
    s.apply(put_cmd(PutRequest {
        lease: 7,
        ..put("k1", "v")
    }));
    s.put("k1", "w");
    let p = s
        .store
        .range_page(&PageRequest {
            key: b"k1",
            range_end: b"",
            revision: 0,
            after: None,
            keys_only: true,
            max_keys: 10,
            max_bytes: 1 << 20,
        })
        .unwrap();
    let full = s.get("k1").unwrap();
    assert_eq!(
        p.kvs,
        vec![KeyValue {
            key: b"k1".to_vec(),
            create_revision: full.create_revision,
            mod_revision: full.mod_revision,
            version: 2,
            ..Default::default()
        }]
    );
}

#[test]
fn pages_fail_on_future_and_compacted_revisions() {
    let s = TestStore::new();
    for i in 0..5 {
        s.put(&format!("k{i}"), "v");
    }
    let current = s.store.current_revision();
    assert_eq!(
        page(&s, current + 1, None, 10, 1 << 20),
        Err(MvccError::FutureRevision)
    );
    s.compact(current - 1).unwrap();
    assert_eq!(
        page(&s, current - 2, Some(b"k1"), 10, 1 << 20),
        Err(MvccError::Compacted)
    );
    assert_eq!(
        page(&s, current - 1, None, 10, 1 << 20).unwrap().kvs.len(),
        4
    );
}
