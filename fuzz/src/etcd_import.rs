//! Reading and converting arbitrary etcd snapshot files (`crates/storage/src/etcd_import`):
//! the bbolt page reader for untrusted files and etcd's schema converter behind
//! `bramble snapshot restore` of an etcd file.
//!
//! Input: the bytes of a bbolt database (an etcd snapshot without its SHA-256 trailer).
//! The seeds are a real etcd 3.4 snapshot (`crates/storage/src/etcd_import/testdata`),
//! whole and with its first meta page damaged, so mutations reach the pages behind the
//! meta checks.
//!
//! Invariants: the converter returns an error or what the database holds; an accepted
//! database's stream verifies as a Bramble snapshot stream with the revision and
//! compaction the converter reported, and installs into a fresh store (or is refused
//! with `BadSnapshot`), which then serves a full range at that revision.

use bramble_api::etcdserverpb::RangeRequest;
use bramble_storage::etcd_import::convert_bytes;
use bramble_storage::mvcc::{verify_snapshot, MvccError, MvccOptions, MvccStore};

/// The real etcd 3.4 snapshot the unit tests read.
const FIXTURE: &[u8] = include_bytes!("../../crates/storage/src/etcd_import/testdata/etcd-3.4.db");

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut stream = Vec::new();
    let Ok(content) = convert_bytes(data, &mut stream) else {
        return;
    };
    let info = verify_snapshot(&mut stream.as_slice()).expect("a converted stream verifies");
    assert_eq!(info.revision, content.revision);
    assert_eq!(info.compact_revision, content.compact_revision);
    // Four meta rows, the auth row if any, and one or two for a compaction (scheduled,
    // finished).
    let rows = 4 + content.key_rows + content.leases + u64::from(content.auth_row);
    assert!(
        (rows..=rows + 2).contains(&info.rows),
        "{info:?} {content:?}"
    );
    let dir = crate::scratch_dir();
    let store = MvccStore::open(&dir.path().join("db"), MvccOptions::default()).expect("open");
    match store.install_snapshot(&mut stream.as_slice()) {
        Ok(installed) => {
            assert_eq!(installed.revision, content.revision);
            assert_eq!(store.current_revision(), content.revision);
            let all = store
                .range(&RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                })
                .expect("a full range of an installed import");
            assert!(all.kvs.len() as u64 <= content.key_rows);
        }
        Err(MvccError::BadSnapshot(_)) | Err(MvccError::Corrupt(_)) => {}
        Err(e) => panic!("install of a converted stream: {e}"),
    }
}

/// The seeds: the real snapshot's database, and the same with meta page 0 damaged.
pub fn seeds() -> Vec<Vec<u8>> {
    let db = FIXTURE[..FIXTURE.len() - 32].to_vec();
    let mut damaged = db.clone();
    damaged[16 + 24] ^= 0xff;
    vec![db, damaged]
}
