//! The Watch API through the `etcd-client` crate.
//!
//! - `api_differential`: created/canceled responses, watch ids (assigned and chosen,
//!   duplicates), empty ranges, filters, prev_kv, cancel, RequestProgress, compacted watches,
//!   history replay and fragment, compared response by response between etcd and Bramble.
//! - `guarantees_under_concurrent_writers`: concurrent writers (txns with several puts
//!   included) and several watchers; a checker verifies for every watcher that what it got
//!   is ordered, unique, reliable (no gap) and atomic against the MVCC history read back with
//!   revisioned ranges, and prev_kv against the history too.
//! - `resume_after_disconnect`: a watcher that drops its stream and resumes from last + 1.
//! - `thousand_watchers_on_one_prefix` and `slow_watcher_catches_up`: fan-out and a watcher
//!   that stops reading while writers write (it falls behind, catches up from the store, and
//!   gets everything), with measured numbers printed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bramble_testkit::{process, temp};
use bramble_tests::client::{self, bytes, Transcript};
use bramble_tests::ports::free_port;
use bramble_tests::server::single_member_args;
use bramble_tests::target::{self, Kind};
use bramble_tests::{tools, Server, ServerConfig};
use etcd_client::{
    Client, CompactionOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchFilterType,
    WatchOptions, WatchResponse, WatchStream,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A watch response without its per-cluster header fields.
fn render(r: &WatchResponse) -> String {
    let events: Vec<String> = r
        .events()
        .iter()
        .map(|e| {
            let kind = match e.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            let kv = e
                .kv()
                .map(|kv| {
                    let value = if kv.value().len() > 64 {
                        format!("<{} bytes>", kv.value().len())
                    } else {
                        bytes(kv.value())
                    };
                    format!(
                        "{}={} c={} m={} v={}",
                        bytes(kv.key()),
                        value,
                        kv.create_revision(),
                        kv.mod_revision(),
                        kv.version()
                    )
                })
                .unwrap_or_default();
            let prev = e
                .prev_kv()
                .map(|p| format!(" prev={}@{}", bytes(p.value()), p.mod_revision()))
                .unwrap_or_default();
            format!("{kind} {kv}{prev}")
        })
        .collect();
    format!(
        "id={} created={} canceled={} compact={} reason={:?} rev={} events=[{}]",
        r.watch_id(),
        r.created(),
        r.canceled(),
        r.compact_revision(),
        r.cancel_reason(),
        r.header().map(|h| h.revision()).unwrap_or(-1),
        events.join(", ")
    )
}

/// The next response, or a note that none came in time.
async fn next(ws: &mut WatchStream) -> String {
    match tokio::time::timeout(Duration::from_secs(5), ws.message()).await {
        Ok(Ok(Some(r))) => render(&r),
        Ok(Ok(None)) => "stream ended".to_string(),
        Ok(Err(e)) => format!("error: {}", client::render_error(&e)),
        Err(_) => "timeout".to_string(),
    }
}

/// The next `n` responses, sorted (responses of different watchers on one stream may come
/// in any order).
async fn next_n(ws: &mut WatchStream, n: usize) -> String {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(next(ws).await);
    }
    all.sort();
    all.join("\n    ")
}

