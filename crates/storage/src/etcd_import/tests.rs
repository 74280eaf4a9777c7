//! The reader and converter on a snapshot that a real etcd 3.4 wrote
//! (`testdata/etcd-3.4.db`: 200 puts k001..k200, a leased key, an overwrite, deletes,
//! a compaction at 5, `etcdctl snapshot save`), and on hostile variations of it.

use std::path::Path;

use bramble_api::etcdserverpb::RangeRequest;

use super::bbolt::fnv1a64;
use super::*;
use crate::mvcc::{restore_saved_snapshot, MvccOptions, MvccStore};

const FIXTURE: &[u8] = include_bytes!("testdata/etcd-3.4.db");
const PAGE: usize = 4096;

/// The database part (without the SHA-256 trailer).
fn db() -> Vec<u8> {
    FIXTURE[..FIXTURE.len() - 32].to_vec()
}

fn convert(db: &[u8]) -> Result<EtcdContent, EtcdImportError> {
    convert_bytes(db, std::io::sink())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes meta page `page`'s checksum after an edit.
fn reseal_meta(b: &mut [u8], page: usize) {
    let m = page * PAGE + 16;
    let sum = fnv1a64(&b[m..m + 56]);
    put_u64(b, m + 56, sum);
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The key bucket's root page (a branch page in the fixture) and its first child (a
/// leaf page), found by walking from meta 0's root bucket: the file also holds stale
/// pages of earlier transactions.
fn key_bucket_pages(b: &[u8]) -> (usize, usize) {
    let root = u64_at(b, 16 + 16) as usize * PAGE;
    for i in 0..usize::from(u16_at(b, root + 10)) {
        let elem = root + 16 + i * 16;
        let (pos, ksize) = (u32_at(b, elem + 4), u32_at(b, elem + 8));
        if &b[elem + pos..elem + pos + ksize] == b"key" {
            let branch = u64_at(b, elem + pos + ksize) as usize;
            assert_eq!(
                u16_at(b, branch * PAGE + 8),
                1,
                "the key bucket's root is a branch"
            );
            let leaf = u64_at(b, branch * PAGE + 16 + 8) as usize;
            return (branch, leaf);
        }
    }
    panic!("no key bucket");
}

#[test]
fn a_real_etcd_34_snapshot_converts() {
    let got = convert(&db()).expect("convert");
    assert_eq!(
        got,
        EtcdContent {
            revision: 206,
            compact_revision: 5,
            // 200 puts, the leased key, k001 again, k002's tombstone, k003 again,
            // k004's tombstone.
            key_rows: 205,
            leases: 1,
            auth_users: 0,
            auth_roles: 0,
            // etcd 3.4 writes its auth revision (1) at creation.
            auth_row: true,
        }
    );
    assert!(is_etcd_fixture());
}

fn is_etcd_fixture() -> bool {
    bbolt::has_magic(FIXTURE) && !bbolt::has_magic(b"BRAMSNAP\0\0\0\x01")
}

fn restore_opts(skip_hash_check: bool) -> RestoreOptions {
    RestoreOptions {
        skip_hash_check,
        applied: (1, 0),
        membership: vec![1, 2, 3],
        bump_revision: 0,
        mark_compacted: false,
    }
}

fn restore_file(dir: &Path, bytes: &[u8], skip: bool) -> Result<RestoreInfo, RestoreError> {
    let file = dir.join(format!("snap-{}.db", bytes.len()));
    std::fs::write(&file, bytes).expect("write");
    let db = dir.join(format!("restored-{}-{skip}.redb", bytes.len()));
    let _ = std::fs::remove_file(&db);
    restore_saved_snapshot(&file, &db, &restore_opts(skip))
}

/// (value, create revision, mod revision, version, lease).
type Row = (Vec<u8>, i64, i64, i64, i64);

fn get(store: &MvccStore, key: &str, revision: i64) -> Result<Option<Row>, MvccError> {
    let resp = store.range(&RangeRequest {
        key: key.as_bytes().to_vec(),
        revision,
        ..Default::default()
    })?;
    Ok(resp.kvs.first().map(|kv| {
        (
            kv.value.clone(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease,
        )
    }))
}

#[test]
fn a_real_etcd_34_snapshot_restores_with_its_history_revisions_and_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let info = restore_file(dir.path(), FIXTURE, false).expect("restore");
    assert!(info.hash_checked);
    assert_eq!((info.revision, info.compact_revision), (206, 5));
    let db = dir
        .path()
        .join(format!("restored-{}-false.redb", FIXTURE.len()));
    let store = MvccStore::open(&db, MvccOptions::default()).expect("open");
    assert_eq!(store.current_revision(), 206);
    assert_eq!(store.applied(), (1, 0));
    // k001 = value-1 at 2, again at 203; k002 deleted at 204.
    assert_eq!(
        get(&store, "k001", 0).unwrap(),
        Some((b"again".to_vec(), 2, 203, 2, 0))
    );
    assert_eq!(
        get(&store, "k001", 202).unwrap(),
        Some((b"value-1".to_vec(), 2, 2, 1, 0))
    );
    assert_eq!(
        get(&store, "k001", 5).unwrap(),
        Some((b"value-1".to_vec(), 2, 2, 1, 0))
    );
    assert_eq!(get(&store, "k002", 0).unwrap(), None);
    assert_eq!(get(&store, "k002", 203).unwrap().map(|r| r.2), Some(3));
    assert_eq!(get(&store, "k004", 205).unwrap().map(|r| r.2), Some(5));
    assert_eq!(get(&store, "k004", 206).unwrap(), None);
    assert!(matches!(get(&store, "k001", 4), Err(MvccError::Compacted)));
    let leases = store.leases().expect("leases");
    assert_eq!(leases.len(), 1);
    let (id, ttl) = leases[0];
    assert_eq!(ttl, 600);
    let leased = get(&store, "leased", 0).unwrap().expect("leased key");
    assert_eq!(
        (leased.0.as_slice(), leased.2, leased.4),
        (&b"x"[..], 202, id)
    );
    assert_eq!(
        store.lease(id).unwrap().expect("lease").keys,
        [b"leased".to_vec()]
    );
}

#[test]
fn the_hash_trailer_is_checked_as_etcdutl_checks_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A flipped byte in a page the tree does not use is still a hash mismatch.
    let mut bad = FIXTURE.to_vec();
    let at = bad.len() - 32 - 100;
    bad[at] ^= 0x55;
    let err = restore_file(dir.path(), &bad, false).expect_err("mismatch");
    assert!(err.to_string().starts_with("expected sha256 "), "{err}");
    // No trailer: refused unless --skip-hash-check, then read whole.
    let bare = db();
    assert_eq!(
        restore_file(dir.path(), &bare, false).expect_err("no hash"),
        RestoreError::MissingHash
    );
    let info = restore_file(dir.path(), &bare, true).expect("skip");
    assert!(!info.hash_checked);
    assert_eq!(info.revision, 206);
}

#[test]
fn truncated_files_are_refused() {
    let b = db();
    for len in [
        0,
        1,
        19,
        20,
        79,
        80,
        100,
        PAGE,
        2 * PAGE - 1,
        2 * PAGE,
        3 * PAGE,
        b.len() / 2,
        b.len() - PAGE,
        b.len() - 1,
    ] {
        assert!(convert(&b[..len]).is_err(), "{len} bytes");
    }
}

#[test]
fn meta_pages_are_checked_and_the_other_one_is_used() {
    let b = db();
    let good = convert(&b).expect("good");
    // meta 0 damaged: meta 1 (one transaction older, the same tree in a snapshot).
    let mut one = b.clone();
    one[16 + 20] ^= 1;
    assert_eq!(convert(&one).expect("meta 1"), good);
    let mut other = b.clone();
    other[PAGE + 16 + 20] ^= 1;
    assert_eq!(convert(&other).expect("meta 0"), good);
    let mut both = one.clone();
    both[PAGE + 16 + 20] ^= 1;
    assert_eq!(convert(&both), Err(EtcdImportError::NoValidMeta));
    // A wrong magic number: not bbolt at all.
    let mut magic = b.clone();
    magic[16] ^= 0xff;
    assert_eq!(convert(&magic), Err(EtcdImportError::NotBbolt));
    // A wrong version, resealed.
    let mut version = b.clone();
    version[16 + 4] = 3;
    reseal_meta(&mut version, 0);
    version[PAGE + 16 + 4] = 3;
    reseal_meta(&mut version, 1);
    assert_eq!(convert(&version), Err(EtcdImportError::NoValidMeta));
    // A page size that does not fit, resealed.
    let mut size = b.clone();
    for p in 0..2 {
        size[p * PAGE + 16 + 8..p * PAGE + 16 + 12].copy_from_slice(&3000u32.to_le_bytes());
        reseal_meta(&mut size, p);
    }
    assert!(convert(&size).is_err());
}

#[test]
fn page_ids_out_of_range_are_refused() {
    let b = db();
    for (root, high_water) in [
        (1_000_000_000u64, None),
        (u64::MAX, None),
        (0, None),
        (1, None),
        (3, Some(u64::MAX / 2)),
        (3, Some(1_000_000)),
    ] {
        let mut m = b.clone();
        for p in 0..2 {
            put_u64(&mut m, p * PAGE + 16 + 16, root);
            if let Some(hw) = high_water {
                put_u64(&mut m, p * PAGE + 16 + 40, hw);
            }
            reseal_meta(&mut m, p);
        }
        assert!(
            convert(&m).is_err(),
            "root {root} high water {high_water:?}"
        );
    }
    // A branch element pointing past the end, and a page claiming a huge overflow.
    let branch = key_bucket_pages(&b).0 * PAGE;
    let mut m = b.clone();
    put_u64(&mut m, branch + 16 + 8, 999);
    assert!(matches!(
        convert(&m),
        Err(EtcdImportError::PageOutOfRange { page: 999, .. })
    ));
    let mut m = b.clone();
    m[branch + 12..branch + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        convert(&m),
        Err(EtcdImportError::PageOutOfRange { .. })
    ));
}

