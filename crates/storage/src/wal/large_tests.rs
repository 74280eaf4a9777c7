//! Entries larger than a segment, and reads bounded in bytes: what lets the
//! server accept any `--max-request-bytes` and replicate any mix of entry
//! sizes in bounded batches.

use bytes::Bytes;

use super::tests::segment_files;
use super::*;

/// Segments of the smallest size, so ordinary test entries overflow them.
fn small_segments() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        sync: false,
        cache_bytes: 0,
        ..WalOptions::default()
    }
}

/// Payload of entry `index`, `len` bytes, distinct per index.
fn sized(index: u64, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|j| (index as usize * 31 + j) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Entry sizes: small ones around records far larger than a 4 KiB segment.
const SIZES: [(u64, usize); 7] = [
    (1, 10),
    (2, 10_000),
    (3, 20),
    (4, 100_000),
    (5, 100_000),
    (6, 4096 - 32 - 12),
    (7, 5),
];

fn append_sizes(wal: &Wal) {
    let records = SIZES
        .iter()
        .map(|&(index, len)| Record::Entry {
            index,
            payload: sized(index, len),
        })
        .collect();
    wal.append_sync(records).unwrap();
}

fn check_sizes(wal: &Wal) {
    let got = wal.read(..).unwrap();
    assert_eq!(got.len(), SIZES.len());
    for ((i, data), &(index, len)) in got.iter().zip(SIZES.iter()) {
        assert_eq!(*i, index);
        assert_eq!(data, &sized(index, len), "payload of {index}");
    }
}

#[test]
fn records_larger_than_a_segment_are_stored_and_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(tmp.path(), small_segments()).unwrap();
        append_sizes(&wal);
        check_sizes(&wal);
        // The big ones each got a segment of their own.
        assert!(wal.stats().segments_created >= 3, "{:?}", wal.stats());
    }
    let wal = Wal::open(tmp.path(), small_segments()).unwrap();
    check_sizes(&wal);
    // Appends go on after a reopen, in whatever segment was active.
    wal.append_sync(vec![Record::Entry {
        index: 8,
        payload: sized(8, 50_000),
    }])
    .unwrap();
    wal.append_sync(vec![Record::Entry {
        index: 9,
        payload: sized(9, 7),
    }])
    .unwrap();
    drop(wal);
    let wal = Wal::open(tmp.path(), small_segments()).unwrap();
    assert_eq!(wal.read(8..=9).unwrap()[0].1, sized(8, 50_000));
    assert_eq!(wal.read(9..=9).unwrap()[0].1, sized(9, 7));
    // Purging past the big entries deletes their segments.
    let before = segment_files(tmp.path());
    wal.purge_up_to(8).unwrap();
    assert!(segment_files(tmp.path()) < before);
    assert_eq!(wal.first_index(), Some(9));
    drop(wal);
    let wal = Wal::open(tmp.path(), small_segments()).unwrap();
    assert_eq!(wal.read(..).unwrap(), vec![(9, sized(9, 7))]);
}

#[test]
fn a_17mb_entry_fits_with_the_default_16mib_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let options = WalOptions {
        sync: false,
        ..WalOptions::default()
    };
    let big = sized(2, 17_000_000);
    {
        let wal = Wal::open(tmp.path(), options.clone()).unwrap();
        wal.append_sync(vec![
            Record::Entry {
                index: 1,
                payload: sized(1, 100),
            },
            Record::Entry {
                index: 2,
                payload: big.clone(),
            },
            Record::Entry {
                index: 3,
                payload: sized(3, 100),
            },
        ])
        .unwrap();
    }
    let wal = Wal::open(tmp.path(), options).unwrap();
    let got = wal.read(..).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], (2, big));
    assert_eq!(got[2], (3, sized(3, 100)));
}

#[test]
fn read_limited_returns_the_prefix_within_the_budget() {
    for cache_bytes in [0, 1 << 20] {
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            tmp.path(),
            WalOptions {
                cache_bytes,
                ..small_segments()
            },
        )
        .unwrap();
        append_sizes(&wal);
        let indexes = |budget: u64, from: u64| -> Vec<u64> {
            wal.read_limited(from.., budget)
                .unwrap()
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        };
        // Entry 1 (10 bytes) fits, entry 2 (10,000) does not.
        assert_eq!(indexes(1000, 1), vec![1]);
        // A first entry over the budget still comes, alone.
        assert_eq!(indexes(1000, 2), vec![2]);
        assert_eq!(indexes(10_030, 1), vec![1, 2, 3]);
        assert_eq!(indexes(0, 4), vec![4]);
        assert_eq!(indexes(u64::MAX, 1), vec![1, 2, 3, 4, 5, 6, 7]);
        // Contents are the entries' own.
        let got = wal.read_limited(4.., 200_000).unwrap();
        let want = vec![(4, sized(4, 100_000)), (5, sized(5, 100_000))];
        assert!(got == want, "got entries {:?}", indexes(200_000, 4));
    }
}
