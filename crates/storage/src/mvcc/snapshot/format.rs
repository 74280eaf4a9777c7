//! The snapshot stream's framing: header, records, trailer and its checksum, apart from
//! what the rows mean (see the format in [`super`]'s module docs).
//!
//! [`Encoder`] and [`Decoder`] know tags, lengths, ordering of tables and the crc; the
//! tables' key and value encodings are [`super`]'s business.

use std::io::{self, Read, Write};

use crate::mvcc::error::MvccError;

/// First bytes of every snapshot.
pub(super) const MAGIC: &[u8; 8] = b"BRAMSNAP";
/// The format version this build writes and reads.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Tag byte of the trailer record.
const TRAILER: u8 = 0xff;
/// Longest key a record may carry: every table's keys are short (revision keys are 17
/// bytes at most, meta and raft names a few words), so a longer one is corruption.
pub(super) const MAX_KEY_LEN: u32 = 4096;

/// The table a record belongs to; records come in this order (the tag's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Tag {
    /// [`crate::mvcc::schema::META`]: name → u64 (8 bytes big-endian).
    Meta = 1,
    /// [`crate::mvcc::schema::RAFT`]: name → bytes.
    Raft = 2,
    /// [`crate::mvcc::schema::LEASES`]: lease id (i64, 8 bytes big-endian) → bytes.
    Lease = 3,
    /// [`crate::mvcc::schema::KEYS`]: revision key → `KeyValue` bytes.
    Key = 4,
}

impl Tag {
    fn from_byte(b: u8) -> Option<Tag> {
        match b {
            1 => Some(Tag::Meta),
            2 => Some(Tag::Raft),
            3 => Some(Tag::Lease),
            4 => Some(Tag::Key),
            _ => None,
        }
    }
}

/// One record: its table, key and value (borrowed from the decoder's buffers).
pub(super) type Row<'a> = (Tag, &'a [u8], &'a [u8]);

/// A refused snapshot.
pub(super) fn bad(msg: impl Into<String>) -> MvccError {
    MvccError::BadSnapshot(msg.into())
}

fn write_err(e: io::Error) -> MvccError {
    MvccError::Storage(format!("writing snapshot: {e}"))
}

/// Writes a snapshot stream: header on creation, then [`Encoder::row`]s in tag order,
/// then [`Encoder::finish`] for the trailer.
pub(super) struct Encoder<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    bytes: u64,
    rows: u64,
    last_tag: Tag,
}

impl<W: Write> Encoder<W> {
    /// Starts the stream with its header.
    pub(super) fn new(out: W) -> Result<Self, MvccError> {
        let mut e = Encoder {
            out,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
            rows: 0,
            last_tag: Tag::Meta,
        };
        e.put(MAGIC)?;
        e.put(&FORMAT_VERSION.to_be_bytes())?;
        Ok(e)
    }

    fn put(&mut self, buf: &[u8]) -> Result<(), MvccError> {
        self.out.write_all(buf).map_err(write_err)?;
        self.crc.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Appends one row of table `tag`.
    pub(super) fn row(&mut self, tag: Tag, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        assert!(tag >= self.last_tag, "snapshot rows out of table order");
        self.last_tag = tag;
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|&l| l <= MAX_KEY_LEN)
            .ok_or_else(|| MvccError::Corrupt(format!("{tag:?} key of {} bytes", key.len())))?;
        let value_len = u32::try_from(value.len())
            .map_err(|_| MvccError::Corrupt(format!("{tag:?} value of {} bytes", value.len())))?;
        self.put(&[tag as u8])?;
        self.put(&key_len.to_be_bytes())?;
        self.put(key)?;
        self.put(&value_len.to_be_bytes())?;
        self.put(value)?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the trailer and flushes; returns (rows, bytes written).
    pub(super) fn finish(mut self) -> Result<(u64, u64), MvccError> {
        self.put(&[TRAILER])?;
        self.put(&self.rows.to_be_bytes())?;
        let crc = self.crc.clone().finalize();
        // The crc covers everything before it, so it is written without hashing.
        self.out.write_all(&crc.to_be_bytes()).map_err(write_err)?;
        self.bytes += 4;
        self.out.flush().map_err(write_err)?;
        Ok((self.rows, self.bytes))
    }
}

/// Reads and checks a snapshot stream: the header on creation, then rows from
/// [`Decoder::next_row`] until it has checked the trailer.
pub(super) struct Decoder<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    bytes: u64,
    rows: u64,
    last_tag: Tag,
    key: Vec<u8>,
    value: Vec<u8>,
    done: bool,
    padding: Padding,
}

