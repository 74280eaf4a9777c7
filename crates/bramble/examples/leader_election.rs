//! One service on three Pis, one of which does the work at a time: each Pi
//! embeds a Bramble member, and they elect the worker with an etcd election
//! on a short lease. When the worker's Pi dies, its lease runs out and
//! another Pi takes over; when it stops cleanly, it resigns and the next one
//! takes over at once.
//!
//! On three Pis (the same command on each, with its own name):
//!
//! ```text
//! cargo run --example leader_election -- pi-1 /var/lib/demo \
//!     pi-1=http://192.168.1.11:2380,pi-2=http://192.168.1.12:2380,pi-3=http://192.168.1.13:2380
//! ```
//!
//! Without arguments it runs the three members in this process on
//! 127.0.0.1, and shows both handovers: the first worker's member is closed
//! (its Pi "loses power"), the second resigns.

use std::net::SocketAddr;
use std::time::Duration;

use bramble::{Client, ListenAddr, Node, NodeOptions};
use futures::StreamExt;

/// The election's name.
const ELECTION: &str = "demo/worker";
/// The session lease's TTL, seconds: how long a dead worker's Pi keeps the
/// job before another takes over.
const TTL: i64 = 2;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [name, dir, cluster] => one_pi(name, dir, cluster).await,
        [] => demo().await,
        _ => Err("usage: leader_election [NAME DATA_DIR NAME=PEER_URL,...]".into()),
    }
}

/// A member's options: `name` in `cluster` (name, peer URL pairs).
fn member(name: &str, dir: &std::path::Path, cluster: &[(String, String)]) -> Result<NodeOptions> {
    let mut opts = NodeOptions::new(dir);
    opts.name = name.to_string();
    opts.heartbeat_interval_ms = 50;
    opts.election_timeout_ms = 500;
    opts.initial_cluster = cluster
        .iter()
        .map(|(n, url)| (n.clone(), vec![url.clone()]))
        .collect();
    let url = &cluster
        .iter()
        .find(|(n, _)| n == name)
        .ok_or("this member's name is not in the cluster")?
        .1;
    opts.peer_urls = vec![url.clone()];
    let port: u16 = url.rsplit(':').next().unwrap_or("").parse()?;
    opts.listen_peer_addrs = vec![ListenAddr::from(SocketAddr::from(([0, 0, 0, 0], port)))];
    Ok(opts)
}

/// One Pi: campaigns, works while it leads, until Ctrl-C.
async fn one_pi(name: &str, dir: &str, cluster: &str) -> Result<()> {
    let cluster: Vec<(String, String)> = cluster
        .split(',')
        .filter_map(|m| m.split_once('='))
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect();
    let node = Node::open(member(name, dir.as_ref(), &cluster)?).await?;
    tokio::select! {
        r = serve(node.client(), name.to_string(), None) => r?,
        _ = tokio::signal::ctrl_c() => println!("{name}: stopping"),
    }
    node.close().await;
    Ok(())
}

/// Waits to be elected, then works; with `for_ticks`, stops working after
/// that many ticks and resigns.
async fn serve(client: Client, name: String, for_ticks: Option<u32>) -> Result<()> {
    let session = client.lease_keeper(TTL).await?.revoke_on_drop(true);
    let leadership = client
        .campaign_with_lease(ELECTION, name.clone(), session.id())
        .await?;
    println!("{name}: elected, working");
    let mut tick = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            lost = leadership.lost() => return Err(format!("{name}: lost the lead: {lost}").into()),
        }
        tick += 1;
        client
            .put("demo/progress", format!("{name}: tick {tick}"))
            .await?;
        if for_ticks.is_some_and(|n| tick >= n) {
            println!("{name}: done, resigning");
            leadership.resign().await?;
            return Ok(());
        }
    }
}

/// Three members in this process: the first worker's member is closed
/// without a word, the second resigns, the third works last.
async fn demo() -> Result<()> {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let cluster: Vec<(String, String)> = (1..=3)
        .map(|i| Ok((format!("pi-{i}"), format!("http://{}", free_addr()?))))
        .collect::<Result<_>>()?;
    // Opened together: each waits for a quorum to elect a leader.
    let mut options = Vec::new();
    for ((name, _), dir) in cluster.iter().zip(&dirs) {
        options.push(member(name, dir.path(), &cluster)?);
    }
    let opened = futures::future::join_all(options.into_iter().map(Node::open)).await;
    let nodes: Vec<Node> = opened.into_iter().collect::<std::result::Result<_, _>>()?;

    // Everyone campaigns; whoever wins first "loses power" after two ticks.
    let mut services = Vec::new();
    for (node, (name, _)) in nodes.iter().zip(&cluster) {
        let (client, name) = (node.client(), name.clone());
        services.push(tokio::spawn(
            async move { serve(client, name, Some(2)).await },
        ));
    }
    let mut leaders = Box::pin(nodes[0].observe(ELECTION));
    let first = leaders.next().await.ok_or("no leader")??;
    let first_name = String::from_utf8_lossy(&first.value).into_owned();
    println!("observed leader: {first_name}");
    let crashed = cluster
        .iter()
        .position(|(n, _)| *n == first_name)
        .ok_or("unknown leader")?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    println!("{first_name}: power lost");
    services[crashed].abort();
    nodes[crashed].close().await;

    // The others take over in turn: observe from a member that is still up.
    let watcher = (crashed + 1) % nodes.len();
    let mut leaders = Box::pin(nodes[watcher].observe(ELECTION));
    let mut seen = vec![first_name];
    while seen.len() < 3 {
        let leader = leaders.next().await.ok_or("observe ended")??;
        let name = String::from_utf8_lossy(&leader.value).into_owned();
        if !seen.contains(&name) {
            println!("observed leader: {name}");
            seen.push(name);
        }
    }
    for (i, service) in services.into_iter().enumerate() {
        if i != crashed {
            service.await??;
        }
    }
    for node in &nodes {
        node.close().await;
    }
    println!("leaders in turn: {}", seen.join(", "));
    Ok(())
}

/// A free local port for a peer listener (the demo's members must know each
/// other's ports before they start).
fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
