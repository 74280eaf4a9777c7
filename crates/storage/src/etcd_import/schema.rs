//! etcd's schema in its bbolt database (etcd's `server/storage/schema`, 3.4 to 3.6), read
//! and converted into the rows of a Bramble store.
//!
//! - bucket `key`: revision (8 bytes big-endian main, `'_'`, 8 bytes big-endian sub, and
//!   a `'t'` for a tombstone) → `mvccpb.KeyValue`. Every version of every key that
//!   compaction left, in revision order; a tombstone's value holds only the key.
//! - bucket `meta`: `scheduledCompactRev` and `finishedCompactRev`, each a revision in
//!   the same 17-byte encoding (main is the compaction revision); the rest (consistent
//!   index, term, conf state, storage version) belongs to the old cluster's raft and is
//!   dropped, as etcdutl's restore rewrites it.
//! - bucket `lease`: lease id (8 bytes big-endian) → `leasepb.Lease` (ID, TTL,
//!   RemainingTTL). The keys attached to a lease name it in their `KeyValue.lease`.
//!
//! - bucket `auth`: `authEnabled` = `[1]` when etcd's authentication is on, and
//!   `authRevision` (8 bytes big-endian); buckets `authUsers` and `authRoles`: name →
//!   `authpb.User` / `authpb.Role`. Users (with their bcrypt hashes) and roles are
//!   converted into the store's auth row, with the auth revision. A file with auth on
//!   is refused: the import does not carry the enabled state over yet, and
//!   importing it as disabled would serve every client unauthenticated.
//!
//! The current revision is what etcd's `store.restore` computes: the main revision of
//! the last key row, or the finished compaction revision if that is higher (a compaction
//! may have removed the last rows, tombstones at the compaction revision).

use std::io::Write;

use bramble_api::authpb::{Role, User};
use bramble_api::mvccpb::KeyValue;
use prost::Message;

use super::bbolt::{bucket_root, BucketRoot, Db, Source};
use super::EtcdImportError;
use crate::mvcc::{ImportWriter, ImportedCompaction, MvccError, MAX_LEASE_TTL};

/// etcd's bucket names.
const KEY_BUCKET: &[u8] = b"key";
const META_BUCKET: &[u8] = b"meta";
const LEASE_BUCKET: &[u8] = b"lease";
const AUTH_BUCKET: &[u8] = b"auth";
/// etcd's auth bucket key, `[1]` when authentication is enabled.
const AUTH_ENABLED: &[u8] = b"authEnabled";
/// etcd's auth bucket key of the auth revision.
const AUTH_REVISION: &[u8] = b"authRevision";
/// etcd's buckets of users and roles.
const AUTH_USERS_BUCKET: &[u8] = b"authUsers";
const AUTH_ROLES_BUCKET: &[u8] = b"authRoles";
/// etcd's meta keys of the compaction state.
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// etcd's revision encoding: main, `'_'`, sub.
const REV_BYTES_LEN: usize = 17;
/// With the tombstone mark.
const MARKED_REV_BYTES_LEN: usize = 18;
/// Highest revision accepted: far beyond any real store (a billion writes a second for
/// 146 years), low enough that the restored store never overflows counting on.
const MAX_REVISION: i64 = i64::MAX / 2;
/// Most buckets a root bucket may name (etcd has about a dozen).
const MAX_ROOT_BUCKETS: usize = 1024;

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct Lease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// What an etcd database held, as converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdContent {
    /// The current revision.
    pub revision: i64,
    /// The compaction revision (-1 when never compacted).
    pub compact_revision: i64,
    /// Rows of the key bucket (every version of every key, tombstones included).
    pub key_rows: u64,
    /// Leases.
    pub leases: u64,
    /// Users (etcd's `authUsers`).
    pub auth_users: u64,
    /// Roles (etcd's `authRoles`).
    pub auth_roles: u64,
    /// Whether the stream has an auth row: the database had an auth revision, users or
    /// roles.
    pub auth_row: bool,
}

fn schema_err(msg: impl Into<String>) -> EtcdImportError {
    EtcdImportError::Schema(msg.into())
}

fn write_err(e: MvccError) -> EtcdImportError {
    EtcdImportError::Write(e.to_string())
}

/// An etcd revision key: (main, sub, tombstone).
fn parse_rev(key: &[u8]) -> Result<(i64, i64, bool), EtcdImportError> {
    let tombstone = match key.len() {
        REV_BYTES_LEN => false,
        MARKED_REV_BYTES_LEN if key[REV_BYTES_LEN] == b't' => true,
        _ => return Err(schema_err(format!("bad revision key {key:02x?}"))),
    };
    if key[8] != b'_' {
        return Err(schema_err(format!("bad revision key {key:02x?}")));
    }
    let mut main = [0u8; 8];
    let mut sub = [0u8; 8];
    main.copy_from_slice(&key[..8]);
    sub.copy_from_slice(&key[9..17]);
    match (
        i64::try_from(u64::from_be_bytes(main)),
        i64::try_from(u64::from_be_bytes(sub)),
    ) {
        (Ok(main), Ok(sub)) => Ok((main, sub, tombstone)),
        _ => Err(schema_err(format!("revision key {key:02x?} out of range"))),
    }
}

