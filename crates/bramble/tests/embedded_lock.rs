//! Locks across the members of an embedded cluster: one holder at a time,
//! handed over when the holder unlocks, drops its guard, or its member goes
//! away (its session lease expires); a cancelled wait leaves nothing behind.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bramble::{Compare, ErrorKind, Txn, TxnOp};
use common::{close_all, leader_index, start_cluster, wait_for_keys, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_guard_hands_the_lock_to_the_next_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = start_cluster(dir.path(), 3).await;

    let held = nodes[0].lock("jobs").await.expect("lock on m0");
    let mut waiter = {
        let b = nodes[1].client();
        tokio::spawn(async move { b.lock("jobs").await })
    };
    // m1's contender key queues behind m0's.
    wait_for_keys(&nodes[2], "jobs/", |n| n == 2).await;
    assert!(!waiter.is_finished(), "m0 holds the lock");
    let first_key = held.key().to_vec();
    // Writes guarded by the lock key go through while it is held.
    let guarded = Txn::new()
        .when([Compare::create_revision(first_key.clone()).gt(0)])
        .and_then([TxnOp::put("jobs-state", "m0")]);
    assert!(nodes[2].txn(guarded).await.expect("txn").succeeded);

    drop(held);
    let next = tokio::time::timeout(PATIENCE, &mut waiter)
        .await
        .expect("m1 got the lock in time")
        .expect("task")
        .expect("lock on m1");
    assert_ne!(next.key(), first_key.as_slice());
    assert!(nodes[2].get(first_key).await.expect("get").is_none());
    assert_eq!(
        nodes[0]
            .get(next.key())
            .await
            .expect("get")
            .expect("held")
            .lease,
        next.lease()
    );

    // Unlocking deletes the key and revokes the session lease.
    let (key, lease) = (next.key().to_vec(), next.lease());
    next.unlock().await.expect("unlock");
    assert!(nodes[0].get(key).await.expect("get").is_none());
    let ttl = nodes[0]
        .lease_time_to_live(lease, false)
        .await
        .expect("ttl");
    assert_eq!(ttl.ttl, -1, "the session lease was revoked");
    close_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_across_members() {
    const TASKS_PER_MEMBER: usize = 2;
    const ROUNDS: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    nodes[0].put("counter", "0").await.expect("put");

    // Every task reads the counter and writes it back plus one, under the
    // lock: an update lost to an overlap would show in the total.
    let holders = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..TASKS_PER_MEMBER {
            let client = node.client();
            let holders = holders.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let guard = client.lock("counter-lock").await.expect("lock");
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let kv = client.get("counter").await.expect("get").expect("counter");
                    let n: usize = String::from_utf8(kv.value)
                        .expect("utf-8")
                        .parse()
                        .expect("a number");
                    // Yield, so an overlapping holder would run in between.
                    tokio::task::yield_now().await;
                    client
                        .put("counter", (n + 1).to_string())
                        .await
                        .expect("put");
                    holders.fetch_sub(1, Ordering::SeqCst);
                    guard.unlock().await.expect("unlock");
                }
            }));
        }
    }
    for t in tasks {
        tokio::time::timeout(PATIENCE, t)
            .await
            .expect("tasks finish in time")
            .expect("task");
    }
    let total = nodes[1]
        .get("counter")
        .await
        .expect("get")
        .expect("counter");
    let expected = nodes.len() * TASKS_PER_MEMBER * ROUNDS;
    assert_eq!(total.value, expected.to_string().as_bytes());
    close_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_of_a_member_that_goes_away_passes_on_once_its_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = start_cluster(dir.path(), 3).await;
    let leader = leader_index(&nodes).expect("a leader");
    // The holder is a follower: the cluster keeps its leader, and only the
    // lease's expiry frees the lock.
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);

    let session = nodes[a].lease_keeper(2).await.expect("short session lease");
    let lease = session.id();
    let held = nodes[a]
        .lock_with_lease("backup", lease)
        .await
        .expect("lock");
    let mut waiter = {
        let client = nodes[b].client();
        tokio::spawn(async move { client.lock("backup").await })
    };
    wait_for_keys(&nodes[b], "backup/", |n| n == 2).await;

    // The holder's whole member goes away, without unlocking.
    let holder = nodes.remove(a);
    holder.close().await;
    assert_eq!(held.lost().await.kind(), ErrorKind::Stopped);
    // Its keeper stops renewing (a closed follower must not forward
    // renewals to the leader any more).
    assert_eq!(session.lost().await.kind(), ErrorKind::Stopped);

    let b = if b > a { b - 1 } else { b };
    let next = tokio::time::timeout(PATIENCE, &mut waiter)
        .await
        .expect("the lock passed on after the lease's TTL")
        .expect("task")
        .expect("lock");
    let ttl = nodes[b]
        .lease_time_to_live(lease, false)
        .await
        .expect("ttl");
    assert_eq!(ttl.ttl, -1, "the holder's lease expired");
    assert_eq!(wait_for_keys(&nodes[b], "backup/", |n| n == 1).await, 1);
    assert!(nodes[b].get(next.key()).await.expect("get").is_some());
    next.unlock().await.expect("unlock");
    drop((held, session, holder));
    close_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_leaves_no_contender_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let held = nodes[0].lock("gate").await.expect("lock");

    // A waiter with its own session, and one with the caller's lease (kept
    // alive: only the cancelled call can remove its key).
    let caller_lease = nodes[2].lease_keeper(60).await.expect("lease");
    let waiters = [
        {
            let c = nodes[1].client();
            tokio::spawn(async move { c.lock("gate").await.map(|_| ()) })
        },
        {
            let c = nodes[2].client();
            let lease = caller_lease.id();
            tokio::spawn(async move { c.lock_with_lease("gate", lease).await.map(|_| ()) })
        },
    ];
    wait_for_keys(&nodes[0], "gate/", |n| n == 3).await;
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        assert!(w.await.expect_err("aborted").is_cancelled());
    }
    // Both contender keys go; the holder's stays.
    assert_eq!(wait_for_keys(&nodes[0], "gate/", |n| n == 1).await, 1);
    assert!(nodes[0].get(held.key()).await.expect("get").is_some());
    assert!(caller_lease.is_alive(), "the caller's lease is left alone");

    // Nobody is queued ahead of a new contender once the holder unlocks.
    held.unlock().await.expect("unlock");
    let next = tokio::time::timeout(PATIENCE, nodes[1].lock("gate"))
        .await
        .expect("no abandoned contender ahead")
        .expect("lock");
    next.unlock().await.expect("unlock");
    close_all(nodes).await;
}
