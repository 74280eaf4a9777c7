//! Arbitrary etcd requests into a real in-process single-member node (`bramble::Node`,
//! which is the gRPC KV service called in process, and the Lease service).
//!
//! Input: a protobuf [`Script`] of up to [`MAX_OPS`] requests (Range, Put, DeleteRange,
//! Txn, Compaction, LeaseGrant, LeaseRevoke), run in order on a fresh node.
//!
//! Invariants: no panic and no hang; every answer is a success or an etcd error (a
//! `etcdserver: ...` message with a client-facing code, never a stopped or failed
//! member); every accepted put reads back at its revision (unless compacted); after a
//! close and reopen the whole keyspace, the revision and every accepted put read back
//! the same.

use std::sync::OnceLock;
use std::time::Duration;

use bramble::api::etcdserverpb::lease_server::Lease;
use bramble::api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RangeResponse, TxnRequest,
};
use bramble::{Error, Node, NodeOptions};
use bramble_server::lease::LeaseService;
use prost::Message;

/// Requests run per input: enough for a write, an overwrite, a compaction and reads.
pub const MAX_OPS: usize = 8;
/// Lease TTLs are raised to this, so no lease expires (and deletes keys) mid-input:
/// expiry is timing, which would make inputs irreproducible.
const MIN_TTL: i64 = 3600;

/// The fuzz input: requests to run in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Script {
    /// The requests.
    #[prost(message, repeated, tag = "1")]
    pub ops: Vec<Op>,
}

/// One request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Op {
    /// Which request.
    #[prost(oneof = "Request", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub request: Option<Request>,
}

/// The requests a script can make.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    /// KV.Range.
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    /// KV.Put.
    #[prost(message, tag = "2")]
    Put(PutRequest),
    /// KV.DeleteRange.
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn.
    #[prost(message, tag = "4")]
    Txn(TxnRequest),
    /// KV.Compact.
    #[prost(message, tag = "5")]
    Compaction(CompactionRequest),
    /// Lease.LeaseGrant.
    #[prost(message, tag = "6")]
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke.
    #[prost(message, tag = "7")]
    LeaseRevoke(LeaseRevokeRequest),
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn options(dir: &std::path::Path) -> NodeOptions {
    let mut o = NodeOptions::new(dir);
    // A one-member cluster elects itself at once; short timers keep opens quick.
    o.heartbeat_interval_ms = 20;
    o.election_timeout_ms = 100;
    o
}

/// An error a client may get: etcd's text, and not a member that stopped or failed.
fn check_error(what: &str, e: &Error) {
    use tonic::Code;
    assert!(
        e.message().starts_with("etcdserver: "),
        "{what}: not an etcd error: {:?} {}",
        e.code(),
        e.message()
    );
    assert!(
        !matches!(
            e.code(),
            Code::Unknown | Code::Internal | Code::DataLoss | Code::Unavailable
        ),
        "{what}: the member failed: {:?} {}",
        e.code(),
        e.message()
    );
}

/// An accepted put: its key, its revision and the value it wrote (None when the
/// request kept the old value).
type Written = (Vec<u8>, i64, Option<Vec<u8>>);

async fn everything(node: &Node) -> RangeResponse {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    node.range_request(all).await.expect("a full range")
}

/// Every accepted put not compacted away reads back at its revision.
async fn check_written(node: &Node, written: &[Written], compacted: i64) {
    for (key, rev, value) in written {
        if *rev < compacted {
            continue;
        }
        let at = RangeRequest {
            key: key.clone(),
            revision: *rev,
            ..Default::default()
        };
        let got = node
            .range_request(at)
            .await
            .expect("reading an accepted put");
        let kv = got.kvs.first().expect("an accepted put is there");
        assert_eq!(kv.mod_revision, *rev, "accepted put's revision");
        if let Some(v) = value {
            assert_eq!(&kv.value, v, "accepted put's value");
        }
    }
}

