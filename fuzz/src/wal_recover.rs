//! WAL recovery from arbitrary segment files.
//!
//! Input: a flags byte, then the segment contents. Flags: bit 0 = raw (the bytes are the
//! whole file; otherwise a valid segment header for the file's name is put in front),
//! bit 1 = two segments (the next two bytes, little-endian, say where to split the rest),
//! bit 2 = no padding (otherwise each file is zero-padded to 4 KiB, as preallocated
//! segments are).
//!
//! Invariants: `Wal::open` returns a clean error or a log whose every entry and meta
//! value is a record with a valid crc in the input (checked by an independent parser
//! here); a log it accepted takes one more entry, and reopening it yields the same
//! entries and metas plus the new entry.

use std::collections::HashSet;
use std::path::Path;

use bramble_storage::wal::{Record, Wal, WalOptions};
use bytes::Bytes;

const HEADER_LEN: usize = 32;
const PAD_TO: usize = 4096;

/// The file name and header of segment `seq` (format in `crates/storage/src/wal/segment.rs`).
fn segment_header(seq: u64, base: u64) -> (String, [u8; HEADER_LEN]) {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(b"BRMBLWAL");
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20..28].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    (format!("{seq:016x}-{base:016x}.wal"), h)
}

/// Frames one record as the WAL does (`crates/storage/src/wal/record.rs`): for seeds.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() + 1) as u32;
    let mut content = vec![kind];
    content.extend_from_slice(body);
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&content);
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&content);
    out
}

/// A LEB128 varint, as the WAL writes indexes: for seeds.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// Every record with a valid crc found by walking `data` from `start`: the bodies of
/// entries (index varint + payload, kept whole: the payload is what follows any prefix
/// that decodes as a varint) and of metas.
fn valid_bodies(data: &[u8], start: usize, out: &mut HashSet<(u8, Vec<u8>)>) {
    let mut off = start;
    while off + 9 <= data.len() {
        let len = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
        let len = len as usize;
        if len == 0 || len > data.len() - off - 8 {
            return;
        }
        let crc = u32::from_le_bytes([data[off + 4], data[off + 5], data[off + 6], data[off + 7]]);
        let content = &data[off + 8..off + 8 + len];
        let mut h = crc32fast::Hasher::new();
        h.update(&data[off..off + 4]);
        h.update(content);
        if h.finalize() != crc {
            return;
        }
        out.insert((content[0], content[1..].to_vec()));
        off += 8 + len;
    }
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: PAD_TO as u64,
        sync: false,
        cache_bytes: 1 << 16,
        ..WalOptions::default()
    }
}

/// Everything the open log holds: entries (first to last) and metas.
type Contents = (Vec<(u64, Bytes)>, Vec<(u8, Bytes)>);

fn contents(wal: &Wal) -> Contents {
    let entries = match (wal.first_index(), wal.last_index()) {
        (Some(first), Some(last)) => {
            let got = wal
                .read(first..=last)
                .expect("reading entries recovery accepted");
            assert_eq!(
                got.len() as u64,
                last - first + 1,
                "log {first}..={last} reads {} entries",
                got.len()
            );
            got
        }
        _ => Vec::new(),
    };
    (entries, wal.metas().into_iter().collect())
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let raw = flags & 1 != 0;
    let two = flags & 2 != 0;
    let pad = flags & 4 == 0;
    let bodies: Vec<&[u8]> = if two {
        if rest.len() < 2 {
            return;
        }
        let (split, rest) = rest.split_at(2);
        let at = usize::from(u16::from_le_bytes([split[0], split[1]])).min(rest.len());
        let (a, b) = rest.split_at(at);
        vec![a, b]
    } else {
        vec![rest]
    };

    let dir = crate::scratch_dir();
    let mut valid = HashSet::new();
    for (n, body) in bodies.iter().enumerate() {
        let seq = n as u64 + 1;
        let (name, header) = segment_header(seq, 0);
        let mut file = Vec::with_capacity(HEADER_LEN + body.len());
        if !raw {
            file.extend_from_slice(&header);
        }
        file.extend_from_slice(body);
        if pad && file.len() < PAD_TO {
            file.resize(PAD_TO, 0);
        }
        valid_bodies(&file, HEADER_LEN, &mut valid);
        std::fs::write(dir.path().join(name), &file).expect("writing a segment");
    }
    check(dir.path(), &valid);
}

