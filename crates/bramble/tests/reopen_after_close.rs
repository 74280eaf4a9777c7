//! `Node::close` releases the data dir and the peer port: reopening right after a close
//! works every time, on a lone member and on a cluster member whose peers keep talking to it.
//! Found by the `kv_requests` fuzz target (fuzz/README.md): now and then the reopen failed
//! with `wal directory ... is locked by another process`, because `close` returned before
//! every task holding the Raft node (and so the WAL lock) had ended.

use std::net::SocketAddr;
use std::time::Duration;

use bramble::{ClusterState, Node, NodeOptions};
use common::{free_addr, member_options};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_right_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..30 {
        let mut opts = NodeOptions::new(dir.path());
        opts.heartbeat_interval_ms = 20;
        opts.election_timeout_ms = 100;
        let node = match Node::open(opts).await {
            Ok(n) => n,
            Err(e) => panic!("round {round}: reopen right after close: {e}"),
        };
        node.put(format!("k{round}"), "v").await.expect("put");
        node.close().await;
        drop(node);
    }
}

/// Retries a put until the cluster has a leader that takes it.
async fn put_eventually(node: &Node, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.put(key, "v").await {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("put {key}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_member_reopens_right_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let o = member_options(dir.path(), i, &peers, ClusterState::New);
        nodes.push(Node::open(o).await.expect("open member"));
    }
    put_eventually(&nodes[0], "first").await;

    // The other two keep sending heartbeats and appends to member 2 while it closes.
    for round in 0..5 {
        let closing = nodes.pop().expect("member 2");
        closing.close().await;
        drop(closing);
        let o = member_options(dir.path(), 2, &peers, ClusterState::New);
        let reopened = match Node::open(o).await {
            Ok(n) => n,
            Err(e) => panic!("round {round}: reopen right after close: {e}"),
        };
        nodes.push(reopened);
        put_eventually(&nodes[0], &format!("k{round}")).await;
        // The reopened member serves what the cluster wrote.
        let key = format!("k{round}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match nodes[2].get(key.clone()).await {
                Ok(Some(kv)) => {
                    assert_eq!(kv.value, b"v");
                    break;
                }
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => panic!("round {round}: reopened member reads {key}: {other:?}"),
            }
        }
    }
    for n in nodes {
        n.close().await;
    }
}
