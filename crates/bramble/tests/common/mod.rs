//! Embedded clusters for the tests: several real members in this process,
//! talking Raft to each other over 127.0.0.1 sockets.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bramble::{ClusterState, Error, Node, NodeOptions, RangeOptions};

/// How long a test waits for anything the cluster should do soon (an
/// election, a replication, a lease expiry): generous for a loaded CI host.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Ports handed out by this process, never reused.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free local port for a member's peer listener, which must be known
/// before the member starts (every member's `initial_cluster` names it).
/// Taken below Linux's ephemeral range (32768 and up): a port the OS picks
/// for `:0` could be given to an outgoing connection (a peer dialling
/// another) before the member binds it.
pub fn free_addr() -> SocketAddr {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let mut seed = RandomState::new().build_hasher().finish();
    for _ in 0..1000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + (seed >> 33) as u16 % 12000;
        if taken.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            taken.insert(port);
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port in 20000..32000 after 1000 tries");
}

/// `m<i>`'s options in a cluster whose members' peer addresses are
/// `peers`: small Raft timeouts so elections take a fraction of a second.
pub fn member_options(
    dir: &Path,
    i: usize,
    peers: &[SocketAddr],
    state: ClusterState,
) -> NodeOptions {
    let url = |a: &SocketAddr| format!("http://{a}");
    let mut o = NodeOptions::new(dir.join(format!("m{i}")));
    o.name = format!("m{i}");
    o.peer_urls = vec![url(&peers[i])];
    o.client_urls = vec![format!("http://127.0.0.1:{}", 40000 + i)];
    o.heartbeat_interval_ms = 50;
    o.election_timeout_ms = 500;
    o.initial_cluster = peers
        .iter()
        .enumerate()
        .map(|(j, a)| (format!("m{j}"), vec![url(a)]))
        .collect();
    o.initial_cluster_state = state;
    o.listen_peer_addrs = vec![peers[i].into()];
    o
}

/// Opens a new cluster of `n` members under `dir`, and waits until it takes
/// writes. Returns the members and their peer addresses.
pub async fn start_cluster(dir: &Path, n: usize) -> (Vec<Node>, Vec<SocketAddr>) {
    let peers: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
    // Opened together: a member of a larger cluster serves once its peers
    // are up, and each open returns at once.
    let mut nodes = Vec::new();
    for i in 0..n {
        let o = member_options(dir, i, &peers, ClusterState::New);
        nodes.push(Node::open(o).await.expect("open member"));
    }
    retry(|| nodes[0].put("cluster/started", "yes")).await;
    (nodes, peers)
}

/// Runs `call` until it succeeds, retrying while it fails in a way that
/// passes (no leader yet, a leader change): for the first request after an
/// election. Fails the test on any other error, or after [`PATIENCE`].
pub async fn retry<T, F: Future<Output = Result<T, Error>>>(call: impl FnMut() -> F) -> T {
    retry_while(|_| false, call).await
}

/// [`retry`], also retrying the errors `passes` says will pass.
pub async fn retry_while<T, F: Future<Output = Result<T, Error>>>(
    passes: impl Fn(&Error) -> bool,
    mut call: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e)
                if (e.is_retryable() || passes(&e)) && tokio::time::Instant::now() < deadline =>
            {
                // Nothing tells a client "a leader was elected" or "the
                // leader saw the learner catch up": etcd's clients retry too.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("request failed: {e} ({:?})", e.kind()),
        }
    }
}

/// The index of the member the others follow.
pub fn leader_index(nodes: &[Node]) -> Option<usize> {
    let leader = nodes[0].context().node.status().leader;
    nodes
        .iter()
        .position(|n| n.context().identity.member_id == leader && leader != 0)
}

/// Waits (on `node`'s applied revisions, no polling) until the keys under
/// `prefix` on `node` satisfy `done`; returns their count then.
pub async fn wait_for_keys(node: &Node, prefix: &str, done: impl Fn(i64) -> bool) -> i64 {
    let mut revisions = node.context().node.subscribe_revisions();
    let wait = async {
        loop {
            revisions.borrow_and_update();
            let count = node
                .range(
                    prefix,
                    RangeOptions::new().prefix().count_only().serializable(),
                )
                .await
                .expect("local range")
                .count;
            if done(count) {
                return count;
            }
            revisions.changed().await.expect("member running");
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("keys under {prefix} never got there"))
}

/// Waits until `node` applied revision `rev` (what a member catching up
/// shows).
pub async fn wait_for_revision(node: &Node, rev: i64) {
    let mut revisions = node.context().node.subscribe_revisions();
    tokio::time::timeout(PATIENCE, revisions.wait_for(|r| *r >= rev))
        .await
        .unwrap_or_else(|_| panic!("never applied revision {rev}"))
        .expect("member running");
}

/// Closes every member.
pub async fn close_all(nodes: Vec<Node>) {
    for n in nodes {
        n.close().await;
    }
}
