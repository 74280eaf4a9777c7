//! Behaviour of the public API: appends, reads, reopen, rollover, truncate,
//! purge, meta, group commit and concurrency. Crash and corruption handling
//! is in `crash_tests.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::fault::MemDisk;
use super::*;

/// Small segments so tests roll over; no fsync (durability has its own tests).
pub(crate) fn opts() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        sync: false,
        cache_bytes: 0,
        ..WalOptions::default()
    }
}

/// A payload that identifies its index and varies in length.
pub(crate) fn payload(i: u64) -> Bytes {
    Bytes::from(format!("entry-{i};").repeat((i % 7 + 1) as usize))
}

pub(crate) fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    range
        .map(|index| Record::Entry {
            index,
            payload: payload(index),
        })
        .collect()
}

/// Asserts the log holds exactly `first..=last` with the standard payloads.
pub(crate) fn check(wal: &Wal, first: u64, last: u64) {
    assert_eq!(wal.first_index(), Some(first));
    assert_eq!(wal.last_index(), Some(last));
    let got = wal.read(..).unwrap();
    assert_eq!(got.len() as u64, last - first + 1);
    for (k, (i, data)) in got.iter().enumerate() {
        assert_eq!(*i, first + k as u64);
        assert_eq!(data, &payload(*i), "payload of {i}");
    }
}

pub(crate) fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

#[test]
fn handle_is_clone_send_sync() {
    fn assert<T: Clone + Send + Sync + 'static>() {}
    assert::<Wal>();
    assert::<WalError>();
}

#[test]
fn empty_batch_is_a_durability_barrier() {
    let disk = MemDisk::new();
    disk.set_sync_delay(Duration::from_millis(2));
    let wal = Wal::open_in(
        disk.backend(),
        WalOptions {
            sync: true,
            ..opts()
        },
    )
    .unwrap();
    for i in 1..=20 {
        wal.submit(entries(i..=i), Box::new(|r| r.unwrap()))
            .unwrap();
    }
    wal.append_sync(Vec::new()).unwrap();
    check(
        &Wal::open_in(disk.crash_clean().backend(), opts()).unwrap(),
        1,
        20,
    );
}

#[test]
fn roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    assert!(wal.read(..).unwrap().is_empty());
    for chunk in 0..10 {
        wal.append_sync(entries(chunk * 10 + 1..=chunk * 10 + 10))
            .unwrap();
    }
    check(&wal, 1, 100);
    let mid = wal.read(40..=42).unwrap();
    assert_eq!(
        mid.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![40, 41, 42]
    );
    assert_eq!(wal.read(95..500).unwrap().len(), 6);
    assert!(wal.read(101..).unwrap().is_empty());
    assert!(wal.read(5..5).unwrap().is_empty());
}

#[test]
fn log_may_start_at_any_index_including_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    wal.append_sync(entries(0..=3)).unwrap();
    check(&wal, 0, 3);
    drop(wal);
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    check(&wal, 0, 3);
}

#[test]
fn reopen_after_clean_close() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(tmp.path(), opts()).unwrap();
        wal.append_sync(entries(1..=50)).unwrap();
        // Submitted but not waited for: a clean drop still writes it.
        wal.submit(entries(51..=60), Box::new(|r| r.unwrap()))
            .unwrap();
    }
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    check(&wal, 1, 60);
    assert!(matches!(
        wal.append_sync(entries(62..=62)),
        Err(WalError::NonContiguous {
            expected: 61,
            got: 62
        })
    ));
    wal.append_sync(entries(61..=70)).unwrap();
    drop(wal);
    check(&Wal::open(tmp.path(), opts()).unwrap(), 1, 70);
}

#[test]
fn segment_rollover() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 4096,
        ..opts()
    };
    let wal = Wal::open(tmp.path(), o.clone()).unwrap();
    for i in 1..=300 {
        wal.append_sync(entries(i..=i)).unwrap();
    }
    let stats = wal.stats();
    assert!(stats.segments_created >= 3, "{stats:?}");
    assert_eq!(segment_files(tmp.path()) as u64, stats.segments_created + 1);
    for f in std::fs::read_dir(tmp.path()).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().ends_with(".wal") {
            assert_eq!(f.metadata().unwrap().len(), 4096, "preallocated");
        }
    }
    check(&wal, 1, 300);
    drop(wal);
    check(&Wal::open(tmp.path(), o).unwrap(), 1, 300);
}

