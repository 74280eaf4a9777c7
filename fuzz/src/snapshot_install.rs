//! Installing arbitrary MVCC snapshots (`crates/storage/src/mvcc/snapshot*`).
//!
//! Input: a flags byte, then either (bit 0 set) the raw snapshot stream, or rows
//! `tag u8 | key length u16 LE | key | value length u16 LE | value` that this target frames
//! with a valid header, trailer, row count and crc, so the content checks behind the
//! framing get exercised too.
//!
//! Invariants: `install_snapshot` into a fresh store returns a `BadSnapshot`/`Corrupt`
//! error and leaves the store as it was, or succeeds, agrees with `verify_snapshot`, leaves
//! a store that serves a full range, writes a snapshot that verifies, and reopens with
//! the same revision, applied position and contents.

use bramble_api::bramblepb::{command, Command};
use bramble_api::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use bramble_storage::mvcc::{verify_snapshot, MvccError, MvccOptions, MvccStore};

const MAGIC: &[u8; 8] = b"BRAMSNAP";

/// Frames `rows` (tag, key, value) as a version 1 snapshot stream with a valid trailer.
pub fn frame(rows: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    for (tag, key, value) in rows {
        out.push(*tag);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.push(0xff);
    out.extend_from_slice(&(rows.len() as u64).to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Splits the structured input into rows; a row cut short ends the list.
fn rows(mut data: &[u8]) -> Vec<(u8, &[u8], &[u8])> {
    fn field<'a>(d: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = d.split_at_checked(2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let (f, rest) = rest.split_at_checked(len)?;
        *d = rest;
        Some(f)
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        data = rest;
        let Some(key) = field(&mut data) else { break };
        let Some(value) = field(&mut data) else { break };
        out.push((tag, key, value));
    }
    out
}

/// The inverse of [`rows`]: the structured input for these rows (for seeds).
pub fn structured(rows: &[(u8, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0u8];
    for (tag, key, value) in rows {
        out.push(*tag);
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The rows of a well-formed stream (for seeds).
pub fn parse(stream: &[u8]) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut at = 12;
    let mut out = Vec::new();
    let u32_at = |at: usize| {
        u32::from_be_bytes([stream[at], stream[at + 1], stream[at + 2], stream[at + 3]]) as usize
    };
    while stream[at] != 0xff {
        let tag = stream[at];
        let klen = u32_at(at + 1);
        let key = stream[at + 5..at + 5 + klen].to_vec();
        let vat = at + 5 + klen;
        let vlen = u32_at(vat);
        let value = stream[vat + 4..vat + 4 + vlen].to_vec();
        out.push((tag, key, value));
        at = vat + 4 + vlen;
    }
    out
}

fn open(dir: &std::path::Path) -> MvccStore {
    let opts = MvccOptions {
        cache_size_bytes: 1 << 20,
    };
    MvccStore::open(&dir.join("db"), opts).expect("opening the store")
}

fn everything(store: &MvccStore) -> RangeResponse {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    store
        .range(&all)
        .expect("a full range of an installed store")
}

/// (revision, compact revision, applied) of a store.
fn position(store: &MvccStore) -> (i64, i64, (u64, u64)) {
    (
        store.current_revision(),
        store.compact_revision(),
        store.applied(),
    )
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let stream = if flags & 1 != 0 {
        rest.to_vec()
    } else {
        frame(&rows(rest))
    };
    let dir = crate::scratch_dir();
    let store = open(dir.path());
    let before = position(&store);
    let verified = verify_snapshot(&mut stream.as_slice());
    match store.install_snapshot(&mut stream.as_slice()) {
        Err(e) => {
            assert!(
                matches!(e, MvccError::BadSnapshot(_) | MvccError::Corrupt(_)),
                "install refused a snapshot with an unexpected error: {e:?}"
            );
            assert_eq!(
                position(&store),
                before,
                "a refused install changed the store"
            );
            everything(&store);
        }
        Ok(info) => {
            let verified = verified.expect("an installed snapshot verifies");
            assert_eq!(verified, info, "verify and install disagree");
            assert_eq!(store.current_revision(), info.revision);
            assert_eq!(store.applied(), info.applied);
            let all = everything(&store);
            let mut again = Vec::new();
            let written = store.write_snapshot(&mut again).expect("writing it back");
            let reverified = verify_snapshot(&mut again.as_slice()).expect("rewritten verifies");
            assert_eq!(reverified.applied, written.applied);
            assert_eq!(written.revision, info.revision);
            let pos = position(&store);
            drop(store);
            let store = open(dir.path());
            assert_eq!(position(&store), pos, "reopening moved the store");
            assert_eq!(everything(&store), all, "reopening changed the contents");
        }
    }
}

/// Valid inputs to start from: real snapshots of a small store, structured and raw.
pub fn seeds() -> Vec<Vec<u8>> {
    let dir = crate::scratch_dir();
    let store = open(dir.path());
    let put = |k: &str, v: &str| Command {
        auth: None,
        op: Some(command::Op::Put(PutRequest {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            ..Default::default()
        })),
    };
    let mut out = Vec::new();
    let mut index = 0;
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
        index += 1;
        store.apply(index, 1, &put(k, v)).expect("apply");
        let mut snap = Vec::new();
        store.write_snapshot(&mut snap).expect("snapshot");
        out.push(structured(&parse(&snap)));
        if index == 3 {
            out.push([vec![1u8], snap].concat());
        }
    }
    out.push(vec![0u8]);
    out
}