/// What may follow the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Padding {
    /// Nothing: the stream as the raft layer sends it.
    None,
    /// Fewer than [`PADDING_ALIGN`] zero bytes: the stream inside a saved file (see
    /// `super::saved`).
    Zeros,
}

/// The alignment zero padding brings a stream to.
pub(super) const PADDING_ALIGN: u64 = 512;

impl<R: Read> Decoder<R> {
    /// Reads and checks the header.
    pub(super) fn new(input: R) -> Result<Self, MvccError> {
        let mut d = Decoder {
            input,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
            rows: 0,
            last_tag: Tag::Meta,
            key: Vec::new(),
            value: Vec::new(),
            done: false,
            padding: Padding::None,
        };
        let mut magic = [0u8; 8];
        d.read_hashed(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a Bramble snapshot (bad magic bytes)"));
        }
        let version = d.read_u32()?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        Ok(d)
    }

    /// Accepts `padding` after the trailer.
    pub(super) fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Bytes read so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Rows read so far.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    fn io(&self, e: io::Error) -> MvccError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad(format!("truncated after {} bytes", self.bytes))
        } else {
            bad(format!("reading after {} bytes: {e}", self.bytes))
        }
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> Result<(), MvccError> {
        self.input.read_exact(buf).map_err(|e| self.io(e))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> Result<(), MvccError> {
        self.read_raw(buf)?;
        self.crc.update(buf);
        Ok(())
    }

    fn read_u32(&mut self) -> Result<u32, MvccError> {
        let mut b = [0u8; 4];
        self.read_hashed(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Reads `len` bytes into `buf` (replacing its content). Grows with the data that
    /// actually arrives, so a corrupt length cannot make it allocate gigabytes up front.
    fn read_field(&mut self, len: u32, which: Field) -> Result<(), MvccError> {
        let mut buf = std::mem::take(match which {
            Field::Key => &mut self.key,
            Field::Value => &mut self.value,
        });
        buf.clear();
        let got = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut buf)
            .map_err(|e| self.io(e))?;
        self.bytes += got as u64;
        if got != len as usize {
            return Err(bad(format!("truncated after {} bytes", self.bytes)));
        }
        self.crc.update(&buf);
        match which {
            Field::Key => self.key = buf,
            Field::Value => self.value = buf,
        }
        Ok(())
    }

    /// The next row as (table, key, value), or None once the trailer is read and
    /// checked: row count, crc, and nothing after it.
    pub(super) fn next_row(&mut self) -> Result<Option<Row<'_>>, MvccError> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.read_hashed(&mut tag)?;
        if tag[0] == TRAILER {
            self.trailer()?;
            self.done = true;
            return Ok(None);
        }
        let tag = Tag::from_byte(tag[0]).ok_or_else(|| {
            bad(format!(
                "unknown record tag {} at byte {}",
                tag[0],
                self.bytes - 1
            ))
        })?;
        if tag < self.last_tag {
            return Err(bad(format!(
                "{tag:?} record after {:?} records at byte {}",
                self.last_tag,
                self.bytes - 1
            )));
        }
        self.last_tag = tag;
        let key_len = self.read_u32()?;
        if key_len > MAX_KEY_LEN {
            return Err(bad(format!(
                "{tag:?} key of {key_len} bytes at byte {}",
                self.bytes
            )));
        }
        self.read_field(key_len, Field::Key)?;
        let value_len = self.read_u32()?;
        self.read_field(value_len, Field::Value)?;
        self.rows += 1;
        Ok(Some((tag, &self.key, &self.value)))
    }

    fn trailer(&mut self) -> Result<(), MvccError> {
        let mut count = [0u8; 8];
        self.read_hashed(&mut count)?;
        let count = u64::from_be_bytes(count);
        let expected = self.crc.clone().finalize();
        let mut crc = [0u8; 4];
        self.read_raw(&mut crc)?;
        let crc = u32::from_be_bytes(crc);
        if crc != expected {
            return Err(bad(format!(
                "checksum mismatch (stored {crc:#010x}, computed {expected:#010x})"
            )));
        }
        if count != self.rows {
            return Err(bad(format!(
                "trailer counts {count} rows, the stream holds {}",
                self.rows
            )));
        }
        let mut rest = Vec::new();
        (&mut self.input)
            .take(PADDING_ALIGN)
            .read_to_end(&mut rest)
            .map_err(|e| self.io(e))?;
        let padded = self.padding == Padding::Zeros
            && (rest.len() as u64) < PADDING_ALIGN
            && rest.iter().all(|&b| b == 0);
        if rest.is_empty() || padded {
            Ok(())
        } else {
            Err(bad(format!(
                "bytes after the trailer at byte {}",
                self.bytes
            )))
        }
    }
}

