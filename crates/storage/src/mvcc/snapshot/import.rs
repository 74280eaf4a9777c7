//! Snapshot streams made from another store's data (an etcd database, see
//! `crate::etcd_import`): the rows of a store written as a snapshot stream, so that the
//! import is installed by the same checked path as any snapshot (framing, then the
//! content: meta table, revision keys, key values, leases, rebuilt index).

use std::io::{BufWriter, Write};

use super::format::{Encoder, Tag};
use super::IO_BUFFER;
use crate::mvcc::error::MvccError;
use crate::mvcc::revision::Revision;
use crate::mvcc::schema;

/// A store's compaction state: the revision compacted (scheduled) and, when its
/// deletions were finished, the finished one (at most the scheduled one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImportedCompaction {
    /// Scheduled compaction revision.
    pub scheduled: i64,
    /// Finished compaction revision, if the deletions completed.
    pub finished: Option<i64>,
}

/// Writes a snapshot stream row by row: the meta rows on creation, then the auth row,
/// then leases, then keys (the stream's table order), then [`ImportWriter::finish`].
pub(crate) struct ImportWriter<W: Write> {
    enc: Encoder<BufWriter<W>>,
    keys_started: bool,
    leases_started: bool,
}

impl<W: Write> ImportWriter<W> {
    /// Starts a stream of a store at revision `current_rev` with `compaction`; its raft
    /// position is (0, 0) and it has no raft rows (a restore writes its own).
    pub(crate) fn new(
        out: W,
        current_rev: i64,
        compaction: Option<ImportedCompaction>,
    ) -> Result<Self, MvccError> {
        let mut enc = Encoder::new(BufWriter::with_capacity(IO_BUFFER, out))?;
        let rev =
            |r: i64| u64::try_from(r).map_err(|_| MvccError::BadSnapshot(format!("revision {r}")));
        let mut meta = vec![
            (schema::META_SCHEMA_VERSION, schema::SCHEMA_VERSION),
            (schema::META_APPLIED_INDEX, 0),
            (schema::META_APPLIED_TERM, 0),
            (schema::META_CURRENT_REV, rev(current_rev)?),
        ];
        if let Some(c) = compaction {
            meta.push((schema::META_SCHEDULED_COMPACT, rev(c.scheduled)?));
            if let Some(f) = c.finished {
                meta.push((schema::META_FINISHED_COMPACT, rev(f)?));
            }
        }
        for (name, value) in meta {
            enc.row(Tag::Meta, name.as_bytes(), &value.to_be_bytes())?;
        }
        Ok(ImportWriter {
            enc,
            keys_started: false,
            leases_started: false,
        })
    }

    /// Adds the auth state's raft row (see `crate::mvcc::imported_auth_row`). Before
    /// leases and keys.
    pub(crate) fn auth(&mut self, row: &[u8]) -> Result<(), MvccError> {
        if self.keys_started || self.leases_started {
            return Err(MvccError::BadSnapshot(
                "the auth row after leases or keys".into(),
            ));
        }
        self.enc.row(Tag::Raft, schema::RAFT_AUTH.as_bytes(), row)
    }

    /// Adds lease `id` whose record is `record` (`leasepb.Lease` protobuf bytes, which
    /// are the lease table's values). Leases come before keys.
    pub(crate) fn lease(&mut self, id: i64, record: &[u8]) -> Result<(), MvccError> {
        if self.keys_started {
            return Err(MvccError::BadSnapshot("a lease after the keys".into()));
        }
        self.leases_started = true;
        self.enc.row(Tag::Lease, &id.to_be_bytes(), record)
    }

    /// Adds the key-table row of revision (`main`, `sub`), a tombstone if `tombstone`,
    /// holding `value` (`mvccpb.KeyValue` protobuf bytes).
    pub(crate) fn key(
        &mut self,
        main: i64,
        sub: i64,
        tombstone: bool,
        value: &[u8],
    ) -> Result<(), MvccError> {
        if main < 0 || sub < 0 {
            return Err(MvccError::BadSnapshot(format!(
                "negative revision {main}/{sub}"
            )));
        }
        self.keys_started = true;
        let key = Revision::new(main, sub).to_key(tombstone);
        self.enc.row(Tag::Key, key.as_slice(), value)
    }

    /// Ends the stream; returns (rows, bytes).
    pub(crate) fn finish(self) -> Result<(u64, u64), MvccError> {
        self.enc.finish()
    }
}