#[test]
fn api_differential() {
    client::compare("watch api", async |c: &mut Client, t: &mut Transcript| {
        t.ok("put a/0", c.put("a/0", "zero", None).await); // 2
        let prefix = WatchOptions::new().with_prefix();
        let mut ws = match c.watch("a/", Some(prefix)).await {
            Ok(ws) => ws,
            Err(e) => {
                t.note("watch a/", client::render_error(&e));
                return;
            }
        };
        t.note("created, assigned id", next(&mut ws).await);
        let chosen = WatchOptions::new().with_watch_id(7).with_prev_key();
        ws.watch("k", Some(chosen.clone())).await.ok();
        t.note("created, chosen id 7", next(&mut ws).await);
        ws.watch("k", Some(chosen)).await.ok();
        t.note("duplicate id", next(&mut ws).await);
        ws.watch("b", Some(WatchOptions::new().with_range("a")))
            .await
            .ok();
        t.note("empty range", next(&mut ws).await);
        let no_delete = WatchOptions::new().with_filters([WatchFilterType::NoDelete]);
        ws.watch("k", Some(no_delete)).await.ok();
        t.note("created, next assigned id", next(&mut ws).await);
        let no_put = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
        ws.watch("k", Some(no_put)).await.ok();
        t.note("created, NOPUT", next(&mut ws).await);

        t.ok("put a/1", c.put("a/1", "one", None).await); // 3
        t.note("event a/1", next(&mut ws).await);
        t.ok("put k v1", c.put("k", "v1", None).await); // 4
        t.note("k v1 (7, nodelete)", next_n(&mut ws, 2).await);
        t.ok("put k v2", c.put("k", "v2", None).await); // 5
        t.note("k v2 (7, nodelete)", next_n(&mut ws, 2).await);
        t.ok("delete k", c.delete("k", None).await); // 6
        t.note("delete k (7, noput)", next_n(&mut ws, 2).await);
        let txn = Txn::new().and_then([
            TxnOp::put("a/2", "two", None),
            TxnOp::put("a/3", "three", None),
            TxnOp::put("k", "txn", None),
        ]);
        t.ok("txn", c.txn(txn).await); // 7
        t.note("txn (0, 7, nodelete)", next_n(&mut ws, 3).await);

        ws.cancel(7).await.ok();
        t.note("cancel 7", next(&mut ws).await);
        ws.cancel(99).await.ok();
        ws.request_progress().await.ok();
        t.note("cancel 99 answers nothing; progress", next(&mut ws).await);

        t.ok("put k v3", c.put("k", "v3", None).await); // 8
        t.note("k v3 (nodelete only)", next(&mut ws).await);

        // History replay, then live.
        let history = WatchOptions::new().with_prefix().with_start_revision(1);
        ws.watch("a/", Some(history)).await.ok();
        t.note("replay created", next(&mut ws).await);
        t.note("replay history", next(&mut ws).await);

        // Compacted.
        t.ok(
            "compact 5",
            c.compact(5, Some(CompactionOptions::new().with_physical()))
                .await,
        );
        let old = WatchOptions::new().with_start_revision(3).with_prev_key();
        ws.watch("a/1", Some(old)).await.ok();
        t.note("compacted: created", next(&mut ws).await);
        t.note("compacted: canceled", next(&mut ws).await);
        let at = WatchOptions::new().with_start_revision(5).with_prefix();
        ws.watch("k", Some(at)).await.ok();
        t.note("at compaction: created", next(&mut ws).await);
        t.note("at compaction: history", next(&mut ws).await);

        // prev_kv older than the compaction is left out.
        let prev = WatchOptions::new().with_prev_key().with_watch_id(50);
        ws.watch("a/1", Some(prev)).await.ok();
        t.note("prev_kv watch", next(&mut ws).await);
        t.ok("put a/1 again", c.put("a/1", "uno", None).await); // 9
        t.note("prev_kv event (prefix, 50)", next_n(&mut ws, 3).await);
    });
}

