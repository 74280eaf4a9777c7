//! Record framing: how one log operation is laid out on disk.
//!
//! ```text
//! +-----------+-----------+--------+----------------------+
//! | len: u32  | crc: u32  | kind u8| body (len - 1 bytes) |
//! +-----------+-----------+--------+----------------------+
//! ```
//!
//! All integers are little-endian. `len` counts `kind` + body, so a real
//! record always has `len >= 1` and a zero `len` marks the end of data in a
//! preallocated (zero-filled) segment. `crc` is crc32 (IEEE, via
//! crc32fast) over the `len` bytes, `kind` and body, so a torn length
//! field is caught as well. Indexes are LEB128 varints: SD cards wear out, and
//! per-entry overhead is 9 bytes + a 1-10 byte index (12 bytes for a typical
//! raft index) instead of 17 with fixed-width fields.
//!
//! Bodies: `Entry` = varint index + payload; `Meta` = key byte + value;
//! `TruncateAfter` / `PurgeUpTo` = varint index.

use super::Record;

/// Bytes before the kind byte: `len` + `crc`.
pub(crate) const HEADER_LEN: usize = 8;

const KIND_ENTRY: u8 = 1;
const KIND_META: u8 = 2;
const KIND_TRUNCATE_AFTER: u8 = 3;
const KIND_PURGE_UP_TO: u8 = 4;

/// A record decoded in place from a segment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordRef<'a> {
    Entry { index: u64, payload: &'a [u8] },
    Meta { key: u8, value: &'a [u8] },
    TruncateAfter(u64),
    PurgeUpTo(u64),
}

/// What [`decode`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid record occupying `size` bytes.
    Record(RecordRef<'a>, usize),
    /// A zero length: no more data in this segment.
    End,
    /// Bytes that are not a record (bad crc, truncated, impossible length):
    /// what a torn write leaves behind, or corruption.
    Invalid(String),
    /// The crc matches but the contents make no sense (unknown kind, bad
    /// varint). Never a torn write: always reported as corruption.
    Malformed(String),
}

/// Length of `v` as a LEB128 varint.
pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a varint from the start of `buf`: (value, bytes used).
fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        // The 10th byte may only carry the top bit of a u64.
        if i == 9 && b > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Total on-disk size of `rec`, header included.
pub(crate) fn encoded_len(rec: &Record) -> u64 {
    let body = match rec {
        Record::Entry { index, payload } => varint_len(*index) + payload.len(),
        Record::Meta { value, .. } => 1 + value.len(),
        Record::TruncateAfter { index } | Record::PurgeUpTo { index } => varint_len(*index),
    };
    (HEADER_LEN + 1 + body) as u64
}

/// Appends the framed `rec` to `out`; returns its size.
///
/// The caller has checked `encoded_len(rec)` against the segment limit, which
/// is far below `u32::MAX`.
pub(crate) fn encode(rec: &Record, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    match rec {
        Record::Entry { index, payload } => {
            out.push(KIND_ENTRY);
            put_varint(out, *index);
            out.extend_from_slice(payload);
        }
        Record::Meta { key, value } => {
            out.push(KIND_META);
            out.push(*key);
            out.extend_from_slice(value);
        }
        Record::TruncateAfter { index } => {
            out.push(KIND_TRUNCATE_AFTER);
            put_varint(out, *index);
        }
        Record::PurgeUpTo { index } => {
            out.push(KIND_PURGE_UP_TO);
            put_varint(out, *index);
        }
    }
    let len = out.len() - start - HEADER_LEN;
    assert!(
        u32::try_from(len).is_ok(),
        "record length checked by caller"
    );
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, encoded_len(rec) as usize);
    out.len() - start
}

fn checksum(len_bytes: &[u8], rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(rest);
    h.finalize()
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Decodes the record at the start of `buf` (which extends to the end of the
/// segment, so a length running past it is a truncated record).
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < 4 {
        // The writer never starts a record it cannot finish in a segment, so
        // a short tail is padding: zero, or not ours.
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Invalid(format!(
                "{} stray bytes at the end of the segment",
                buf.len()
            ))
        };
    }
    let len = u32_at(buf, 0) as usize;
    if len == 0 {
        return Decoded::End;
    }
    if buf.len() < HEADER_LEN {
        return Decoded::Invalid("truncated record header".into());
    }
    let avail = buf.len() - HEADER_LEN;
    if len > avail {
        return Decoded::Invalid(format!(
            "record length {len} runs past the end of the segment ({avail} bytes left)"
        ));
    }
    let stored = u32_at(buf, 4);
    let content = &buf[HEADER_LEN..HEADER_LEN + len];
    let computed = checksum(&buf[..4], content);
    if stored != computed {
        return Decoded::Invalid(format!(
            "crc mismatch (stored {stored:08x}, computed {computed:08x}) in a record of length {len}"
        ));
    }
    match parse_body(content[0], &content[1..]) {
        Ok(rec) => Decoded::Record(rec, HEADER_LEN + len),
        Err(reason) => Decoded::Malformed(reason),
    }
}

