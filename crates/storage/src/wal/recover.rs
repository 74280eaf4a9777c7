//! Opening a WAL directory: find the segments, replay them, repair a torn
//! tail, refuse anything else.
//!
//! The rules, and why they are safe:
//! - Segment sequence numbers must be contiguous. Purges delete the oldest
//!   segments one at a time, syncing the directory after each, so a gap
//!   means a file was lost.
//! - Before the writer moves to a new segment it fdatasyncs the old one, so
//!   every segment but the last was complete on disk: any invalid record in
//!   it is corruption.
//! - In the last segment, an invalid record (bad crc, truncated, impossible
//!   length) with nothing valid anywhere after it is what a crash during an
//!   unsynced write leaves: nothing after it was acknowledged. It is zeroed
//!   (and synced) so later appends start from clean space.
//! - An invalid record followed by a valid one, or a zero end marker
//!   followed by a valid record, is never a torn write of ours: acknowledged
//!   data may sit after it. `open` fails with the file and offset.
//! - A record whose crc matches but whose contents make no sense is
//!   corruption (or a newer format) and is never dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::io::{WalDir, WalFile};
use super::positions::{Loc, Positions};
use super::record::{self, Decoded, RecordRef};
use super::segment::{self, SegmentId, SEGMENT_HEADER_LEN, TMP_SUFFIX};
use super::{Result, WalError};

/// A live segment.
pub(crate) struct SegInfo {
    pub(crate) id: SegmentId,
    pub(crate) file: Arc<dyn WalFile>,
    pub(crate) path: PathBuf,
}

/// What replaying the directory produced.
pub(crate) struct Recovered {
    /// Live segments, oldest first; never empty; the last one is active.
    pub(crate) segments: Vec<SegInfo>,
    pub(crate) positions: Positions,
    /// Latest value of each meta key and the segment holding it.
    pub(crate) metas: BTreeMap<u8, (u64, Bytes)>,
    /// Where the next record goes in the active segment.
    pub(crate) write_offset: u64,
    /// Size of the active segment.
    pub(crate) capacity: u64,
    /// File and offset of a torn tail that was cut off, if any.
    pub(crate) torn_tail: Option<(PathBuf, u64)>,
    /// Bytes written while opening (a new segment, zeroing a torn tail).
    pub(crate) bytes_written: u64,
}

/// Replays `dir`; creates the first segment (`segment_size` bytes) if empty.
pub(crate) fn recover(dir: &dyn WalDir, segment_size: u64) -> Result<Recovered> {
    let dir_path = dir.path_of("");
    let names = dir
        .list()
        .map_err(|e| WalError::io(format!("listing {}", dir_path.display()), e))?;

    let mut ids = Vec::new();
    let mut removed_tmp = false;
    for name in names {
        if let Some(stem) = name.strip_suffix(TMP_SUFFIX) {
            if SegmentId::is_segment_name(stem) {
                // A segment whose creation did not finish: never used.
                dir.remove(&name).map_err(|e| {
                    WalError::io(format!("removing {}", dir.path_of(&name).display()), e)
                })?;
                removed_tmp = true;
            }
            continue;
        }
        if !SegmentId::is_segment_name(&name) {
            continue;
        }
        match SegmentId::parse(&name) {
            Some(id) => ids.push(id),
            None => {
                return Err(WalError::corruption(
                    dir.path_of(&name),
                    0,
                    "unrecognised segment file name",
                ))
            }
        }
    }
    if removed_tmp {
        dir.sync_dir()
            .map_err(|e| WalError::io(format!("syncing {}", dir_path.display()), e))?;
    }
    ids.sort();
    for w in ids.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(WalError::corruption(
                dir.path_of(&w[1].file_name()),
                0,
                format!(
                    "segment sequence gap: the previous segment is {:016x}, so segment {:016x} is missing",
                    w[0].seq,
                    w[0].seq + 1
                ),
            ));
        }
    }

    let mut rec = Recovered {
        segments: Vec::new(),
        positions: Positions::default(),
        metas: BTreeMap::new(),
        write_offset: SEGMENT_HEADER_LEN,
        capacity: segment_size,
        torn_tail: None,
        bytes_written: 0,
    };

    if ids.is_empty() {
        let id = SegmentId { seq: 1, base: 0 };
        let (file, written) = segment::create(dir, id, segment_size)?;
        rec.bytes_written += written;
        rec.segments.push(SegInfo {
            id,
            file,
            path: dir.path_of(&id.file_name()),
        });
        return Ok(rec);
    }

    let count = ids.len();
    for (n, id) in ids.into_iter().enumerate() {
        let is_last = n + 1 == count;
        let name = id.file_name();
        let path = dir.path_of(&name);
        let file = dir
            .open(&name)
            .map_err(|e| WalError::io(format!("opening {}", path.display()), e))?;
        let size = file
            .size()
            .map_err(|e| WalError::io(format!("sizing {}", path.display()), e))?;
        if size > u64::from(u32::MAX) {
            return Err(WalError::corruption(&path, 0, "segment larger than 4 GiB"));
        }
        let mut data = vec![0u8; size as usize];
        file.read_exact_at(&mut data, 0)
            .map_err(|e| WalError::io(format!("reading {}", path.display()), e))?;
        id.check_header(&data)
            .map_err(|reason| WalError::corruption(&path, 0, reason))?;

        let end = replay_segment(&data, id.seq, &path, is_last, &mut rec)?;
        if is_last {
            rec.write_offset = end as u64;
            rec.capacity = size;
            rec.bytes_written += clear_tail(&*file, &data, end, &path, &mut rec)?;
        }
        rec.segments.push(SegInfo { id, file, path });
    }
    Ok(rec)
}

