//! Raft snapshots: write, install, refuse bad streams, concurrency with the applier and
//! with readers.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_api::mvccpb::Event;
use bramble_testkit::rng::Rng;

use super::super::snapshot::verify_snapshot;
use super::super::{LeaseInfo, SnapshotInfo};
use super::*;

/// Everything a client or the raft layer can observe of a store.
#[derive(Debug, PartialEq)]
struct State {
    applied: (u64, u64),
    current: i64,
    compact: i64,
    membership: Option<Vec<u8>>,
    /// The whole key space at every readable revision.
    dumps: Vec<(i64, Vec<KeyValue>)>,
    leases: Vec<LeaseInfo>,
    events: Vec<Event>,
}

fn state(s: &MvccStore) -> State {
    let current = s.current_revision();
    let compact = s.compact_revision();
    let first = compact.max(1);
    let dumps = (first..=current)
        .map(|r| {
            let mut req = range("\0", "\0");
            req.revision = r;
            (r, s.range(&req).unwrap().kvs)
        })
        .collect();
    let leases = s
        .leases()
        .unwrap()
        .into_iter()
        .map(|(id, _)| s.lease(id).unwrap().unwrap())
        .collect();
    State {
        applied: s.applied(),
        current,
        compact,
        membership: s.raft_membership().unwrap(),
        dumps,
        leases,
        events: s.events(first, usize::MAX).unwrap().0,
    }
}

/// `a` and `b` hold the same state, down to the in-memory index and lease table.
fn assert_same(a: &MvccStore, b: &MvccStore) {
    assert_eq!(state(a), state(b));
    assert!(a.index_snapshot().same_as(&b.index_snapshot()));
    assert_eq!(a.lease_table_snapshot(), b.lease_table_snapshot());
}

fn put_lease(s: &TestStore, key: &str, value: &str, lease: i64) {
    let mut p = put(key, value);
    p.lease = lease;
    assert!(matches!(s.apply(put_cmd(p)), ApplyResult::Put(_)));
}

fn membership(s: &TestStore, blob: &[u8]) {
    let (index, term) = s.store.applied();
    s.store
        .apply_noop(index + 1, term.max(1), Some(blob))
        .unwrap();
}

/// Puts, deletes, txns, leases with keys, a revoke, a membership, two compactions.
fn history(s: &TestStore, tag: &str) {
    membership(s, format!("members-{tag}-1").as_bytes());
    for i in 0..40 {
        s.put(&format!("{tag}{}", i % 9), &format!("v{i}"));
        if i % 6 == 0 {
            s.del(&format!("{tag}{}", i % 4), "");
        }
        if i % 10 == 3 {
            s.txn(TxnRequest {
                compare: vec![cmp(
                    &format!("{tag}1"),
                    "",
                    CompareTarget::Version,
                    CompareResult::Greater,
                    0,
                )],
                success: vec![op_put("t", &i.to_string()), op_del(&format!("{tag}5"), "")],
                failure: vec![op_put("f", &i.to_string())],
            })
            .unwrap();
        }
    }
    s.grant(10, 60).unwrap();
    s.grant(-4, 5).unwrap();
    s.grant(11, 30).unwrap();
    put_lease(s, &format!("{tag}-l1"), "x", 10);
    put_lease(s, &format!("{tag}-l2"), "y", 10);
    put_lease(s, &format!("{tag}-l3"), "z", -4);
    put_lease(s, &format!("{tag}-gone"), "z", 11);
    s.compact(s.store.current_revision() - 30).unwrap();
    s.revoke(11).unwrap();
    membership(s, format!("members-{tag}-2").as_bytes());
    s.put(&format!("{tag}-after"), "1");
    s.compact(s.store.current_revision() - 20).unwrap();
    s.put(&format!("{tag}-last"), "1");
}

fn snapshot_of(s: &MvccStore) -> (Vec<u8>, SnapshotInfo) {
    let mut out = Vec::new();
    let info = s.write_snapshot(&mut out).unwrap();
    assert_eq!(info.bytes, out.len() as u64);
    (out, info)
}

