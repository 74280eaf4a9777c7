//! Reading entries back: plan under the lock, pread outside it.
//!
//! The lock is held only to pick, for each index, either the cached payload
//! or its on-disk location (and to clone the segment file handles); the
//! preads happen after it is released, so readers never stall the writer.
//! A segment deleted by a purge in the meantime stays readable through the
//! open handle. Neighbouring records of one segment are fetched with a single
//! pread, and every record's crc is checked again: SD cards rot.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

use super::positions::Loc;
use super::record::{self, Decoded, RecordRef};
use super::state::{SegHandle, Shared};
use super::{Result, WalError};

/// Largest gap between two records still fetched by one pread.
const MAX_GAP: u64 = 4096;
/// Largest single pread.
const MAX_SPAN: u64 = 1 << 20;

enum Slot {
    Mem(u64, Bytes),
    Disk(u64, Loc),
}

/// Resolves a range to inclusive `(lo, hi)`; `None` when empty.
fn resolve(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let lo = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (lo <= hi).then_some((lo, hi))
}

/// Reads the live entries in `range` (clipped to the log's extent): the
/// longest prefix whose payloads (as stored) add up to at most `max_bytes`,
/// and always at least the first entry, whatever its size.
pub(crate) fn read(
    shared: &Shared,
    range: impl RangeBounds<u64>,
    max_bytes: u64,
) -> Result<Vec<(u64, Bytes)>> {
    match read_from(shared, range, max_bytes, Source::MemoryOrDisk)? {
        Some(entries) => Ok(entries),
        None => Err(WalError::Internal(
            "a read that may use the disk came back empty-handed".into(),
        )),
    }
}

/// [`read`] if every entry it returns is in memory, without touching the
/// disk; `None` if one would need a pread.
pub(crate) fn read_cached(
    shared: &Shared,
    range: impl RangeBounds<u64>,
    max_bytes: u64,
) -> Result<Option<Vec<(u64, Bytes)>>> {
    read_from(shared, range, max_bytes, Source::MemoryOnly)
}

/// Where a read may take entries from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    MemoryOrDisk,
    /// Give up (`None`) rather than pread.
    MemoryOnly,
}

fn read_from(
    shared: &Shared,
    range: impl RangeBounds<u64>,
    max_bytes: u64,
    source: Source,
) -> Result<Option<Vec<(u64, Bytes)>>> {
    let Some((lo, hi)) = resolve(&range) else {
        return Ok(Some(Vec::new()));
    };
    let mut files: BTreeMap<u64, SegHandle> = BTreeMap::new();
    let plan = {
        let st = shared.lock();
        let (Some(first), Some(last)) = (st.bounds.first_index(), st.bounds.last_index()) else {
            return Ok(Some(Vec::new()));
        };
        let (lo, hi) = (lo.max(first), hi.min(last));
        if lo > hi {
            return Ok(Some(Vec::new()));
        }
        let mut plan = Vec::with_capacity(usize::try_from(hi - lo + 1).unwrap_or(0).min(1 << 16));
        let mut bytes: u64 = 0;
        for i in lo..=hi {
            if let Some(data) = st.cache.get(i) {
                bytes = bytes.saturating_add(data.len() as u64);
                if bytes > max_bytes && !plan.is_empty() {
                    break;
                }
                plan.push(Slot::Mem(i, data));
                continue;
            }
            // Not cached means written (see state.rs), so it has a location.
            let loc = st.positions.get(i).ok_or_else(|| {
                debug_assert!(false, "entry {i} neither cached nor on disk");
                WalError::Internal(format!("entry {i} is neither cached nor on disk"))
            })?;
            let framing = (record::HEADER_LEN + 1 + record::varint_len(i)) as u64;
            bytes = bytes.saturating_add(u64::from(loc.len).saturating_sub(framing));
            if bytes > max_bytes && !plan.is_empty() {
                break;
            }
            if source == Source::MemoryOnly {
                return Ok(None);
            }
            if let std::collections::btree_map::Entry::Vacant(v) = files.entry(loc.seq) {
                let h = st.files.get(&loc.seq).ok_or_else(|| {
                    WalError::Internal(format!("entry {i} is in unknown segment {}", loc.seq))
                })?;
                v.insert(h.clone());
            }
            plan.push(Slot::Disk(i, loc));
        }
        plan
    };

    let mut out = Vec::with_capacity(plan.len());
    let mut k = 0;
    while k < plan.len() {
        match &plan[k] {
            Slot::Mem(i, data) => {
                out.push((*i, data.clone()));
                k += 1;
            }
            Slot::Disk(_, start) => {
                // Extend the pread over following records of the same segment.
                let mut end = k + 1;
                let mut span_end = u64::from(start.offset) + u64::from(start.len);
                while let Some(Slot::Disk(_, next)) = plan.get(end) {
                    let next_end = u64::from(next.offset) + u64::from(next.len);
                    if next.seq != start.seq
                        || u64::from(next.offset) < span_end
                        || u64::from(next.offset) - span_end > MAX_GAP
                        || next_end - u64::from(start.offset) > MAX_SPAN
                    {
                        break;
                    }
                    span_end = next_end;
                    end += 1;
                }
                let seg = &files[&start.seq];
                let base = u64::from(start.offset);
                let mut buf = vec![0u8; (span_end - base) as usize];
                seg.file.read_exact_at(&mut buf, base).map_err(|e| {
                    WalError::io(format!("reading {} at {base}", seg.path.display()), e)
                })?;
                let buf = Bytes::from(buf);
                for slot in &plan[k..end] {
                    if let Slot::Disk(i, loc) = slot {
                        out.push((*i, decode_entry(&buf, base, *i, *loc, seg)?));
                    }
                }
                k = end;
            }
        }
    }
    Ok(Some(out))
}