/// Opens the node again after a close: `Node::close` releases the data dir, so this
/// works at once (fuzzing once found it failing now and then with `wal directory ... is
/// locked by another process`; `crates/bramble/tests/reopen_after_close.rs`).
async fn reopen(dir: &std::path::Path) -> Node {
    match Node::open(options(dir)).await {
        Ok(node) => node,
        Err(e) => panic!("reopening the node right after close: {e:?}"),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(script) = Script::decode(data) else {
        return;
    };
    let ops: Vec<Request> = script
        .ops
        .into_iter()
        .filter_map(|o| o.request)
        .take(MAX_OPS)
        .collect();
    if ops.is_empty() {
        return;
    }
    runtime().block_on(async move {
        // Beyond this, a request hangs: a finding (libFuzzer's -timeout backs it up).
        tokio::time::timeout(Duration::from_secs(60), run_ops(ops))
            .await
            .expect("requests hang");
    });
}

async fn run_ops(ops: Vec<Request>) {
    let dir = crate::scratch_dir();
    let node = Node::open(options(dir.path()))
        .await
        .expect("opening a fresh node");
    let lease = LeaseService::new(node.context().clone());
    let mut written: Vec<Written> = Vec::new();
    let mut compacted = 0;
    let mut wrote = false;
    for op in ops {
        match op {
            Request::Range(r) => {
                if let Err(e) = node.range_request(r).await {
                    check_error("range", &e);
                }
            }
            Request::Put(p) => {
                let (key, value) = (p.key.clone(), (!p.ignore_value).then(|| p.value.clone()));
                match node.put_request(p).await {
                    Ok(resp) => {
                        let rev = resp.header.expect("a put response header").revision;
                        written.push((key, rev, value));
                        wrote = true;
                    }
                    Err(e) => check_error("put", &e),
                }
            }
            Request::DeleteRange(d) => match node.delete_request(d).await {
                Ok(_) => wrote = true,
                Err(e) => check_error("delete range", &e),
            },
            Request::Txn(t) => match node.txn_request(t).await {
                Ok(_) => wrote = true,
                Err(e) => check_error("txn", &e),
            },
            Request::Compaction(c) => match node.compact(c.revision, c.physical).await {
                Ok(_) => {
                    compacted = compacted.max(c.revision);
                    wrote = true;
                }
                Err(e) => check_error("compact", &e),
            },
            Request::LeaseGrant(mut g) => {
                g.ttl = g.ttl.max(MIN_TTL);
                match lease.lease_grant(tonic::Request::new(g)).await {
                    Ok(_) => wrote = true,
                    Err(s) => check_error("lease grant", &s.into()),
                }
            }
            Request::LeaseRevoke(r) => match lease.lease_revoke(tonic::Request::new(r)).await {
                Ok(_) => wrote = true,
                Err(s) => check_error("lease revoke", &s.into()),
            },
        }
    }
    check_written(&node, &written, compacted).await;
    if wrote {
        let all = everything(&node).await;
        node.close().await;
        drop(lease);
        drop(node);
        let node = reopen(dir.path()).await;
        let again = everything(&node).await;
        assert_eq!(again.kvs, all.kvs, "keys changed across a reopen");
        assert_eq!(
            again.header.map(|h| h.revision),
            all.header.map(|h| h.revision),
            "revision changed across a reopen"
        );
        check_written(&node, &written, compacted).await;
        node.close().await;
    } else {
        node.close().await;
    }
}

/// A script of `ops` as fuzz input bytes.
pub fn input(ops: Vec<Request>) -> Vec<u8> {
    Script {
        ops: ops.into_iter().map(|r| Op { request: Some(r) }).collect(),
    }
    .encode_to_vec()
}

/// Valid inputs to start from: kube-apiserver's request shapes and the other requests.
pub fn seeds() -> Vec<Vec<u8>> {
    use bramble::api::etcdserverpb::{compare, request_op, Compare, RequestOp};
    let put = |k: &str, v: &str| PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    };
    let get = |k: &str| RangeRequest {
        key: k.into(),
        ..Default::default()
    };
    let create = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"/registry/pods/a".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(
                "/registry/pods/a",
                "pod",
            ))),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(get("/registry/pods/a"))),
        }],
    };
    vec![
        input(vec![
            Request::Put(put("a", "1")),
            Request::Put(put("a", "2")),
            Request::Range(get("a")),
        ]),
        input(vec![
            Request::Txn(create.clone()),
            Request::Txn(create),
            Request::Range(RangeRequest {
                key: b"/registry/".to_vec(),
                range_end: b"/registry0".to_vec(),
                limit: 1,
                ..Default::default()
            }),
        ]),
        input(vec![
            Request::Put(put("a", "1")),
            Request::Put(put("b", "2")),
            Request::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: vec![0],
                prev_kv: true,
            }),
            Request::Compaction(CompactionRequest {
                revision: 3,
                physical: true,
            }),
            Request::Range(RangeRequest {
                key: b"a".to_vec(),
                revision: 2,
                ..Default::default()
            }),
        ]),
        input(vec![
            Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }),
            Request::Put(PutRequest {
                lease: 7,
                ..put("leased", "x")
            }),
            Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }),
            Request::Range(get("leased")),
        ]),
    ]
}
