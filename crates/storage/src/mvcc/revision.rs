//! Revisions and their on-disk key encoding.
//!
//! A [`Revision`] names one change of the key space, as etcd's `revision`: `main` is the
//! revision of a whole atomic change (one put, one delete range, one txn), `sub` numbers
//! the individual writes inside it (0, 1, 2, ...).
//!
//! In the key table every stored version of a key is filed under its revision, encoded as
//! 16 bytes: `main` then `sub`, each a big-endian u64, so byte order is revision order.
//! A tombstone (the record of a delete) gets one more byte, [`TOMBSTONE_MARK`] (`'t'`),
//! like etcd's `markedRevBytesLen` (etcd separates main and sub with a `'_'`; Bramble does
//! not need that byte, its file format is its own).

use super::error::MvccError;

/// Length of an encoded revision without the tombstone mark.
pub(super) const REV_BYTES_LEN: usize = 16;
/// Length of an encoded revision with the tombstone mark.
pub(super) const MARKED_REV_BYTES_LEN: usize = REV_BYTES_LEN + 1;
/// The byte appended to a tombstone's revision key.
pub(super) const TOMBSTONE_MARK: u8 = b't';

/// The revision a read at `requested` sees when the store is at `current`: 0 or less is the
/// current one (etcd's "latest"), above `current` is a `FutureRevision`.
pub(super) fn read_revision(requested: i64, current: i64) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    Ok(if requested <= 0 { current } else { requested })
}

/// One change of the key space: `main` is shared by all writes of one atomic change, `sub`
/// orders the writes inside it. Ordered by `(main, sub)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Revision {
    /// Revision of the atomic change (the store's revision counter).
    pub main: i64,
    /// Index of the write inside that change.
    pub sub: i64,
}

impl Revision {
    /// The revision `(main, sub)`.
    pub(super) const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// Encodes the revision as a key-table key, 17 bytes with the tombstone mark.
    ///
    /// Panics on a negative revision: revisions written by the store start at 1.
    pub(super) fn to_key(self, tombstone: bool) -> RevKey {
        assert!(
            self.main >= 0 && self.sub >= 0,
            "negative revision {self:?} cannot be encoded"
        );
        let mut bytes = [0u8; MARKED_REV_BYTES_LEN];
        bytes[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        bytes[8..16].copy_from_slice(&(self.sub as u64).to_be_bytes());
        let len = if tombstone {
            bytes[REV_BYTES_LEN] = TOMBSTONE_MARK;
            MARKED_REV_BYTES_LEN
        } else {
            REV_BYTES_LEN
        };
        RevKey { bytes, len }
    }

    /// Decodes a key-table key: the revision and whether it is a tombstone.
    pub(super) fn from_key(key: &[u8]) -> Result<(Revision, bool), MvccError> {
        let tombstone = match key.len() {
            REV_BYTES_LEN => false,
            MARKED_REV_BYTES_LEN if key[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => {
                return Err(MvccError::Corrupt(format!(
                    "bad revision key {key:02x?} in the key table"
                )))
            }
        };
        let mut main = [0u8; 8];
        let mut sub = [0u8; 8];
        main.copy_from_slice(&key[..8]);
        sub.copy_from_slice(&key[8..16]);
        let (main, sub) = (u64::from_be_bytes(main), u64::from_be_bytes(sub));
        if main > i64::MAX as u64 || sub > i64::MAX as u64 {
            return Err(MvccError::Corrupt(format!(
                "revision key {key:02x?} out of range"
            )));
        }
        Ok((Revision::new(main as i64, sub as i64), tombstone))
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// An encoded revision key (16 or 17 bytes), kept on the stack.
#[derive(Clone, Copy)]
pub(super) struct RevKey {
    bytes: [u8; MARKED_REV_BYTES_LEN],
    len: usize,
}

impl RevKey {
    /// The encoded bytes.
    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for RevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RevKey({:02x?})", self.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_roundtrip_and_marker() {
        let r = Revision::new(5, 2);
        let k = r.to_key(false);
        assert_eq!(k.as_slice().len(), 16);
        assert_eq!(Revision::from_key(k.as_slice()).unwrap(), (r, false));
        let t = r.to_key(true);
        assert_eq!(t.as_slice().len(), 17);
        assert_eq!(t.as_slice()[16], b't');
        assert_eq!(Revision::from_key(t.as_slice()).unwrap(), (r, true));
    }

    #[test]
    fn byte_order_is_revision_order() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(255, 3),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_key(false).as_slice() < w[1].to_key(false).as_slice());
            // A tombstone sorts right after the same revision and before the next one.
            assert!(w[0].to_key(true).as_slice() < w[1].to_key(false).as_slice());
        }
    }

    #[test]
    fn bad_keys_are_corrupt_not_panics() {
        for bad in [&b""[..], &[0u8; 15], &[0u8; 18], &[0u8; 17]] {
            assert!(matches!(
                Revision::from_key(bad),
                Err(MvccError::Corrupt(_))
            ));
        }
        let mut neg = [0xffu8; 16];
        neg[8..].fill(0);
        assert!(matches!(
            Revision::from_key(&neg),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    #[should_panic]
    fn negative_revision_is_an_invariant_violation() {
        let _ = Revision::new(-1, 0).to_key(false);
    }
}
