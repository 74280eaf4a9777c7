//! Crashes, torn writes and corruption: what `open` must repair and what it
//! must refuse. Files are edited directly on a real directory, and crashes
//! are simulated with the fault-injecting disk in `fault.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::fault::MemDisk;
use super::record::{self, Decoded};
use super::segment::SEGMENT_HEADER_LEN;
use super::tests::{check, entries, opts, payload};
use super::*;

/// Segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// (offset, size) of each record in a segment.
fn records(data: &[u8]) -> Vec<(usize, usize)> {
    let mut off = SEGMENT_HEADER_LEN as usize;
    let mut out = Vec::new();
    while let Decoded::Record(_, size) = record::decode(&data[off..]) {
        out.push((off, size));
        off += size;
    }
    out
}

/// A WAL with entries 1..=n in one segment, closed cleanly; its segment.
fn one_segment(n: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    for i in 1..=n {
        wal.append_sync(entries(i..=i)).unwrap();
    }
    drop(wal);
    let segs = segments(tmp.path());
    assert_eq!(segs.len(), 1);
    (tmp, segs[0].clone())
}

fn open_err(dir: &Path) -> (PathBuf, u64, String) {
    match Wal::open(dir, opts()) {
        Err(WalError::Corruption {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("corrupt wal opened"),
    }
}

#[test]
fn torn_tail_at_every_byte_offset_is_truncated() {
    let (tmp, seg) = one_segment(20);
    let orig = std::fs::read(&seg).unwrap();
    let &(at, len) = records(&orig).last().unwrap();
    for fill in [0u8, 0x5a] {
        for k in 0..len {
            // The first k bytes of the last record reached the disk; the
            // rest is zeros (preallocated) or garbage.
            let mut d = orig.clone();
            d[at + k..at + len].fill(fill);
            std::fs::write(&seg, &d).unwrap();
            let wal =
                Wal::open(tmp.path(), opts()).unwrap_or_else(|e| panic!("k={k} fill={fill}: {e}"));
            check(&wal, 1, 19);
            wal.append_sync(entries(20..=20)).unwrap();
            drop(wal);
            check(&Wal::open(tmp.path(), opts()).unwrap(), 1, 20);
        }
    }
}

#[test]
fn crc_flip_in_the_tail_record_drops_only_it() {
    let (tmp, seg) = one_segment(10);
    let mut d = std::fs::read(&seg).unwrap();
    let &(at, len) = records(&d).last().unwrap();
    d[at + len - 1] ^= 0x01;
    std::fs::write(&seg, &d).unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    check(&wal, 1, 9);
    // The stale bytes were zeroed: after a longer append and a reopen no
    // leftovers of the old record show up.
    wal.append_sync(entries(10..=12)).unwrap();
    drop(wal);
    check(&Wal::open(tmp.path(), opts()).unwrap(), 1, 12);
}

#[test]
fn corruption_in_the_middle_is_refused_with_file_and_offset() {
    let (tmp, seg) = one_segment(20);
    let mut d = std::fs::read(&seg).unwrap();
    let (at, len) = records(&d)[4];
    d[at + len / 2] ^= 0x40;
    std::fs::write(&seg, &d).unwrap();
    let (path, offset, reason) = open_err(tmp.path());
    assert_eq!(path, seg);
    assert_eq!(offset, at as u64);
    assert!(
        reason.contains("crc mismatch") && reason.contains("valid record follows"),
        "{reason}"
    );
    let msg = Wal::open(tmp.path(), opts()).unwrap_err().to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&format!("offset {at}")),
        "{msg}"
    );
}

#[test]
fn zeroed_length_before_valid_records_is_refused() {
    let (tmp, seg) = one_segment(20);
    let mut d = std::fs::read(&seg).unwrap();
    let (at, _) = records(&d)[10];
    d[at..at + 4].fill(0);
    std::fs::write(&seg, &d).unwrap();
    let (_, offset, reason) = open_err(tmp.path());
    assert_eq!(offset, at as u64);
    assert!(reason.contains("zero length"), "{reason}");
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 4096,
        ..opts()
    };
    let wal = Wal::open(tmp.path(), o).unwrap();
    wal.append_sync(entries(1..=200)).unwrap();
    drop(wal);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);
    // A torn-looking last record, but the segment is not the last one.
    let mut d = std::fs::read(&segs[0]).unwrap();
    let &(at, len) = records(&d).last().unwrap();
    d[at + len - 1] ^= 0x01;
    std::fs::write(&segs[0], &d).unwrap();
    let (path, offset, reason) = open_err(tmp.path());
    assert_eq!((path, offset), (segs[0].clone(), at as u64));
    assert!(reason.contains("not the last"), "{reason}");
    d[at + len - 1] ^= 0x01;
    std::fs::write(&segs[0], &d).unwrap();
    Wal::open(tmp.path(), opts()).unwrap();

    // A lost segment in the middle.
    std::fs::remove_file(&segs[1]).unwrap();
    let (path, _, reason) = open_err(tmp.path());
    assert_eq!(path, segs[2]);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn bad_segment_header_is_refused() {
    let (tmp, seg) = one_segment(3);
    let mut d = std::fs::read(&seg).unwrap();
    d[3] ^= 0xff;
    std::fs::write(&seg, &d).unwrap();
    let (path, offset, reason) = open_err(tmp.path());
    assert_eq!((path, offset), (seg, 0));
    assert!(reason.contains("magic"), "{reason}");
}