fn check(dir: &Path, valid: &HashSet<(u8, Vec<u8>)>) {
    let Ok(wal) = Wal::open(dir, options()) else {
        return; // Refused: a clean error is a correct answer to damaged input.
    };
    let before = contents(&wal);
    for (index, payload) in &before.0 {
        let mut body = varint(*index);
        body.extend_from_slice(payload);
        // A non-minimal varint encodes the same index: accept any valid entry record
        // whose body ends with the payload and whose prefix is some encoding of index.
        let found = valid.contains(&(1, body))
            || valid.iter().any(|(k, b)| {
                *k == 1 && b.ends_with(payload) && decodes_to(&b[..b.len() - payload.len()], *index)
            });
        assert!(found, "entry {index} is not a valid record of the input");
    }
    for (key, value) in &before.1 {
        let mut body = vec![*key];
        body.extend_from_slice(value);
        assert!(
            valid.contains(&(2, body)),
            "meta {key} is not a valid record of the input"
        );
    }

    // A log recovery accepted must go on working: append, then reopen.
    let next = wal
        .last_index()
        .or(wal.purged_index())
        .map_or(1, |i| i.checked_add(1).unwrap_or(u64::MAX));
    let appended = next < u64::MAX
        && wal
            .append_sync(vec![Record::Entry {
                index: next,
                payload: Bytes::from_static(b"after recovery"),
            }])
            .is_ok();
    drop(wal);
    let wal = match Wal::open(dir, options()) {
        Ok(w) => w,
        Err(e) => panic!("a log that opened once does not reopen: {e}"),
    };
    let mut after = contents(&wal);
    if appended {
        let last = after.0.pop().expect("the appended entry survives a reopen");
        assert_eq!(last, (next, Bytes::from_static(b"after recovery")));
    }
    assert_eq!(after, before, "reopening changed the log");
}

/// Whether `b` is exactly a varint (possibly non-minimal) of `v`.
fn decodes_to(b: &[u8], v: u64) -> bool {
    let mut x: u64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        if i >= 10 {
            return false;
        }
        x |= u64::from(byte & 0x7f)
            .checked_shl(7 * i as u32)
            .unwrap_or(0);
        if byte & 0x80 == 0 {
            return i + 1 == b.len() && x == v;
        }
    }
    false
}

/// Valid inputs to start from: a few records of each kind, one and two segments.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    for i in 1..=3u64 {
        let mut body = varint(i);
        body.extend_from_slice(format!("entry {i}").as_bytes());
        records.extend(frame(1, &body));
    }
    let mut meta = vec![1u8];
    meta.extend_from_slice(b"vote");
    records.extend(frame(2, &meta));
    records.extend(frame(3, &varint(2)));
    let mut three = varint(3);
    three.extend_from_slice(b"again");
    records.extend(frame(1, &three));
    records.extend(frame(4, &varint(1)));

    let mut out = vec![[vec![0u8], records.clone()].concat()];
    // Torn tail: the last record cut short.
    out.push([vec![0u8], records[..records.len() - 3].to_vec()].concat());
    // Two segments, split after the first record.
    let first = frame(1, &[varint(1), b"one".to_vec()].concat());
    let mut two = vec![2u8];
    two.extend_from_slice(&(first.len() as u16).to_le_bytes());
    two.extend_from_slice(&first);
    two.extend_from_slice(&frame(1, &[varint(2), b"two".to_vec()].concat()));
    out.push(two);
    // Raw: a whole file, header included, unpadded.
    let (_, header) = segment_header(1, 0);
    out.push([vec![5u8], header.to_vec(), records].concat());
    out.push(vec![0u8]);
    out
}
