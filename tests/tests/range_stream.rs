//! etcd 3.7's `KV.RangeStream` on etcd 3.7.3 (built by `scripts/etcd-build v3.7`) and on
//! Bramble side by side, over raw gRPC (the bramble-api crate's generated client).
//!
//! Each request's outcome is compared between the two: what a client sees after merging the
//! chunks as etcd's clientv3 does (`GetStreamToGetResponse`: `proto.Merge` of every chunk),
//! every field but the header's cluster/member ids and term, or the error's code, message and
//! whether it came before the first chunk. The chunk structure is checked on both: key-values
//! only on every chunk but the last, which alone carries header, `more` and `count`. Bramble's
//! chunks are bounded in bytes; etcd's sizes are printed (its key count per chunk doubles
//! towards `--max-request-bytes`, so with mixed value sizes a chunk can be far bigger).
//! Merged results are also checked against the unary Range at the stream's revision.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bramble_api::etcdserverpb::kv_client::KvClient;
use bramble_api::etcdserverpb::lease_client::LeaseClient;
use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RangeResponse, RangeStreamResponse, RequestOp, TxnRequest,
};
use bramble_tests::{tools, Kind, Server, ServerConfig};
use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

/// Bramble's chunk bound: etcd's `--max-request-bytes` default (crates/server/src/defaults.rs
/// `RANGE_STREAM_CHUNK_BYTES`).
const CHUNK_BYTES: usize = 1536 * 1024;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

/// etcd 3.7.3 or Bramble, with the same flags.
fn start(kind: Kind) -> Server {
    let binary = (kind == Kind::Etcd).then(tools::etcd_v37_bin);
    Server::start_with(
        kind,
        ServerConfig {
            binary,
            ..ServerConfig::default()
        },
    )
}

async fn kv_client(server: &Server) -> KvClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    // etcd's chunks are not bounded in bytes: accept whatever comes.
    KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// What a client got from one RangeStream.
#[derive(Debug)]
enum Outcome {
    /// Every chunk, then a clean end.
    Chunks(Vec<RangeResponse>),
    /// An error status, after `after` chunks (`None`: the call itself failed).
    Error {
        after: Option<usize>,
        code: Code,
        message: String,
    },
}

async fn range_stream(kv: &mut KvClient<Channel>, req: RangeRequest) -> Outcome {
    let mut stream = match kv.range_stream(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => return error(None, &s),
    };
    let mut chunks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(RangeStreamResponse {
                range_response: Some(r),
            })) => chunks.push(r),
            Ok(Some(RangeStreamResponse {
                range_response: None,
            })) => chunks.push(RangeResponse::default()),
            Ok(None) => return Outcome::Chunks(chunks),
            Err(s) => return error(Some(chunks.len()), &s),
        }
    }
}

fn error(after: Option<usize>, s: &tonic::Status) -> Outcome {
    Outcome::Error {
        after,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// clientv3's merge (`proto.Merge` of every chunk): key-values concatenated, set scalars and
/// the header from the chunk that has them.
fn merge(chunks: &[RangeResponse]) -> RangeResponse {
    let mut out = RangeResponse::default();
    for c in chunks {
        out.kvs.extend(c.kvs.iter().cloned());
        if let Some(h) = &c.header {
            out.header = Some(*h);
        }
        out.more |= c.more;
        if c.count != 0 {
            out.count = c.count;
        }
    }
    out
}

/// The chunk rules of etcd 3.7's proto; returns each chunk's encoded size.
fn check_chunks(kind: Kind, what: &str, chunks: &[RangeResponse]) -> Vec<usize> {
    assert!(!chunks.is_empty(), "{kind} {what}: no chunk");
    let (last, rest) = chunks.split_last().expect("a chunk");
    for (i, c) in rest.iter().enumerate() {
        assert!(
            c.header.is_none() && !c.more && c.count == 0 && !c.kvs.is_empty(),
            "{kind} {what}: chunk {i} of {} is not key-values only: header {:?} more {} \
             count {} kvs {}",
            chunks.len(),
            c.header,
            c.more,
            c.count,
            c.kvs.len()
        );
    }
    let h = last.header.expect("the last chunk has the header");
    assert!(h.revision > 0 && h.cluster_id != 0 && h.member_id != 0 && h.raft_term > 0);
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| {
            RangeStreamResponse {
                range_response: Some(c.clone()),
            }
            .encoded_len()
        })
        .collect();
    if kind == Kind::Bramble {
        for (c, &size) in chunks.iter().zip(&sizes) {
            assert!(
                size <= CHUNK_BYTES || c.kvs.len() == 1,
                "bramble {what}: a chunk of {} key-values is {size} bytes",
                c.kvs.len()
            );
        }
    }
    sizes
}

/// The merged response without what differs between two clusters (ids, term), small enough
/// to print: key-values past the first few are summed up by a hash.
fn shown(resp: &RangeResponse) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    resp.encode_to_vec().len().hash(&mut hasher);
    for kv in &resp.kvs {
        kv.encode_to_vec().hash(&mut hasher);
    }
    let first: Vec<String> = resp
        .kvs
        .iter()
        .take(3)
        .map(|kv| {
            format!(
                "{}@{}/{}/v{} lease {} value {}B",
                String::from_utf8_lossy(&kv.key),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease,
                kv.value.len()
            )
        })
        .collect();
    format!(
        "revision {} count {} more {} kvs {} {first:?} hash {:x}",
        resp.header.map_or(0, |h| h.revision),
        resp.count,
        resp.more,
        resp.kvs.len(),
        hasher.finish()
    )
}