/// Checks and extracts entry `index` stored at `loc` from `buf` (which
/// starts at file offset `base`).
fn decode_entry(buf: &Bytes, base: u64, index: u64, loc: Loc, seg: &SegHandle) -> Result<Bytes> {
    let from = (u64::from(loc.offset) - base) as usize;
    let rec = &buf[from..from + loc.len as usize];
    let bad = |reason: String| WalError::corruption(&seg.path, u64::from(loc.offset), reason);
    match record::decode(rec) {
        Decoded::Record(
            RecordRef::Entry {
                index: got,
                payload,
            },
            size,
        ) if size == rec.len() => {
            if got != index {
                return Err(bad(format!("expected entry {index}, found entry {got}")));
            }
            Ok(buf.slice_ref(payload))
        }
        Decoded::Record(other, _) => Err(bad(format!("expected entry {index}, found {other:?}"))),
        Decoded::End => Err(bad(format!("expected entry {index}, found zeros"))),
        Decoded::Invalid(reason) | Decoded::Malformed(reason) => {
            Err(bad(format!("entry {index} unreadable: {reason}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entries, opts, payload};
    use super::super::{Wal, WalOptions};
    use super::resolve;

    #[test]
    fn cached_reads_never_touch_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            tmp.path(),
            WalOptions {
                cache_bytes: 1 << 20,
                ..opts()
            },
        )
        .unwrap();
        wal.append_sync(entries(1..=20)).unwrap();
        let cached = wal.read_cached(5..=9, u64::MAX).unwrap().expect("cached");
        assert_eq!(cached, wal.read(5..=9).unwrap());
        assert_eq!(cached[0], (5, payload(5)));
        assert_eq!(wal.read_cached(30..40, u64::MAX).unwrap(), Some(Vec::new()));
        drop(wal);
        // Reopened, nothing is cached: the same read needs the disk.
        let wal = Wal::open(tmp.path(), opts()).unwrap();
        assert_eq!(wal.read_cached(5..=9, u64::MAX).unwrap(), None);
        assert_eq!(wal.read(5..=9).unwrap().len(), 5);
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(resolve(&(1..4)), Some((1, 3)));
        assert_eq!(resolve(&(1..=4)), Some((1, 4)));
        assert_eq!(resolve(&(..)), Some((0, u64::MAX)));
        assert_eq!(resolve(&(3..3)), None);
        assert_eq!(resolve(&(0..0)), None);
        let (hi, lo) = (5, 4);
        assert_eq!(resolve(&(hi..=lo)), None);
    }
}
