//! `RaftNode::on_leader`, the one leader-routing loop, on real members: one
//! alone (it leads: the local action), and two in this process talking over
//! their peer listeners on localhost (the remote action, a leader change in
//! the middle of a call).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bramble_raft::node::{Attempt, LeaderPeer};
use bramble_raft::{derived_ids, MemberAttributes, NodeConfig, ProposeError, RaftNode};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Long enough for an election on a loaded CI machine.
const SETTLE: Duration = Duration::from_secs(20);

fn member(id: u64, port: u16) -> MemberAttributes {
    MemberAttributes {
        name: format!("m{id}"),
        peer_urls: vec![format!("http://127.0.0.1:{port}")],
        client_urls: vec![],
    }
}

/// Starts members 1..=n of one cluster, each serving its peer listener.
async fn start_cluster(dirs: &[tempfile::TempDir]) -> Vec<Arc<RaftNode>> {
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for (i, _) in dirs.iter().enumerate() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        members.insert(i as u64 + 1, member(i as u64 + 1, port));
        listeners.push(l);
    }
    let ids: Vec<u64> = members.keys().copied().collect();
    let mut nodes = Vec::new();
    for ((id, m), (dir, listener)) in members.iter().zip(dirs.iter().zip(listeners)) {
        let mut cfg = NodeConfig::new(dir.path(), *id, m.clone());
        cfg.cluster_id = derived_ids::cluster_id(&ids);
        cfg.bootstrap = Some(members.clone());
        let node = Arc::new(RaftNode::start(cfg).await.expect("start"));
        let service = node.peer_service();
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        nodes.push(node);
    }
    nodes
}

/// The leader every member agrees on.
async fn agreed_leader(nodes: &[Arc<RaftNode>]) -> u64 {
    let until = Instant::now() + SETTLE;
    loop {
        let leaders: Vec<u64> = nodes.iter().map(|n| n.status().leader).collect();
        if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            return leaders[0];
        }
        assert!(Instant::now() < until, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node_of(nodes: &[Arc<RaftNode>], id: u64) -> &Arc<RaftNode> {
    &nodes[(id - 1) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_runs_the_local_action_and_retries_end_at_the_deadline() {
    let dirs = [tempfile::tempdir().expect("tempdir")];
    let nodes = start_cluster(&dirs).await;
    let node = &nodes[0];
    assert_eq!(agreed_leader(&nodes).await, 1);

    let done = node
        .on_leader(
            node.request_deadline(),
            |e| e,
            || async { Attempt::Done(Ok("here")) },
            |_: LeaderPeer| async { Attempt::Done(Ok("remote")) },
        )
        .await;
    assert_eq!(done.expect("local action"), "here");

    // An attempt that keeps asking to be retried gets the error it carries
    // once the deadline has passed, not before.
    let attempts = AtomicUsize::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(300);
    let out: Result<(), ProposeError> = node
        .on_leader(
            deadline,
            |e| e,
            || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                Attempt::Retry(ProposeError::LeaderChanged)
            },
            |_: LeaderPeer| async { Attempt::Done(Ok(())) },
        )
        .await;
    assert!(matches!(out, Err(ProposeError::LeaderChanged)), "{out:?}");
    assert!(Instant::now() >= deadline);
    assert!(
        attempts.load(Ordering::Relaxed) >= 3,
        "retried with a pause of at most 50 ms: {}",
        attempts.load(Ordering::Relaxed)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reaches_the_leader_and_follows_a_leader_change() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let nodes = start_cluster(&dirs).await;
    let leader = agreed_leader(&nodes).await;
    let follower_id = 3 - leader;
    let follower = node_of(&nodes, follower_id);

    // The remote action gets the leader's id and a channel that reaches it.
    let seen = follower
        .on_leader(
            follower.request_deadline(),
            |e| e,
            || async { Attempt::Done(Err(ProposeError::Timeout)) },
            |peer: LeaderPeer| async move { Attempt::Done(Ok(peer.id)) },
        )
        .await;
    assert_eq!(seen.expect("remote action"), leader);

    // A write through the follower is proposed by the leader and applied here.
    let put = bramble_api::bramblepb::Command {
        auth: None,
        op: Some(bramble_api::bramblepb::command::Op::Put(
            bramble_api::etcdserverpb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            },
        )),
    };
    follower.propose(put).await.expect("forwarded proposal");
    follower
        .read_barrier()
        .await
        .expect("forwarded read barrier");

    // The leader refuses (it hands leadership to the follower meanwhile): the
    // next attempt runs where the new leader is, here.
    let remote_calls = AtomicUsize::new(0);
    let old_leader = node_of(&nodes, leader).clone();
    let ran_here = follower
        .on_leader(
            follower.request_deadline(),
            |e| e,
            || async { Attempt::Done(Ok("here")) },
            |_: LeaderPeer| {
                remote_calls.fetch_add(1, Ordering::Relaxed);
                let old_leader = old_leader.clone();
                async move {
                    old_leader
                        .move_leader(follower_id)
                        .await
                        .expect("move leader");
                    Attempt::Retry(ProposeError::Timeout)
                }
            },
        )
        .await;
    assert_eq!(ran_here.expect("after the leader change"), "here");
    assert_eq!(remote_calls.load(Ordering::Relaxed), 1);
    assert_eq!(follower.status().leader, follower_id);

    for n in &nodes {
        n.shutdown().await;
    }
}