#[test]
fn fragment_splits_big_responses() {
    client::compare(
        "watch fragment",
        async |c: &mut Client, t: &mut Transcript| {
            let big = vec![b'x'; 1 << 20];
            t.ok("put f/1", c.put("f/1", big.clone(), None).await); // 2
            t.ok("put f/2", c.put("f/2", big.clone(), None).await); // 3
            t.ok("put f/3", c.put("f/3", "small", None).await); // 4
            for (name, opts) in [
                ("fragment", WatchOptions::new().with_fragment()),
                ("whole", WatchOptions::new()),
            ] {
                let opts = opts.with_prefix().with_start_revision(1);
                match c.watch("f/", Some(opts)).await {
                    Ok(mut ws) => {
                        t.note(&format!("{name}: created"), next(&mut ws).await);
                        // Fragments until the 3 events are in.
                        let mut seen = 0;
                        let mut parts = 0;
                        while seen < 3 && parts < 5 {
                            match tokio::time::timeout(Duration::from_secs(5), ws.message()).await {
                                Ok(Ok(Some(r))) => {
                                    seen += r.events().len();
                                    parts += 1;
                                    t.note(&format!("{name}: part {parts}"), render(&r));
                                }
                                other => {
                                    t.note(&format!("{name}: no part"), format!("{other:?}"));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => t.note(name, client::render_error(&e)),
                }
            }
        },
    );
}

/// One event as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    rev: i64,
    key: Vec<u8>,
    put: bool,
    value: Vec<u8>,
    /// prev_kv value, if any.
    prev: Option<Vec<u8>>,
}

/// Everything one watcher received: (response index, event).
type Received = Vec<(usize, Ev)>;

/// Reads a watch stream until an event carries `end_value`.
async fn collect_until(ws: &mut WatchStream, end_value: &[u8]) -> Received {
    let mut out = Vec::new();
    let mut response = 0;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = match tokio::time::timeout(left, ws.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("watch stream ended early: {other:?} after {out:?}"),
        };
        response += 1;
        let mut done = false;
        for e in r.events() {
            let Some(kv) = e.kv() else { continue };
            done |= kv.value() == end_value;
            out.push((
                response,
                Ev {
                    rev: kv.mod_revision(),
                    key: kv.key().to_vec(),
                    put: e.event_type() == EventType::Put,
                    value: kv.value().to_vec(),
                    prev: e.prev_kv().map(|p| p.value().to_vec()),
                },
            ));
        }
        if done {
            return out;
        }
    }
}

/// The state of every `g/` key at each revision, read back with revisioned ranges.
async fn history(c: &mut Client, from: i64, to: i64) -> BTreeMap<i64, BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for rev in from..=to {
        let opts = GetOptions::new().with_prefix().with_revision(rev);
        let r = c.get("g/", Some(opts)).await.expect("revisioned range");
        let state: BTreeMap<Vec<u8>, Vec<u8>> = r
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        out.insert(rev, state);
    }
    out
}

/// The events of revisions `from + 1 ..= to`, per revision, from consecutive states.
fn expected_events(
    states: &BTreeMap<i64, BTreeMap<Vec<u8>, Vec<u8>>>,
    mod_revs: &BTreeMap<(i64, Vec<u8>), i64>,
) -> BTreeMap<i64, BTreeSet<Ev>> {
    let mut out: BTreeMap<i64, BTreeSet<Ev>> = BTreeMap::new();
    let revs: Vec<&i64> = states.keys().collect();
    for pair in revs.windows(2) {
        let (prev_rev, rev) = (*pair[0], *pair[1]);
        let (before, after) = (&states[&prev_rev], &states[&rev]);
        let set = out.entry(rev).or_default();
        for (k, v) in after {
            if mod_revs.get(&(rev, k.clone())) == Some(&rev) {
                set.insert(Ev {
                    rev,
                    key: k.clone(),
                    put: true,
                    value: v.clone(),
                    prev: before.get(k).cloned(),
                });
            }
        }
        for (k, v) in before {
            if !after.contains_key(k) {
                set.insert(Ev {
                    rev,
                    key: k.clone(),
                    put: false,
                    value: Vec::new(),
                    prev: Some(v.clone()),
                });
            }
        }
    }
    out
}

/// Checks one watcher's events against the history: ordered, unique, reliable, atomic.
fn check(
    name: &str,
    got: &Received,
    expected: &BTreeMap<i64, BTreeSet<Ev>>,
    wants: impl Fn(&[u8]) -> bool,
    prev_kv: bool,
    end_rev: i64,
) {
    let revs: Vec<i64> = got.iter().map(|(_, e)| e.rev).collect();
    assert!(
        revs.windows(2).all(|w| w[0] <= w[1]),
        "{name}: not ordered: {revs:?}"
    );
    let mut per_rev: BTreeMap<i64, BTreeSet<Ev>> = BTreeMap::new();
    let mut response_of: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
    for (resp, e) in got {
        let mut e = e.clone();
        if !prev_kv {
            e.prev = None;
        }
        assert!(
            per_rev.entry(e.rev).or_default().insert(e.clone()),
            "{name}: duplicate event {e:?}"
        );
        response_of.entry(e.rev).or_default().insert(*resp);
    }
    for (rev, resps) in &response_of {
        assert_eq!(
            resps.len(),
            1,
            "{name}: revision {rev} split over responses {resps:?}"
        );
    }
    for (rev, events) in expected.range(..=end_rev) {
        let want: BTreeSet<Ev> = events
            .iter()
            .filter(|e| wants(&e.key))
            .map(|e| Ev {
                prev: if prev_kv { e.prev.clone() } else { None },
                ..e.clone()
            })
            .collect();
        let have = per_rev.remove(rev).unwrap_or_default();
        assert_eq!(have, want, "{name}: revision {rev} differs (gap or extra)");
    }
    assert!(
        per_rev.range(..=end_rev).next().is_none(),
        "{name}: events of unknown revisions: {per_rev:?}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn write_load(endpoint: String, writer: usize, ops: usize) {
    let mut c = client::connect_endpoint(&endpoint).await;
    for i in 0..ops {
        let key = format!("g/{}", (i * 7 + writer * 3) % 20);
        match i % 5 {
            0 | 1 => {
                c.put(key, format!("w{writer}-{i}"), None)
                    .await
                    .expect("put");
            }
            2 => {
                c.delete(key, None).await.expect("delete");
            }
            3 => {
                let ops: Vec<TxnOp> = (0..3)
                    .map(|j| {
                        TxnOp::put(
                            format!("g/{}", (i + j * 5 + writer) % 20),
                            format!("t{writer}-{i}-{j}"),
                            None,
                        )
                    })
                    .collect();
                c.txn(Txn::new().and_then(ops)).await.expect("txn");
            }
            _ => {
                let opts = PutOptions::new().with_prev_key();
                c.put(
                    format!("g/1{}", i % 10),
                    format!("w{writer}-{i}"),
                    Some(opts),
                )
                .await
                .expect("put");
            }
        }
    }
}

#[test]
fn guarantees_under_concurrent_writers() {
    for kind in target::differential_targets() {
        runtime().block_on(guarantees(kind));
    }
}

async fn guarantees(kind: Kind) {
    let server = Server::start(kind);
    let mut c = client::connect(&server).await;
    let start = c
        .put("g/start", "s", None)
        .await
        .expect("put")
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    // (name, key, options, key filter, prev_kv)
    type Wants = Box<dyn Fn(&[u8]) -> bool>;
    let specs: Vec<(&str, &str, WatchOptions, Wants, bool)> = vec![
        (
            "prefix g/",
            "g/",
            WatchOptions::new().with_prefix(),
            Box::new(|k: &[u8]| k.starts_with(b"g/")),
            false,
        ),
        (
            "prefix g/1 + prev_kv",
            "g/1",
            WatchOptions::new().with_prefix().with_prev_key(),
            Box::new(|k: &[u8]| k.starts_with(b"g/1")),
            true,
        ),
        (
            "single g/3",
            "g/3",
            WatchOptions::new(),
            Box::new(|k: &[u8]| k == b"g/3"),
            false,
        ),
        (
            "from key g/5",
            "g/5",
            WatchOptions::new().with_from_key(),
            Box::new(|k: &[u8]| k >= b"g/5".as_slice()),
            false,
        ),
        (
            "range [g/2, g/4)",
            "g/2",
            WatchOptions::new().with_range("g/4"),
            Box::new(|k: &[u8]| k >= b"g/2".as_slice() && k < b"g/4".as_slice()),
            false,
        ),
    ];
    let mut streams = Vec::new();
    for (name, key, opts, _, _) in &specs {
        let mut ws = c
            .watch(*key, Some(opts.clone().with_start_revision(start + 1)))
            .await
            .expect("watch");
        let created = ws.message().await.expect("created").expect("created");
        assert!(created.created(), "{kind} {name}: {}", render(&created));
        streams.push(ws);
    }
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write_load(server.endpoint(), w, 60)))
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    // A sentinel in every watcher's range, written after everything else.
    let mut end_rev = 0;
    for key in ["g/3", "g/10", "g/2", "g/5", "g/"] {
        end_rev = c
            .put(key, "END", None)
            .await
            .expect("put END")
            .header()
            .map(|h| h.revision())
            .unwrap_or(0);
    }
    let states = history(&mut c, start, end_rev).await;
    let mut mod_revs = BTreeMap::new();
    for rev in start..=end_rev {
        let r = c
            .get(
                "g/",
                Some(GetOptions::new().with_prefix().with_revision(rev)),
            )
            .await
            .expect("get");
        for kv in r.kvs() {
            mod_revs.insert((rev, kv.key().to_vec()), kv.mod_revision());
        }
    }
    let expected = expected_events(&states, &mod_revs);
    let total: usize = expected.values().map(BTreeSet::len).sum();
    for ((name, _, _, wants, prev_kv), ws) in specs.iter().zip(streams.iter_mut()) {
        let got = collect_until(ws, b"END").await;
        let last = got.last().map(|(_, e)| e.rev).unwrap_or(0);
        check(
            &format!("{kind} {name}"),
            &got,
            &expected,
            wants,
            *prev_kv,
            last,
        );
        assert!(last > start, "{kind} {name}: nothing received");
    }
    println!(
        "{kind}: {total} events over {} revisions checked for 5 watchers",
        end_rev - start
    );
}

