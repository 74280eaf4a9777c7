//! An embedded member serving etcd's gRPC API on a socket
//! (`NodeOptions::listen_client_addrs`): an etcd client (the `etcd-client`
//! crate) and the program's own calls see the same store, locks included,
//! and `Node::close` stops serving.

mod common;

use std::net::SocketAddr;

use bramble::{Node, NodeOptions};
use common::{wait_for_keys, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_client_and_the_program_share_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = NodeOptions::new(dir.path());
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    opts.listen_client_addrs = vec![any_port.into()];
    let node = Node::open(opts).await.expect("open");
    let addr = node.client_addrs()[0];
    assert!(!addr.tls);
    assert_ne!(addr.addr.port(), 0, "the port actually bound");

    let endpoint = format!("http://{}", addr.addr);
    let mut etcd = tokio::time::timeout(PATIENCE, etcd_client::Client::connect([&endpoint], None))
        .await
        .expect("connect in time")
        .expect("connect");

    // Writes either way are read the other way.
    etcd.put("from/grpc", "1", None).await.expect("grpc put");
    let kv = node
        .get("from/grpc")
        .await
        .expect("get")
        .expect("put over gRPC");
    assert_eq!(kv.value, b"1");
    node.put("from/program", "2").await.expect("put");
    let resp = etcd.get("from/program", None).await.expect("grpc get");
    assert_eq!(resp.kvs()[0].value(), b"2");

    let members = etcd.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "default");
    assert_eq!(members.members()[0].id(), node.context().identity.member_id);

    // One lock, two kinds of holders: the program's guard keeps the gRPC
    // client's Lock waiting until it is dropped.
    let guard = node.lock("shared").await.expect("lock");
    let mut waiter = {
        let mut etcd = etcd.clone();
        tokio::spawn(async move { etcd.lock("shared", None).await })
    };
    // The gRPC client's contender key is in the queue...
    wait_for_keys(&node, "shared/", |n| n == 2).await;
    assert!(!waiter.is_finished(), "the lock is the guard's");
    // ... and gets the lock once the guard goes.
    drop(guard);
    let locked = tokio::time::timeout(PATIENCE, &mut waiter)
        .await
        .expect("the gRPC client got the lock in time")
        .expect("task")
        .expect("lock over gRPC");
    let key = locked.key().to_vec();
    assert!(key.starts_with(b"shared/"));
    assert_eq!(wait_for_keys(&node, "shared/", |n| n == 1).await, 1);
    assert!(
        node.get(key).await.expect("get").is_some(),
        "the gRPC holder's key"
    );

    // Closing the node stops serving and frees the port.
    node.close().await;
    drop(node);
    let err = etcd.get("from/grpc", None).await;
    assert!(err.is_err(), "served after close: {err:?}");
    std::net::TcpListener::bind(addr.addr).expect("the client port is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_that_cannot_be_served_fails_the_open_before_any_data_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut opts = NodeOptions::new(&data);
    opts.listen_client_addrs = vec![taken.local_addr().expect("addr").into()];
    let err = Node::open(opts).await.err().expect("the port is taken");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(!data.exists(), "nothing made in the data dir");

    // An https address without a certificate to serve.
    let mut opts = NodeOptions::new(&data);
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    opts.listen_client_addrs = vec![bramble::ListenAddr {
        addr: any_port,
        tls: true,
    }];
    let err = Node::open(opts).await.err().expect("no client certificate");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(!data.exists(), "nothing made in the data dir");
}
