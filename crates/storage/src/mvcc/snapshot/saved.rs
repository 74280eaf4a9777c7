//! Snapshot files as `etcdctl snapshot save` writes them from Bramble's
//! Maintenance.Snapshot stream.
//!
//! ```text
//! stream   a snapshot stream (see [`super`]'s module docs)
//! padding  zero bytes up to a multiple of 512
//! sha256   32 bytes: SHA-256 of stream and padding
//! ```
//!
//! etcd appends the SHA-256 of its payload as the stream's last 32 bytes, and etcdctl
//! (3.4 to 3.6) only saves a file whose length modulo 512 is 32: a bbolt file is a
//! whole number of pages. The zero padding gives Bramble's stream that shape; the
//! stream's own framing says where it ends, so the padding needs no length.
//!
//! Such a file is not a bbolt file: etcd's tools cannot read it.

use std::io::{self, BufReader, Read, Write};

use sha2::{Digest, Sha256};

use super::format::{bad, Decoder, Padding, PADDING_ALIGN};
use super::{verify_stream, SnapshotInfo, StoreSnapshot, IO_BUFFER};
use crate::mvcc::error::MvccError;

/// Length of the SHA-256 trailer.
pub const SAVED_SHA256_LEN: usize = 32;

/// Zero bytes that follow a stream of `stream_len` bytes in a saved file.
pub fn saved_padding(stream_len: u64) -> u64 {
    (PADDING_ALIGN - stream_len % PADDING_ALIGN) % PADDING_ALIGN
}

/// What a checked saved snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSnapshotInfo {
    /// The stream inside it.
    pub stream: SnapshotInfo,
    /// Its SHA-256 trailer (checked).
    pub sha256: [u8; SAVED_SHA256_LEN],
    /// Length of the whole file.
    pub file_bytes: u64,
}

/// Reads and checks a whole saved snapshot file of `file_bytes` bytes from `input`:
/// its length, its SHA-256 trailer, the stream's framing and checksum, the padding.
pub fn verify_saved_snapshot(
    input: &mut impl Read,
    file_bytes: u64,
) -> Result<SavedSnapshotInfo, MvccError> {
    let payload = file_bytes
        .checked_sub(SAVED_SHA256_LEN as u64)
        .filter(|p| p % PADDING_ALIGN == 0)
        .ok_or_else(|| {
            bad(format!(
                "{file_bytes} bytes: not a saved snapshot (length modulo 512 must be 32)"
            ))
        })?;
    let mut hashed = HashingReader {
        inner: (&mut *input).take(payload),
        sha: Sha256::new(),
    };
    let dec = Decoder::new(BufReader::with_capacity(IO_BUFFER, &mut hashed))?
        .with_padding(Padding::Zeros);
    let stream = verify_stream(dec)?;
    let computed: [u8; SAVED_SHA256_LEN] = hashed.sha.finalize().into();
    let mut stored = [0u8; SAVED_SHA256_LEN];
    input
        .read_exact(&mut stored)
        .map_err(|e| bad(format!("reading the sha256 trailer: {e}")))?;
    if stored != computed {
        return Err(bad("sha256 mismatch: the file is corrupt or truncated"));
    }
    Ok(SavedSnapshotInfo {
        stream,
        sha256: stored,
        file_bytes,
    })
}

impl StoreSnapshot {
    /// Writes the view to `out` as a whole saved snapshot file (stream, padding,
    /// SHA-256 trailer: the bytes `etcdctl snapshot save` stores), in one pass.
    /// Returns what it wrote, as [`verify_saved_snapshot`] would report it.
    pub fn write_saved(&self, out: &mut impl Write) -> Result<SavedSnapshotInfo, MvccError> {
        let mut hashed = HashingWriter {
            inner: out,
            sha: Sha256::new(),
        };
        let stream = self.write_to(&mut hashed)?;
        let padding = saved_padding(stream.bytes);
        // Fewer than 512 bytes.
        let zeros = [0u8; PADDING_ALIGN as usize];
        hashed
            .write_all(&zeros[..padding as usize])
            .map_err(|e| MvccError::Storage(format!("writing a saved snapshot: {e}")))?;
        let sha256: [u8; SAVED_SHA256_LEN] = hashed.sha.finalize().into();
        hashed
            .inner
            .write_all(&sha256)
            .and_then(|()| hashed.inner.flush())
            .map_err(|e| MvccError::Storage(format!("writing a saved snapshot: {e}")))?;
        let file_bytes = stream.bytes + padding + SAVED_SHA256_LEN as u64;
        Ok(SavedSnapshotInfo {
            stream,
            sha256,
            file_bytes,
        })
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::snapshot::format::{Encoder, Tag};

    fn stream() -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out).unwrap();
        e.row(Tag::Meta, b"m", &7u64.to_be_bytes()).unwrap();
        e.row(Tag::Key, &[1; 16], b"value").unwrap();
        e.finish().unwrap();
        out
    }

    fn saved(stream: &[u8]) -> Vec<u8> {
        let mut file = stream.to_vec();
        file.resize(
            stream.len() + saved_padding(stream.len() as u64) as usize,
            0,
        );
        let sha: [u8; 32] = Sha256::digest(&file).into();
        file.extend_from_slice(&sha);
        file
    }

    fn verify(file: &[u8]) -> Result<SavedSnapshotInfo, MvccError> {
        verify_saved_snapshot(&mut &file[..], file.len() as u64)
    }

    #[test]
    fn padding_reaches_the_next_multiple_of_512() {
        assert_eq!(saved_padding(0), 0);
        assert_eq!(saved_padding(1), 511);
        assert_eq!(saved_padding(512), 0);
        assert_eq!(saved_padding(513), 511);
    }

    #[test]
    fn a_saved_file_verifies_and_etcdctl_accepts_its_length() {
        let s = stream();
        let file = saved(&s);
        assert_eq!(file.len() % 512, 32);
        let info = verify(&file).unwrap();
        assert_eq!(info.stream.rows, 2);
        assert_eq!(info.file_bytes, file.len() as u64);
        assert_eq!(&info.sha256[..], &file[file.len() - 32..]);
    }

    #[test]
    fn corruption_anywhere_is_refused() {
        let file = saved(&stream());
        for at in [0, 20, file.len() - 40, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert!(
                matches!(verify(&bad), Err(MvccError::BadSnapshot(_))),
                "flip at {at}"
            );
        }
        assert!(verify(&file[..file.len() - 1]).is_err());
        assert!(verify(&file[..file.len() - 32]).is_err());
    }

    #[test]
    fn nonzero_padding_is_refused_even_with_a_matching_sha() {
        let s = stream();
        let mut file = saved(&s);
        file.truncate(file.len() - 32);
        let last = file.len() - 1;
        file[last] = 1;
        let sha: [u8; 32] = Sha256::digest(&file).into();
        file.extend_from_slice(&sha);
        assert!(matches!(verify(&file), Err(MvccError::BadSnapshot(_))));
    }

    #[test]
    fn the_raft_stream_still_refuses_padding() {
        let mut s = stream();
        s.push(0);
        assert!(super::super::verify_snapshot(&mut &s[..]).is_err());
    }
}
