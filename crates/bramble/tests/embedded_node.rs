//! The embedding API end to end: a real in-process member on a temp dir.

use bramble::{DeleteOptions, ErrorKind, Node, NodeOptions, RangeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::open(NodeOptions::new(dir.path()))
        .await
        .expect("open");

    let r1 = node.put("a", "1").await.expect("put a");
    let r2 = node.put("b", "2").await.expect("put b");
    let rev1 = r1.header.expect("header").revision;
    let rev2 = r2.header.expect("header").revision;
    assert_eq!(rev2, rev1 + 1, "each put takes one revision");

    let got = node.get("a").await.expect("get").expect("a exists");
    assert_eq!(got.value, b"1");
    assert_eq!(got.create_revision, rev1);
    assert_eq!(got.version, 1);

    let del = node
        .delete_with("b", DeleteOptions::new().prev_kv())
        .await
        .expect("delete");
    assert_eq!(del.deleted, 1);
    assert_eq!(del.prev_kvs[0].value, b"2");
    assert!(node.get("b").await.expect("get b").is_none());

    // History is readable until compacted, then it is etcd's error.
    let old = node
        .range("b", RangeOptions::new().revision(rev2))
        .await
        .expect("historical read");
    assert_eq!(old.kvs.len(), 1);
    node.compact(rev2 + 1, true).await.expect("compact");
    let err = node
        .range("b", RangeOptions::new().revision(rev2))
        .await
        .expect_err("compacted");
    assert_eq!(err.kind(), ErrorKind::Compacted);
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    assert_eq!(
        err.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    node.close().await;
    drop(node);

    // Everything acknowledged is there after reopening.
    let node = Node::open(NodeOptions::new(dir.path()))
        .await
        .expect("reopen");
    let got = node.get("a").await.expect("get").expect("a survives");
    assert_eq!(got.value, b"1");
    assert!(node.get("b").await.expect("get b").is_none());
    let next = node.put("c", "3").await.expect("put after reopen");
    assert_eq!(next.header.expect("header").revision, rev2 + 2);
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_etcd_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = NodeOptions::new(dir.path());
    opts.limits.max_request_bytes = 1024;
    let node = Node::open(opts).await.expect("open");
    let e = node.put("", "v").await.expect_err("empty key");
    assert_eq!(e.message(), "etcdserver: key is not provided");
    assert_eq!(e.kind(), ErrorKind::EmptyKey);
    let e = node
        .put("big", vec![0u8; 2048])
        .await
        .expect_err("too large");
    assert_eq!(e.message(), "etcdserver: request is too large");
    assert_eq!(e.kind(), ErrorKind::RequestTooLarge);
    let e = node
        .range("a", RangeOptions::new().revision(1000))
        .await
        .expect_err("future revision");
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(e.kind(), ErrorKind::FutureRevision);
    // Still serving.
    node.put("ok", "v").await.expect("put after errors");
    node.close().await;
}
