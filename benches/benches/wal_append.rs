//! WAL append throughput with fdatasync on: one writer waiting for each
//! append, and 64 concurrent submitters sharing fsyncs (group commit).
//!
//! Runs against a tempdir on whatever disk holds $TMPDIR; for SD-card-like
//! latency wrap it in the strace fsync-delay trick from ARCHITECTURE.md.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bramble_storage::wal::{Record, Wal, WalOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

static PAYLOAD: [u8; 256] = [0xab; 256];

fn entry(index: u64) -> Record {
    Record::Entry {
        index,
        payload: PAYLOAD[..].into(),
    }
}

/// Appends one entry and waits for it to be durable. Raft assigns indexes
/// in one place; the mutex stands in for that.
fn append_one(wal: &Wal, next: &Mutex<u64>) {
    let (tx, rx) = mpsc::sync_channel(1);
    {
        let mut n = next.lock().unwrap();
        wal.submit(
            vec![entry(*n)],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .unwrap();
        *n += 1;
    }
    rx.recv().unwrap().unwrap();
}

fn report(name: &str, wal: &Wal) {
    let s = wal.stats();
    if s.entries_written > 0 {
        eprintln!(
            "{name}: {} entries, {:.1} bytes written/entry, {:.3} fdatasync/entry",
            s.entries_written,
            s.bytes_written as f64 / s.entries_written as f64,
            s.syncs as f64 / s.entries_written as f64,
        );
    }
}

fn wal_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    {
        let tmp = bramble_testkit::temp::dir("bramble-wal-bench-");
        let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let next = Mutex::new(1);
        g.bench_function("single_writer_256B_sync", |b| {
            b.iter(|| append_one(&wal, &next))
        });
        report("single_writer_256B_sync", &wal);
    }

    {
        const SUBMITTERS: u64 = 64;
        let tmp = bramble_testkit::temp::dir("bramble-wal-bench-");
        let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let next = Mutex::new(1);
        g.bench_function("64_submitters_256B_group_commit", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..SUBMITTERS {
                        let n = iters / SUBMITTERS + u64::from(t < iters % SUBMITTERS);
                        let (wal, next) = (&wal, &next);
                        s.spawn(move || {
                            for _ in 0..n {
                                append_one(wal, next);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        report("64_submitters_256B_group_commit", &wal);
    }
    g.finish();
}

criterion_group!(benches, wal_append);
criterion_main!(benches);
