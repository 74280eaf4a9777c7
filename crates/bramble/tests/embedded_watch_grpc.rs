//! An embedded watch and a gRPC client's watch (the etcd-client crate) of
//! the same member, its gRPC served on a local port: the same events, and
//! the same compaction revision for a watch from a compacted revision.

use bramble::api::mvccpb::event::EventType;
use bramble::{Txn, TxnOp, WatchOptions};
use tokio::time::timeout;

mod watch_support;
use watch_support::{events, open, rev, PATIENCE};

/// The events of one key range, as a gRPC client of the member sees them
/// (the etcd-client crate) and as the embedding API does: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_as_a_grpc_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        bramble_server::ClientServer::new(node.context().clone()).serve(
            listener,
            None,
            shutdown.clone().cancelled_owned(),
        ),
    );
    let mut grpc = etcd_client::Client::connect([format!("http://{addr}")], None)
        .await
        .expect("connect");

    let old = rev(node.put("cmp/old", "o").await.expect("put").header);
    let mut embedded = node
        .watch(
            "cmp/",
            WatchOptions::new().prefix().prev_kv().start_revision(old),
        )
        .await
        .expect("watch");
    let grpc_opts = etcd_client::WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(old);
    let mut remote = grpc
        .watch("cmp/", Some(grpc_opts))
        .await
        .expect("grpc watch");
    let created = remote.message().await.expect("created").expect("open");
    assert!(created.created());

    let lease = node.lease_grant(60).await.expect("grant");
    node.put("cmp/a", "1").await.expect("put");
    node.put_with("cmp/a", "2", bramble::PutOptions::new().lease(lease.id))
        .await
        .expect("put with lease");
    node.txn(Txn::new().and_then([
        TxnOp::put("cmp/b", "x"),
        TxnOp::put("cmp/c", "y"),
        TxnOp::put("other", "z"),
    ]))
    .await
    .expect("txn");
    node.delete("cmp/a").await.expect("delete");
    node.delete_with("cmp/", bramble::DeleteOptions::new().prefix())
        .await
        .expect("delete prefix");
    const EVENTS: usize = 9;

    let mine = events(&mut embedded, EVENTS).await;
    let mut theirs = Vec::new();
    while theirs.len() < EVENTS {
        let resp = timeout(PATIENCE, remote.message())
            .await
            .expect("in time")
            .expect("grpc watch")
            .expect("open");
        assert!(!resp.canceled(), "{resp:?}");
        theirs.extend(resp.events().iter().cloned());
    }
    assert_eq!(theirs.len(), EVENTS);
    type Kv = (String, String, i64, i64, i64, i64);
    let grpc_kv = |kv: &etcd_client::KeyValue| -> Kv {
        (
            String::from_utf8_lossy(kv.key()).into_owned(),
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            kv.lease(),
        )
    };
    let our_kv = |kv: &bramble::api::mvccpb::KeyValue| -> Kv {
        (
            String::from_utf8_lossy(&kv.key).into_owned(),
            String::from_utf8_lossy(&kv.value).into_owned(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease,
        )
    };
    let theirs: Vec<_> = theirs
        .iter()
        .map(|e| {
            let ty = match e.event_type() {
                etcd_client::EventType::Put => EventType::Put,
                etcd_client::EventType::Delete => EventType::Delete,
            };
            (ty, e.kv().map(grpc_kv), e.prev_kv().map(grpc_kv))
        })
        .collect();
    let mine: Vec<_> = mine
        .iter()
        .map(|e| {
            (
                e.r#type(),
                e.kv.as_ref().map(our_kv),
                e.prev_kv.as_ref().map(our_kv),
            )
        })
        .collect();
    assert_eq!(mine, theirs);
    // What was written, in order: the old put, two puts of a, the txn's
    // two keys at one revision, a's delete, then b, c and old at one, in
    // key order.
    let keys: Vec<_> = mine
        .iter()
        .map(|(ty, kv, _)| (*ty, kv.as_ref().expect("kv").0.clone()))
        .collect();
    let put = |k: &str| (EventType::Put, k.to_string());
    let del = |k: &str| (EventType::Delete, k.to_string());
    assert_eq!(
        keys,
        [
            put("cmp/old"),
            put("cmp/a"),
            put("cmp/a"),
            put("cmp/b"),
            put("cmp/c"),
            del("cmp/a"),
            del("cmp/b"),
            del("cmp/c"),
            del("cmp/old"),
        ]
    );
    let revision = |i: usize| mine[i].1.as_ref().expect("kv").3;
    assert_eq!(revision(3), revision(4), "one txn, one revision");
    assert_eq!(revision(6), revision(8), "one delete, one revision");

    // A watch from a compacted revision: the same compaction revision.
    let now = rev(node.put("cmp/now", "n").await.expect("put").header);
    node.compact(now, true).await.expect("compact");
    let err = node
        .watch("cmp/", WatchOptions::new().prefix().start_revision(old))
        .await
        .expect_err("compacted");
    let compacted_opts = etcd_client::WatchOptions::new()
        .with_prefix()
        .with_start_revision(old);
    let mut remote = grpc
        .watch("cmp/", Some(compacted_opts))
        .await
        .expect("grpc watch");
    // etcd's answer: created, then canceled with the compaction's revision.
    let created = remote.message().await.expect("answer").expect("open");
    assert!(created.created() && !created.canceled(), "{created:?}");
    let canceled = remote.message().await.expect("answer").expect("open");
    assert!(canceled.canceled(), "{canceled:?}");
    assert_eq!(err.compact_revision(), Some(canceled.compact_revision()));
    assert_eq!(err.compact_revision(), Some(now));

    drop((remote, grpc));
    shutdown.cancel();
    timeout(PATIENCE, server)
        .await
        .expect("server stops")
        .expect("server task")
        .expect("serve");
    node.close().await;
}
