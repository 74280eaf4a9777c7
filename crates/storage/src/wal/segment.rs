//! One segment file: its name, its header, and how it is created.
//!
//! Segments are named `<seq:016x>-<base:016x>.wal`: `seq` orders them (and
//! must have no gaps), `base` is the next entry index at creation, for
//! humans reading `ls`. A segment starts with a 32-byte header:
//!
//! ```text
//! magic "BRMBLWAL" | version u32 | seq u64 | base u64 | crc32 of the first 28 bytes
//! ```
//!
//! followed by records (see `record.rs`) and zeros up to the preallocated
//! size.

use std::sync::Arc;

use super::io::{WalDir, WalFile};
use super::{Result, WalError};

/// Size of the segment header; records start here.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;

const MAGIC: &[u8; 8] = b"BRMBLWAL";
const VERSION: u32 = 1;
const SUFFIX: &str = ".wal";
/// Suffix of a segment being created; such files are deleted on open.
pub(crate) const TMP_SUFFIX: &str = crate::atomic_file::TEMP_SUFFIX;

/// `seq` and `base` of a segment, as encoded in its name and header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentId {
    pub(crate) seq: u64,
    pub(crate) base: u64,
}

impl SegmentId {
    /// The file name of this segment.
    pub(crate) fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SUFFIX}", self.seq, self.base)
    }

    /// Parses a segment file name. `None` for other files.
    pub(crate) fn parse(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (seq, base) = stem.split_once('-')?;
        if seq.len() != 16 || base.len() != 16 {
            return None;
        }
        Some(SegmentId {
            seq: u64::from_str_radix(seq, 16).ok()?,
            base: u64::from_str_radix(base, 16).ok()?,
        })
    }

    /// Whether `name` looks like one of our segments (parsable or not).
    pub(crate) fn is_segment_name(name: &str) -> bool {
        name.ends_with(SUFFIX)
    }

    /// The header bytes for this segment.
    pub(crate) fn header(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..20].copy_from_slice(&self.seq.to_le_bytes());
        h[20..28].copy_from_slice(&self.base.to_le_bytes());
        let crc = crc32fast::hash(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Checks that `data` starts with this segment's header.
    pub(crate) fn check_header(&self, data: &[u8]) -> std::result::Result<(), String> {
        let n = SEGMENT_HEADER_LEN as usize;
        if data.len() < n {
            return Err(format!(
                "file is {} bytes, shorter than a segment header",
                data.len()
            ));
        }
        if &data[0..8] != MAGIC {
            return Err("bad magic: not a bramble wal segment".into());
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&data[28..32]);
        if crc32fast::hash(&data[0..28]) != u32::from_le_bytes(crc) {
            return Err("segment header crc mismatch".into());
        }
        let expected = self.header();
        if data[8..12] != expected[8..12] {
            return Err("unsupported segment format version".into());
        }
        if data[12..28] != expected[12..28] {
            return Err("segment header does not match the file name".into());
        }
        Ok(())
    }
}

/// Creates segment `id` of `size` bytes and returns it open for writing.
///
/// The file is built under a temporary name (header written, space
/// preallocated, fsynced) and only then renamed into place, followed by a
/// directory fsync. So a file with a segment name is always complete, and
/// a crash mid-creation leaves only a `.tmp` file that `open` deletes.
/// Returns the file and the bytes written to create it.
pub(crate) fn create(
    dir: &dyn WalDir,
    id: SegmentId,
    size: u64,
) -> Result<(Arc<dyn WalFile>, u64)> {
    let name = id.file_name();
    let tmp = format!("{name}{TMP_SUFFIX}");
    let ctx = |what: &str| format!("{what} {}", dir.path_of(&tmp).display());
    // A leftover from a crash during an earlier attempt.
    match dir.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io(ctx("removing stale"), e)),
    }
    let file = dir
        .create(&tmp)
        .map_err(|e| WalError::io(ctx("creating"), e))?;
    let header = id.header();
    file.write_all_at(&header, 0)
        .map_err(|e| WalError::io(ctx("writing header of"), e))?;
    let zeros = file
        .preallocate(size)
        .map_err(|e| WalError::io(ctx("preallocating"), e))?;
    file.sync_all()
        .map_err(|e| WalError::io(ctx("syncing"), e))?;
    dir.rename(&tmp, &name)
        .map_err(|e| WalError::io(ctx("renaming"), e))?;
    dir.sync_dir().map_err(|e| {
        WalError::io(
            format!("syncing directory {}", dir.path_of("").display()),
            e,
        )
    })?;
    Ok((file, header.len() as u64 + zeros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::io::OsDir;

    #[test]
    fn names_roundtrip_and_sort_by_seq() {
        let a = SegmentId { seq: 1, base: 0xff };
        let b = SegmentId { seq: 0x10, base: 0 };
        assert_eq!(a.file_name(), "0000000000000001-00000000000000ff.wal");
        assert_eq!(SegmentId::parse(&a.file_name()), Some(a));
        assert!(a.file_name() < b.file_name());
        assert_eq!(SegmentId::parse("0001-0002.wal"), None);
        assert_eq!(SegmentId::parse("LOCK"), None);
        assert_eq!(
            SegmentId::parse("000000000000000g-0000000000000000.wal"),
            None
        );
    }

    #[test]
    fn header_checks() {
        let id = SegmentId { seq: 3, base: 7 };
        let h = id.header();
        assert!(id.check_header(&h).is_ok());
        assert!(SegmentId { seq: 4, base: 7 }.check_header(&h).is_err());
        let mut bad = h;
        bad[15] ^= 1;
        assert!(id.check_header(&bad).unwrap_err().contains("crc"));
        assert!(id.check_header(&h[..10]).is_err());
    }

    #[test]
    fn create_is_preallocated_with_header() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OsDir::open(tmp.path()).unwrap();
        let id = SegmentId { seq: 1, base: 0 };
        let (f, _) = create(&dir, id, 64 * 1024).unwrap();
        assert_eq!(f.size().unwrap(), 64 * 1024);
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, 0).unwrap();
        assert!(id.check_header(&h).is_ok());
        let names = dir.list().unwrap();
        assert!(names.contains(&id.file_name()));
        assert!(!names.iter().any(|n| n.ends_with(TMP_SUFFIX)));
    }
}
