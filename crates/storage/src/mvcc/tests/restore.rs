//! Restoring a saved snapshot file into a new member's database: the data kept, the
//! raft state replaced, the hash checks, the revision bump and compaction mark.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::super::{restore_saved_snapshot, saved_padding, RestoreError, RestoreOptions};
use super::*;

/// A saved file (stream, zero padding, SHA-256), as `etcdctl snapshot save` writes it.
fn save(store: &MvccStore, path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).unwrap();
    let padded = bytes.len() as u64 + saved_padding(bytes.len() as u64);
    bytes.resize(usize::try_from(padded).unwrap(), 0);
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&sha);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A store with history: a lease, several versions, a delete, a compaction.
fn source() -> TestStore {
    let t = TestStore::new();
    t.grant(7, 60).unwrap();
    t.put("a", "1");
    t.put("a", "2");
    let mut p = put("leased", "x");
    p.lease = 7;
    t.apply(put_cmd(p));
    t.put("gone", "y");
    t.apply(del_cmd("gone", ""));
    t.apply(compact_cmd(3));
    t.put("a", "3");
    t.apply(Command {
        auth: None,
        op: Some(Op::AuthUserAdd(
            bramble_api::etcdserverpb::AuthUserAddRequest {
                name: "u".into(),
                hashed_password: "aGFzaA==".into(),
                ..Default::default()
            },
        )),
    });
    t.store
        .apply_noop(t.store.applied().0 + 1, 1, Some(b"old membership"))
        .unwrap();
    t
}

fn options() -> RestoreOptions {
    RestoreOptions {
        skip_hash_check: false,
        applied: (1, 0),
        membership: b"new membership".to_vec(),
        bump_revision: 0,
        mark_compacted: false,
    }
}

fn everything(s: &MvccStore, rev: i64) -> Vec<KeyValue> {
    let mut r = range("\0", "\0");
    r.revision = rev;
    s.range(&r).unwrap().kvs
}

#[test]
fn restore_keeps_the_data_and_replaces_the_raft_state() {
    let src = source();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    save(&src.store, &file);
    let db = dir.path().join("db");
    let info = restore_saved_snapshot(&file, &db, &options()).unwrap();
    assert!(info.hash_checked);
    assert_eq!(info.revision, src.store.current_revision());
    assert_eq!(info.compact_revision, 3);

    let restored = MvccStore::open(&db, MvccOptions::default()).unwrap();
    assert_eq!(restored.applied(), (1, 0));
    assert_eq!(
        restored.raft_membership().unwrap(),
        Some(b"new membership".to_vec())
    );
    assert_eq!(restored.current_revision(), src.store.current_revision());
    assert_eq!(restored.compact_revision(), 3);
    for rev in 3..=restored.current_revision() {
        assert_eq!(
            everything(&restored, rev),
            everything(&src.store, rev),
            "{rev}"
        );
    }
    assert_eq!(restored.leases().unwrap(), src.store.leases().unwrap());
    // Users and roles are data: kept, as etcdutl keeps etcd's auth buckets.
    assert_eq!(restored.auth_state(), src.store.auth_state());
    assert!(restored.auth_state().user("u").is_some());
    let rev = restored.current_revision();
    assert_eq!(
        restored.hash_kv(rev).unwrap(),
        src.store.hash_kv(rev).unwrap()
    );
    // The restored store goes on from the next raft entry and revision.
    let put_rev = match restored.apply(2, 1, &put_cmd(put("new", "v"))).unwrap() {
        ApplyResult::Put(r) => r.header.unwrap().revision,
        other => panic!("{other:?}"),
    };
    assert_eq!(put_rev, rev + 1);
}

#[test]
fn bump_and_mark_compacted_move_the_revision_and_drop_history() {
    let src = source();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    save(&src.store, &file);
    let db = dir.path().join("db");
    let mut opts = options();
    opts.bump_revision = 1000;
    opts.mark_compacted = true;
    let info = restore_saved_snapshot(&file, &db, &opts).unwrap();
    let old = src.store.current_revision();
    assert_eq!(info.revision, old + 1000);
    assert_eq!(info.compact_revision, old + 1000);

    let restored = MvccStore::open(&db, MvccOptions::default()).unwrap();
    assert_eq!(restored.current_revision(), old + 1000);
    assert_eq!(restored.compact_revision(), old + 1000);
    // Every key as it was at the snapshot, readable at the new revision.
    assert_eq!(everything(&restored, 0), everything(&src.store, 0));
    // A reader or watcher from before the restore is told, not left waiting.
    let mut r = range("a", "");
    r.revision = old;
    assert_eq!(restored.range(&r).unwrap_err(), MvccError::Compacted);
    assert_eq!(restored.events(old, 10).unwrap_err(), MvccError::Compacted);
    let put_rev = match restored.apply(2, 1, &put_cmd(put("a", "4"))).unwrap() {
        ApplyResult::Put(r) => r.header.unwrap().revision,
        other => panic!("{other:?}"),
    };
    assert_eq!(put_rev, old + 1001);
}

#[test]
fn bump_without_compaction_keeps_history() {
    let src = source();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    save(&src.store, &file);
    let db = dir.path().join("db");
    let mut opts = options();
    opts.bump_revision = 5;
    let info = restore_saved_snapshot(&file, &db, &opts).unwrap();
    assert_eq!(info.revision, src.store.current_revision() + 5);
    assert_eq!(info.compact_revision, 3);
}

#[test]
fn the_hash_is_checked_unless_skipped() {
    let src = source();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let bytes = save(&src.store, &file);

    // A damaged trailer: refused, unless --skip-hash-check (the stream's crc holds).
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    let err = restore_saved_snapshot(&file, &dir.path().join("db1"), &options()).unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
    let mut skip = options();
    skip.skip_hash_check = true;
    let info = restore_saved_snapshot(&file, &dir.path().join("db2"), &skip).unwrap();
    assert!(!info.hash_checked);

    // A file without a trailer (a bare stream): refused with etcdutl's words.
    let mut stream = Vec::new();
    src.store.write_snapshot(&mut stream).unwrap();
    let bare = if stream.len() % 512 == 32 {
        // Cannot happen for this store, but a bare stream of that length would be
        // read as a saved file.
        unreachable!("stream length {} looks saved", stream.len())
    } else {
        stream
    };
    std::fs::write(&file, &bare).unwrap();
    let err = restore_saved_snapshot(&file, &dir.path().join("db3"), &options()).unwrap_err();
    assert_eq!(err, RestoreError::MissingHash);
    assert_eq!(
        err.to_string(),
        "snapshot missing hash but --skip-hash-check=false"
    );
    let info = restore_saved_snapshot(&file, &dir.path().join("db4"), &skip).unwrap();
    assert_eq!(info.revision, src.store.current_revision());

    // A damaged stream is refused even with --skip-hash-check.
    let mut damaged = bytes;
    damaged[40] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    assert!(restore_saved_snapshot(&file, &dir.path().join("db5"), &skip).is_err());
    // Refusals checked the file before creating anything.
    for n in [1, 3, 5] {
        assert!(!dir.path().join(format!("db{n}")).exists(), "db{n}");
    }
}
