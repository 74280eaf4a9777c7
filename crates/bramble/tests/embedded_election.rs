//! Elections across the members of an embedded cluster: the oldest candidate
//! leads, leadership passes on when the leader resigns, drops its
//! leadership or its member goes away, and observers see every leader in
//! order.

mod common;

use bramble::ErrorKind;
use common::{close_all, leader_index, start_cluster, wait_for_keys, PATIENCE};
use futures::StreamExt;

/// The next leader an observer sees.
async fn next_leader(
    leaders: &mut (impl futures::Stream<Item = Result<bramble::api::mvccpb::KeyValue, bramble::Error>>
              + Unpin),
) -> Vec<u8> {
    tokio::time::timeout(PATIENCE, leaders.next())
        .await
        .expect("a leader change in time")
        .expect("the stream goes on")
        .expect("a leader")
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_passes_on_in_order_and_observers_see_each_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = start_cluster(dir.path(), 3).await;
    // b runs on a follower, which goes away later: the cluster keeps its
    // Raft leader, and only the lease's expiry ends b's leadership.
    let raft_leader = leader_index(&nodes).expect("a leader");
    let (m_ac, m_b, m_observer) = (raft_leader, (raft_leader + 1) % 3, (raft_leader + 2) % 3);
    let mut leaders = Box::pin(nodes[m_observer].observe("scheduler"));

    let a = nodes[m_ac]
        .campaign("scheduler", "a")
        .await
        .expect("campaign a");
    assert_eq!(next_leader(&mut leaders).await, b"a");

    // b (with a short lease) and c queue behind a.
    let b_session = nodes[m_b].lease_keeper(2).await.expect("lease");
    let mut b = {
        let client = nodes[m_b].client();
        let lease = b_session.id();
        tokio::spawn(async move { client.campaign_with_lease("scheduler", "b", lease).await })
    };
    wait_for_keys(&nodes[m_observer], "scheduler/", |n| n == 2).await;
    let mut c = {
        let client = nodes[m_ac].client();
        tokio::spawn(async move { client.campaign("scheduler", "c").await })
    };
    wait_for_keys(&nodes[m_observer], "scheduler/", |n| n == 3).await;
    assert!(!b.is_finished() && !c.is_finished(), "a leads");
    let now = nodes[m_b]
        .election_leader("scheduler")
        .await
        .expect("leader");
    assert_eq!(now.expect("a").value, b"a");

    a.proclaim("a, busy").await.expect("proclaim");
    assert_eq!(next_leader(&mut leaders).await, b"a, busy");

    // Dropping a's leadership resigns it: b is next.
    drop(a);
    let b_lead = tokio::time::timeout(PATIENCE, &mut b)
        .await
        .expect("b elected in time")
        .expect("task")
        .expect("campaign b");
    assert_eq!(next_leader(&mut leaders).await, b"b");
    assert!(!c.is_finished(), "b leads");

    // b's member goes away: once its lease expires, c is elected.
    let gone = nodes.remove(m_b);
    gone.close().await;
    assert_eq!(b_lead.lost().await.kind(), ErrorKind::Stopped);
    assert_eq!(b_session.lost().await.kind(), ErrorKind::Stopped);
    let c_lead = tokio::time::timeout(PATIENCE, &mut c)
        .await
        .expect("c elected once b's lease expired")
        .expect("task")
        .expect("campaign c");
    assert_eq!(next_leader(&mut leaders).await, b"c");
    let now = nodes[0].election_leader("scheduler").await.expect("leader");
    assert_eq!(now.expect("c").key, c_lead.key());

    c_lead.resign().await.expect("resign");
    assert!(nodes[0]
        .election_leader("scheduler")
        .await
        .expect("leader")
        .is_none());
    drop((b_lead, b_session, gone));
    close_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_knows_and_a_cancelled_campaign_withdraws() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let leader = nodes[0].campaign("db", "m0").await.expect("campaign");

    // A candidate that gives up waiting leaves the queue.
    let waiting = {
        let client = nodes[1].client();
        tokio::spawn(async move { client.campaign("db", "m1").await.map(|_| ()) })
    };
    wait_for_keys(&nodes[2], "db/", |n| n == 2).await;
    waiting.abort();
    assert!(waiting.await.expect_err("aborted").is_cancelled());
    assert_eq!(wait_for_keys(&nodes[2], "db/", |n| n == 1).await, 1);

    // An operator deletes the leader's key: the leader learns it lost, and
    // may not proclaim any more.
    nodes[2].delete(leader.key()).await.expect("delete");
    let lost = tokio::time::timeout(PATIENCE, leader.lost())
        .await
        .expect("noticed in time");
    assert_eq!(lost.kind(), ErrorKind::ElectionNotLeader);
    let err = leader.proclaim("still?").await.expect_err("deposed");
    assert_eq!(err.kind(), ErrorKind::ElectionNotLeader);
    assert_eq!(err.message(), "election: not leader");

    // Nobody leads now; the next candidate is elected at once.
    assert!(nodes[1]
        .election_leader("db")
        .await
        .expect("leader")
        .is_none());
    let next = tokio::time::timeout(PATIENCE, nodes[1].campaign("db", "m1"))
        .await
        .expect("elected at once")
        .expect("campaign");
    next.resign().await.expect("resign");
    close_all(nodes).await;
}