#[test]
fn truncate_after_then_reappend() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    wal.append_sync(entries(1..=10)).unwrap();
    wal.truncate_after(5).unwrap();
    assert_eq!(wal.last_index(), Some(5));
    assert!(wal.read(6..).unwrap().is_empty());
    assert!(matches!(
        wal.append_sync(entries(11..=11)),
        Err(WalError::NonContiguous { expected: 6, .. })
    ));
    let new: Vec<Record> = (6..=8)
        .map(|index| Record::Entry {
            index,
            payload: Bytes::from(format!("new-{index}")),
        })
        .collect();
    wal.append_sync(new).unwrap();
    // Truncating past the end is a no-op, not a hole.
    wal.truncate_after(100).unwrap();
    let expect = |wal: &Wal| {
        let got = wal.read(..).unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(got[4], (5, payload(5)));
        assert_eq!(got[5], (6, Bytes::from("new-6")));
        assert_eq!(got[7], (8, Bytes::from("new-8")));
    };
    expect(&wal);
    drop(wal);
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    expect(&wal);
    wal.append_sync(vec![Record::Entry {
        index: 9,
        payload: payload(9),
    }])
    .unwrap();
}

#[test]
fn truncate_and_reappend_in_one_batch_before_the_writer_runs() {
    let disk = MemDisk::new();
    disk.set_sync_delay(Duration::from_millis(20));
    let wal = Wal::open_in(
        disk.backend(),
        WalOptions {
            sync: true,
            ..opts()
        },
    )
    .unwrap();
    wal.submit(entries(1..=5), Box::new(|r| r.unwrap()))
        .unwrap();
    let mut batch = vec![Record::TruncateAfter { index: 2 }];
    batch.push(Record::Entry {
        index: 3,
        payload: Bytes::from_static(b"three'"),
    });
    wal.submit(batch, Box::new(|r| r.unwrap())).unwrap();
    // Visible at once, before either batch is durable.
    assert_eq!(
        wal.read(3..).unwrap(),
        vec![(3, Bytes::from_static(b"three'"))]
    );
    assert_eq!(wal.last_index(), Some(3));
    drop(wal);
    let wal = Wal::open_in(disk.backend(), opts()).unwrap();
    assert_eq!(
        wal.read(3..).unwrap(),
        vec![(3, Bytes::from_static(b"three'"))]
    );
    assert_eq!(wal.read(1..=2).unwrap()[1], (2, payload(2)));
}

#[test]
fn purge_deletes_old_segments_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 4096,
        ..opts()
    };
    let wal = Wal::open(tmp.path(), o.clone()).unwrap();
    // The vote lives in the first segment; purging it must carry it forward.
    wal.set_meta(META_VOTE, Bytes::from_static(b"term 3 for node 1"))
        .unwrap();
    for i in (1..=1000).step_by(10) {
        wal.append_sync(entries(i..=i + 9)).unwrap();
    }
    let before = segment_files(tmp.path());
    assert!(before > 10, "{before} segments");
    wal.purge_up_to(800).unwrap();
    let after = segment_files(tmp.path());
    assert!(after <= before / 2, "{before} -> {after} segments");
    assert_eq!(wal.stats().segments_deleted as usize, before - after);
    check(&wal, 801, 1000);
    assert!(wal.read(..=800).unwrap().is_empty());
    assert_eq!(wal.purged_index(), Some(800));
    // Purged entries cannot be truncated away again.
    assert!(matches!(
        wal.truncate_after(799),
        Err(WalError::TruncatePurged { .. })
    ));
    drop(wal);

    let wal = Wal::open(tmp.path(), o.clone()).unwrap();
    check(&wal, 801, 1000);
    assert_eq!(
        wal.meta(META_VOTE),
        Some(Bytes::from_static(b"term 3 for node 1"))
    );
    assert_eq!(wal.purged_index(), Some(800));
    // Purge everything, twice, and keep going.
    wal.purge_up_to(1000).unwrap();
    wal.purge_up_to(1000).unwrap();
    assert_eq!(wal.first_index(), None);
    wal.append_sync(entries(1001..=1005)).unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), o).unwrap();
    check(&wal, 1001, 1005);
    assert_eq!(
        wal.meta(META_VOTE),
        Some(Bytes::from_static(b"term 3 for node 1"))
    );
}

