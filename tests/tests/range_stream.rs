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

// The helpers live next to this file (a crate root finds modules beside it, not below).
#[path = "range_stream/client.rs"]
mod client;

use std::time::Duration;

use bramble_api::etcdserverpb::auth_client::AuthClient;
use bramble_api::etcdserverpb::kv_client::KvClient;
use bramble_api::etcdserverpb::lease_client::LeaseClient;
use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{
    request_op, AuthenticateRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use bramble_tests::{Kind, Server};
use client::{
    block_on, check_chunks, kv_client, kv_client_with_window, median_ms, merge, put, range,
    range_stream, rss_kib, shown, start, Outcome,
};
use tonic::transport::Channel;

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

/// Key `i` of the big fixture: every 500th value is 100 KiB, the others 100 bytes.
fn fixture_value(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(500) {
        100 * 1024
    } else {
        100
    };
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
            if i.is_multiple_of(500) {
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
    let mut lease = LeaseClient::new(kv_client_channel(server).await);
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

/// Writes while a stream is being read, between its chunks: the merged result is the range
/// at the stream's header revision (taken when the stream started), on both servers. A
/// compaction past that revision fails the stream mid-way, with etcd's error.
#[test]
fn range_stream_reads_one_revision() {
    let mut errors = Vec::new();
    for kind in bramble_tests::target::differential_targets() {
        let server = start(kind);
        errors.push(block_on(async {
            let mut kv = kv_client(&server).await;
            let mut writer = kv_client(&server).await;
            write_fixture(&mut kv).await;
            let all = range("key/", "key0");
            let stream_ms = median_ms(|| {
                let (mut kv, all) = (kv.clone(), all.clone());
                async move {
                    let Outcome::Chunks(c) = range_stream(&mut kv, all).await else {
                        panic!("{kind}: stream failed");
                    };
                    assert_eq!(merge(&c).kvs.len(), 10_000);
                }
            })
            .await;
            let range_ms = median_ms(|| {
                let (mut kv, all) = (kv.clone(), all.clone());
                async move {
                    let r = kv.range(all).await.expect("range").into_inner();
                    assert_eq!(r.kvs.len(), 10_000);
                }
            })
            .await;
            println!(
                "{kind}: 10,000 keys (3.1 MiB): RangeStream {stream_ms} ms, Range {range_ms} ms"
            );

            let mut stream = kv
                .range_stream(all.clone())
                .await
                .expect("stream")
                .into_inner();
            let mut chunks = Vec::new();
            let mut i = 0;
            while let Some(chunk) = stream.message().await.expect("chunk") {
                chunks.push(chunk.range_response.expect("range_response"));
                // Between chunks: change a value, delete a key, add a key.
                writer
                    .put(put(format!("key/{:05}", i * 7 + 1), b"changed".to_vec()))
                    .await
                    .expect("put");
                writer
                    .delete_range(DeleteRangeRequest {
                        key: format!("key/{:05}", 9999 - i).into_bytes(),
                        ..Default::default()
                    })
                    .await
                    .expect("delete");
                writer
                    .put(put(format!("key/{:05}a", i * 13), b"new".to_vec()))
                    .await
                    .expect("put");
                i += 1;
            }
            check_chunks(kind, "with writes", &chunks);
            assert!(chunks.len() > 1, "{kind}: one chunk only");
            let merged = merge(&chunks);
            let rev = merged.header.expect("header").revision;
            let at = kv
                .range(RangeRequest {
                    revision: rev,
                    ..all.clone()
                })
                .await
                .expect("range")
                .into_inner();
            let now = kv.range(all.clone()).await.expect("range").into_inner();
            let now_rev = now.header.expect("header").revision;
            assert_eq!(now_rev, rev + 3 * i as i64, "{kind}: writes made");
            assert_ne!(now.kvs, merged.kvs, "{kind}: the writes changed the range");
            assert!(
                merged.kvs == at.kvs && merged.count == at.count && merged.count == 10_000,
                "{kind}: merged {} != range at {rev}: {}",
                shown(&merged),
                shown(&at)
            );

            // A compaction past the stream's revision after its first chunk. The range is
            // 24 chunks of Bramble's (two 512 KiB values each) and the reader's window is
            // HTTP/2's smallest, so neither server can have read the whole range ahead of
            // the reader: hyper takes the next chunk while the previous one still waits
            // for window, so a member reads up to about three chunks ahead.
            for i in 0..48 {
                writer
                    .put(put(format!("big/{i:02}"), vec![b'b'; 512 * 1024]))
                    .await
                    .expect("put");
            }
            let mut slow = kv_client_with_window(&server, Some(65_535)).await;
            let mut stream = slow
                .range_stream(range("big/", "big0"))
                .await
                .expect("stream")
                .into_inner();
            stream
                .message()
                .await
                .expect("first chunk")
                .expect("a chunk");
            let bump = writer
                .put(put("bump", Vec::new()))
                .await
                .expect("put")
                .into_inner();
            writer
                .compact(CompactionRequest {
                    revision: bump.header.expect("header").revision,
                    physical: true,
                })
                .await
                .expect("compact");
            let mut after = 1;
            let err = loop {
                match stream.message().await {
                    Ok(Some(_)) => after += 1,
                    Ok(None) => panic!("{kind}: the stream ended cleanly after a compaction"),
                    Err(s) => break s,
                }
            };
            println!("{kind}: compaction mid-stream failed it after {after} chunks");
            format!("{:?}: {}", err.code(), err.message())
        }));
    }
    if let [etcd, bramble] = &errors[..] {
        assert_eq!(etcd, bramble, "mid-stream compaction error");
    }
}

/// 200 MiB streamed to a client that takes the first chunk and then stops reading: the
/// server must not read ahead (Bramble's resident memory stays far below the range's size).
/// etcd's numbers are printed for comparison.
#[test]
fn slow_reader_keeps_server_memory_bounded() {
    const KEYS: usize = 200;
    for kind in bramble_tests::target::differential_targets() {
        let server = start(kind);
        let pid = server.pid().expect("running");
        block_on(async {
            let mut kv = kv_client(&server).await;
            for i in 0..KEYS {
                let value = vec![b'a' + (i % 26) as u8; 1024 * 1024];
                kv.put(put(format!("big/{i:04}"), value))
                    .await
                    .expect("put");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = rss_kib(pid);
            let mut stream = kv
                .range_stream(range("big/", "big0"))
                .await
                .expect("stream")
                .into_inner();
            let first = stream.message().await.expect("chunk").expect("a chunk");
            let mut got = first.range_response.map_or(0, |r| r.kvs.len());
            let mut peak = before;
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peak = peak.max(rss_kib(pid));
            }
            while let Some(c) = stream.message().await.expect("chunk") {
                got += c.range_response.map_or(0, |r| r.kvs.len());
            }
            println!(
                "{kind}: 200 MiB range, reader stopped after the first chunk: RSS {} MiB before, \
                 peak {} MiB (+{} MiB)",
                before / 1024,
                peak / 1024,
                peak.saturating_sub(before) / 1024
            );
            assert_eq!(got, KEYS, "{kind}: the rest of the range once read");
            if kind == Kind::Bramble {
                assert!(
                    peak.saturating_sub(before) < 32 * 1024,
                    "bramble grew by {} KiB while the reader stood still",
                    peak - before
                );
                // For the record: the unary Range holds the whole range.
                let before = rss_kib(pid);
                let r = kv
                    .range(range("big/", "big0"))
                    .await
                    .expect("range")
                    .into_inner();
                assert_eq!(r.kvs.len(), KEYS);
                println!(
                    "bramble: the same range as one Range: RSS {} MiB after (+{} MiB)",
                    rss_kib(pid) / 1024,
                    rss_kib(pid).saturating_sub(before) / 1024
                );
            }
        });
    }
}

/// Permissions as for Range: a user may stream only what it may read; no token on a server
/// with auth enabled is refused; etcd's errors, before any chunk.
#[test]
fn range_stream_checks_permissions() {
    const SETUP: &[&str] = &[
        "put /r/a 1",
        "put /r/b 2",
        "put /s/c 3",
        "user add root --new-user-password=rootpw",
        "role add root",
        "user grant-role root root",
        "user add ro --new-user-password=ropw",
        "role add reader",
        "role grant-permission reader read /r/ --prefix",
        "user grant-role ro reader",
        "auth enable",
    ];
    let mut transcripts = Vec::new();
    for kind in bramble_tests::target::differential_targets() {
        let server = start(kind);
        for line in SETUP {
            let o = server.etcdctl().step(line, None);
            assert_eq!(o.code, 0, "{kind} setup {line}: {o:?}");
        }
        transcripts.push(block_on(async {
            let mut kv = kv_client(&server).await;
            let mut auth = AuthClient::new(kv_client_channel(&server).await);
            let token = auth
                .authenticate(AuthenticateRequest {
                    name: "ro".into(),
                    password: "ropw".into(),
                })
                .await
                .expect("authenticate")
                .into_inner()
                .token;
            let mut t = Vec::new();
            for (what, req, with_token) in [
                ("ro: /r/ prefix", range("/r/", "/r0"), true),
                ("ro: /r/a", range("/r/a", ""), true),
                ("ro: /s/c", range("/s/c", ""), true),
                ("ro: everything", range("\0", "\0"), true),
                ("ro: /r/ to /s", range("/r/", "/s"), true),
                ("no token: /r/a", range("/r/a", ""), false),
            ] {
                let mut r = tonic::Request::new(req);
                if with_token {
                    if let Ok(v) = token.parse() {
                        r.metadata_mut().insert("token", v);
                    }
                }
                let line = match kv.range_stream(r).await {
                    Err(s) => format!("{what}: {:?}: {}", s.code(), s.message()),
                    Ok(s) => {
                        let mut s = s.into_inner();
                        let mut chunks = Vec::new();
                        while let Some(c) = s.message().await.expect("chunk") {
                            chunks.push(c.range_response.expect("range_response"));
                        }
                        check_chunks(kind, what, &chunks);
                        format!("{what}: {}", shown(&merge(&chunks)))
                    }
                };
                t.push(line);
            }
            t
        }));
    }
    if let [etcd, bramble] = &transcripts[..] {
        assert_eq!(etcd, bramble);
    }
    for line in &transcripts[0] {
        println!("{line}");
    }
}

async fn kv_client_channel(server: &Server) -> Channel {
    tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}
