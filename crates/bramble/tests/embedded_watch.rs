//! Watches of the embedding API on a real in-process member: events in
//! revision order, spans, prev_kv, filters, history replay, concurrent
//! writers, compaction, progress, cancel, the member closing, many watchers,
//! fragments, a fatal failure, and dropped watchers' streams ending
//! (tests/embedded_watch_grpc.rs compares with a gRPC client's watch).

use std::collections::BTreeMap;
use std::time::Duration;

use bramble::api::mvccpb::event::EventType;
use bramble::api::mvccpb::Event;
use bramble::{ErrorKind, Node, NodeOptions, WatchOptions, WatchResponseExt};
use futures::StreamExt;
use tokio::time::timeout;

mod watch_support;
use watch_support::{events, next, open, rev, summary, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_deletes_in_order_with_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut w = node.watch("k", WatchOptions::new()).await.expect("watch");
    let r1 = rev(node.put("k", "v1").await.expect("put").header);
    // Another key: not this watch's.
    node.put("k2", "x").await.expect("put k2");
    let r2 = rev(node.put("k", "v2").await.expect("put").header);
    let r3 = rev(node.delete("k").await.expect("delete").header);
    let r4 = rev(node.put("k", "v3").await.expect("put").header);
    let got = events(&mut w, 4).await;
    let want = [
        (EventType::Put, "v1", r1),
        (EventType::Put, "v2", r2),
        (EventType::Delete, "", r3),
        (EventType::Put, "v3", r4),
    ];
    for (e, (ty, value, rev)) in got.iter().zip(want) {
        assert_eq!(summary(e), (ty, "k".to_string(), value.to_string(), rev));
    }
    let kv = |i: usize| got[i].kv.clone().expect("kv");
    // Versions and create revisions as the store keeps them; a delete's kv
    // is the key with its revision only, as etcd's.
    assert_eq!((kv(0).create_revision, kv(0).version), (r1, 1));
    assert_eq!((kv(1).create_revision, kv(1).version), (r1, 2));
    assert_eq!((kv(2).create_revision, kv(2).version), (0, 0));
    assert_eq!((kv(3).create_revision, kv(3).version), (r4, 1));
    assert!(got.iter().all(|e| e.prev_kv.is_none()), "no prev_kv asked");
    assert!(r2 > r1 + 1, "k2's put took a revision between them");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_from_key_and_range_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut prefix = node
        .watch("jobs/", WatchOptions::new().prefix())
        .await
        .expect("watch prefix");
    let mut from = node
        .watch("m", WatchOptions::new().from_key())
        .await
        .expect("watch from key");
    let mut range = node
        .watch("a", WatchOptions::new().range_end("c"))
        .await
        .expect("watch range");
    for key in ["jobs/1", "jobx", "a", "job", "b", "c", "m", "zz", "jobs/2"] {
        node.put(key, "v").await.expect("put");
    }
    let keys = |evs: Vec<Event>| -> Vec<String> { evs.iter().map(|e| summary(e).1).collect() };
    assert_eq!(keys(events(&mut prefix, 2).await), ["jobs/1", "jobs/2"]);
    assert_eq!(keys(events(&mut from, 2).await), ["m", "zz"]);
    assert_eq!(keys(events(&mut range, 2).await), ["a", "b"]);
    // Nothing else was queued for them: the next events are the next puts'.
    node.put("jobs/3", "v").await.expect("put");
    node.put("n", "v").await.expect("put");
    node.put("bb", "v").await.expect("put");
    assert_eq!(keys(events(&mut prefix, 1).await), ["jobs/3"]);
    assert_eq!(keys(events(&mut from, 1).await), ["n"]);
    assert_eq!(keys(events(&mut range, 1).await), ["bb"]);
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_is_the_value_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut w = node
        .watch("k", WatchOptions::new().prev_kv())
        .await
        .expect("watch");
    let r1 = rev(node.put("k", "v1").await.expect("put").header);
    node.put("k", "v2").await.expect("put");
    node.delete("k").await.expect("delete");
    let got = events(&mut w, 3).await;
    assert!(got[0].prev_kv.is_none(), "a creation has no previous value");
    let prev = |i: usize| got[i].prev_kv.clone().expect("prev_kv");
    assert_eq!((prev(1).value, prev(1).mod_revision), (b"v1".to_vec(), r1));
    assert_eq!((prev(2).value, prev(2).version), (b"v2".to_vec(), 2));
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_leave_out_puts_or_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut deletes = node
        .watch("k", WatchOptions::new().no_put())
        .await
        .expect("watch no_put");
    let mut puts = node
        .watch("k", WatchOptions::new().no_delete())
        .await
        .expect("watch no_delete");
    let mut revs = Vec::new();
    for round in 0..3 {
        revs.push(rev(node
            .put("k", format!("v{round}"))
            .await
            .expect("put")
            .header));
        revs.push(rev(node.delete("k").await.expect("delete").header));
    }
    let got_deletes = events(&mut deletes, 3).await;
    let got_puts = events(&mut puts, 3).await;
    for (i, e) in got_deletes.iter().enumerate() {
        assert_eq!(e.r#type(), EventType::Delete);
        assert_eq!(summary(e).3, revs[2 * i + 1]);
    }
    for (i, e) in got_puts.iter().enumerate() {
        assert_eq!(
            summary(e),
            (EventType::Put, "k".into(), format!("v{i}"), revs[2 * i])
        );
    }
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_replayed_from_an_old_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(rev(node
            .put(format!("h/{i}"), format!("{i}"))
            .await
            .expect("put")
            .header));
    }
    node.delete("h/0").await.expect("delete");
    let mut w = node
        .watch("h/", WatchOptions::new().prefix().start_revision(revs[1]))
        .await
        .expect("watch from the past");
    let live = rev(node.put("h/live", "now").await.expect("put").header);
    let got = events(&mut w, 6).await;
    let got: Vec<_> = got.iter().map(summary).collect();
    let mut want: Vec<_> = (1..5)
        .map(|i| (EventType::Put, format!("h/{i}"), format!("{i}"), revs[i]))
        .collect();
    want.push((EventType::Delete, "h/0".into(), String::new(), revs[4] + 1));
    want.push((EventType::Put, "h/live".into(), "now".into(), live));
    assert_eq!(got, want);
    node.close().await;
}