#[test]
fn round_trip_into_a_fresh_store_and_over_other_data() {
    let src = TestStore::new();
    history(&src, "k");
    let (bytes, info) = snapshot_of(&src.store);
    assert_eq!(info.applied, src.store.applied());
    assert_eq!(info.revision, src.store.current_revision());
    assert_eq!(info.compact_revision, src.store.compact_revision());
    assert_eq!(info.membership.as_deref(), Some(&b"members-k-2"[..]));
    assert_eq!(verify_snapshot(&mut bytes.as_slice()).unwrap(), info);

    let fresh = TestStore::new();
    assert_eq!(
        fresh.store.install_snapshot(&mut bytes.as_slice()).unwrap(),
        info
    );
    assert_same(&src.store, &fresh.store);

    // A store with its own, longer history (and more revisions than the snapshot).
    let other = TestStore::new();
    history(&other, "o");
    for i in 0..50 {
        other.put("o-more", &i.to_string());
    }
    other.grant(99, 7).unwrap();
    assert!(other.store.current_revision() > src.store.current_revision());
    assert_eq!(
        other.store.install_snapshot(&mut bytes.as_slice()).unwrap(),
        info
    );
    assert_same(&src.store, &other.store);
    assert_eq!(other.store.lease(99).unwrap(), None);

    // Reopening an installed store gives the same state.
    let fresh = fresh.reopen();
    let other = other.reopen();
    assert_same(&src.store, &fresh.store);
    assert_same(&src.store, &other.store);

    // The applier goes on from the snapshot: the same entries give the same results.
    for s in [&src, &fresh, &other] {
        s.put("k-new", "1");
        s.grant(12, 9).unwrap();
        put_lease(s, "k-leased", "1", 12);
        s.compact(s.store.current_revision() - 2).unwrap();
        s.revoke(10).unwrap();
        s.store.checkpoint().unwrap();
    }
    assert_same(&src.store, &fresh.store);
    assert_same(&src.store, &other.store);

    // A snapshot of the installed store is the same stream.
    assert_eq!(snapshot_of(&other.store).0, snapshot_of(&src.store).0);
}

#[test]
fn empty_store_round_trip_through_files() {
    let src = TestStore::new();
    let path = src.dir.path().join("snap");
    let info = src.store.write_snapshot_file(&path).unwrap();
    assert_eq!(
        (info.applied, info.revision, info.compact_revision),
        ((0, 0), 1, -1)
    );
    assert_eq!(info.membership, None);
    let dst = TestStore::new();
    dst.put("x", "1");
    assert_eq!(dst.store.install_snapshot_file(&path).unwrap(), info);
    assert_same(&src.store, &dst.store);
    let dst = dst.reopen();
    assert_same(&src.store, &dst.store);
    assert!(matches!(
        dst.store
            .install_snapshot_file(&src.dir.path().join("missing")),
        Err(MvccError::BadSnapshot(_))
    ));
}