/// Reads whole responses until at least `n` events arrived; returns their
/// mod revisions in order.
async fn read_revisions(ws: &mut WatchStream, n: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let r = ws.message().await.expect("message").expect("response");
        seen.extend(
            r.events()
                .iter()
                .filter_map(|e| e.kv().map(|kv| kv.mod_revision())),
        );
    }
    seen
}

#[test]
fn resume_after_disconnect() {
    for kind in target::differential_targets() {
        runtime().block_on(async move {
            let server = Server::start(kind);
            let mut c = client::connect(&server).await;
            let mut ws = c
                .watch("r/", Some(WatchOptions::new().with_prefix()))
                .await
                .expect("watch");
            ws.message().await.expect("created");
            for i in 0..20 {
                c.put(format!("r/{}", i % 4), i.to_string(), None)
                    .await
                    .expect("put");
            }
            // Read a few responses, then disconnect.
            let mut seen = read_revisions(&mut ws, 7).await;
            drop(ws);
            for i in 20..40 {
                c.put(format!("r/{}", i % 4), i.to_string(), None)
                    .await
                    .expect("put");
            }
            c.put("r/end", "END", None).await.expect("put");
            let last = *seen.last().expect("some events");
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(last + 1);
            let mut ws = c.watch("r/", Some(opts)).await.expect("watch");
            ws.message().await.expect("created");
            let rest = collect_until(&mut ws, b"END").await;
            seen.extend(rest.iter().map(|(_, e)| e.rev));
            let want: Vec<i64> = (2..=42).collect();
            assert_eq!(
                seen, want,
                "{kind}: resumed history has a gap or a duplicate"
            );
        });
    }
}