#[test]
fn unfinished_segment_creation_is_cleaned_up() {
    let (tmp, _) = one_segment(3);
    let stray = tmp.path().join("0000000000000002-0000000000000004.wal.tmp");
    std::fs::write(&stray, b"half a header").unwrap();
    let wal = Wal::open(tmp.path(), opts()).unwrap();
    check(&wal, 1, 3);
    assert!(!stray.exists());
}

/// Acknowledged writes survive a process that dies without shutting the WAL
/// down (real files: the handle is leaked and the files copied as they are).
#[test]
fn forgotten_handle_keeps_acknowledged_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 8192,
        sync: true,
        cache_bytes: 0,
        ..WalOptions::default()
    };
    let wal = Wal::open(tmp.path(), o.clone()).unwrap();
    for i in (1..=100).step_by(4) {
        wal.append_sync(entries(i..=i + 3)).unwrap();
    }
    wal.set_meta(META_VOTE, Bytes::from_static(b"v")).unwrap();
    wal.submit(entries(101..=110), Box::new(|_| {})).unwrap();
    std::mem::forget(wal);
    let copy = tempfile::tempdir().unwrap();
    for seg in segments(tmp.path()) {
        std::fs::copy(&seg, copy.path().join(seg.file_name().unwrap())).unwrap();
    }
    let wal = Wal::open(copy.path(), o).unwrap();
    let last = wal.last_index().unwrap();
    assert!(last >= 100);
    check(&wal, 1, last);
    assert_eq!(wal.meta(META_VOTE), Some(Bytes::from_static(b"v")));
}

/// Tiny deterministic PRNG for the crash schedule.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Power cuts at random moments, with random amounts of unsynced data
/// reaching the disk and the last write torn: after reopening, everything
/// acknowledged is there, and the log is contiguous and intact.
#[test]
fn power_cut_keeps_everything_acknowledged() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let disk = MemDisk::new();
        // A slow sync keeps a backlog of unsynced writes for the cut to hit.
        disk.set_sync_delay(std::time::Duration::from_micros(100 + rng.below(400)));
        let o = WalOptions {
            segment_size: 4096,
            sync: true,
            cache_bytes: 0,
            ..WalOptions::default()
        };
        let wal = Wal::open_in(disk.backend(), o.clone()).unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let acked_vote = Arc::new(AtomicU64::new(0));
        let acked_purge = Arc::new(AtomicU64::new(0));
        let mut next = 1;
        let mut max_purge = 0;
        let batches = 10 + rng.below(60);
        for b in 0..batches {
            let n = 1 + rng.below(5);
            let mut recs = entries(next..=next + n - 1);
            next += n;
            let last = next - 1;
            let vote = (rng.below(3) == 0).then_some(b + 1);
            if let Some(v) = vote {
                recs.push(Record::Meta {
                    key: META_VOTE,
                    value: Bytes::from(v.to_le_bytes().to_vec()),
                });
            }
            let purge = (rng.below(8) == 0 && last > 20).then(|| last - 10);
            if let Some(p) = purge {
                recs.push(Record::PurgeUpTo { index: p });
                max_purge = p;
            }
            let (a, av, ap) = (acked.clone(), acked_vote.clone(), acked_purge.clone());
            wal.submit(
                recs,
                Box::new(move |r| {
                    r.unwrap();
                    a.fetch_max(last, Ordering::SeqCst);
                    if let Some(v) = vote {
                        av.fetch_max(v, Ordering::SeqCst);
                    }
                    if let Some(p) = purge {
                        ap.fetch_max(p, Ordering::SeqCst);
                    }
                }),
            )
            .unwrap();
            if rng.below(2) == 0 {
                std::thread::sleep(std::time::Duration::from_micros(rng.below(300)));
            }
        }
        // Read the acknowledgements before the cut: all of them were synced.
        let (acked, acked_vote, acked_purge) = (
            acked.load(Ordering::SeqCst),
            acked_vote.load(Ordering::SeqCst),
            acked_purge.load(Ordering::SeqCst),
        );
        let image = disk.crash(|_, ops| {
            let whole = rng.below(ops as u64 + 1) as usize;
            (whole, rng.below(200) as usize)
        });
        std::mem::forget(wal);

        let wal =
            Wal::open_in(image.backend(), o.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let last = wal
            .last_index()
            .unwrap_or(0)
            .max(wal.purged_index().unwrap_or(0));
        assert!(
            last >= acked,
            "seed {seed}: last {last} < acknowledged {acked}"
        );
        assert!(last < next, "seed {seed}");
        if let Some(first) = wal.first_index() {
            assert!(first <= max_purge + 1, "seed {seed}");
            check(&wal, first, wal.last_index().unwrap());
        }
        assert!(
            wal.purged_index().unwrap_or(0) >= acked_purge,
            "seed {seed}"
        );
        let vote = wal.meta(META_VOTE).map(|v| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            u64::from_le_bytes(b)
        });
        assert!(
            vote.unwrap_or(0) >= acked_vote,
            "seed {seed}: vote {vote:?} < {acked_vote}"
        );
        // And it keeps working.
        let from = wal.last_index().map_or(last + 1, |l| l + 1);
        wal.append_sync(entries(from..=from + 2)).unwrap();
    }
}

