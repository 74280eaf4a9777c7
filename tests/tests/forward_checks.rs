//! A leader checks the commands its followers forward as it checks its own clients'
//! (issue 7, defect 5): a follower started with a larger `--max-request-bytes`, or a hostile
//! peer calling the peer `Forward` RPC directly, cannot put into the log what the leader's
//! own clients could not. The refusal is typed; the follower answers its client with etcd's
//! error.
//!
//! Bramble only: etcd's leader does not check proposals a follower forwards (its size check
//! runs on the member the client called), so there the follower's limit wins; see
//! docs/compatibility.md.

use std::time::Duration;

use bramble_api::bramblepb::{self as pb, forward_reply::Refused};
use bramble_api::etcdserverpb::PutRequest;
use bramble_tests::cluster::ops::{put, wait_for_value};
use bramble_tests::{Cluster, Kind};
use prost::Message;

/// A follower whose limit is 8 MiB forwards a 2 MiB put: the leader (1.5 MiB, etcd's
/// default) refuses it, and the follower's client gets etcd's "request is too large". The
/// follower's own clients still write through it.
#[test]
fn leader_refuses_a_forwarded_command_over_its_limit() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster
        .member_mut(follower)
        .set_flag("max-request-bytes", &(8 << 20).to_string());
    cluster.member_mut(follower).restart();
    let leader = cluster.wait_for_leader(Duration::from_secs(15));
    assert_ne!(leader, follower, "the restarted member should not lead yet");

    let endpoint = cluster.member(follower).endpoint();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(async {
        let mut c = bramble_tests::client::connect_endpoint(&endpoint).await;
        c.put("big", vec![b'x'; 2 << 20], None).await
    });
    let err = result.expect_err("the leader must refuse a 2 MiB command");
    let etcd_client::Error::GRpcStatus(status) = &err else {
        panic!("not a gRPC status: {err:?}")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "etcdserver: request is too large");

    put(&cluster.member(follower).etcdctl(), "small", "ok");
    for i in 0..3 {
        wait_for_value(&cluster.member(i).etcdctl(), "small", "ok");
        let out = cluster
            .member(i)
            .etcdctl()
            .run(&["get", "big", "--keys-only"]);
        assert_eq!(out.assert_ok().stdout_str().trim(), "", "member {i} has it");
    }
}

/// A hostile peer calls Forward on the leader with an empty key and with an oversized put:
/// both are refused with a typed reason and nothing is proposed.
#[test]
fn leader_refuses_invalid_forwarded_commands_from_a_peer() {
    let cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let peer_url = cluster.member(leader).peer_url();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let mut kv =
            bramble_tests::client::connect_endpoint(&cluster.member(leader).endpoint()).await;
        let before = kv.get("x", None).await.expect("get");
        let cluster_id = before.header().expect("header").cluster_id();
        let revision = before.header().expect("header").revision();

        let mut peer = pb::peer_client::PeerClient::connect(peer_url.clone())
            .await
            .expect("connect to the leader's peer URL");
        let cases = [
            (Vec::new(), 1usize, Refused::EmptyKey),
            (b"k".to_vec(), 2 << 20, Refused::TooLarge),
        ];
        for (n, (key, size, expected)) in cases.into_iter().enumerate() {
            let put = PutRequest {
                key,
                value: vec![b'x'; size],
                ..Default::default()
            };
            // A CommandRecord holding a put: field 1, the encoded PutRequest.
            let command = pb::CommandRecord {
                op: Some(pb::command_record::Op::Put(put.encode_to_vec())),
            };
            let reply = peer
                .forward(pb::ForwardRequest {
                    command: Some(command),
                    cluster_id,
                    request_id: 1000 + n as u64,
                })
                .await
                .expect("the leader answers")
                .into_inner();
            assert_eq!(reply.refused(), expected, "{reply:?}");
            assert!(reply.log_id.is_none(), "nothing proposed: {reply:?}");
        }
        let after = kv.get("x", None).await.expect("get");
        assert_eq!(after.header().expect("header").revision(), revision);
    });
}