/// A server killed with SIGKILL while a watcher and a lease are live: after
/// the restart the client resumes its watch from last + 1 and sees every
/// revision exactly once, and the lease still expires, its key's DELETE
/// arriving on the resumed watch.
#[test]
fn resume_after_kill9_with_a_live_lease() {
    for kind in target::differential_targets() {
        runtime().block_on(async move {
            let mut server = Server::start(kind);
            let mut c = client::connect(&server).await;
            let lease = c.lease_grant(3, None).await.expect("grant").id();
            let mut ws = c
                .watch("k/", Some(WatchOptions::new().with_prefix()))
                .await
                .expect("watch");
            ws.message().await.expect("created");
            c.put("k/leased", "L", Some(PutOptions::new().with_lease(lease)))
                .await
                .expect("put with lease");
            for i in 0..10 {
                c.put(format!("k/{i}"), i.to_string(), None)
                    .await
                    .expect("put");
            }
            let mut seen = read_revisions(&mut ws, 5).await;
            drop(ws);
            drop(c);

            server.kill9();
            server.restart();
            let mut c = client::connect(&server).await;
            let last = *seen.last().expect("some events");
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(last + 1);
            let mut ws = c.watch("k/", Some(opts)).await.expect("watch");
            ws.message().await.expect("created");
            c.put("k/end", "END", None).await.expect("put");
            let rest = collect_until(&mut ws, b"END").await;
            seen.extend(rest.iter().map(|(_, e)| e.rev));
            let end = *seen.last().expect("END seen");
            let want: Vec<i64> = (2..=end).collect();
            assert_eq!(seen, want, "{kind}: gap or duplicate across kill -9");

            // The lease survived the crash and still expires: its key goes
            // with a DELETE at the next revision.
            let deleted = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    let r = ws.message().await.expect("message").expect("response");
                    if let Some(e) = r.events().first() {
                        return (
                            e.event_type(),
                            e.kv().map(|kv| (kv.key().to_vec(), kv.mod_revision())),
                        );
                    }
                }
            })
            .await
            .expect("the leased key is deleted within 20 s");
            assert_eq!(
                deleted,
                (EventType::Delete, Some((b"k/leased".to_vec(), end + 1))),
                "{kind}: lease expiry after restart"
            );
        });
    }
}

/// RSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn thousand_watchers_on_one_prefix() {
    for kind in target::differential_targets() {
        runtime().block_on(async move {
            let server = Server::start(kind);
            let mut c = client::connect(&server).await;
            let watchers = 1000;
            let puts = 20;
            let mut streams = Vec::new();
            for _ in 0..watchers {
                let mut ws = c.watch("p/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
                ws.message().await.expect("created");
                streams.push(ws);
            }
            let readers: Vec<_> = streams
                .into_iter()
                .map(|mut ws| {
                    tokio::spawn(async move {
                        let mut revs = Vec::new();
                        let mut last_at = Instant::now();
                        while revs.len() < puts {
                            let r = match tokio::time::timeout(TIMEOUT, ws.message()).await {
                                Ok(Ok(Some(r))) => r,
                                other => panic!("watcher ended: {other:?}"),
                            };
                            last_at = Instant::now();
                            revs.extend(r.events().iter().filter_map(|e| e.kv().map(|kv| kv.mod_revision())));
                        }
                        (revs, last_at)
                    })
                })
                .collect();
            let t0 = Instant::now();
            for i in 0..puts {
                c.put(format!("p/{i}"), "v", None).await.expect("put");
            }
            let want: Vec<i64> = (2..2 + puts as i64).collect();
            let mut last = t0;
            for r in readers {
                let (revs, at) = r.await.expect("reader");
                assert_eq!(revs, want, "{kind}: a watcher missed events");
                last = last.max(at);
            }
            let secs = last.duration_since(t0).as_secs_f64();
            println!(
                "{kind}: {watchers} watchers x {puts} puts: all delivered in {:.0} ms ({:.0} events/s delivered), server RSS {:?} KiB",
                secs * 1000.0,
                (watchers * puts) as f64 / secs,
                server.pid().and_then(rss_kib)
            );
        });
    }
}