/// Replays the records of one segment into `rec`; returns the end of its data.
fn replay_segment(
    data: &[u8],
    seq: u64,
    path: &Path,
    is_last: bool,
    rec: &mut Recovered,
) -> Result<usize> {
    let mut off = SEGMENT_HEADER_LEN as usize;
    loop {
        match record::decode(&data[off..]) {
            Decoded::Record(r, size) => {
                apply(r, seq, off, size, path, rec)?;
                off += size;
            }
            Decoded::End => {
                if let Some(v) = record::find_valid_record(data, off + 1) {
                    return Err(WalError::corruption(
                        path,
                        off as u64,
                        format!("zero length where a record should be, but a valid record follows at offset {v}"),
                    ));
                }
                return Ok(off);
            }
            Decoded::Malformed(reason) => {
                return Err(WalError::corruption(path, off as u64, reason))
            }
            Decoded::Invalid(reason) => {
                if let Some(v) = record::find_valid_record(data, off + 1) {
                    return Err(WalError::corruption(
                        path,
                        off as u64,
                        format!("{reason}; a valid record follows at offset {v}, so this is not a torn write"),
                    ));
                }
                if !is_last {
                    return Err(WalError::corruption(
                        path,
                        off as u64,
                        format!("{reason}, in a segment that is not the last (it was synced before the next one was started)"),
                    ));
                }
                tracing::warn!(path = %path.display(), offset = off, %reason, "wal: truncating torn tail");
                rec.torn_tail = Some((path.to_path_buf(), off as u64));
                return Ok(off);
            }
        }
    }
}

/// Applies one replayed record to the recovered state.
fn apply(
    r: RecordRef<'_>,
    seq: u64,
    off: usize,
    size: usize,
    path: &Path,
    rec: &mut Recovered,
) -> Result<()> {
    match r {
        RecordRef::Entry { index, .. } => {
            let loc = Loc {
                seq,
                offset: off as u32,
                len: size as u32,
            };
            rec.positions.append(index, loc).map_err(|e| {
                WalError::corruption(
                    path,
                    off as u64,
                    format!("entry {index} breaks the log: {e}"),
                )
            })
        }
        RecordRef::Meta { key, value } => {
            rec.metas.insert(key, (seq, Bytes::copy_from_slice(value)));
            Ok(())
        }
        RecordRef::TruncateAfter(i) => {
            rec.positions.truncate_after(i);
            Ok(())
        }
        RecordRef::PurgeUpTo(i) => {
            rec.positions.purge_up_to(i);
            Ok(())
        }
    }
}

/// Zeroes whatever non-zero bytes follow the end of data in the active
/// segment (a torn write), so the next recovery does not meet them behind
/// newer records. Returns the bytes written.
fn clear_tail(
    file: &dyn WalFile,
    data: &[u8],
    end: usize,
    path: &Path,
    rec: &mut Recovered,
) -> Result<u64> {
    let Some(last) = data[end..].iter().rposition(|&b| b != 0) else {
        return Ok(0);
    };
    if rec.torn_tail.is_none() {
        tracing::warn!(path = %path.display(), offset = end, "wal: clearing stray bytes after the end of data");
        rec.torn_tail = Some((path.to_path_buf(), end as u64));
    }
    let len = last + 1;
    let zeros = vec![0u8; len];
    file.write_all_at(&zeros, end as u64)
        .map_err(|e| WalError::io(format!("zeroing torn tail of {}", path.display()), e))?;
    file.sync_data()
        .map_err(|e| WalError::io(format!("syncing {}", path.display()), e))?;
    Ok(len as u64)
}