fn parse_body(kind: u8, body: &[u8]) -> Result<RecordRef<'_>, String> {
    let index_only = |what: &str| -> Result<u64, String> {
        match get_varint(body) {
            Some((v, n)) if n == body.len() => Ok(v),
            _ => Err(format!("malformed {what} record body")),
        }
    };
    match kind {
        KIND_ENTRY => match get_varint(body) {
            Some((index, n)) => Ok(RecordRef::Entry {
                index,
                payload: &body[n..],
            }),
            None => Err("malformed entry index".into()),
        },
        KIND_META => match body.split_first() {
            Some((&key, value)) => Ok(RecordRef::Meta { key, value }),
            None => Err("meta record without a key".into()),
        },
        KIND_TRUNCATE_AFTER => index_only("truncate-after").map(RecordRef::TruncateAfter),
        KIND_PURGE_UP_TO => index_only("purge-up-to").map(RecordRef::PurgeUpTo),
        other => Err(format!("unknown record kind {other}")),
    }
}

/// Whether any record with a matching crc starts at or after `from`.
///
/// Used after an invalid record to tell a torn tail (nothing valid follows)
/// from corruption in the middle of data (something valid follows). A
/// candidate needs a non-zero length, so zero runs, the bulk of a
/// preallocated segment, are skipped without checksumming.
pub(crate) fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while pos < data.len() {
        // Next non-zero byte; a record's non-zero length field starts at most
        // 3 bytes before it.
        let nz = match data[pos..].iter().position(|&b| b != 0) {
            Some(i) => pos + i,
            None => return None,
        };
        let lo = nz.saturating_sub(3).max(pos);
        for cand in lo..=nz {
            if matches!(
                decode(&data[cand..]),
                Decoded::Record(..) | Decoded::Malformed(_)
            ) {
                return Some(cand);
            }
        }
        pos = nz + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Entry {
                index: 0,
                payload: Bytes::new(),
            },
            Record::Entry {
                index: u64::MAX - 1,
                payload: Bytes::from(vec![7u8; 300]),
            },
            Record::Meta {
                key: 1,
                value: Bytes::from_static(b"vote"),
            },
            Record::Meta {
                key: 2,
                value: Bytes::new(),
            },
            Record::TruncateAfter { index: 12345 },
            Record::PurgeUpTo { index: 1 << 40 },
        ]
    }

    fn as_ref(r: &Record) -> RecordRef<'_> {
        match r {
            Record::Entry { index, payload } => RecordRef::Entry {
                index: *index,
                payload,
            },
            Record::Meta { key, value } => RecordRef::Meta { key: *key, value },
            Record::TruncateAfter { index } => RecordRef::TruncateAfter(*index),
            Record::PurgeUpTo { index } => RecordRef::PurgeUpTo(*index),
        }
    }

    #[test]
    fn roundtrip_every_kind() {
        let recs = all_kinds();
        let mut buf = Vec::new();
        for r in &recs {
            let n = encode(r, &mut buf);
            assert_eq!(n as u64, encoded_len(r));
        }
        buf.extend_from_slice(&[0u8; 64]);
        let mut off = 0;
        for r in &recs {
            match decode(&buf[off..]) {
                Decoded::Record(got, size) => {
                    assert_eq!(got, as_ref(r));
                    off += size;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(decode(&buf[off..]), Decoded::End);
    }

    #[test]
    fn entry_overhead_is_small() {
        let r = Record::Entry {
            index: 1_000_000,
            payload: Bytes::from(vec![0u8; 256]),
        };
        assert_eq!(encoded_len(&r), 256 + 8 + 1 + 3);
    }

    #[test]
    fn varint_edges() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX >> 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(get_varint(&b), Some((v, b.len())));
        }
        assert_eq!(get_varint(&[0x80; 11]), None);
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let r = Record::Entry {
            index: 42,
            payload: Bytes::from_static(b"hello wal"),
        };
        let mut buf = Vec::new();
        encode(&r, &mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                match decode(&b) {
                    Decoded::Record(got, _) => panic!("flip {byte}:{bit} decoded as {got:?}"),
                    Decoded::End | Decoded::Invalid(_) | Decoded::Malformed(_) => {}
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_invalid() {
        let r = Record::Meta {
            key: 1,
            value: Bytes::from_static(b"some vote bytes"),
        };
        let mut buf = Vec::new();
        encode(&r, &mut buf);
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Invalid(_)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn valid_crc_with_unknown_kind_is_malformed() {
        let mut buf = Vec::new();
        encode(&Record::PurgeUpTo { index: 5 }, &mut buf);
        buf[HEADER_LEN] = 99;
        let crc = checksum(&buf[..4], &buf[HEADER_LEN..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&buf), Decoded::Malformed(_)));
    }

    #[test]
    fn find_valid_record_skips_zeros_and_garbage() {
        let mut data = vec![0u8; 1000];
        data[10] = 0xff;
        data[11] = 0x13;
        assert_eq!(find_valid_record(&data, 0), None);
        let mut rec = Vec::new();
        encode(&Record::TruncateAfter { index: 9 }, &mut rec);
        data[500..500 + rec.len()].copy_from_slice(&rec);
        assert_eq!(find_valid_record(&data, 0), Some(500));
        assert_eq!(find_valid_record(&data, 501), None);
    }
}