#[test]
fn slow_watcher_catches_up() {
    for kind in target::differential_targets() {
        runtime().block_on(async move {
            // At debug level Bramble logs its watchers' unsynced/synced transitions.
            let config = ServerConfig {
                log_level: "debug".to_string(),
                ..ServerConfig::default()
            };
            let server = Server::start_with(kind, config);
            let mut c = client::connect(&server).await;
            let mut slow = c.watch("s/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
            slow.message().await.expect("created");
            let rss_before = server.pid().and_then(rss_kib);
            // The slow watcher reads nothing while 4 writers write 4 MiB of values.
            let value = vec![b'v'; 4096];
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let endpoint = server.endpoint();
                    let value = value.clone();
                    tokio::spawn(async move {
                        let mut c = client::connect_endpoint(&endpoint).await;
                        for i in 0..256 {
                            c.put(format!("s/{w}/{i}"), value.clone(), None).await.expect("put");
                        }
                    })
                })
                .collect();
            let t0 = Instant::now();
            for w in writers {
                w.await.expect("writer");
            }
            let write_secs = t0.elapsed().as_secs_f64();
            let rss_after = server.pid().and_then(rss_kib);
            c.put("s/end", "END", None).await.expect("put");
            let got = collect_until(&mut slow, b"END").await;
            let revs: Vec<i64> = got.iter().map(|(_, e)| e.rev).collect();
            let want: Vec<i64> = (2..2 + 1025).collect();
            assert_eq!(revs, want, "{kind}: the slow watcher lost or repeated events");
            if kind == Kind::Bramble {
                let log = server.log();
                assert!(
                    log.contains("watcher fell behind: unsynced")
                        && log.contains("watcher caught up: synced"),
                    "the stalled watcher never went through the unsynced group"
                );
            }
            println!(
                "{kind}: 1024 puts of 4 KiB in {write_secs:.2}s with a stalled watcher; RSS {rss_before:?} -> {rss_after:?} KiB"
            );
        });
    }
}