/// The root bucket's buckets by name.
fn root_buckets<S: ?Sized + Source>(
    db: &Db<S>,
) -> Result<Vec<(Vec<u8>, BucketRoot)>, EtcdImportError> {
    let mut out = Vec::new();
    db.for_each(&db.root(), &mut |e| {
        if !e.bucket {
            return Err(schema_err(format!(
                "a value {:?} in the root bucket",
                String::from_utf8_lossy(e.key)
            )));
        }
        if out.len() >= MAX_ROOT_BUCKETS {
            return Err(schema_err("too many buckets"));
        }
        out.push((e.key.to_vec(), bucket_root(e.key, e.value)?));
        Ok(())
    })?;
    Ok(out)
}

/// The (scheduled, finished) compaction revisions of the meta bucket.
fn compaction<S: ?Sized + Source>(
    db: &Db<S>,
    meta: Option<&BucketRoot>,
) -> Result<(Option<i64>, Option<i64>), EtcdImportError> {
    let (mut scheduled, mut finished) = (None, None);
    let Some(meta) = meta else {
        return Ok((None, None));
    };
    db.for_each(meta, &mut |e| {
        let slot = match e.key {
            SCHEDULED_COMPACT => &mut scheduled,
            FINISHED_COMPACT => &mut finished,
            _ => return Ok(()),
        };
        let (main, _, tombstone) = parse_rev(e.value)?;
        if e.bucket || tombstone {
            return Err(schema_err(format!(
                "meta {}: not a revision",
                String::from_utf8_lossy(e.key)
            )));
        }
        *slot = Some(main);
        Ok(())
    })?;
    Ok((scheduled, finished))
}

/// Checks a key row's value as etcd writes it: a put's `KeyValue` has this revision as
/// its mod revision, a create revision no later and a version of at least 1; a
/// tombstone's holds only the key.
fn check_kv(main: i64, tombstone: bool, value: &[u8]) -> Result<(), EtcdImportError> {
    let kv = KeyValue::decode(value)
        .map_err(|e| schema_err(format!("key row at revision {main}: {e}")))?;
    let ok = if tombstone {
        kv.mod_revision == 0 || kv.mod_revision == main
    } else {
        kv.mod_revision == main && (1..=main).contains(&kv.create_revision) && kv.version >= 1
    };
    if kv.key.is_empty() || !ok {
        return Err(schema_err(format!(
            "key row at revision {main} holds {:?} (create {}, mod {}, version {})",
            String::from_utf8_lossy(&kv.key),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        )));
    }
    Ok(())
}

