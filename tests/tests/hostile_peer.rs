//! Peer messages a member must refuse without harm (issue 7, defect 5), sent to real
//! members over their peer listener:
//!
//! - A leader checks the commands its followers forward as it checks its own clients': a
//!   follower started with a larger `--max-request-bytes`, or a hostile peer calling
//!   `Forward` directly, cannot put into the log what the leader's own clients could not.
//!   The refusal is typed; the follower answers its client with etcd's error. (etcd's leader
//!   does not check forwarded proposals: its size check runs on the member the client
//!   called, so there the follower's limit wins; see docs/compatibility.md.)
//! - A snapshot whose header is malformed is refused before anything is written.
//! - AppendEntries with a log index at u64::MAX is refused, not overflowed.
//!
//! Bramble only: the peer protocol is Bramble's own.

use std::time::Duration;

use bramble_api::bramblepb::{self as pb, forward_reply::Refused};
use bramble_api::etcdserverpb::PutRequest;
use bramble_tests::cluster::ops::{put, wait_for_value};
use bramble_tests::cluster::MemberStatus;
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
                auth: None,
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

/// The vote of the leader the cluster follows now, and its status and cluster id.
fn leader_vote(cluster: &Cluster) -> (pb::Vote, MemberStatus, u64) {
    let leader = cluster.leader();
    let status = cluster.member(leader).status().expect("leader status");
    let endpoint = cluster.member(leader).endpoint();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let cluster_id = rt.block_on(async {
        let mut c = bramble_tests::client::connect_endpoint(&endpoint).await;
        let r = c.get("x", None).await.expect("get");
        r.header().expect("header").cluster_id()
    });
    let vote = pb::Vote {
        term: status.raft_term,
        voted_for: status.member_id,
        committed: true,
    };
    (vote, status, cluster_id)
}

/// The files in a member's snapshot directory.
fn snap_files(cluster: &Cluster, i: usize) -> Vec<String> {
    let dir = cluster.member(i).data_dir().join("member").join("snap");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Snapshots with malformed headers, each otherwise plausible (the current leader's vote,
/// the right cluster, data of the announced size) are refused before a byte is written: the
/// follower's snapshot directory is unchanged, and it keeps its data and keeps following.
#[test]
fn malformed_snapshot_headers_touch_nothing() {
    let cluster = Cluster::start(Kind::Bramble, 3);
    put(&cluster.member(cluster.leader()).etcdctl(), "k", "before");
    let (vote, status, cluster_id) = leader_vote(&cluster);
    let follower = (cluster.leader() + 1) % 3;
    wait_for_value(&cluster.member(follower).etcdctl(), "k", "before");
    let before = snap_files(&cluster, follower);
    let ids: Vec<u64> = cluster.member_list().iter().map(|m| m.id).collect();
    let membership = |log_index: u64, voters: Vec<u64>| pb::StoredMembership {
        log_term: 1,
        log_index,
        has_log_id: true,
        membership: Some(pb::Membership {
            configs: vec![pb::VoterSet { ids: voters }],
            members: ids
                .iter()
                .map(|id| pb::Member {
                    id: *id,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let last = pb::LogId {
        term: status.raft_term,
        index: status.raft_index + 10,
    };
    let good = pb::SnapshotHeader {
        vote: Some(vote),
        last_log_id: Some(last),
        last_membership: Some(membership(0, ids.clone())),
        cluster_id,
        size: 7,
    };
    let cases: Vec<(&str, pb::SnapshotHeader)> = vec![
        (
            "no last log id",
            pb::SnapshotHeader {
                last_log_id: None,
                ..good.clone()
            },
        ),
        (
            "membership after the last log id",
            pb::SnapshotHeader {
                last_membership: Some(membership(last.index + 1, ids.clone())),
                ..good.clone()
            },
        ),
        (
            "no voters",
            pb::SnapshotHeader {
                last_membership: Some(membership(0, vec![])),
                ..good.clone()
            },
        ),
        (
            "last log id at u64::MAX",
            pb::SnapshotHeader {
                last_log_id: Some(pb::LogId {
                    term: status.raft_term,
                    index: u64::MAX,
                }),
                ..good.clone()
            },
        ),
        (
            "a vote that is not a leader's",
            pb::SnapshotHeader {
                vote: Some(pb::Vote {
                    committed: false,
                    ..vote
                }),
                ..good.clone()
            },
        ),
    ];
    let peer_url = cluster.member(follower).peer_url();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for (what, header) in cases {
        let result = rt.block_on(async {
            let mut peer = pb::peer_client::PeerClient::connect(peer_url.clone())
                .await
                .expect("connect to the follower's peer URL");
            let first = pb::SnapshotChunk {
                header: Some(header),
                data: b"garbage".to_vec(),
            };
            tokio::time::timeout(
                Duration::from_secs(10),
                peer.install_snapshot(futures_stream(vec![first])),
            )
            .await
        });
        let status = match result {
            Ok(Ok(reply)) => panic!("{what}: installed: {reply:?}"),
            Ok(Err(status)) => status,
            Err(_) => panic!("{what}: no answer within 10 s"),
        };
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert_eq!(
            snap_files(&cluster, follower),
            before,
            "{what}: files written"
        );
    }
    wait_for_value(&cluster.member(follower).etcdctl(), "k", "before");
    put(&cluster.member(cluster.leader()).etcdctl(), "k", "after");
    wait_for_value(&cluster.member(follower).etcdctl(), "k", "after");
}

/// A stream of the given chunks, as a tonic streaming request takes it.
fn futures_stream(
    chunks: Vec<pb::SnapshotChunk>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = pb::SnapshotChunk> {
    tonic::codegen::tokio_stream::iter(chunks)
}

/// AppendEntries whose prev_log_id or entry index is u64::MAX (the next index overflows)
/// gets a clean refusal, and the follower keeps following.
#[test]
fn append_entries_at_u64_max_is_refused() {
    let cluster = Cluster::start(Kind::Bramble, 3);
    let (vote, status, cluster_id) = leader_vote(&cluster);
    let follower = (cluster.leader() + 1) % 3;
    let blank = |index: u64| pb::WireEntry {
        index,
        entry: Some(pb::LogEntry {
            term: status.raft_term,
            payload: None,
            request_id: 0,
        }),
    };
    let max = pb::LogId {
        term: status.raft_term,
        index: u64::MAX,
    };
    let cases = vec![
        (
            "prev_log_id at u64::MAX, then index 0",
            Some(max),
            vec![blank(0)],
        ),
        ("an entry at u64::MAX", None, vec![blank(u64::MAX)]),
        ("prev_log_id at u64::MAX, heartbeat", Some(max), vec![]),
    ];
    let peer_url = cluster.member(follower).peer_url();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for (what, prev_log_id, entries) in cases {
        let result = rt.block_on(async {
            let mut peer = pb::peer_client::PeerClient::connect(peer_url.clone())
                .await
                .expect("connect to the follower's peer URL");
            peer.append_entries(pb::AppendRequest {
                vote: Some(vote),
                prev_log_id,
                entries,
                leader_commit: None,
                cluster_id,
            })
            .await
        });
        let status = result.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
    }
    put(&cluster.member(cluster.leader()).etcdctl(), "k", "after");
    wait_for_value(&cluster.member(follower).etcdctl(), "k", "after");
}