#[test]
fn purge_past_the_end_moves_the_next_index() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    wal.append_sync(entries(1..=10)).unwrap();
    wal.purge_up_to(500).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    assert!(matches!(
        wal.append_sync(entries(11..=11)),
        Err(WalError::NonContiguous { expected: 501, .. })
    ));
    drop(wal);
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    assert_eq!(wal.first_index(), None);
    wal.append_sync(entries(501..=502)).unwrap();
    check(&wal, 501, 502);
}

#[test]
fn meta_last_wins_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    assert_eq!(wal.meta(META_VOTE), None);
    for v in ["a", "bb", "ccc"] {
        wal.set_meta(META_VOTE, Bytes::from(v)).unwrap();
    }
    wal.append_sync(entries(1..=3)).unwrap();
    wal.set_meta(META_COMMITTED, Bytes::from_static(b"2"))
        .unwrap();
    wal.set_meta(META_COMMITTED, Bytes::from_static(b"3"))
        .unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    assert_eq!(wal.meta(META_VOTE), Some(Bytes::from("ccc")));
    assert_eq!(wal.meta(META_COMMITTED), Some(Bytes::from("3")));
    assert_eq!(wal.metas().len(), 2);
    check(&wal, 1, 3);
}

#[test]
fn invalid_batches_are_rejected_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    wal.append_sync(entries(1..=3)).unwrap();
    let mut bad = entries(4..=5);
    bad.push(Record::Entry {
        index: 7,
        payload: payload(7),
    });
    let called = Arc::new(AtomicU64::new(0));
    let c = called.clone();
    let res = wal.submit(
        bad,
        Box::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        }),
    );
    assert!(matches!(
        res,
        Err(WalError::NonContiguous {
            expected: 6,
            got: 7
        })
    ));
    assert_eq!(wal.last_index(), Some(3), "nothing of the batch applied");
    assert!(matches!(
        Wal::open(
            tempfile::tempdir().unwrap().path(),
            WalOptions {
                segment_size: 100,
                ..opts()
            }
        ),
        Err(WalError::InvalidOptions(_))
    ));
    drop(wal);
    assert_eq!(called.load(Ordering::SeqCst), 0);
    check(&Wal::open(tmp.path(), opts()).unwrap(), 1, 3);
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _wal = Wal::open(tmp.path(), opts()).unwrap();
    assert!(matches!(
        Wal::open(tmp.path(), opts()),
        Err(WalError::Locked { .. })
    ));
}

#[test]
fn blocking_call_from_a_callback_is_refused_not_deadlocked() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    let (tx, rx) = mpsc::channel();
    let w = wal.clone();
    wal.submit(
        entries(1..=1),
        Box::new(move |r| {
            r.unwrap();
            let _ = tx.send(w.append_sync(entries(2..=2)));
        }),
    )
    .unwrap();
    assert!(matches!(
        rx.recv().unwrap(),
        Err(WalError::CalledFromWriter)
    ));
    // Non-blocking submission from a callback is fine.
    let w = wal.clone();
    let (tx, rx) = mpsc::channel();
    wal.submit(
        entries(2..=2),
        Box::new(move |_| {
            let tx2 = tx.clone();
            w.submit(entries(3..=3), Box::new(move |r| tx2.send(r).unwrap()))
                .unwrap();
        }),
    )
    .unwrap();
    rx.recv().unwrap().unwrap();
    check(&wal, 1, 3);
}

