//! Leases as replicated state: which leases exist, their granted TTL, and which keys are
//! attached to each (etcd's lessor minus its clock).
//!
//! - Grant and revoke are raft commands applied here, in the same redb transaction as
//!   the rest of the entry's effects: the [`schema::LEASES`] table holds every lease
//!   (id → TTL), so leases survive restarts and crash replay exactly like keys do.
//! - Which keys a lease holds is not stored separately: it is each live key's
//!   `KeyValue.lease`, and an in-memory map ([`LeaseTable`]) derived from it is kept up
//!   to date by every put and delete, and rebuilt when the store opens (as etcd's lessor
//!   is refilled while its KV store restores).
//! - A revoke deletes every attached key, in key order, at one revision (DELETE events
//!   in one watch response), then forgets the lease; a lease without keys takes no
//!   revision, as in etcd.
//! - Expiry is *not* state: when a lease runs out is the leader's in-memory clock (the
//!   server crate), which proposes a revoke. Only the granted TTL is replicated.
//!
//! Readers ([`MvccStore::lease`], [`MvccStore::leases`]) may see the lease changes of a
//! batch that is being applied and not yet committed; if that batch fails (a storage
//! error) the table is reloaded from disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bramble_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
};
use redb::ReadableTable;

use super::error::MvccError;
use super::schema::{self, LeaseRecord};
use super::store::MvccStore;
use super::write::{header, WriteCtx};

/// The longest TTL a lease may be granted (etcd's `lease.MaxLeaseTTL`, seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// What the store knows of one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: i64,
    /// The granted TTL, seconds (already raised to the minimum by the proposer).
    pub ttl: i64,
    /// The keys attached to the lease, in key order.
    pub keys: Vec<Vec<u8>>,
}

/// One lease in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LeaseEntry {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every lease and the key → lease attachments, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LeaseTable {
    pub leases: BTreeMap<i64, LeaseEntry>,
    /// Live keys with a lease that exists → that lease.
    pub attached: HashMap<Vec<u8>, i64>,
}

impl LeaseTable {
    /// Builds the table from the stored leases and the live keys' leases. A key naming
    /// a lease that does not exist is left unattached (logged, as etcd does).
    pub(super) fn build(leases: BTreeMap<i64, i64>, attached: HashMap<Vec<u8>, i64>) -> LeaseTable {
        let mut t = LeaseTable {
            leases: leases
                .into_iter()
                .map(|(id, ttl)| {
                    (
                        id,
                        LeaseEntry {
                            ttl,
                            keys: BTreeSet::new(),
                        },
                    )
                })
                .collect(),
            attached: HashMap::new(),
        };
        let mut orphans = 0usize;
        for (key, lease) in attached {
            if lease == 0 {
                continue;
            }
            match t.leases.get_mut(&lease) {
                Some(entry) => {
                    entry.keys.insert(key.clone());
                    t.attached.insert(key, lease);
                }
                None => orphans += 1,
            }
        }
        if orphans > 0 {
            tracing::warn!(
                keys = orphans,
                "live keys name leases that do not exist; they stay without a lease"
            );
        }
        t
    }

    /// Whether lease `id` exists.
    pub(super) fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Records that `key` now holds `lease` (0: none), detaching it from its old lease.
    pub(super) fn attach(&mut self, key: &[u8], lease: i64) {
        let old = self.attached.get(key).copied().unwrap_or(0);
        if old == lease {
            return;
        }
        self.detach(key);
        if lease == 0 {
            return;
        }
        if let Some(entry) = self.leases.get_mut(&lease) {
            entry.keys.insert(key.to_vec());
            self.attached.insert(key.to_vec(), lease);
        }
    }

    /// Records that `key` holds no lease any more (it was deleted).
    pub(super) fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.attached.remove(key) {
            if let Some(entry) = self.leases.get_mut(&old) {
                entry.keys.remove(key);
            }
        }
    }
}