/// Which of the decoder's buffers a field is read into.
#[derive(Clone, Copy)]
enum Field {
    Key,
    Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out).unwrap();
        e.row(Tag::Meta, b"m", &7u64.to_be_bytes()).unwrap();
        e.row(Tag::Key, &[1; 16], b"value").unwrap();
        e.row(Tag::Key, &[2; 16], b"").unwrap();
        let (rows, bytes) = e.finish().unwrap();
        assert_eq!((rows, bytes), (3, out.len() as u64));
        out
    }

    type OwnedRow = (Tag, Vec<u8>, Vec<u8>);

    fn decode(bytes: &[u8]) -> Result<Vec<OwnedRow>, MvccError> {
        let mut d = Decoder::new(bytes)?;
        let mut rows = Vec::new();
        while let Some((t, k, v)) = d.next_row()? {
            rows.push((t, k.to_vec(), v.to_vec()));
        }
        assert_eq!(d.bytes(), bytes.len() as u64);
        Ok(rows)
    }

    #[test]
    fn roundtrip() {
        let bytes = sample();
        let rows = decode(&bytes).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            (Tag::Meta, b"m".to_vec(), 7u64.to_be_bytes().to_vec())
        );
        assert_eq!(rows[2], (Tag::Key, vec![2; 16], vec![]));
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).unwrap_err();
            assert!(matches!(err, MvccError::BadSnapshot(_)), "{len}: {err}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let err = decode(&b).unwrap_err();
                assert!(matches!(err, MvccError::BadSnapshot(_)), "{i}/{bit}: {err}");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(MvccError::BadSnapshot(_))));
    }

    #[test]
    fn tables_out_of_order_are_refused() {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out).unwrap();
        e.row(Tag::Key, b"k", b"v").unwrap();
        e.finish().unwrap();
        // Rewrite the row's tag to a later table's, then an earlier one after it.
        let mut two = out[..12].to_vec();
        let row = &out[12..out.len() - 13];
        two.extend_from_slice(row);
        two.extend_from_slice(row);
        two[12 + row.len()] = Tag::Meta as u8;
        let err = Decoder::new(two.as_slice())
            .and_then(|mut d| {
                d.next_row()?;
                d.next_row().map(|_| ())
            })
            .unwrap_err();
        assert!(err.to_string().contains("Meta record after Key"), "{err}");
    }
}