/// One RangeStream: checks its chunks and, unless `vs_range` is false, that the merge equals
/// the unary Range at the stream's revision; returns the line to compare between servers.
async fn step(
    kind: Kind,
    kv: &mut KvClient<Channel>,
    what: &str,
    req: RangeRequest,
    vs_range: bool,
) -> String {
    match range_stream(kv, req.clone()).await {
        Outcome::Chunks(chunks) => {
            let sizes = check_chunks(kind, what, &chunks);
            let merged = merge(&chunks);
            if vs_range {
                let rev = merged.header.map_or(0, |h| h.revision);
                let unary = kv
                    .range(RangeRequest {
                        revision: if req.revision == 0 { rev } else { req.revision },
                        ..req
                    })
                    .await
                    .expect("unary range")
                    .into_inner();
                assert!(
                    merged.kvs == unary.kvs
                        && merged.count == unary.count
                        && merged.more == unary.more,
                    "{kind} {what}: merged chunks {} != Range {}",
                    shown(&merged),
                    shown(&unary)
                );
            }
            let total: usize = sizes.iter().sum();
            println!(
                "{kind} {what}: {} chunks, {total} bytes, sizes {:?}",
                sizes.len(),
                &sizes[..sizes.len().min(12)]
            );
            format!("{what}: {}", shown(&merged))
        }
        Outcome::Error {
            after,
            code,
            message,
        } => format!("{what}: error after {after:?} chunks: {code:?}: {message}"),
    }
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn put(key: impl Into<Vec<u8>>, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// Key `i` of the big fixture: every 500th value is 100 KiB, the others 100 bytes.
fn fixture_value(i: usize) -> Vec<u8> {
    let len = if i % 500 == 0 { 100 * 1024 } else { 100 };
    (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

/// 10,000 keys `key/00000`..`key/09999` (about 3 MiB), in txns of 100 small puts and single
/// puts of the big values; returns the revision after the first half.
async fn write_fixture(kv: &mut KvClient<Channel>) -> i64 {
    let mut half = 0;
    for batch in 0..100 {
        let mut ops = Vec::new();
        for i in batch * 100..(batch + 1) * 100 {
            let p = put(format!("key/{i:05}"), fixture_value(i));
            if i % 500 == 0 {
                kv.put(p).await.expect("big put");
            } else {
                ops.push(RequestOp {
                    request: Some(request_op::Request::RequestPut(p)),
                });
            }
        }
        let resp = kv
            .txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await
            .expect("txn")
            .into_inner();
        if batch == 49 {
            half = resp.header.map_or(0, |h| h.revision);
        }
    }
    half
}

/// Every case of the comparison, in order, on one fresh server.
async fn scenario(kind: Kind, server: &Server) -> Vec<String> {
    let mut kv = kv_client(server).await;
    let mut t = Vec::new();
    t.push(step(kind, &mut kv, "empty store", range("\0", "\0"), true).await);
    kv.put(put("k1", b"v1".to_vec())).await.expect("put");
    t.push(step(kind, &mut kv, "single key", range("k1", ""), true).await);
    t.push(step(kind, &mut kv, "missing key", range("k0", ""), true).await);
    t.push(step(kind, &mut kv, "empty span", range("k2", "k1"), true).await);
    let mut lease = LeaseClient::new(
        tonic::transport::Endpoint::from_shared(server.endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect"),
    );
    lease
        .lease_grant(LeaseGrantRequest {
            ttl: 600,
            id: 0x7e57,
        })
        .await
        .expect("lease grant");
    kv.put(PutRequest {
        lease: 0x7e57,
        ..put("leased", b"l".to_vec())
    })
    .await
    .expect("put leased");
    // Values in the reverse order of their keys, to see sorting.
    for (k, v) in [
        ("s1", "e"),
        ("s2", "d"),
        ("s3", "c"),
        ("s4", "b"),
        ("s5", "a"),
    ] {
        kv.put(put(k, v.as_bytes().to_vec())).await.expect("put");
    }
    let half = write_fixture(&mut kv).await;
    let all = || range("key/", "key0");
    t.push(step(kind, &mut kv, "10,000 keys", all(), true).await);
    for limit in [1, 10, 25, 1000, 9999, 10_000, 20_000, -5] {
        let req = RangeRequest { limit, ..all() };
        t.push(step(kind, &mut kv, &format!("limit {limit}"), req, true).await);
    }
    let past = RangeRequest {
        revision: half,
        ..all()
    };
    t.push(step(kind, &mut kv, "past revision", past.clone(), true).await);
    let req = RangeRequest {
        limit: 300,
        ..past.clone()
    };
    t.push(step(kind, &mut kv, "past revision, limit 300", req, true).await);
    let req = RangeRequest {
        serializable: true,
        ..all()
    };
    t.push(step(kind, &mut kv, "serializable", req, true).await);
    // etcd 3.7 serves keys_only from its index: no values and no leases (the unary Range of
    // Bramble still returns leases, so no comparison with it here).
    let req = RangeRequest {
        keys_only: true,
        ..all()
    };
    t.push(step(kind, &mut kv, "keys only", req, false).await);
    let req = RangeRequest {
        keys_only: true,
        ..range("leased", "")
    };
    t.push(step(kind, &mut kv, "keys only, leased key", req, false).await);
    t.push(step(kind, &mut kv, "leased key", range("leased", ""), true).await);
    let req = RangeRequest {
        count_only: true,
        ..all()
    };
    t.push(step(kind, &mut kv, "count only", req, true).await);
    let req = RangeRequest {
        count_only: true,
        limit: 5,
        ..past.clone()
    };
    t.push(step(kind, &mut kv, "count only, past, limit 5", req, true).await);
    let sorted = |target: SortTarget, order: SortOrder| RangeRequest {
        sort_target: target as i32,
        sort_order: order as i32,
        ..range("s", "t")
    };
    for (target, order) in [
        (SortTarget::Key, SortOrder::Ascend),
        (SortTarget::Key, SortOrder::None),
        (SortTarget::Value, SortOrder::None),
        (SortTarget::Mod, SortOrder::None),
        (SortTarget::Key, SortOrder::Descend),
        (SortTarget::Value, SortOrder::Ascend),
        (SortTarget::Create, SortOrder::Descend),
    ] {
        let what = format!("sort {target:?} {order:?}");
        t.push(step(kind, &mut kv, &what, sorted(target, order), true).await);
    }
    let req = RangeRequest {
        keys_only: true,
        ..sorted(SortTarget::Value, SortOrder::None)
    };
    t.push(step(kind, &mut kv, "sort Value None, keys only", req, false).await);
    let bad = RangeRequest {
        sort_order: 7,
        ..range("s", "t")
    };
    t.push(step(kind, &mut kv, "sort order 7", bad, false).await);
    let bad = RangeRequest {
        sort_target: 9,
        ..range("s", "t")
    };
    t.push(step(kind, &mut kv, "sort target 9", bad, false).await);
    for (name, req) in [
        (
            "min mod",
            RangeRequest {
                min_mod_revision: 2,
                ..all()
            },
        ),
        (
            "max mod",
            RangeRequest {
                max_mod_revision: 2,
                ..all()
            },
        ),
        (
            "min create",
            RangeRequest {
                min_create_revision: 2,
                ..all()
            },
        ),
        (
            "max create",
            RangeRequest {
                max_create_revision: 2,
                ..all()
            },
        ),
    ] {
        t.push(step(kind, &mut kv, &format!("filter {name}"), req, false).await);
    }
    t.push(step(kind, &mut kv, "empty key", range("", "\0"), false).await);
    let future = RangeRequest {
        revision: 1_000_000,
        ..all()
    };
    t.push(step(kind, &mut kv, "future revision", future, false).await);
    kv.compact(CompactionRequest {
        revision: half + 1,
        physical: true,
    })
    .await
    .expect("compact");
    t.push(step(kind, &mut kv, "compacted revision", past, false).await);
    let req = RangeRequest {
        revision: half + 1,
        ..all()
    };
    t.push(step(kind, &mut kv, "compaction revision", req, true).await);
    t
}

/// Runs `scenario` on etcd 3.7.3 and on Bramble and compares the transcripts line by line.
#[test]
fn range_stream_matches_etcd() {
    let mut transcripts = Vec::new();
    for kind in bramble_tests::target::differential_targets() {
        let server = start(kind);
        transcripts.push(block_on(scenario(kind, &server)));
    }
    if let [etcd, bramble] = &transcripts[..] {
        let mut diffs = Vec::new();
        for (e, b) in etcd.iter().zip(bramble) {
            if e != b {
                diffs.push(format!("etcd:    {e}\nbramble: {b}"));
            }
        }
        assert_eq!(etcd.len(), bramble.len());
        assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    }
    for line in &transcripts[0] {
        println!("{line}");
    }
}