/// Reads the lease table of the store's file: id → TTL (empty if the table does not
/// exist yet: a file written before leases).
pub(super) fn read_leases(rtxn: &redb::ReadTransaction) -> Result<BTreeMap<i64, i64>, MvccError> {
    match rtxn.open_table(schema::LEASES) {
        Ok(t) => read_lease_rows(&t),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// Reads the rows of a lease table: id → TTL.
pub(super) fn read_lease_rows(
    table: &impl ReadableTable<i64, &'static [u8]>,
) -> Result<BTreeMap<i64, i64>, MvccError> {
    let mut out = BTreeMap::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let rec = schema::decode_lease(v.value())?;
        if rec.id != k.value() || rec.id == 0 {
            return Err(MvccError::Corrupt(format!(
                "lease row {} holds lease {}",
                k.value(),
                rec.id
            )));
        }
        out.insert(rec.id, rec.ttl);
    }
    Ok(out)
}

pub(super) fn lock_read(
    t: &RwLock<LeaseTable>,
) -> Result<RwLockReadGuard<'_, LeaseTable>, MvccError> {
    t.read()
        .map_err(|_| MvccError::Corrupt("lease table poisoned by a panic".into()))
}

pub(super) fn lock_write(
    t: &RwLock<LeaseTable>,
) -> Result<RwLockWriteGuard<'_, LeaseTable>, MvccError> {
    t.write()
        .map_err(|_| MvccError::Corrupt("lease table poisoned by a panic".into()))
}

// The lease reads below use the in-memory lease table only (no redb read),
// so async code may call them on a runtime worker. The table's write lock is
// held only while an apply changes one lease (one row write, no commit) and
// across the commit of a snapshot install.
impl MvccStore {
    /// Lease `id` with its TTL and attached keys, or None if it does not exist.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseInfo>, MvccError> {
        let t = lock_read(&self.leases)?;
        Ok(t.leases.get(&id).map(|e| LeaseInfo {
            id,
            ttl: e.ttl,
            keys: e.keys.iter().cloned().collect(),
        }))
    }

    /// Every lease as (id, granted TTL), in id order.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, MvccError> {
        let t = lock_read(&self.leases)?;
        Ok(t.leases.iter().map(|(id, e)| (*id, e.ttl)).collect())
    }

    /// Whether lease `id` exists.
    pub fn lease_exists(&self, id: i64) -> bool {
        lock_read(&self.leases)
            .map(|t| t.contains(id))
            .unwrap_or(false)
    }
}

impl WriteCtx<'_, '_> {
    /// Applies a lease grant (etcd's `lessor.Grant`): id 0 → `LeaseNotFound`, TTL above
    /// [`MAX_LEASE_TTL`] → `LeaseTtlTooLarge`, an existing id → `LeaseExists`. Takes no
    /// revision.
    pub(super) fn lease_grant(
        &mut self,
        req: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, MvccError> {
        if req.id == 0 {
            return Err(MvccError::LeaseNotFound);
        }
        if req.ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        let mut t = lock_write(self.leases)?;
        if t.contains(req.id) {
            return Err(MvccError::LeaseExists);
        }
        let rec = LeaseRecord {
            id: req.id,
            ttl: req.ttl,
            remaining_ttl: 0,
        };
        self.lease_rows
            .insert(req.id, schema::encode_lease(&rec).as_slice())?;
        t.leases.insert(
            req.id,
            LeaseEntry {
                ttl: req.ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(LeaseGrantResponse {
            header: header(self.read_rev()),
            id: req.id,
            ttl: req.ttl,
            error: String::new(),
        })
    }

    /// Applies a lease revoke (etcd's `lessor.Revoke`): deletes the attached keys in key
    /// order at one revision, then the lease. Unknown id → `LeaseNotFound`.
    pub(super) fn lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, MvccError> {
        let keys: Vec<Vec<u8>> = match lock_read(self.leases)?.leases.get(&req.id) {
            Some(e) => e.keys.iter().cloned().collect(),
            None => return Err(MvccError::LeaseNotFound),
        };
        for key in &keys {
            self.delete(key)?;
        }
        self.lease_rows.remove(req.id)?;
        let mut t = lock_write(self.leases)?;
        if let Some(e) = t.leases.remove(&req.id) {
            if !e.keys.is_empty() {
                return Err(MvccError::Corrupt(format!(
                    "lease {} kept {} keys after its revoke deleted them",
                    req.id,
                    e.keys.len()
                )));
            }
        }
        Ok(LeaseRevokeResponse {
            header: header(self.read_rev()),
        })
    }
}