#[test]
fn a_write_that_stops_half_way_poisons_and_recovers() {
    let disk = MemDisk::new();
    let o = WalOptions {
        sync: true,
        ..opts()
    };
    let wal = Wal::open_in(disk.backend(), o.clone()).unwrap();
    wal.append_sync(entries(1..=10)).unwrap();
    disk.fail_writes_after(25);
    assert!(matches!(
        wal.append_sync(entries(11..=20)),
        Err(WalError::Io { .. })
    ));
    assert!(matches!(
        wal.append_sync(entries(21..=21)),
        Err(WalError::Poisoned(_))
    ));
    // Reads keep working.
    assert_eq!(wal.read(1..=10).unwrap().len(), 10);
    // The torn bytes reached the disk before the "crash".
    let image = disk.crash(|_, ops| (ops, 0));
    std::mem::forget(wal);
    let wal = Wal::open_in(image.backend(), o.clone()).unwrap();
    check(&wal, 1, 10);
    wal.append_sync(entries(11..=20)).unwrap();
    drop(wal);
    check(&Wal::open_in(image.backend(), o).unwrap(), 1, 20);
}

#[test]
fn a_failed_sync_is_never_acknowledged() {
    let disk = MemDisk::new();
    let wal = Wal::open_in(
        disk.backend(),
        WalOptions {
            sync: true,
            ..opts()
        },
    )
    .unwrap();
    wal.append_sync(entries(1..=3)).unwrap();
    disk.fail_syncs(true);
    assert!(wal.append_sync(entries(4..=4)).is_err());
    disk.fail_syncs(false);
    assert!(matches!(
        wal.set_meta(META_VOTE, Bytes::new()),
        Err(WalError::Poisoned(_))
    ));
    let wal2 = Wal::open_in(disk.crash_clean().backend(), opts()).unwrap();
    check(&wal2, 1, 3);
}

/// Segment creation syncs the directory: entries acknowledged in a new
/// segment survive a cut that drops every unsynced byte and name.
#[test]
fn new_segments_survive_a_clean_power_cut() {
    let disk = MemDisk::new();
    let o = WalOptions {
        segment_size: 4096,
        sync: true,
        cache_bytes: 1 << 20,
        ..WalOptions::default()
    };
    let wal = Wal::open_in(disk.backend(), o.clone()).unwrap();
    for i in 1..=300 {
        wal.append_sync(entries(i..=i)).unwrap();
    }
    wal.purge_up_to(160).unwrap();
    wal.set_meta(META_COMMITTED, Bytes::from_static(b"c"))
        .unwrap();
    assert!(wal.stats().segments_created >= 3);
    assert!(wal.stats().segments_deleted >= 1);
    let image = disk.crash_clean();
    drop(wal);
    assert_eq!(image.names(), disk.names());
    let wal = Wal::open_in(image.backend(), o).unwrap();
    check(&wal, 161, 300);
    assert_eq!(wal.meta(META_COMMITTED), Some(Bytes::from_static(b"c")));
    assert_eq!(payload(161), wal.read(161..=161).unwrap()[0].1);
}

#[test]
fn bit_rot_is_reported_on_read() {
    let disk = MemDisk::new();
    let wal = Wal::open_in(disk.backend(), opts()).unwrap();
    wal.append_sync(entries(1..=5)).unwrap();
    let name = disk
        .names()
        .into_iter()
        .find(|n| n.ends_with(".wal"))
        .unwrap();
    let data = disk.contents(&name).unwrap();
    let (at, len) = records(&data)[2];
    disk.poke(&name, at + len - 1, &[data[at + len - 1] ^ 0x80]);
    match wal.read(3..=3) {
        Err(WalError::Corruption { offset, .. }) => assert_eq!(offset, at as u64),
        other => panic!("{other:?}"),
    }
    assert_eq!(wal.read(4..=5).unwrap().len(), 2);
}