#[test]
fn cycles_are_refused() {
    let b = db();
    let branch_page = key_bucket_pages(&b).0;
    let branch = branch_page * PAGE;
    // A branch page whose child is itself.
    let mut m = b.clone();
    put_u64(&mut m, branch + 16 + 8, branch_page as u64);
    assert_eq!(
        convert(&m),
        Err(EtcdImportError::Cycle {
            page: branch_page as u64
        })
    );
    // Two elements naming the same child.
    let mut m = b.clone();
    let first = u64::from_le_bytes(m[branch + 24..branch + 32].try_into().unwrap());
    put_u64(&mut m, branch + 16 + 16 + 8, first);
    assert!(matches!(convert(&m), Err(EtcdImportError::Cycle { .. })));
}

#[test]
fn huge_counts_and_sizes_are_refused() {
    let b = db();
    let leaf = key_bucket_pages(&b).1 * PAGE;
    let mut m = b.clone();
    m[leaf + 10..leaf + 12].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(convert(&m), Err(EtcdImportError::BadPage { .. })));
    for field in [4, 8, 12] {
        let mut m = b.clone();
        m[leaf + 16 + field..leaf + 16 + field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(convert(&m).is_err(), "leaf element field {field}");
    }
    let branch = key_bucket_pages(&b).0 * PAGE;
    let mut m = b.clone();
    m[branch + 16 + 4..branch + 16 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(convert(&m), Err(EtcdImportError::BadPage { .. })));
    // A page whose header names another page, and one with unknown flags.
    let mut m = b.clone();
    put_u64(&mut m, leaf, 5000);
    assert!(matches!(convert(&m), Err(EtcdImportError::BadPage { .. })));
    let mut m = b.clone();
    m[leaf + 8] = 0x40;
    assert!(matches!(convert(&m), Err(EtcdImportError::BadPage { .. })));
}

/// Every byte of every page changed in turn (a stride through the file): an answer,
/// never a panic; an accepted file still converts into a stream the store accepts or
/// refuses with an error.
#[test]
fn damage_anywhere_gives_an_answer() {
    let b = db();
    for at in (0..b.len()).step_by(13) {
        let mut m = b.clone();
        m[at] = m[at].wrapping_add(0x41);
        let _ = convert(&m);
    }
}

/// When the store side fails first, its error is the answer, not the converter's
/// broken pipe.
#[test]
fn a_store_failure_is_reported_as_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    std::fs::write(&file, FIXTURE).expect("write");
    let db = dir.path().join("exists.redb");
    std::fs::write(&db, b"mine").expect("write");
    let opened = std::fs::File::open(&file).expect("open");
    let err = restore_etcd_snapshot(&file, opened, &db, &restore_opts(false)).expect_err("exists");
    assert!(
        matches!(&err, RestoreError::Store(MvccError::Storage(m)) if m.contains("exists")),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).expect("read"), b"mine");
}
