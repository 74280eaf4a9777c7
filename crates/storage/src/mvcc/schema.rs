//! The on-disk layout: redb tables and their encodings, kept apart from the logic (as
//! etcd's `schema/buckets`).
//!
//! - [`KEYS`] (`"key"`): revision key (16 bytes, or 17 with the tombstone mark, see
//!   [`super::revision`]) → `mvccpb.KeyValue` protobuf bytes. Every version of every key
//!   lives here until compaction; a tombstone's value is a `KeyValue` holding only the key.
//! - [`META`] (`"meta"`): name → u64:
//!   - `schema_version`: [`SCHEMA_VERSION`];
//!   - `consistent_index` / `consistent_term`: the raft log position of the last applied
//!     entry, written in the same transaction as the data it produced (etcd's consistent
//!     index); this is what makes replaying the WAL from `applied()` exact;
//!   - `current_revision`: the store's revision counter (1 when fresh, as etcd);
//!   - `scheduled_compact_revision` / `finished_compact_revision`: as etcd's meta bucket
//!     keys of the same purpose: a compaction is scheduled (logically done) before its
//!     physical deletion, and finished after; a store that opens with scheduled >
//!     finished completes the deletion. Absent means never compacted.
//! - [`RAFT`] (`"raft"`): name → bytes the raft layer stores with the applied position:
//!   `membership`, the last applied membership (opaque to this crate; etcd keeps its
//!   membership in its backend the same way), and `alarms`, the alarms raised (an
//!   `etcdserverpb.AlarmResponse` holding only its alarm list, see [`super::alarm`]), and
//!   `auth`, the auth state (users with their bcrypt hashes and roles, roles with their
//!   key permissions, whether auth is enabled, the auth revision: one
//!   `AuthRecord` protobuf, see [`super::auth`]; absent on a store that never had an
//!   auth change, which means disabled, no users or roles, auth revision 1).
//! - [`LEASES`] (`"lease"`): lease id → [`LeaseRecord`] protobuf bytes (the fields of
//!   etcd's `leasepb.Lease`), one row per lease that exists (see [`super::lease`]). Files
//!   written before leases have no such table; it is created by the first apply.

use bramble_api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadableTable, Table, TableDefinition};

use super::error::MvccError;

/// Revision key → `KeyValue` protobuf.
pub(super) const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Store metadata, name → u64.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Raft layer state applied with the data, name → opaque bytes.
pub(super) const RAFT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft");
/// Lease id → [`LeaseRecord`] protobuf.
pub(super) const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("lease");

/// Raft table key: the last applied membership.
pub(super) const RAFT_MEMBERSHIP: &str = "membership";
/// Raft table key: the alarms raised (see [`super::alarm`]); absent when none.
pub(super) const RAFT_ALARMS: &str = "alarms";
/// Raft table key: the auth state (see [`super::auth`]); absent when never changed.
pub(super) const RAFT_AUTH: &str = "auth";

/// Version of this layout, stored under [`META_SCHEMA_VERSION`].
pub(super) const SCHEMA_VERSION: u64 = 1;

/// Meta key: layout version.
pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
/// Meta key: raft index of the last applied entry.
pub(super) const META_APPLIED_INDEX: &str = "consistent_index";
/// Meta key: raft term of the last applied entry.
pub(super) const META_APPLIED_TERM: &str = "consistent_term";
/// Meta key: current revision.
pub(super) const META_CURRENT_REV: &str = "current_revision";
/// Meta key: revision of the last compaction applied (logically).
pub(super) const META_SCHEDULED_COMPACT: &str = "scheduled_compact_revision";
/// Meta key: revision of the last compaction whose deletions are complete.
pub(super) const META_FINISHED_COMPACT: &str = "finished_compact_revision";

/// The meta table's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// Raft (index, term) of the last applied entry; (0, 0) when fresh.
    pub applied: (u64, u64),
    /// Current revision (1 when fresh).
    pub current_rev: i64,
    /// Last scheduled compaction revision, -1 if none.
    pub scheduled_compact: i64,
    /// Last finished compaction revision, -1 if none.
    pub finished_compact: i64,
}