/// A server process started with extra flags (the harness's command line is fixed), killed
/// on drop.
struct FlaggedServer {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl FlaggedServer {
    fn start(kind: Kind, extra: &[&str]) -> FlaggedServer {
        let dir = temp::dir("bramble-e2e-flagged-");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let bin = match kind {
            Kind::Bramble => tools::bramble_bin(),
            Kind::Etcd => tools::etcd_bin(),
        };
        let mut cmd = std::process::Command::new(bin);
        let child = process::server_command(&mut cmd, &dir.path().join("log"))
            .args(single_member_args(&dir.path().join("data"), client, peer))
            .args(extra)
            .spawn()
            .expect("spawn server");
        FlaggedServer {
            child,
            endpoint,
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(mut c) = client::try_connect_endpoint(&self.endpoint).await {
                if c.get("probe", None).await.is_ok() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FlaggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn periodic_progress_notify() {
    let mut seen: Vec<(Kind, Vec<String>)> = Vec::new();
    for kind in target::differential_targets() {
        let lines = runtime().block_on(async move {
            let server =
                FlaggedServer::start(kind, &["--experimental-watch-progress-notify-interval=1s"]);
            let mut c = server.client().await;
            c.put("n/a", "1", None).await.expect("put"); // 2
            let opts = WatchOptions::new().with_prefix().with_progress_notify();
            let mut ws = c.watch("n/", Some(opts)).await.expect("watch");
            let plain = WatchOptions::new().with_prefix();
            ws.watch("m/", Some(plain)).await.expect("watch");
            let mut lines = vec![next(&mut ws).await, next(&mut ws).await];
            // Only the progress_notify watcher (id 0) gets one, after about a second.
            let t0 = Instant::now();
            lines.push(next(&mut ws).await);
            let waited = t0.elapsed();
            assert!(
                waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
                "{kind}: progress notification after {waited:?}"
            );
            // An event, then (after a tick with an event, etcd skips one) progress again.
            c.put("n/b", "2", None).await.expect("put"); // 3
            lines.push(next(&mut ws).await);
            lines.push(next(&mut ws).await);
            lines
        });
        seen.push((kind, lines));
    }
    if let [(_, etcd), (_, bramble)] = seen.as_slice() {
        assert_eq!(
            etcd, bramble,
            "progress notifications differ (etcd, bramble)"
        );
    }
}

/// Watch fan-out measurement (not a pass/fail test): `watchers` streams on one prefix, one
/// writer making sequential puts whose values carry their send time; prints events/s
/// delivered and delivery latency p50/p99 for each target. Run with
/// `cargo test -p bramble-tests --test client_watch -- --ignored --nocapture fanout`
/// (and `BRAMBLE_BIN=target/release/bramble` for numbers worth quoting).
#[test]
#[ignore]
fn fanout_latency() {
    for watchers in [10usize, 1000] {
        for kind in target::differential_targets() {
            runtime().block_on(fanout(kind, watchers, 200));
        }
    }
}

async fn fanout(kind: Kind, watchers: usize, puts: usize) {
    let server = Server::start(kind);
    let mut c = client::connect(&server).await;
    let t0 = Instant::now();
    let mut readers = Vec::new();
    // Several connections, as many clients would have.
    let mut conns = Vec::new();
    for _ in 0..watchers.clamp(1, 10) {
        conns.push(client::connect(&server).await);
    }
    for i in 0..watchers {
        let conn = &mut conns[i % 10.min(watchers)];
        let mut ws = conn
            .watch("l/", Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        ws.message().await.expect("created");
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(puts);
            while lat.len() < puts {
                let r = match tokio::time::timeout(TIMEOUT, ws.message()).await {
                    Ok(Ok(Some(r))) => r,
                    other => panic!("watcher ended: {other:?}"),
                };
                let now = t0.elapsed().as_micros() as u64;
                for e in r.events() {
                    let sent: u64 = e
                        .kv()
                        .and_then(|kv| std::str::from_utf8(kv.value()).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(now);
                    lat.push(now.saturating_sub(sent));
                }
            }
            (lat, Instant::now())
        }));
    }
    let start = Instant::now();
    for i in 0..puts {
        let sent = t0.elapsed().as_micros() as u64;
        c.put(format!("l/{}", i % 50), sent.to_string(), None)
            .await
            .expect("put");
    }
    let mut all = Vec::new();
    let mut end = start;
    for r in readers {
        let (lat, at) = r.await.expect("reader");
        all.extend(lat);
        end = end.max(at);
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    let secs = end.duration_since(start).as_secs_f64();
    println!(
        "fanout {kind}: {watchers} watchers x {puts} puts: {:.0} events/s delivered, latency p50 {:.2} ms p99 {:.2} ms",
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}

/// SIGTERM with open watch streams: the server ends them and exits promptly (instead of
/// waiting out its connection drain timeout), and the client's stream ends with an error.
#[test]
fn shutdown_ends_open_watches() {
    for kind in target::differential_targets() {
        runtime().block_on(async move {
            let mut server = Server::start(kind);
            let mut c = client::connect(&server).await;
            let mut ws = c
                .watch("x", Some(WatchOptions::new().with_prefix()))
                .await
                .expect("watch");
            ws.message().await.expect("created");
            let t0 = Instant::now();
            // Panics if the process is still there after the bound. etcd exits by the
            // signal itself, Bramble with 0: not compared.
            let bound = server.stop_bound_with_open_streams();
            tokio::task::block_in_place(|| server.sigterm_within(bound));
            let ended = tokio::time::timeout(Duration::from_secs(5), ws.message()).await;
            assert!(
                matches!(ended, Ok(Err(_)) | Ok(Ok(None))),
                "{kind}: watch stream did not end: {ended:?}"
            );
            println!("{kind}: stopped in {:?} with an open watch", t0.elapsed());
        });
    }
}