#[test]
fn an_unfinished_compaction_in_the_snapshot_is_finished_on_install() {
    let src = TestStore::new();
    history(&src, "k");
    let compact = src.store.compact_revision();
    // As if the snapshot had been taken between two deletion chunks.
    {
        let txn = src.store.db().begin_write().unwrap();
        {
            let mut meta = txn.open_table(super::super::schema::META).unwrap();
            super::super::schema::write_compact(
                &mut meta,
                super::super::schema::META_FINISHED_COMPACT,
                compact - 5,
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    let (bytes, info) = snapshot_of(&src.store);
    assert_eq!(info.compact_revision, compact);
    let dst = TestStore::new();
    dst.store.install_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(dst.store.compact_revision(), compact);
    assert_eq!(state(&dst.store), state(&src.store));
    let dst = dst.reopen();
    assert_eq!(state(&dst.store), state(&src.store));
}

#[test]
fn a_bad_snapshot_is_refused_and_changes_nothing() {
    let src = TestStore::new();
    history(&src, "k");
    let (bytes, _) = snapshot_of(&src.store);
    let dst = TestStore::new();
    history(&dst, "d");
    let before = state(&dst.store);
    let index = dst.store.index_snapshot();

    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [
        0,
        7,
        8,
        12,
        13,
        100,
        bytes.len() / 2,
        bytes.len() - 13,
        bytes.len() - 1,
    ] {
        bad.push((format!("truncated to {len}"), bytes[..len].to_vec()));
    }
    for at in [
        0,
        9,
        11,
        12,
        40,
        bytes.len() / 3,
        bytes.len() - 10,
        bytes.len() - 1,
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x20;
        bad.push((format!("flipped byte {at}"), b));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    bad.push(("a byte after the trailer".into(), longer));
    for (what, b) in &bad {
        match dst.store.install_snapshot(&mut b.as_slice()) {
            Err(MvccError::BadSnapshot(m)) => assert!(!m.is_empty()),
            other => panic!("{what}: {other:?}"),
        }
        assert!(matches!(
            verify_snapshot(&mut b.as_slice()),
            Err(MvccError::BadSnapshot(_))
        ));
    }
    assert_eq!(state(&dst.store), before);
    assert!(dst.store.index_snapshot().same_as(&index));

    // Still usable, and a good snapshot still installs afterwards.
    dst.put("d-more", "1");
    let dst = dst.reopen();
    assert_eq!(dst.get("d-more").unwrap().value, b"1");
    dst.store.install_snapshot(&mut bytes.as_slice()).unwrap();
    assert_same(&src.store, &dst.store);
}

/// Builds a stream by hand from the documented format.
fn handmade(rows: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
    let mut b = b"BRAMSNAP".to_vec();
    b.extend_from_slice(&1u32.to_be_bytes());
    for (tag, k, v) in rows {
        b.push(*tag);
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k);
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    }
    b.push(0xff);
    b.extend_from_slice(&(rows.len() as u64).to_be_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn an_intact_stream_with_bad_content_is_refused() {
    use super::super::revision::Revision;
    use super::super::schema::{encode_kv, SCHEMA_VERSION};
    let version = SCHEMA_VERSION.to_be_bytes();
    let rev = Revision::new(2, 0).to_key(false);
    let kv = encode_kv(&KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: b"1".to_vec(),
        lease: 0,
    });
    let wrong_mod = encode_kv(&KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 7,
        version: 1,
        value: b"1".to_vec(),
        lease: 0,
    });
    let current = 2u64.to_be_bytes();
    let good = handmade(&[
        (1, b"current_revision", &current),
        (1, b"schema_version", &version),
        (4, rev.as_slice(), &kv),
    ]);
    let dst = TestStore::new();
    dst.put("x", "1");
    let before = state(&dst.store);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no schema version", handmade(&[(4, rev.as_slice(), &kv)])),
        (
            "revision beyond the current one",
            handmade(&[(1, b"schema_version", &version), (4, rev.as_slice(), &kv)]),
        ),
        (
            "undecodable value",
            handmade(&[
                (1, b"current_revision", &current),
                (1, b"schema_version", &version),
                (4, rev.as_slice(), &[0xff, 0xff]),
            ]),
        ),
        (
            // The head (key, create revision, version, lease) decodes; the value field
            // has the wrong wire type (a fuzz finding: installed, then every range failed).
            "value field of the wrong wire type",
            handmade(&[
                (1, b"current_revision", &current),
                (1, b"schema_version", &version),
                (
                    4,
                    rev.as_slice(),
                    &[
                        0x0a, 0x01, b'a', 0x29, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x02, 0x20, 0x01,
                    ],
                ),
            ]),
        ),
        (
            "mod revision not the row's",
            handmade(&[
                (1, b"current_revision", &current),
                (1, b"schema_version", &version),
                (4, rev.as_slice(), &wrong_mod),
            ]),
        ),
        (
            "bad revision key",
            handmade(&[(1, b"schema_version", &version), (4, b"short", &kv)]),
        ),
        (
            "a row twice",
            handmade(&[
                (1, b"schema_version", &version),
                (1, b"schema_version", &version),
            ]),
        ),
        (
            "a short meta value",
            handmade(&[(1, b"schema_version", b"1")]),
        ),
        ("unknown table", handmade(&[(9, b"k", b"v")])),
    ];
    for (what, b) in &cases {
        match dst.store.install_snapshot(&mut b.as_slice()) {
            Err(MvccError::BadSnapshot(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(state(&dst.store), before, "{what}");
    }
    let info = dst.store.install_snapshot(&mut good.as_slice()).unwrap();
    assert_eq!((info.applied, info.revision, info.rows), ((0, 0), 2, 3));
    assert_eq!(dst.get("a").unwrap().value, b"1");
    assert_eq!(dst.get("x"), None);
}

/// Passes writes through, but holds the first one until `gate` returns.
struct GatedWriter<F: FnMut()> {
    out: Vec<u8>,
    gate: Option<F>,
}

impl<F: FnMut()> Write for GatedWriter<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(mut gate) = self.gate.take() {
            gate();
        }
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Entry i puts k{i % 50} = i: a snapshot at applied index n holds revision n + 1 and
/// the last such put of each key.
fn numbered_put(i: u64) -> Command {
    put_cmd(put(&format!("k{:02}", i % 50), &i.to_string()))
}

fn assert_consistent_numbered(s: &MvccStore, applied: u64) {
    assert_eq!(s.current_revision(), applied as i64 + 1);
    let kvs = s.range(&range("\0", "\0")).unwrap().kvs;
    assert_eq!(kvs.len(), applied.min(50) as usize);
    for kv in kvs {
        let j: u64 = std::str::from_utf8(&kv.key[1..]).unwrap().parse().unwrap();
        let last = applied - (applied + 50 - j) % 50;
        assert_eq!(
            kv.value,
            last.to_string().into_bytes(),
            "key k{j:02} at {applied}"
        );
    }
}

#[test]
fn a_snapshot_is_consistent_while_the_applier_goes_on() {
    let src = Arc::new(TestStore::new());
    for i in 1..=500 {
        src.store.apply(i, 1, &numbered_put(i)).unwrap();
    }
    let progress = Arc::new(AtomicU64::new(500));
    let stop = Arc::new(AtomicBool::new(false));
    let applier = {
        let (src, progress, stop) = (src.clone(), progress.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 501;
            while !stop.load(Ordering::SeqCst) {
                src.store.apply(i, 1, &numbered_put(i)).unwrap();
                progress.store(i, Ordering::SeqCst);
                if i % 100 == 0 {
                    src.store.checkpoint().unwrap();
                }
                i += 1;
            }
        })
    };
    let mut snaps = Vec::new();
    for _ in 0..3 {
        // The stream is held up until the applier has applied 50 more entries: it
        // never waits for the stream.
        let p = progress.clone();
        let mut out = GatedWriter {
            out: Vec::new(),
            gate: Some(move || {
                let start = p.load(Ordering::SeqCst);
                wait_for("the applier", || p.load(Ordering::SeqCst) >= start + 50);
            }),
        };
        let info = src.store.write_snapshot(&mut out).unwrap();
        assert!(info.applied.0 < progress.load(Ordering::SeqCst));
        snaps.push((out.out, info));
    }
    stop.store(true, Ordering::SeqCst);
    applier.join().unwrap();
    for (bytes, info) in snaps {
        assert_eq!(info.revision, info.applied.0 as i64 + 1);
        let dst = TestStore::new();
        dst.store.install_snapshot(&mut bytes.as_slice()).unwrap();
        assert_eq!(dst.store.applied(), info.applied);
        assert_consistent_numbered(&dst.store, info.applied.0);
        let dst = dst.reopen();
        assert_consistent_numbered(&dst.store, info.applied.0);
    }
}

#[test]
fn readers_see_one_state_or_the_other_across_installs() {
    // Two different states, each with keys a and b always written together.
    let make = |tag: &str, n: usize| {
        let s = TestStore::new();
        for i in 0..n {
            s.txn(TxnRequest {
                success: vec![
                    op_put("a", &format!("{tag}{i}")),
                    op_put("b", &format!("{tag}{i}")),
                ],
                ..Default::default()
            })
            .unwrap();
            s.put(&format!("noise{}", i % 5), tag);
        }
        s.compact(s.store.current_revision() - 7).unwrap();
        snapshot_of(&s.store).0
    };
    let snaps = [make("A", 120), make("B", 45)];
    let dst = Arc::new(TestStore::new());
    dst.store
        .install_snapshot(&mut snaps[0].as_slice())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for t in 0..3i64 {
        let (dst, stop) = (dst.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = dst.range(range("a", "c")).unwrap();
                assert_eq!(r.kvs.len(), 2);
                assert_eq!(r.kvs[0].value, r.kvs[1].value, "a mixed read");
                assert_eq!(r.kvs[0].mod_revision, r.kvs[1].mod_revision);
                let mut h = range("a", "c");
                h.revision = r.header.unwrap().revision - 1 - t;
                match dst.range(h) {
                    Ok(r) => assert_eq!(r.kvs[0].value, r.kvs[1].value, "a mixed old read"),
                    Err(MvccError::Compacted | MvccError::FutureRevision) => {}
                    Err(e) => panic!("historical read: {e}"),
                }
                match dst.store.events(dst.store.compact_revision().max(1), 1000) {
                    Ok(_) | Err(MvccError::Compacted) => {}
                    Err(e) => panic!("events: {e}"),
                }
                reads += 1;
            }
            reads
        }));
    }
    for i in 0..40 {
        dst.store
            .install_snapshot(&mut snaps[i % 2].as_slice())
            .unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn random_histories_round_trip() {
    for seed in 1..=12u64 {
        let mut rng = Rng::from_state(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let src = TestStore::new();
        let steps = rng.below(150);
        for _ in 0..steps {
            let key = format!("k{}", rng.below(12));
            match rng.below(10) {
                0..=4 => {
                    let mut p = put(&key, &rng.below(1000).to_string());
                    if rng.below(3) == 0 {
                        p.lease = rng.below(4) as i64 + 1;
                    }
                    // A put naming a lease that does not exist fails deterministically.
                    src.apply(put_cmd(p));
                }
                5 => {
                    src.del(&key, &format!("k{}", rng.below(12)));
                }
                6 => {
                    let _ = src.grant(rng.below(4) as i64 + 1, 10);
                }
                7 => {
                    let _ = src.revoke(rng.below(4) as i64 + 1);
                }
                8 => {
                    let rev = rng.below(src.store.current_revision() as u64 + 1) as i64;
                    let _ = src.compact(rev);
                }
                _ => membership(&src, &rng.below(u64::MAX).to_be_bytes()),
            }
        }
        let (bytes, info) = snapshot_of(&src.store);
        assert_eq!(verify_snapshot(&mut bytes.as_slice()).unwrap(), info);
        let dst = TestStore::new();
        if rng.below(2) == 0 {
            history(&dst, "d");
        }
        dst.store.install_snapshot(&mut bytes.as_slice()).unwrap();
        assert_same(&src.store, &dst.store);
        let dst = dst.reopen();
        assert_same(&src.store, &dst.store);
    }
}

#[test]
fn a_saved_file_written_in_one_pass_verifies() {
    let s = TestStore::new();
    history(&s, "k");
    let (stream, info) = snapshot_of(&s.store);
    let mut file = Vec::new();
    let saved = s
        .store
        .begin_snapshot()
        .unwrap()
        .write_saved(&mut file)
        .unwrap();
    assert_eq!(saved.file_bytes, file.len() as u64);
    assert_eq!(file.len() % 512, 32, "etcdctl's length rule");
    assert_eq!(&file[..stream.len()], &stream[..], "the same stream inside");
    let verified =
        super::super::verify_saved_snapshot(&mut file.as_slice(), file.len() as u64).unwrap();
    assert_eq!(verified, saved);
    assert_eq!(verified.stream, info);
}