/// 8 threads submit concurrently on a real directory with fsync on: every
/// callback completes, and batches share fdatasyncs.
#[test]
fn concurrent_submitters_share_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        tmp.path(),
        WalOptions {
            sync: true,
            ..opts()
        },
    )
    .unwrap();
    // Raft assigns indexes in one place; the lock stands in for that.
    let next = Arc::new(Mutex::new(1u64));
    let done = Arc::new(AtomicU64::new(0));
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 40;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (wal, next, done) = (wal.clone(), next.clone(), done.clone());
            s.spawn(move || {
                let (tx, rx) = mpsc::channel();
                let mut received = 0;
                for _ in 0..PER_THREAD {
                    {
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        let (done, tx) = (done.clone(), tx.clone());
                        wal.submit(
                            entries(i..=i),
                            Box::new(move |r| {
                                r.unwrap();
                                done.fetch_add(1, Ordering::SeqCst);
                                let _ = tx.send(());
                            }),
                        )
                        .unwrap();
                    }
                    // Half the threads wait each time, half pipeline.
                    if t % 2 == 0 {
                        rx.recv().unwrap();
                        received += 1;
                    }
                }
                while received < PER_THREAD {
                    rx.recv().unwrap();
                    received += 1;
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    assert_eq!(done.load(Ordering::SeqCst), total);
    let stats = wal.stats();
    assert_eq!(stats.submissions, total);
    assert!(stats.syncs < total, "{stats:?}");
    assert!(stats.groups < total, "{stats:?}");
    check(&wal, 1, total);
}

/// With a slow sync (an SD card), blocking submitters from 8 threads pile up
/// behind each sync and share the next one.
#[test]
fn slow_sync_groups_blocking_submitters() {
    let disk = MemDisk::new();
    disk.set_sync_delay(Duration::from_millis(5));
    let wal = Wal::open_in(
        disk.backend(),
        WalOptions {
            sync: true,
            ..opts()
        },
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let wal = wal.clone();
            s.spawn(move || {
                for _ in 0..10 {
                    wal.set_meta(10 + t, Bytes::from(vec![t; 8])).unwrap();
                }
            });
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.submissions, 80);
    assert!(stats.syncs <= 40, "{stats:?}");
    assert_eq!(disk.faults.syncs.load(Ordering::SeqCst), stats.syncs);
}

#[test]
fn reads_during_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        tmp.path(),
        WalOptions {
            segment_size: 16 * 1024,
            cache_bytes: 2048,
            ..opts()
        },
    )
    .unwrap();
    const N: u64 = 3000;
    std::thread::scope(|s| {
        let writer = wal.clone();
        s.spawn(move || {
            for i in (1..=N).step_by(5) {
                writer
                    .submit(entries(i..=i + 4), Box::new(|r| r.unwrap()))
                    .unwrap();
            }
        });
        for r in 0..2u64 {
            let wal = wal.clone();
            s.spawn(move || {
                let mut reads = 0;
                while wal.last_index() != Some(N) || reads < 50 {
                    let Some(last) = wal.last_index() else {
                        continue;
                    };
                    let lo = (last * (r + 1) / 3).max(1);
                    let got = wal.read(lo..=last).unwrap();
                    assert_eq!(got.len() as u64, last - lo + 1);
                    for (i, data) in got {
                        assert_eq!(data, payload(i));
                    }
                    reads += 1;
                }
            });
        }
    });
    check(&wal, 1, N);
}

#[test]
fn bytes_written_per_entry_is_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        tmp.path(),
        WalOptions {
            sync: false,
            ..Default::default()
        },
    )
    .unwrap();
    let base = wal.stats().bytes_written;
    let batch: Vec<Record> = (1..=1000)
        .map(|index| Record::Entry {
            index,
            payload: Bytes::from(vec![7u8; 256]),
        })
        .collect();
    wal.append_sync(batch).unwrap();
    let s = wal.stats();
    assert_eq!(s.entries_written, 1000);
    let per_entry = (s.bytes_written - base) / 1000;
    assert!(
        per_entry <= 256 + 11,
        "{per_entry} bytes per 256-byte entry"
    );
}