/// Converts the etcd database `db` into a Bramble snapshot stream written to `out`.
pub(super) fn convert<S: ?Sized + Source>(
    db: &Db<S>,
    out: impl Write,
) -> Result<EtcdContent, EtcdImportError> {
    let buckets = root_buckets(db)?;
    let bucket = |name: &[u8]| buckets.iter().find(|(n, _)| n == name).map(|(_, r)| r);
    let keys =
        bucket(KEY_BUCKET).ok_or_else(|| schema_err("no key bucket: not an etcd database"))?;
    let mut auth_revision = None;
    if let Some(auth) = bucket(AUTH_BUCKET) {
        let mut enabled = false;
        db.for_each(auth, &mut |e| {
            enabled |= e.key == AUTH_ENABLED && e.value == [1];
            if e.key == AUTH_REVISION {
                let bytes: [u8; 8] = e
                    .value
                    .try_into()
                    .map_err(|_| schema_err(format!("auth revision of {} bytes", e.value.len())))?;
                auth_revision = Some(u64::from_be_bytes(bytes));
            }
            Ok(())
        })?;
        if enabled {
            return Err(schema_err(
                "authentication is enabled in this etcd snapshot, and Bramble's import does not \
                 carry an enabled auth state over yet: run `etcdctl auth disable` on etcd \
                 before saving the snapshot (its users and roles are imported; enable auth \
                 again with `etcdctl auth enable` after the restore)",
            ));
        }
    }
    let (scheduled, finished) = compaction(db, bucket(META_BUCKET))?;
    let last_main = match db.last(keys)? {
        Some((key, _)) => parse_rev(&key)?.0,
        None => 0,
    };
    let compaction = match (scheduled, finished) {
        (None, None) => None,
        // As etcd: a scheduled compaction at or below the finished one is done.
        (s, Some(f)) => Some(ImportedCompaction {
            scheduled: s.unwrap_or(f).max(f),
            finished: Some(f),
        }),
        (Some(s), None) => Some(ImportedCompaction {
            scheduled: s,
            finished: None,
        }),
    };
    let compact_revision = compaction.map_or(-1, |c| c.scheduled);
    if compact_revision < -1 {
        return Err(schema_err(format!(
            "compaction revision {compact_revision}"
        )));
    }
    let revision = last_main.max(compact_revision).max(1);
    if revision > MAX_REVISION {
        return Err(schema_err(format!("revision {revision} is out of range")));
    }
    let mut w = ImportWriter::new(out, revision, compaction).map_err(write_err)?;

    let users: Vec<User> = auth_records(db, bucket(AUTH_USERS_BUCKET), "user", |u: &User| &u.name)?;
    let roles: Vec<Role> = auth_records(db, bucket(AUTH_ROLES_BUCKET), "role", |r: &Role| &r.name)?;
    let (auth_users, auth_roles) = (users.len() as u64, roles.len() as u64);
    let auth_row = auth_revision.is_some() || !users.is_empty() || !roles.is_empty();
    if auth_row {
        // etcd starts its auth revision at 1 and writes it with every change.
        let row = crate::mvcc::imported_auth_row(auth_revision.unwrap_or(1).max(1), users, roles)
            .map_err(|e| schema_err(format!("auth: {e}")))?;
        w.auth(&row).map_err(write_err)?;
    }

    let mut leases = 0u64;
    if let Some(root) = bucket(LEASE_BUCKET) {
        db.for_each(root, &mut |e| {
            let id_bytes: [u8; 8] = e
                .key
                .try_into()
                .map_err(|_| schema_err(format!("lease key of {} bytes", e.key.len())))?;
            let id = i64::from_be_bytes(id_bytes);
            let lease =
                Lease::decode(e.value).map_err(|err| schema_err(format!("lease {id:x}: {err}")))?;
            if e.bucket || lease.id != id || id == 0 || !(1..=MAX_LEASE_TTL).contains(&lease.ttl) {
                return Err(schema_err(format!(
                    "lease row {id:x} holds lease {:x} of TTL {}",
                    lease.id, lease.ttl
                )));
            }
            leases += 1;
            w.lease(id, &lease.encode_to_vec()).map_err(write_err)
        })?;
    }

    let mut key_rows = 0u64;
    let mut previous = (0i64, -1i64);
    db.for_each(keys, &mut |e| {
        let (main, sub, tombstone) = parse_rev(e.key)?;
        if e.bucket || main < 1 || main > revision || (main, sub) <= previous {
            return Err(schema_err(format!(
                "key row {main}/{sub} out of order (after {}/{}, current revision {revision})",
                previous.0, previous.1
            )));
        }
        previous = (main, sub);
        check_kv(main, tombstone, e.value)?;
        key_rows += 1;
        w.key(main, sub, tombstone, e.value).map_err(write_err)
    })?;
    w.finish().map_err(write_err)?;
    Ok(EtcdContent {
        revision,
        compact_revision,
        key_rows,
        leases,
        auth_users,
        auth_roles,
        auth_row,
    })
}

/// The records of etcd's `authUsers` or `authRoles` bucket (`what`: "user" or "role"),
/// each checked to be stored under its own name.
fn auth_records<S: ?Sized + Source, M: Message + Default>(
    db: &Db<S>,
    root: Option<&BucketRoot>,
    what: &str,
    name: impl Fn(&M) -> &[u8],
) -> Result<Vec<M>, EtcdImportError> {
    let mut out = Vec::new();
    if let Some(root) = root {
        db.for_each(root, &mut |e| {
            let record = M::decode(e.value).map_err(|err| {
                schema_err(format!(
                    "{what} {:?}: {err}",
                    String::from_utf8_lossy(e.key)
                ))
            })?;
            if e.bucket || name(&record) != e.key {
                return Err(schema_err(format!(
                    "{what} row {:?} holds another {what}",
                    String::from_utf8_lossy(e.key)
                )));
            }
            out.push(record);
            Ok(())
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_as_etcd_encodes_them() {
        let mut k = vec![0, 0, 0, 0, 0, 0, 0, 7, b'_', 0, 0, 0, 0, 0, 0, 0, 2];
        assert_eq!(parse_rev(&k).unwrap(), (7, 2, false));
        k.push(b't');
        assert_eq!(parse_rev(&k).unwrap(), (7, 2, true));
        k[17] = b'x';
        assert!(parse_rev(&k).is_err());
        k.truncate(17);
        k[8] = b'-';
        assert!(parse_rev(&k).is_err());
        k[8] = b'_';
        k[0] = 0x80;
        assert!(parse_rev(&k).is_err());
        assert!(parse_rev(&k[..16]).is_err());
    }
}
