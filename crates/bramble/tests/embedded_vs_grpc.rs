//! The embedding API against gRPC: one sequence of key-value requests sent to an
//! embedded member through [`bramble::Client`], and the same requests sent over gRPC
//! (loopback) to a second member served by `bramble_server::ClientServer`. Both start
//! empty, so every answer must be the same, field by field: headers' revisions and terms,
//! key-values, counts, `more`, txn results, and errors' codes and texts (the embedded
//! error's kind checked against the one expected). Only the member and cluster ids in
//! headers are left out of the comparison.
//!
//! The requests cover puts with every option, ranges with every option (spans, limits,
//! sorts, revisions, key/count only, serializable, revision bounds), deletes, txns
//! (succeeding, failing, nested, and refused), compaction, and etcd's refusals: empty key,
//! future and compacted revisions, too many ops, duplicate keys, missing leases and keys.

use std::net::SocketAddr;
use std::time::Duration;

use bramble::api::etcdserverpb::kv_client::KvClient;
use bramble::api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble::api::etcdserverpb::response_op::Response;
use bramble::api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeResponse, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, TxnResponse,
};
use bramble::{
    Compare, DeleteOptions, ErrorKind, Node, NodeOptions, PutOptions, RangeOptions, Txn, TxnOp,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Every await on a member is bounded: a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One request, as the embedding API takes it.
#[derive(Clone)]
enum Request {
    Range(&'static str, RangeOptions),
    /// A range the builder cannot make (an invalid sort target).
    RawRange(RangeRequest),
    Put(&'static str, &'static str, PutOptions),
    Delete(&'static str, DeleteOptions),
    Txn(Txn),
    Compact(i64, bool),
}

/// An answer, with the member and cluster ids taken out of every header (the two
/// members' differ); everything else is compared.
#[derive(Debug, PartialEq)]
enum Answer {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    /// A refusal: gRPC code and etcd's text.
    Error(tonic::Code, String),
}

/// What a step must come to on both members.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok,
    Err(ErrorKind),
}

fn strip(header: &mut Option<ResponseHeader>) {
    if let Some(h) = header {
        h.member_id = 0;
        h.cluster_id = 0;
    }
}

fn strip_txn(resp: &mut TxnResponse) {
    strip(&mut resp.header);
    for op in &mut resp.responses {
        match &mut op.response {
            Some(Response::ResponseRange(r)) => strip(&mut r.header),
            Some(Response::ResponsePut(r)) => strip(&mut r.header),
            Some(Response::ResponseDeleteRange(r)) => strip(&mut r.header),
            Some(Response::ResponseTxn(r)) => strip_txn(r),
            None => {}
        }
    }
}

impl Answer {
    fn stripped(mut self) -> Answer {
        match &mut self {
            Answer::Range(r) => strip(&mut r.header),
            Answer::Put(r) => strip(&mut r.header),
            Answer::Delete(r) => strip(&mut r.header),
            Answer::Txn(r) => strip_txn(r),
            Answer::Compact(r) => strip(&mut r.header),
            Answer::Error(..) => {}
        }
        self
    }
}

/// Sends `req` through the embedding API; a refusal also returns its kind.
async fn embedded(node: &Node, req: Request) -> (Answer, Option<ErrorKind>) {
    let result = match req {
        Request::Range(key, opts) => node.range(key, opts).await.map(Answer::Range),
        Request::RawRange(r) => node.range_request(r).await.map(Answer::Range),
        Request::Put(key, value, opts) => node.put_with(key, value, opts).await.map(Answer::Put),
        Request::Delete(key, opts) => node.delete_with(key, opts).await.map(Answer::Delete),
        Request::Txn(txn) => node.txn(txn).await.map(Answer::Txn),
        Request::Compact(rev, physical) => node.compact(rev, physical).await.map(Answer::Compact),
    };
    match result {
        Ok(answer) => (answer.stripped(), None),
        Err(e) => (
            Answer::Error(e.code(), e.message().to_string()),
            Some(e.kind()),
        ),
    }
}

/// Sends the same request over gRPC, as the builders make it.
async fn grpc(kv: &mut KvClient<Channel>, req: Request) -> Answer {
    let result = match req {
        Request::Range(key, opts) => kv
            .range(opts.request(key))
            .await
            .map(|r| Answer::Range(r.into_inner())),
        Request::RawRange(r) => kv.range(r).await.map(|r| Answer::Range(r.into_inner())),
        Request::Put(key, value, opts) => kv
            .put(opts.request(key, value))
            .await
            .map(|r| Answer::Put(r.into_inner())),
        Request::Delete(key, opts) => kv
            .delete_range(opts.request(key))
            .await
            .map(|r| Answer::Delete(r.into_inner())),
        Request::Txn(txn) => kv
            .txn(txn.into_request())
            .await
            .map(|r| Answer::Txn(r.into_inner())),
        Request::Compact(revision, physical) => kv
            .compact(CompactionRequest { revision, physical })
            .await
            .map(|r| Answer::Compact(r.into_inner())),
    };
    match result {
        Ok(answer) => answer.stripped(),
        Err(status) => Answer::Error(status.code(), status.message().to_string()),
    }
}

/// A member served over gRPC on loopback, as the `bramble` binary serves one.
struct Served {
    node: Node,
    stop: CancellationToken,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    addr: SocketAddr,
}

async fn serve(node: Node) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let stop = CancellationToken::new();
    let server = bramble_server::ClientServer::new(node.context().clone()).serve(
        listener,
        None,
        stop.clone().cancelled_owned(),
    );
    Served {
        node,
        stop,
        server: tokio::spawn(server),
        addr,
    }
}

/// Opens a one-member store in `dir` and waits until it published itself (a Raft entry
/// of its own), so both members start from the same log.
async fn open(dir: &std::path::Path) -> Node {
    let node = tokio::time::timeout(CALL_TIMEOUT, Node::open(NodeOptions::new(dir)))
        .await
        .expect("open in time")
        .expect("open");
    let mut published = node.published();
    tokio::time::timeout(CALL_TIMEOUT, published.wait_for(|p| *p))
        .await
        .expect("published in time")
        .expect("publish signal");
    node
}

/// The requests, each with what it must come to. Revisions are those of a new store
/// (its first put is revision 2), the same on both members.
fn steps() -> Vec<(Request, Expect)> {
    use Expect::{Err, Ok};
    use Request as R;
    let mut s: Vec<(Request, Expect)> = vec![
        // Puts, with every option.
        (R::Put("a", "1", PutOptions::new()), Ok),
        (R::Put("b", "2", PutOptions::new()), Ok),
        (R::Put("c/1", "x", PutOptions::new()), Ok),
        (R::Put("c/2", "yy", PutOptions::new()), Ok),
        (R::Put("c/3", "z", PutOptions::new()), Ok),
        (R::Put("c/2", "y2", PutOptions::new().prev_kv()), Ok),
        (R::Put("d", "4", PutOptions::new()), Ok),
        (
            R::Put("a", "", PutOptions::new().ignore_value().prev_kv()),
            Ok,
        ),
        (R::Put("a", "11", PutOptions::new().ignore_lease()), Ok),
        (R::Put("c/3", "zz", PutOptions::new().prev_kv()), Ok),
        (
            R::Put("missing", "", PutOptions::new().ignore_value()),
            Err(ErrorKind::KeyNotFound),
        ),
        (
            R::Put("missing", "v", PutOptions::new().ignore_lease()),
            Err(ErrorKind::KeyNotFound),
        ),
        (
            R::Put("a", "v", PutOptions::new().ignore_value()),
            Err(ErrorKind::ValueProvided),
        ),
        (
            R::Put("a", "v", PutOptions::new().lease(7).ignore_lease()),
            Err(ErrorKind::LeaseProvided),
        ),
        (
            R::Put("a", "v", PutOptions::new().lease(0x1234)),
            Err(ErrorKind::LeaseNotFound),
        ),
        (R::Put("", "v", PutOptions::new()), Err(ErrorKind::EmptyKey)),
        // Ranges, with every option.
        (R::Range("a", RangeOptions::new()), Ok),
        (R::Range("nothing", RangeOptions::new()), Ok),
        (R::Range("a", RangeOptions::new().serializable()), Ok),
        (R::Range("c/", RangeOptions::new().prefix()), Ok),
        (R::Range("b", RangeOptions::new().from_key()), Ok),
        (R::Range("", RangeOptions::new().from_key()), Ok),
        (R::Range("a", RangeOptions::new().range_end("c/3")), Ok),
        (R::Range("c/", RangeOptions::new().prefix().limit(2)), Ok),
        (R::Range("c/", RangeOptions::new().prefix().keys_only()), Ok),
        (
            R::Range("c/", RangeOptions::new().prefix().count_only()),
            Ok,
        ),
        (R::Range("a", RangeOptions::new().revision(2)), Ok),
        (R::Range("c/", RangeOptions::new().prefix().revision(5)), Ok),
        (
            R::Range("", RangeOptions::new().prefix().min_mod_revision(5)),
            Ok,
        ),
        (
            R::Range("", RangeOptions::new().prefix().max_mod_revision(5)),
            Ok,
        ),
        (
            R::Range("", RangeOptions::new().prefix().min_create_revision(4)),
            Ok,
        ),
        (
            R::Range("", RangeOptions::new().prefix().max_create_revision(4)),
            Ok,
        ),
        (
            R::Range("", RangeOptions::new().prefix().serializable().limit(3)),
            Ok,
        ),
        (
            R::Range("a", RangeOptions::new().revision(1_000)),
            Err(ErrorKind::FutureRevision),
        ),
        (R::Range("", RangeOptions::new()), Err(ErrorKind::EmptyKey)),
        (
            R::RawRange(RangeRequest {
                key: b"a".to_vec(),
                range_end: vec![0],
                sort_target: 99,
                ..Default::default()
            }),
            Err(ErrorKind::InvalidSortOption),
        ),
    ];
    // Every sort target in both orders (and no order), with and without a limit.
    for target in [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ] {
        for order in [SortOrder::None, SortOrder::Ascend, SortOrder::Descend] {
            s.push((
                R::Range("", RangeOptions::new().prefix().sort(target, order)),
                Ok,
            ));
            s.push((
                R::Range(
                    "c/",
                    RangeOptions::new().prefix().sort(target, order).limit(2),
                ),
                Ok,
            ));
        }
    }
    s.extend([
        // Transactions: both branches, every compare target, nested, and refused.
        (
            R::Txn(
                Txn::new()
                    .when([Compare::value("a").eq("11")])
                    .and_then([TxnOp::put("e", "5"), TxnOp::get("a"), TxnOp::delete("b")])
                    .or_else([TxnOp::get("b")]),
            ),
            Ok,
        ),
        (
            R::Txn(
                Txn::new()
                    .when([Compare::version("c/2").gt(5)])
                    .and_then([TxnOp::put("never", "1")])
                    .or_else([
                        TxnOp::range("c/", RangeOptions::new().prefix().limit(1)),
                        TxnOp::get("c/2"),
                    ]),
            ),
            Ok,
        ),
        (
            R::Txn(
                Txn::new()
                    .when([
                        Compare::create_revision("c/").prefix().lt(100),
                        Compare::mod_revision("d").ne(0),
                        Compare::lease("d").eq(0),
                        Compare::value("c/").range_end("c/9").gt("a"),
                    ])
                    .and_then([
                        TxnOp::put_with("f", "6", PutOptions::new().prev_kv()),
                        TxnOp::delete_with("c/1", DeleteOptions::new().prev_kv()),
                    ]),
            ),
            Ok,
        ),
        (
            R::Txn(
                Txn::new()
                    .when([Compare::version("nothing").eq(0)])
                    .and_then([
                        TxnOp::txn(
                            Txn::new()
                                .when([Compare::value("f").eq("6")])
                                .and_then([
                                    TxnOp::put("g", "7"),
                                    TxnOp::txn(Txn::new().and_then([TxnOp::get("g")])),
                                ])
                                .or_else([TxnOp::get("f")]),
                        ),
                        TxnOp::put("h", "8"),
                    ]),
            ),
            Ok,
        ),
        (R::Txn(Txn::new()), Ok),
        (
            R::Txn(Txn::new().and_then([TxnOp::put("dup", "1"), TxnOp::put("dup", "2")])),
            Err(ErrorKind::DuplicateKey),
        ),
        (
            R::Txn(Txn::new().and_then([
                TxnOp::put("c/5", "1"),
                TxnOp::delete_with("c/", DeleteOptions::new().prefix()),
            ])),
            Err(ErrorKind::DuplicateKey),
        ),
        (
            R::Txn(Txn::new().and_then([
                TxnOp::put("n", "1"),
                TxnOp::txn(Txn::new().and_then([TxnOp::put("n", "2")])),
            ])),
            Err(ErrorKind::DuplicateKey),
        ),
        (
            R::Txn(Txn::new().and_then((0..129).map(|i| TxnOp::put(format!("many/{i}"), "v")))),
            Err(ErrorKind::TooManyOps),
        ),
        (
            R::Txn(Txn::new().and_then([TxnOp::put("", "v")])),
            Err(ErrorKind::EmptyKey),
        ),
        (
            R::Txn(Txn::new().and_then([TxnOp::range("a", RangeOptions::new().revision(1_000))])),
            Err(ErrorKind::FutureRevision),
        ),
        (
            R::Txn(Txn::new().and_then([TxnOp::put_with("a", "v", PutOptions::new().lease(99))])),
            Err(ErrorKind::LeaseNotFound),
        ),
        // Deletes.
        (R::Delete("d", DeleteOptions::new().prev_kv()), Ok),
        (R::Delete("d", DeleteOptions::new()), Ok),
        (R::Delete("c/", DeleteOptions::new().prefix().prev_kv()), Ok),
        (R::Delete("e", DeleteOptions::new().range_end("g")), Ok),
        (
            R::Delete("", DeleteOptions::new()),
            Err(ErrorKind::EmptyKey),
        ),
        // Compaction, and what it refuses afterwards.
        (R::Compact(1_000, false), Err(ErrorKind::FutureRevision)),
        (R::Compact(10, true), Ok),
        (R::Compact(10, false), Err(ErrorKind::Compacted)),
        (R::Compact(5, false), Err(ErrorKind::Compacted)),
        (
            R::Range("a", RangeOptions::new().revision(9)),
            Err(ErrorKind::Compacted),
        ),
        (R::Range("", RangeOptions::new().prefix().revision(10)), Ok),
        (
            R::Txn(Txn::new().and_then([TxnOp::range("a", RangeOptions::new().revision(3))])),
            Err(ErrorKind::Compacted),
        ),
        (R::Delete("", DeleteOptions::new().from_key().prev_kv()), Ok),
        (R::Put("z", "last", PutOptions::new()), Ok),
        (R::Range("", RangeOptions::new().prefix()), Ok),
    ]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_grpc_answer_alike() {
    let embedded_dir = tempfile::tempdir().expect("tempdir");
    let served_dir = tempfile::tempdir().expect("tempdir");
    let node = open(embedded_dir.path()).await;
    let served = serve(open(served_dir.path()).await).await;
    let channel = tokio::time::timeout(
        CALL_TIMEOUT,
        Channel::from_shared(format!("http://{}", served.addr))
            .expect("uri")
            .connect(),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let mut kv = KvClient::new(channel);

    let mut answered = 0;
    for (i, (req, expect)) in steps().into_iter().enumerate() {
        let (mine, kind) = tokio::time::timeout(CALL_TIMEOUT, embedded(&node, req.clone()))
            .await
            .unwrap_or_else(|_| panic!("step {i}: embedded call timed out"));
        let theirs = tokio::time::timeout(CALL_TIMEOUT, grpc(&mut kv, req))
            .await
            .unwrap_or_else(|_| panic!("step {i}: gRPC call timed out"));
        assert_eq!(
            mine, theirs,
            "step {i}: embedded (left) and gRPC (right) differ"
        );
        match expect {
            Expect::Ok => {
                assert_eq!(kind, None, "step {i}: {mine:?}");
                answered += 1;
            }
            Expect::Err(want) => assert_eq!(kind, Some(want), "step {i}: {mine:?}"),
        }
    }
    assert!(answered > 50, "most steps succeed: {answered}");

    // Both keyspaces end where the sequence left them: only `z`, written last.
    let last = node
        .range("", RangeOptions::new().prefix())
        .await
        .expect("final range");
    let keys: Vec<&[u8]> = last.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [b"z".as_slice()]);

    served.stop.cancel();
    tokio::time::timeout(CALL_TIMEOUT, served.server)
        .await
        .expect("server stops in time")
        .expect("server task")
        .expect("server");
    served.node.close().await;
    node.close().await;
}
