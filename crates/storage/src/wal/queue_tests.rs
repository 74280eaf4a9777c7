//! The bound on the writer's queue (`queue.rs`): a stalled disk holds up
//! submitters instead of filling memory, and nothing is lost or reordered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;

use super::fault::MemDisk;
use super::tests::check;
use super::*;

/// An entry whose record takes a little over `len` bytes in the queue.
fn entry(index: u64, len: usize) -> Vec<Record> {
    vec![Record::Entry {
        index,
        payload: Bytes::from(vec![index as u8; len]),
    }]
}

/// A WAL on a disk whose fdatasync takes `delay`, with a 4 KiB queue.
fn slow_wal(delay: Duration) -> (MemDisk, Wal) {
    let disk = MemDisk::new();
    let wal = Wal::open_in(
        disk.backend(),
        WalOptions {
            segment_size: 1 << 20,
            sync: true,
            cache_bytes: 0,
            queue_bytes: 4096,
        },
    )
    .unwrap();
    disk.set_sync_delay(delay);
    (disk, wal)
}

#[test]
fn a_full_queue_hands_the_batch_back_and_submit_waits_for_room() {
    let (_disk, wal) = slow_wal(Duration::from_millis(300));
    let (tx1, rx1) = mpsc::channel();
    wal.submit(entry(1, 3000), Box::new(move |r| tx1.send(r).unwrap()))
        .unwrap();

    // Entry 1 is still syncing: 3000 more bytes do not fit in 4 KiB.
    let called = Arc::new(AtomicU64::new(0));
    let c = called.clone();
    let outcome = wal
        .try_submit(
            entry(2, 3000),
            Box::new(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    let TrySubmit::Full { records, callback } = outcome else {
        panic!("a full queue took the batch: {outcome:?}");
    };
    assert_eq!(records, entry(2, 3000), "handed back untouched");
    assert_eq!(wal.last_index(), Some(1), "nothing of it applied");
    drop(callback);
    assert_eq!(called.load(Ordering::SeqCst), 0);

    // The blocking submit returns only once entry 1's group is synced.
    let (tx, rx) = mpsc::channel();
    wal.submit(records, Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    assert!(wal.stats().groups >= 1, "submit went past a full queue");
    rx1.recv().unwrap().unwrap();
    rx.recv().unwrap().unwrap();
    assert_eq!(wal.inner.shared.queue.reserved(), 0, "all room given back");
    let read = wal.read(1..=2).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].1.len(), 3000);
}

#[test]
fn a_batch_larger_than_the_bound_goes_alone() {
    let (_disk, wal) = slow_wal(Duration::ZERO);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let outcome = wal
        .try_submit(entry(1, 10_000), Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    assert!(matches!(outcome, TrySubmit::Queued), "{outcome:?}");
    // Queued behind it only once it is done.
    wal.submit(entry(2, 100), Box::new(move |r| tx2.send(r).unwrap()))
        .unwrap();
    rx.recv().unwrap().unwrap();
    rx.recv().unwrap().unwrap();
    assert_eq!(wal.last_index(), Some(2));
}

#[test]
fn refused_batches_give_their_room_back() {
    let (_disk, wal) = slow_wal(Duration::ZERO);
    wal.append_sync(super::tests::entries(1..=3)).unwrap();
    // Not contiguous: refused after its room was reserved.
    let res = wal.submit(entry(9, 2000), Box::new(|_| {}));
    assert!(
        matches!(res, Err(WalError::NonContiguous { .. })),
        "{res:?}"
    );
    assert_eq!(wal.inner.shared.queue.reserved(), 0);
    check(&wal, 1, 3);
}

#[test]
fn a_zero_bound_is_refused() {
    let res = Wal::open_in(
        MemDisk::new().backend(),
        WalOptions {
            queue_bytes: 0,
            ..WalOptions::default()
        },
    );
    assert!(matches!(res, Err(WalError::InvalidOptions(_))), "{res:?}");
}
