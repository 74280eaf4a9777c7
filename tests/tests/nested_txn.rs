//! Deeply nested txns, on etcd and on Bramble alike (issue 7, defect 1): a txn nesting
//! many more txns must either be applied and then survive replication, a kill -9 and a WAL
//! replay on every member, or be refused with a clean error while the member keeps serving.
//! One nested txn used to brick a member: the log entry and the peer messages wrapped the
//! request in more protobuf levels than prost decodes (100 nested messages), so the WAL
//! could not be read back and followers could not decode AppendEntries.
//!
//! The requests go over raw gRPC: the etcd-client crate decodes responses with prost, whose
//! limit a deep txn's response (one more level per nested header) exceeds before the request
//! does, on etcd and Bramble alike; here only the response's top level is decoded.

use std::time::Duration;

use bramble_api::etcdserverpb::{
    request_op::Request as Op, PutRequest, RequestOp, ResponseHeader, TxnRequest,
};
use bramble_tests::cluster::ops::{put, value, wait_for_value};
use bramble_tests::cluster::Cluster;
use bramble_tests::{scenarios, Kind, Server};

scenarios!(nested_txns_on_one_member, nested_txns_on_three_members);

/// The top level of a TxnResponse; the nested responses stay encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct TxnResponseTop {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    succeeded: bool,
    #[prost(bytes = "vec", repeated, tag = "3")]
    responses: Vec<Vec<u8>>,
}

/// One nested txn to send.
#[derive(Clone, Copy, Debug)]
struct Case {
    /// Txns from the top one to the innermost.
    levels: usize,
    /// Where the put is: in the innermost txn, or one level up beside an empty innermost
    /// txn (the deepest shape whose request prost can decode: 101 nested messages).
    put_at_bottom: bool,
    /// Whether Bramble's gRPC layer can decode it (etcd has no nesting limit).
    decodable: bool,
}

const CASES: &[Case] = &[
    Case {
        levels: 2,
        put_at_bottom: true,
        decodable: true,
    },
    Case {
        levels: 48,
        put_at_bottom: true,
        decodable: true,
    },
    Case {
        levels: 49,
        put_at_bottom: true,
        decodable: true,
    },
    Case {
        levels: 50,
        put_at_bottom: true,
        decodable: true,
    },
    Case {
        levels: 51,
        put_at_bottom: false,
        decodable: true,
    },
    Case {
        levels: 51,
        put_at_bottom: true,
        decodable: false,
    },
    Case {
        levels: 100,
        put_at_bottom: true,
        decodable: false,
    },
];

impl Case {
    fn key(&self) -> String {
        format!("nested/{}/{}", self.levels, self.put_at_bottom)
    }

    fn value(&self) -> String {
        format!("v{}", self.levels)
    }

    /// Whether `kind` applies this request (etcd applies them all).
    fn accepted_by(&self, kind: Kind) -> bool {
        kind == Kind::Etcd || self.decodable
    }

    fn request(&self) -> TxnRequest {
        let op = |request| RequestOp {
            request: Some(request),
        };
        let put = op(Op::RequestPut(PutRequest {
            key: self.key().into_bytes(),
            value: self.value().into_bytes(),
            ..Default::default()
        }));
        let mut txn = if self.put_at_bottom {
            TxnRequest {
                success: vec![put],
                ..Default::default()
            }
        } else {
            TxnRequest {
                success: vec![put, op(Op::RequestTxn(TxnRequest::default()))],
                ..Default::default()
            }
        };
        let wraps = if self.put_at_bottom {
            self.levels - 1
        } else {
            self.levels - 2
        };
        for _ in 0..wraps {
            txn = TxnRequest {
                success: vec![op(Op::RequestTxn(txn))],
                ..Default::default()
            };
        }
        txn
    }
}

/// Sends `req` as KV.Txn to `endpoint`.
fn send_txn(endpoint: &str, req: TxnRequest) -> Result<TxnResponseTop, tonic::Status> {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| tonic::Status::unknown(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<TxnRequest, TxnResponseTop>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Txn");
        grpc.unary(tonic::Request::new(req), path, codec)
            .await
            .map(|r| r.into_inner())
    })
}

/// Sends `case` to `endpoint` and checks the outcome `kind` must give.
#[track_caller]
fn send_case(kind: Kind, endpoint: &str, case: &Case) {
    let result = send_txn(endpoint, case.request());
    if case.accepted_by(kind) {
        let resp = result.unwrap_or_else(|s| panic!("{kind}: {case:?} via {endpoint}: {s:?}"));
        assert!(resp.succeeded, "{kind}: {case:?}: no compare, must succeed");
        assert_eq!(
            resp.responses.len(),
            1,
            "{kind}: {case:?}: one op at the top"
        );
    } else {
        let status = match result {
            Ok(resp) => panic!("{kind}: {case:?} was accepted: {resp:?}"),
            Err(s) => s,
        };
        // tonic's answer to a message prost cannot decode: a clean refusal, nothing proposed.
        assert_eq!(status.code(), tonic::Code::Internal, "{kind}: {status:?}");
        assert!(
            status.message().contains("recursion limit reached"),
            "{kind}: {case:?}: {status:?}"
        );
    }
}

/// Every accepted case's key holds its value on `ctl`'s member (serializable reads, waiting
/// for replication), and every refused case's key is absent.
#[track_caller]
fn assert_cases_on(kind: Kind, ctl: &bramble_tests::Etcdctl) {
    for case in CASES {
        if case.accepted_by(kind) {
            wait_for_value(ctl, &case.key(), &case.value());
        } else {
            assert_eq!(value(ctl, &case.key(), "s"), "", "{kind}: {case:?}");
        }
    }
}

/// One member: every case applied or refused, the member still serves, and after kill -9
/// it starts again (replaying its WAL) with every applied key.
fn nested_txns_on_one_member(kind: Kind) {
    let mut server = Server::start(kind);
    let endpoint = server.endpoint();
    for case in CASES {
        send_case(kind, &endpoint, case);
        put(&server.etcdctl(), "alive", &case.levels.to_string());
    }
    assert_cases_on(kind, &server.etcdctl());
    server.kill9();
    server.restart();
    assert_cases_on(kind, &server.etcdctl());
    put(&server.etcdctl(), "after-restart", "x");
}

/// Three members, one follower stopped: the cases go through the leader and through the
/// other follower (forwarded), every live member applies them; the stopped follower catches
/// up after its restart (AppendEntries); then every member is killed and restarted and
/// still has every key (WAL replay).
fn nested_txns_on_three_members(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let stopped = (leader + 2) % 3;
    cluster.member_mut(stopped).kill9();
    for (n, case) in CASES.iter().enumerate() {
        let via = if n % 2 == 0 { leader } else { follower };
        send_case(kind, &cluster.member(via).endpoint(), case);
        put(&cluster.member(via).etcdctl(), "alive", &n.to_string());
    }
    for i in [leader, follower] {
        assert_cases_on(kind, &cluster.member(i).etcdctl());
    }
    cluster.member_mut(stopped).restart();
    assert_cases_on(kind, &cluster.member(stopped).etcdctl());

    cluster.restart_all();
    for i in 0..3 {
        assert_cases_on(kind, &cluster.member(i).etcdctl());
    }
    let leader = cluster.leader();
    put(&cluster.member(leader).etcdctl(), "after-restart", "x");
}
