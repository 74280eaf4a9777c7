//! Leases of the embedding API on a real in-process member: expiry deletes
//! a lease's keys, a [`LeaseKeeper`](bramble::LeaseKeeper) keeps one alive
//! and lets it go (run out, or revoked at once), `lost()` reports a lease
//! revoked by someone else, and the lease queries answer as etcd's.
//!
//! A key's deletion is awaited as its watch event, with a timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use bramble::api::mvccpb::event::EventType;
use bramble::{ErrorKind, Node, NodeOptions, PutOptions, WatchOptions, Watcher};
use futures::StreamExt;
use tokio::time::{timeout, Instant};

/// Longest wait for anything the member should do promptly.
const PATIENCE: Duration = Duration::from_secs(20);

/// A member with short Raft ticks: its minimum lease TTL
/// (`min_lease_ttl`: 1.5 election timeouts, rounded up to seconds) is 1 s.
async fn open_fast(dir: &std::path::Path) -> Node {
    let mut opts = NodeOptions::new(dir);
    opts.heartbeat_interval_ms = 20;
    opts.election_timeout_ms = 100;
    Node::open(opts).await.expect("open")
}

/// Waits for `key`'s delete event on `w` (a watch of that key alone).
async fn deleted(w: &mut Watcher) -> i64 {
    let resp = timeout(PATIENCE, w.next())
        .await
        .expect("deleted in time")
        .expect("the stream is open")
        .expect("not an error");
    assert_eq!(resp.events.len(), 1, "{resp:?}");
    assert_eq!(resp.events[0].r#type(), EventType::Delete);
    resp.events[0].kv.as_ref().expect("kv").mod_revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_deletes_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_fast(dir.path()).await;
    let granted_at = Instant::now();
    let lease = node.lease_grant(1).await.expect("grant");
    assert_eq!(lease.ttl, 1, "the member's minimum TTL allows 1 s");
    let put = node
        .put_with("session", "up", PutOptions::new().lease(lease.id))
        .await
        .expect("put");
    // From the put on: the expiry is in the stream even if it came first.
    let from = put.header.expect("header").revision + 1;
    let mut w = node
        .watch("session", WatchOptions::new().start_revision(from))
        .await
        .expect("watch");
    let rev = deleted(&mut w).await;
    assert!(
        granted_at.elapsed() >= Duration::from_secs(1),
        "not before its TTL: {:?}",
        granted_at.elapsed()
    );
    assert!(node.get("session").await.expect("get").is_none());
    let ttl = node
        .lease_time_to_live(lease.id, false)
        .await
        .expect("time to live");
    assert_eq!(ttl.ttl, -1, "gone, as etcd answers");
    assert!(ttl.header.expect("header").revision >= rev);
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_keeps_its_lease_then_lets_it_run_out() {
    const TTL: u64 = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_fast(dir.path()).await;
    let keeper = node.lease_keeper(TTL as i64).await.expect("keeper");
    node.put_with("kept", "v", PutOptions::new().lease(keeper.id()))
        .await
        .expect("put");
    let mut w = node
        .watch("kept", WatchOptions::new())
        .await
        .expect("watch");
    // Three TTLs without a word on the key: it stays.
    let quiet = timeout(Duration::from_secs(3 * TTL), w.next()).await;
    assert!(quiet.is_err(), "nothing happened to the key: {quiet:?}");
    assert!(keeper.is_alive());
    assert!(node.get("kept").await.expect("get").is_some());
    let left = node
        .lease_time_to_live(keeper.id(), false)
        .await
        .expect("time to live");
    assert_eq!(left.granted_ttl, TTL as i64);
    assert!(left.ttl > 0, "renewed: {left:?}");

    // Dropped without revoking: the lease runs out what is left of its
    // TTL (at least two thirds of it: renewals come every third).
    let dropped_at = Instant::now();
    drop(keeper);
    deleted(&mut w).await;
    let after = dropped_at.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "ran out its TTL: {after:?}"
    );
    assert!(node.get("kept").await.expect("get").is_none());
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_drop_deletes_the_keys_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_fast(dir.path()).await;
    // A TTL far longer than the wait: only a revoke can delete the key.
    let keeper = node
        .lease_keeper(600)
        .await
        .expect("keeper")
        .revoke_on_drop(true);
    let id = keeper.id();
    node.put_with("presence", "here", PutOptions::new().lease(id))
        .await
        .expect("put");
    let mut w = node
        .watch("presence", WatchOptions::new())
        .await
        .expect("watch");
    drop(keeper);
    deleted(&mut w).await;
    let ttl = node.lease_time_to_live(id, false).await.expect("ttl");
    assert_eq!(ttl.ttl, -1, "revoked");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reports_a_lease_revoked_by_someone_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_fast(dir.path()).await;
    // Renewed every second or less, so the loss shows soon.
    let keeper = node.lease_keeper(2).await.expect("keeper");
    let other = node.client();
    other.lease_revoke(keeper.id()).await.expect("revoke");
    let why = timeout(PATIENCE, keeper.lost())
        .await
        .expect("lost in time");
    assert_eq!(why.kind(), ErrorKind::LeaseNotFound);
    assert_eq!(why.message(), "etcdserver: requested lease not found");
    assert!(!keeper.is_alive());
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_and_leases_answer_as_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    // etcd's default ticks: a minimum TTL of 2 s.
    let node = Node::open(NodeOptions::new(dir.path()))
        .await
        .expect("open");
    let short = node.lease_grant(1).await.expect("grant");
    assert_eq!(short.ttl, 2, "raised to the member's minimum");

    let a = node.lease_grant(60).await.expect("grant a").id;
    let b = node.lease_grant(60).await.expect("grant b").id;
    for key in ["y", "x"] {
        node.put_with(key, "v", PutOptions::new().lease(a))
            .await
            .expect("put");
    }
    let with_keys = node.lease_time_to_live(a, true).await.expect("ttl");
    assert_eq!(with_keys.id, a);
    assert_eq!(with_keys.granted_ttl, 60);
    assert!((1..=60).contains(&with_keys.ttl), "{with_keys:?}");
    let keys: BTreeSet<Vec<u8>> = with_keys.keys.into_iter().collect();
    assert_eq!(keys, BTreeSet::from([b"x".to_vec(), b"y".to_vec()]));
    let without = node.lease_time_to_live(a, false).await.expect("ttl");
    assert!(without.keys.is_empty(), "keys only when asked for");
    assert!(node
        .lease_time_to_live(b, true)
        .await
        .expect("ttl")
        .keys
        .is_empty());

    let ids = |resp: bramble::api::etcdserverpb::LeaseLeasesResponse| -> BTreeSet<i64> {
        resp.leases.into_iter().map(|l| l.id).collect()
    };
    let all = ids(node.leases().await.expect("leases"));
    assert_eq!(all, BTreeSet::from([short.id, a, b]));
    node.lease_revoke(b).await.expect("revoke");
    let all = ids(node.leases().await.expect("leases"));
    assert_eq!(all, BTreeSet::from([short.id, a]));
    let gone = node.lease_time_to_live(b, true).await.expect("ttl");
    assert_eq!((gone.ttl, gone.granted_ttl), (-1, 0));
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_once_on_a_missing_lease_is_lease_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_fast(dir.path()).await;
    let err = node
        .lease_keep_alive_once(0x5eed)
        .await
        .expect_err("never granted");
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound);
    assert_eq!(err.code(), tonic::Code::NotFound);

    let lease = node.lease_grant(30).await.expect("grant");
    assert_eq!(
        node.lease_keep_alive_once(lease.id).await.expect("renew"),
        30
    );
    node.lease_revoke(lease.id).await.expect("revoke");
    let err = node
        .lease_keep_alive_once(lease.id)
        .await
        .expect_err("revoked");
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound);
    let err = node.lease_revoke(lease.id).await.expect_err("twice");
    assert_eq!(err.kind(), ErrorKind::LeaseNotFound);
    node.close().await;
}
