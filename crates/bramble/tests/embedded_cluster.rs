//! Embedded clusters: several members in one process, each a real `Node` on
//! its own temp dir, talking Raft over 127.0.0.1. Writes through one member
//! are read linearizably through the others, the cluster survives losing its
//! leader, and membership changes through the API.

mod common;

use bramble::{ClusterState, ErrorKind, Node};
use common::{
    close_all, free_addr, leader_index, member_options, retry, retry_while, start_cluster,
    wait_for_revision, PATIENCE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_losing_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = start_cluster(dir.path(), 3).await;

    // Each member's writes are read linearizably through the others.
    let mut acknowledged = Vec::new();
    for (i, writer) in nodes.iter().enumerate() {
        let key = format!("k/from-m{i}");
        retry(|| writer.put(key.clone(), format!("v{i}"))).await;
        acknowledged.push((key.clone(), format!("v{i}")));
        for reader in &nodes {
            let kv = reader.get(key.clone()).await.expect("linearizable get");
            assert_eq!(kv.expect("written").value, format!("v{i}").as_bytes());
        }
    }

    // Lose the leader: close it, as a crashed process would stop talking.
    let leader = leader_index(&nodes).expect("a leader after a write");
    let gone = nodes.remove(leader);
    gone.close().await;
    drop(gone);

    // The other two elect a new leader and go on taking writes.
    for round in 0..5 {
        let key = format!("k/after-{round}");
        let writer = &nodes[round % 2];
        retry(|| writer.put(key.clone(), "later")).await;
        acknowledged.push((key, "later".to_string()));
    }
    let new_leader = leader_index(&nodes).expect("the survivors elected a leader");
    assert!(new_leader < 2);

    // Every acknowledged write is there, through either survivor.
    for node in &nodes {
        for (key, value) in &acknowledged {
            let kv = node.get(key.clone()).await.expect("get");
            assert_eq!(kv.expect(key).value, value.as_bytes(), "{key}");
        }
    }
    close_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_catch_up_and_leave_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, mut peers) = start_cluster(dir.path(), 3).await;
    for i in 0..20 {
        retry(|| nodes[0].put(format!("data/{i}"), "x")).await;
    }

    // Add a learner, then start it: it joins the existing cluster.
    peers.push(free_addr());
    let url = format!("http://{}", peers[3]);
    let added = retry(|| nodes[1].member_add(vec![url.clone()], true)).await;
    let new_id = added.member.expect("the added member").id;
    let joining = member_options(dir.path(), 3, &peers, ClusterState::Existing);
    let learner = Node::open(joining).await.expect("open the new member");
    assert_eq!(learner.context().identity.member_id, new_id);
    // It publishes its name once it runs (etcd promotes only a started
    // member).
    let mut published = learner.published();
    tokio::time::timeout(PATIENCE, published.wait_for(|p| *p))
        .await
        .expect("the new member publishes itself")
        .expect("member running");

    // It catches up with what was written before and after it joined.
    let last = retry(|| nodes[2].put("data/last", "y")).await;
    let rev = last.header.expect("header").revision;
    wait_for_revision(&learner, rev).await;
    let kv = learner
        .range("data/last", bramble::RangeOptions::new().serializable())
        .await
        .expect("a learner serves serializable reads");
    assert_eq!(kv.kvs[0].value, b"y");
    let before = learner
        .range(
            "data/",
            bramble::RangeOptions::new().prefix().serializable(),
        )
        .await
        .expect("serializable range");
    assert_eq!(before.count, 21);

    // A caught-up learner can be promoted once the leader saw it catch up
    // (etcd refuses until then); the list then shows 4 voters.
    let in_sync_soon = |e: &bramble::Error| e.kind() == ErrorKind::Membership;
    let promoted = retry_while(in_sync_soon, || nodes[0].member_promote(new_id)).await;
    assert!(promoted.members.iter().all(|m| !m.is_learner));
    nodes.push(learner);
    let listed = retry(|| nodes[3].member_list()).await.members;
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().any(|m| m.id == new_id && m.name == "m3"));

    // Remove member 0 through member 1: member 0 learns it was removed.
    let removed_id = nodes[0].context().identity.member_id;
    let after = retry(|| nodes[1].member_remove(removed_id)).await;
    assert_eq!(after.members.len(), 3);
    assert!(after.members.iter().all(|m| m.id != removed_id));
    tokio::time::timeout(PATIENCE, nodes[0].removed())
        .await
        .expect("the removed member learns it");
    let gone = nodes.remove(0);
    gone.close().await;
    drop(gone);

    // The three left go on, the new member included.
    retry(|| nodes[2].put("data/after-remove", "z")).await;
    let kv = nodes[2].get("data/after-remove").await.expect("get");
    assert_eq!(kv.expect("written").value, b"z");
    let err = nodes[0]
        .member_remove(removed_id)
        .await
        .expect_err("gone already");
    assert_eq!(err.kind(), ErrorKind::Membership);
    close_all(nodes).await;
}