/// Several tasks put at once while one watcher reads along and another
/// reads only once they are done (so it falls behind the member's queue and
/// catches up from the store): both get every put once, in revision order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_every_event_once_in_order() {
    const TASKS: usize = 4;
    const PUTS: usize = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut along = node
        .watch("c/", WatchOptions::new().prefix())
        .await
        .expect("watch");
    let mut behind = node
        .watch("c/", WatchOptions::new().prefix())
        .await
        .expect("watch");
    let reader = tokio::spawn(async move {
        let got = events(&mut along, TASKS * PUTS).await;
        (got, along)
    });
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let client = node.client();
            tokio::spawn(async move {
                let mut puts = Vec::new();
                for i in 0..PUTS {
                    let (key, value) = (format!("c/{t}/{i}"), format!("{t}.{i}"));
                    let r = rev(client
                        .put(key.clone(), value.clone())
                        .await
                        .expect("put")
                        .header);
                    puts.push((r, (key, value)));
                }
                puts
            })
        })
        .collect();
    let mut puts = BTreeMap::new();
    for w in writers {
        puts.extend(w.await.expect("writer"));
    }
    assert_eq!(puts.len(), TASKS * PUTS, "each put has its own revision");
    let (got_along, mut along) = timeout(PATIENCE, reader)
        .await
        .expect("reader in time")
        .expect("reader");
    let got_behind = events(&mut behind, TASKS * PUTS).await;
    for got in [got_along, got_behind] {
        let got: Vec<_> = got
            .iter()
            .map(|e| {
                let (ty, key, value, rev) = summary(e);
                assert_eq!(ty, EventType::Put);
                (rev, (key, value))
            })
            .collect();
        let want: Vec<_> = puts.clone().into_iter().collect();
        assert_eq!(got, want, "every put once, in revision order");
    }
    // And nothing more: the next event is the next put.
    let last = rev(node.put("c/last", "x").await.expect("put").header);
    for w in [&mut along, &mut behind] {
        let e = events(w, 1).await;
        assert_eq!(summary(&e[0]).3, last);
    }
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_start_revision_fails_with_the_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let old = rev(node.put("k", "1").await.expect("put").header);
    node.put("k", "2").await.expect("put");
    let kept = rev(node.put("k", "3").await.expect("put").header);
    node.compact(kept, true).await.expect("compact");
    let err = node
        .watch("k", WatchOptions::new().start_revision(old))
        .await
        .expect_err("compacted");
    assert_eq!(err.kind(), ErrorKind::Compacted);
    assert_eq!(err.compact_revision(), Some(kept));
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    // From the compaction's revision on, the history is still there.
    let mut w = node
        .watch("k", WatchOptions::new().start_revision(kept))
        .await
        .expect("watch from the compaction");
    let got = events(&mut w, 1).await;
    assert_eq!(
        summary(&got[0]),
        (EventType::Put, "k".into(), "3".into(), kept)
    );
    node.close().await;
}

