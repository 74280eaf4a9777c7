//! The client side of the RangeStream tests: servers, raw gRPC clients, reading a stream,
//! merging its chunks as etcd's clientv3 does, and checking their structure.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bramble_api::etcdserverpb::kv_client::KvClient;
use bramble_api::etcdserverpb::{PutRequest, RangeRequest, RangeResponse, RangeStreamResponse};
use bramble_tests::{tools, Kind, Server, ServerConfig};
use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

/// Bramble's chunk bound: etcd's `--max-request-bytes` default (crates/server/src/defaults.rs
/// `RANGE_STREAM_CHUNK_BYTES`).
pub(crate) const CHUNK_BYTES: usize = 1536 * 1024;

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

/// etcd 3.7.3 or Bramble, with the same flags.
pub(crate) fn start(kind: Kind) -> Server {
    let binary = (kind == Kind::Etcd).then(tools::etcd_v37_bin);
    Server::start_with(
        kind,
        ServerConfig {
            binary,
            ..ServerConfig::default()
        },
    )
}

pub(crate) async fn kv_client(server: &Server) -> KvClient<Channel> {
    kv_client_with_window(server, None).await
}

/// A client whose HTTP/2 windows (how much a server may send that it has not read) are
/// `window` bytes instead of hyper's 2 MiB per stream.
pub(crate) async fn kv_client_with_window(
    server: &Server,
    window: Option<u32>,
) -> KvClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
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
pub(crate) enum Outcome {
    /// Every chunk, then a clean end.
    Chunks(Vec<RangeResponse>),
    /// An error status, after `after` chunks (`None`: the call itself failed).
    Error {
        after: Option<usize>,
        code: Code,
        message: String,
    },
}

pub(crate) async fn range_stream(kv: &mut KvClient<Channel>, req: RangeRequest) -> Outcome {
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

pub(crate) fn error(after: Option<usize>, s: &tonic::Status) -> Outcome {
    Outcome::Error {
        after,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// clientv3's merge (`proto.Merge` of every chunk): key-values concatenated, set scalars and
/// the header from the chunk that has them.
pub(crate) fn merge(chunks: &[RangeResponse]) -> RangeResponse {
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
pub(crate) fn check_chunks(kind: Kind, what: &str, chunks: &[RangeResponse]) -> Vec<usize> {
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
pub(crate) fn shown(resp: &RangeResponse) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
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

pub(crate) fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(crate) fn put(key: impl Into<Vec<u8>>, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The median of 5 timed runs of `f`, in milliseconds.
pub(crate) async fn median_ms<F: std::future::Future<Output = ()>>(
    mut f: impl FnMut() -> F,
) -> u128 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed().as_millis());
    }
    times.sort_unstable();
    times[2]
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