fn get_u64(
    table: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<u64>, MvccError> {
    Ok(table.get(name)?.map(|v| v.value()))
}

fn get_rev(
    table: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<i64>, MvccError> {
    match get_u64(table, name)? {
        None => Ok(None),
        Some(v) => i64::try_from(v)
            .map(Some)
            .map_err(|_| MvccError::Corrupt(format!("meta {name} = {v} is out of range"))),
    }
}

/// Reads the meta table, checking the layout version.
pub(super) fn read_meta(table: &impl ReadableTable<&'static str, u64>) -> Result<Meta, MvccError> {
    match get_u64(table, META_SCHEMA_VERSION)? {
        Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(MvccError::Corrupt(format!(
                "unknown schema version {v} (this build reads {SCHEMA_VERSION})"
            )))
        }
        None => {
            return Err(MvccError::Corrupt(
                "meta table has no schema version".into(),
            ))
        }
    }
    let meta = Meta {
        applied: (
            get_u64(table, META_APPLIED_INDEX)?.unwrap_or(0),
            get_u64(table, META_APPLIED_TERM)?.unwrap_or(0),
        ),
        current_rev: get_rev(table, META_CURRENT_REV)?.unwrap_or(1),
        scheduled_compact: get_rev(table, META_SCHEDULED_COMPACT)?.unwrap_or(-1),
        finished_compact: get_rev(table, META_FINISHED_COMPACT)?.unwrap_or(-1),
    };
    if meta.current_rev < 1
        || meta.finished_compact > meta.scheduled_compact
        || meta.scheduled_compact > meta.current_rev
    {
        return Err(MvccError::Corrupt(format!(
            "inconsistent meta table {meta:?}"
        )));
    }
    Ok(meta)
}

/// Writes the apply progress: raft position and current revision.
pub(super) fn write_progress(
    table: &mut Table<'_, &'static str, u64>,
    applied: (u64, u64),
    current_rev: i64,
) -> Result<(), MvccError> {
    table.insert(META_APPLIED_INDEX, applied.0)?;
    table.insert(META_APPLIED_TERM, applied.1)?;
    table.insert(META_CURRENT_REV, rev_u64(current_rev))?;
    Ok(())
}

/// Writes a compaction revision under `name` ([`META_SCHEDULED_COMPACT`] or
/// [`META_FINISHED_COMPACT`]).
pub(super) fn write_compact(
    table: &mut Table<'_, &'static str, u64>,
    name: &'static str,
    rev: i64,
) -> Result<(), MvccError> {
    table.insert(name, rev_u64(rev))?;
    Ok(())
}

fn rev_u64(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or_else(|_| panic!("negative revision {rev} stored in meta"))
}

/// Encodes a key-table value.
pub(super) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    kv.encode_to_vec()
}

/// Decodes a key-table value.
pub(super) fn decode_kv(bytes: &[u8]) -> Result<KeyValue, MvccError> {
    Ok(KeyValue::decode(bytes)?)
}

/// The fields of a stored `KeyValue` that the index rebuild needs; decoding only these
/// skips the value bytes instead of copying them.
#[derive(Clone, PartialEq, Message)]
pub(super) struct KeyValueHead {
    /// `KeyValue.key`.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// `KeyValue.create_revision`.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// `KeyValue.version`.
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// `KeyValue.lease`.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// A lease-table value: the fields of etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct LeaseRecord {
    /// The lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The granted TTL, seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// etcd's checkpointed remaining TTL (0: unset); kept for the format, unused.
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// Encodes a lease-table value.
pub(super) fn encode_lease(rec: &LeaseRecord) -> Vec<u8> {
    rec.encode_to_vec()
}

/// Decodes a lease-table value.
pub(super) fn decode_lease(bytes: &[u8]) -> Result<LeaseRecord, MvccError> {
    Ok(LeaseRecord::decode(bytes)?)
}

/// Decodes the head of a key-table value.
pub(super) fn decode_kv_head(bytes: &[u8]) -> Result<KeyValueHead, MvccError> {
    Ok(KeyValueHead::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_roundtrip_and_head() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            value: vec![7; 300],
            lease: 42,
        };
        let bytes = encode_kv(&kv);
        assert_eq!(decode_kv(&bytes).unwrap(), kv);
        let head = decode_kv_head(&bytes).unwrap();
        assert_eq!(head.key, b"k");
        assert_eq!(head.create_revision, 3);
        assert_eq!(head.version, 4);
        assert_eq!(head.lease, 42);
        let rec = LeaseRecord {
            id: -5,
            ttl: 9_000_000_000,
            remaining_ttl: 0,
        };
        assert_eq!(decode_lease(&encode_lease(&rec)).unwrap(), rec);
        assert!(matches!(
            decode_kv(&[0xff, 0xff]),
            Err(MvccError::Corrupt(_))
        ));
    }

    #[test]
    fn meta_roundtrip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("m.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(META).unwrap();
            assert!(matches!(read_meta(&t), Err(MvccError::Corrupt(_))));
            t.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).unwrap();
            assert_eq!(
                read_meta(&t).unwrap(),
                Meta {
                    applied: (0, 0),
                    current_rev: 1,
                    scheduled_compact: -1,
                    finished_compact: -1
                }
            );
            write_progress(&mut t, (7, 2), 12).unwrap();
            write_compact(&mut t, META_SCHEDULED_COMPACT, 10).unwrap();
            write_compact(&mut t, META_FINISHED_COMPACT, 9).unwrap();
            let m = read_meta(&t).unwrap();
            assert_eq!(m.applied, (7, 2));
            assert_eq!(m.current_rev, 12);
            assert_eq!((m.scheduled_compact, m.finished_compact), (10, 9));
            // A finished compaction after the scheduled one cannot be.
            write_compact(&mut t, META_FINISHED_COMPACT, 11).unwrap();
            assert!(matches!(read_meta(&t), Err(MvccError::Corrupt(_))));
            t.insert(META_SCHEMA_VERSION, 99).unwrap();
            assert!(matches!(read_meta(&t), Err(MvccError::Corrupt(_))));
            t.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).unwrap();
            t.insert(META_CURRENT_REV, u64::MAX).unwrap();
            assert!(matches!(read_meta(&t), Err(MvccError::Corrupt(_))));
        }
        txn.commit().unwrap();
    }
}