/// A watcher that does not read falls behind the member (its queue fills);
/// a compaction past it then cancels it: it gets what was queued, in order,
/// then Compacted with the compaction's revision, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_is_canceled_by_a_compaction() {
    // More responses than the stream's buffers hold (16 + 128), each put
    // its own: the watcher cannot keep up without reading.
    const PUTS: usize = 400;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut w = node
        .watch("lag/", WatchOptions::new().prefix())
        .await
        .expect("watch");
    let mut revs = Vec::new();
    for i in 0..PUTS {
        revs.push(rev(node
            .put(format!("lag/{i}"), "v")
            .await
            .expect("put")
            .header));
    }
    let last = *revs.last().expect("puts");
    node.compact(last, true).await.expect("compact");
    let mut got = Vec::new();
    let err = loop {
        match timeout(PATIENCE, w.next()).await.expect("in time") {
            Some(Ok(resp)) => got.extend(resp.events.iter().map(|e| summary(e).3)),
            Some(Err(e)) => break e,
            None => panic!("ended without an error after {} events", got.len()),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Compacted);
    assert_eq!(err.compact_revision(), Some(last));
    assert!(got.len() < PUTS, "it fell behind: {} events", got.len());
    assert_eq!(got, revs[..got.len()], "what came is in order, no gap");
    assert!(w.next().await.is_none(), "the stream ends after its error");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_and_request_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = NodeOptions::new(dir.path());
    opts.limits.watch_progress_notify_interval = Duration::from_millis(200);
    let node = Node::open(opts).await.expect("open");
    let mut notified = node
        .watch("quiet", WatchOptions::new().progress_notify())
        .await
        .expect("watch");
    let mut asking = node.watch("k", WatchOptions::new()).await.expect("watch");
    // An event proves the member delivered up to its revision to both.
    let quiet = rev(node.put("quiet", "v").await.expect("put").header);
    assert_eq!(events(&mut notified, 1).await.len(), 1);
    let progress = next(&mut notified).await;
    assert!(progress.is_progress_notify(), "{progress:?}");
    assert_eq!(progress.watch_id, notified.watch_id());
    assert_eq!(progress.header.expect("header").revision, quiet);

    let asked = rev(node.put("k", "v").await.expect("put").header);
    assert_eq!(events(&mut asking, 1).await.len(), 1);
    asking.request_progress().await.expect("request progress");
    let progress = next(&mut asking).await;
    assert!(progress.is_progress_notify(), "{progress:?}");
    // RequestProgress answers for the whole stream: watch id -1.
    assert_eq!(progress.watch_id, -1);
    assert_eq!(progress.header.expect("header").revision, asked);
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut w = node.watch("k", WatchOptions::new()).await.expect("watch");
    let mut other = node.watch("k", WatchOptions::new()).await.expect("watch");
    node.put("k", "1").await.expect("put");
    assert_eq!(events(&mut w, 1).await.len(), 1);
    w.cancel().await.expect("cancel");
    let end = timeout(PATIENCE, w.next()).await.expect("in time");
    assert!(end.is_none(), "ended after the cancel: {end:?}");
    assert!(futures::stream::FusedStream::is_terminated(&w));
    // The other watcher of the key is untouched.
    let second = rev(node.put("k", "2").await.expect("put").header);
    let got = events(&mut other, 2).await;
    assert_eq!(summary(&got[1]).3, second);
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_watch_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let err = node
        .watch("b", WatchOptions::new().range_end("a"))
        .await
        .expect_err("an empty range");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.message(), "mvcc: watcher range is empty");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_member_ends_the_stream_with_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut w = node.watch("k", WatchOptions::new()).await.expect("watch");
    let client = node.client();
    node.close().await;
    let err = timeout(PATIENCE, w.next())
        .await
        .expect("in time")
        .expect("an item")
        .expect_err("an error");
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(w.next().await.is_none(), "the stream ends after its error");
    let err = client
        .watch("k", WatchOptions::new())
        .await
        .expect_err("closed member");
    assert_eq!(err.kind(), ErrorKind::Stopped);
    // The member's data dir is free again once everything is dropped.
    drop((w, client, node));
    let node = open(dir.path()).await;
    node.put("k", "again").await.expect("put after reopen");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_on_one_member() {
    const WATCHERS: usize = 100;
    const PUTS: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        // Half on the key, half on a prefix of it.
        let opts = if i % 2 == 0 {
            WatchOptions::new()
        } else {
            WatchOptions::new().prefix()
        };
        watchers.push(node.watch("hot", opts).await.expect("watch"));
    }
    let mut revs = Vec::new();
    for i in 0..PUTS {
        revs.push(rev(node
            .put("hot", format!("{i}"))
            .await
            .expect("put")
            .header));
    }
    let got = futures::future::join_all(watchers.iter_mut().map(|w| events(w, PUTS))).await;
    for evs in got {
        let revisions: Vec<i64> = evs.iter().map(|e| summary(e).3).collect();
        assert_eq!(revisions, revs);
    }
    node.close().await;
}

/// A response the member splits (etcd's `fragment`: larger than the
/// largest request) comes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_come_whole() {
    const KEYS: usize = 20;
    const MAX_REQUEST_BYTES: usize = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = NodeOptions::new(dir.path());
    opts.limits.max_request_bytes = MAX_REQUEST_BYTES;
    let node = Node::open(opts).await.expect("open");
    for i in 0..KEYS {
        node.put(format!("f/{i:02}"), vec![b'v'; 300])
            .await
            .expect("put");
    }
    let req = WatchOptions::new().prefix().prev_kv().request("f/");
    let mut w = node
        .watch_request(bramble::api::etcdserverpb::WatchCreateRequest {
            fragment: true,
            ..req
        })
        .await
        .expect("watch");
    // One revision deletes them all; with their previous values the
    // response is larger than the member's largest request.
    let deleted_at = rev(node
        .delete_with("f/", bramble::DeleteOptions::new().prefix())
        .await
        .expect("delete")
        .header);
    let resp = next(&mut w).await;
    assert!(!resp.fragment);
    assert_eq!(resp.events.len(), KEYS);
    for (i, e) in resp.events.iter().enumerate() {
        let (ty, key, _, r) = summary(e);
        assert_eq!(
            (ty, key, r),
            (EventType::Delete, format!("f/{i:02}"), deleted_at)
        );
        assert_eq!(e.prev_kv.as_ref().expect("prev_kv").value.len(), 300);
    }
    let parts = bramble_server::watch::stream::fragments(resp, MAX_REQUEST_BYTES);
    assert!(parts.len() > 1, "the member sent it in parts");
    node.close().await;
}

/// A member that fails for good (its disk fills) ends its watches with the
/// failure. Mounts a small tmpfs, so it needs root (as tests/embedded_fatal.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_failure_ends_the_stream_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _disk =
        bramble_testkit::disk::SmallDisk::mount(&dir.path().join("member").join("snap"), "6m");
    let node = Node::open(NodeOptions::new(dir.path()))
        .await
        .expect("open");
    let mut w = node
        .watch("k", WatchOptions::new().prefix())
        .await
        .expect("watch");
    let value = vec![b'x'; 700_000];
    let mut acked = Vec::new();
    loop {
        match node.put(format!("k{}", acked.len()), value.clone()).await {
            Ok(resp) => acked.push(rev(resp.header)),
            Err(_) => break,
        }
        assert!(acked.len() < 40, "the disk never filled");
    }
    let fatal = timeout(PATIENCE, node.fatal()).await.expect("fatal");
    // The acknowledged puts' events, then the failure.
    let mut got = Vec::new();
    let err = loop {
        match timeout(PATIENCE, w.next()).await.expect("in time") {
            Some(Ok(resp)) => got.extend(resp.events.iter().map(|e| summary(e).3)),
            Some(Err(e)) => break e,
            None => panic!("ended without an error"),
        }
    };
    assert_eq!(err.fatal(), Some(&fatal), "{err}");
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert_eq!(got, acked[..got.len()], "in order, no gap");
    assert!(w.next().await.is_none(), "the stream ends after its error");
    timeout(PATIENCE, node.close())
        .await
        .expect("close returns");
}

/// Dropping a watcher ends its stream's task on the member (nothing leaks).
/// The watchers are made on a runtime of their own, so that its live tasks
/// are their streams' alone (the member's own tasks come and go on the
/// test's runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watchers_end_their_streams() {
    const WATCHERS: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path()).await;
    // The first watch starts the member's watch hub (a task) here.
    let _first = node.watch("k", WatchOptions::new()).await.expect("watch");
    let client = node.client();
    let counted = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let metrics = tokio::runtime::Handle::current().metrics();
            assert_eq!(metrics.num_alive_tasks(), 0);
            let mut watchers = Vec::new();
            for _ in 0..WATCHERS {
                watchers.push(client.watch("k", WatchOptions::new()).await.expect("watch"));
            }
            assert_eq!(metrics.num_alive_tasks(), WATCHERS, "a task per stream");
            drop(watchers);
            // A task's end is no event a test can await: poll, in time.
            let ended = async {
                while metrics.num_alive_tasks() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            timeout(PATIENCE, ended)
                .await
                .unwrap_or_else(|_| panic!("{} streams left", metrics.num_alive_tasks()));
        });
    });
    timeout(PATIENCE, counted)
        .await
        .expect("in time")
        .expect("counted");
    node.close().await;
}
