//! [`MvccStore`]: opening the store, its shared state, checkpoints.
//!
//! # Concurrency
//!
//! One applier at a time (the `writer` mutex; raft applies entries in order anyway) and
//! any number of concurrent readers (`&self`). Readers never see a half-applied entry:
//!
//! - the applier changes the in-memory index as it goes, but only ever adds revisions
//!   newer than the published current revision, and readers look the index up *at* a
//!   revision no newer than the published one, so uncommitted entries are invisible;
//!   if the apply fails its index changes are undone from an undo log;
//! - the current revision is published after the redb commit, and a reader loads it
//!   before opening its redb read transaction, so that snapshot holds every revision the
//!   reader can ask for;
//! - a compaction publishes its revision before deleting anything, and a reader checks
//!   its read revision against it after opening its snapshot and under the index lock:
//!   either the reader sees the new compaction revision (and fails with `Compacted` if it
//!   reads below it) or its snapshot predates the deletions;
//! - installing a raft snapshot ([`super::snapshot`]) replaces the file's content, the
//!   index and every published value at once. Readers pin the install epoch (with the
//!   current revision, [`MvccStore::pin`]) before opening their redb snapshot and check
//!   it under the index lock ([`MvccStore::check_readable`]), which the install holds
//!   across its commit and the swap: a reader that straddles an install fails with
//!   `StoreReplaced` (and the read methods retry) instead of mixing the two states.
//!
//! # Durability
//!
//! Applies commit with [`redb::Durability::None`]: no fsync, the WAL is the durable
//! record. [`MvccStore::checkpoint`] commits with `Durability::Immediate` (and redb's
//! quick-repair, so reopening after a crash does not walk the whole file). After a crash
//! the store reopens at its last checkpoint, whose raft position [`MvccStore::applied`]
//! reports, and the raft layer replays the WAL from there. A clean drop of the store also
//! persists what was applied (redb makes pending commits durable on close).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bramble_api::etcdserverpb::AlarmMember;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::alarm;
use super::compaction::CompactionJob;
use super::error::MvccError;
use super::lease::{self, LeaseTable};
use super::revision::Revision;
use super::schema::{self, Meta, KEYS, META};
use super::tree_index::TreeIndex;

/// Options of [`MvccStore::open`].
#[derive(Debug, Clone)]
pub struct MvccOptions {
    /// redb page cache size. Small by default: a Pi has 1-8 GiB for everything.
    pub cache_size_bytes: usize,
}

impl Default for MvccOptions {
    fn default() -> Self {
        MvccOptions {
            cache_size_bytes: 16 * 1024 * 1024,
        }
    }
}

/// etcd's MVCC key-value store on redb: the Raft state machine. See the module docs.
pub struct MvccStore {
    /// The redb file. Everyone shares it (read lock) to begin transactions; only
    /// defragmentation ([`super::defrag`]) takes it whole, as redb's compaction needs.
    db: RwLock<Database>,
    /// All keys and their revisions; includes the revisions of an apply in progress.
    pub(super) index: RwLock<TreeIndex>,
    /// Revision of the last committed change, the newest revision readers may read.
    pub(super) current_rev: AtomicI64,
    /// Readers below this revision get `Compacted`; -1 when never compacted.
    pub(super) compact_rev: AtomicI64,
    /// (index, term) of the last committed raft entry.
    pub(super) applied: Mutex<(u64, u64)>,
    /// The applier's state; holding it is being the applier.
    pub(super) writer: Mutex<WriterState>,
    /// Every lease and the keys attached to each (see [`super::lease`]).
    pub(super) leases: RwLock<LeaseTable>,
    /// The alarms raised, as committed (see [`super::alarm`]); the applier works on a
    /// copy and stores it back after its commit.
    pub(super) alarms: RwLock<Vec<AlarmMember>>,
    /// The auth state (a copy of the raft table's `auth` row).
    pub(super) auth: RwLock<super::auth::AuthState>,
    /// The simple tokens issued by applied Authenticate entries (memory only).
    pub(super) tokens: super::auth::token::SimpleTokens,
    /// Bumped (under the index write lock) each time a raft snapshot replaces the store;
    /// readers check it did not move since they opened their redb snapshot.
    pub(super) install_epoch: AtomicU64,
    /// How long each durable commit (a checkpoint: redb's fsync) took.
    pub(super) commit_latency: crate::latency::LatencyHistogram,
    /// The physical deletion of the last compaction, while it is not finished (see
    /// [`super::compaction`]); only the holder of `writer` takes it.
    pub(super) compaction_job: Mutex<Option<CompactionJob>>,
    /// What the compactions' deletions took and removed, for etcd's metrics.
    pub(super) compaction_stats: super::compaction::CompactionStats,
    /// Called when a compaction's deletion is scheduled: wakes the background loop.
    pub(super) compaction_waker: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The last compaction whose deletion finished, for Compact's `physical` waiters.
    pub(super) finished_compact_rev: AtomicI64,
    /// The hashes computed by the last compactions (see [`super::compaction_hash`]).
    pub(super) compaction_hashes: super::compaction_hash::HashStorage,
}

/// What a reader loads before it opens its redb read transaction (see "Concurrency").
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadPin {
    /// The install epoch the reader's snapshot and index must both belong to.
    pub epoch: u64,
    /// The current revision; the redb snapshot opened after loading it holds it.
    pub current: i64,
}

/// The state a committed file holds, from which `open` and `install_snapshot` build
/// the in-memory state.
pub(super) struct Loaded {
    pub meta: Meta,
    pub index: TreeIndex,
    pub leases: LeaseTable,
    pub alarms: Vec<AlarmMember>,
    pub auth: super::auth::AuthState,
}

/// Reads and checks the state held by the key, meta and lease tables (of a read
/// transaction, or of the write transaction that installs a snapshot).
pub(super) fn load_state(
    keys: &impl ReadableTable<&'static [u8], &'static [u8]>,
    meta: &impl ReadableTable<&'static str, u64>,
    lease_rows: std::collections::BTreeMap<i64, i64>,
    alarms: Vec<AlarmMember>,
    auth: super::auth::AuthState,
) -> Result<Loaded, MvccError> {
    let meta = schema::read_meta(meta)?;
    let (index, max_rev, attached) = rebuild_index(keys)?;
    if max_rev > meta.current_rev {
        return Err(MvccError::Corrupt(format!(
            "key table holds revision {max_rev} beyond the current revision {}",
            meta.current_rev
        )));
    }
    let leases = LeaseTable::build(lease_rows, attached);
    Ok(Loaded {
        meta,
        index,
        leases,
        alarms,
        auth,
    })
}

/// What the applier knows (it runs ahead of the published values during an apply).
#[derive(Debug, Clone)]
pub(super) struct WriterState {
    /// Current revision, including the applied but uncommitted entries of a batch.
    pub rev: i64,
    /// Latest compaction revision (scheduled).
    pub compact_rev: i64,
    /// Raft position of the last applied entry.
    pub applied: (u64, u64),
    /// Something was committed since the last checkpoint.
    pub dirty: bool,
}

impl WriterState {
    /// The applier's state matching a committed meta table (a compaction it did not
    /// finish is resumed separately, see [`MvccStore::resume_compaction`]).
    pub(super) fn committed(meta: &Meta) -> WriterState {
        WriterState {
            rev: meta.current_rev,
            compact_rev: meta.scheduled_compact,
            applied: meta.applied,
            dirty: false,
        }
    }
}

impl MvccStore {
    /// Opens (or creates) the store in the redb file at `path` and rebuilds the key index
    /// from it. Schedules again the deletion of a compaction that was interrupted.
    pub fn open(path: &Path, opts: MvccOptions) -> Result<MvccStore, MvccError> {
        let db = Builder::new()
            .set_cache_size(opts.cache_size_bytes)
            .create(path)?;
        Self::init_tables(&db)?;

        let loaded = {
            let rtxn = db.begin_read()?;
            let lease_rows = lease::read_leases(&rtxn)?;
            let (alarms, auth) = match rtxn.open_table(schema::RAFT) {
                Ok(raft) => (alarm::read(&raft)?, super::auth::read(&raft)?),
                // Files written before the raft table existed.
                Err(redb::TableError::TableDoesNotExist(_)) => (Vec::new(), Default::default()),
                Err(e) => return Err(e.into()),
            };
            load_state(
                &rtxn.open_table(KEYS)?,
                &rtxn.open_table(META)?,
                lease_rows,
                alarms,
                auth,
            )?
        };
        let Loaded {
            meta,
            index,
            leases,
            alarms,
            auth,
        } = loaded;
        tracing::info!(
            path = %path.display(),
            keys = index.len(),
            revision = meta.current_rev,
            compact_revision = meta.scheduled_compact,
            leases = leases.leases.len(),
            alarms = alarms.len(),
            applied_index = meta.applied.0,
            "mvcc store opened"
        );
        let store = MvccStore {
            db: RwLock::new(db),
            index: RwLock::new(index),
            current_rev: AtomicI64::new(meta.current_rev),
            // The logical compaction: the rows below it may be partly deleted already.
            compact_rev: AtomicI64::new(meta.scheduled_compact),
            applied: Mutex::new(meta.applied),
            writer: Mutex::new(WriterState::committed(&meta)),
            leases: RwLock::new(leases),
            alarms: RwLock::new(alarms),
            auth: RwLock::new(auth),
            tokens: Default::default(),
            install_epoch: AtomicU64::new(0),
            commit_latency: Default::default(),
            compaction_job: Mutex::new(None),
            compaction_stats: Default::default(),
            compaction_waker: OnceLock::new(),
            finished_compact_rev: AtomicI64::new(meta.finished_compact),
            compaction_hashes: Default::default(),
        };
        {
            let mut w = store.lock_writer()?;
            store.resume_compaction(&mut w, &meta)?;
        }
        Ok(store)
    }

    /// Schedules again the deletion of a compaction that the committed state scheduled
    /// but did not finish (the background loop, or `finish_compaction`, runs it).
    pub(super) fn resume_compaction(
        &self,
        w: &mut WriterState,
        meta: &Meta,
    ) -> Result<(), MvccError> {
        // After a snapshot install, a job of the replaced state means nothing.
        *self.lock_compaction_job() = None;
        self.finished_compact_rev
            .store(meta.finished_compact, Ordering::SeqCst);
        if meta.scheduled_compact > meta.finished_compact {
            tracing::info!(
                revision = meta.scheduled_compact,
                "resuming interrupted compaction"
            );
            self.run_compaction(w, meta.scheduled_compact)?;
        }
        Ok(())
    }

    /// Creates the tables and the schema version in a new file.
    fn init_tables(db: &Database) -> Result<(), MvccError> {
        {
            let rtxn = db.begin_read()?;
            if let Ok(t) = rtxn.open_table(META) {
                if t.get(schema::META_SCHEMA_VERSION)?.is_some() {
                    return Ok(());
                }
            }
        }
        let txn = db.begin_write()?;
        {
            let keys = txn.open_table(KEYS)?;
            if !keys.is_empty()? {
                return Err(MvccError::Corrupt(
                    "key table present without a schema version".into(),
                ));
            }
            txn.open_table(schema::RAFT)?;
            txn.open_table(schema::LEASES)?;
            let mut meta = txn.open_table(META)?;
            meta.insert(schema::META_SCHEMA_VERSION, schema::SCHEMA_VERSION)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Raft (index, term) of the last applied entry, stored atomically with the data;
    /// (0, 0) when fresh.
    pub fn applied(&self) -> (u64, u64) {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current revision: that of the last change (1 when fresh, as etcd).
    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::SeqCst)
    }

    /// The compaction revision: reads below it fail with `Compacted` (-1 when never
    /// compacted, as etcd).
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::SeqCst)
    }

    /// The alarms raised, every member's, sorted by member and type (etcd's
    /// `alarmStore.Get(NONE)`): what Status lists and what refuses changes.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        alarm::lock_read(&self.alarms).clone()
    }

    /// Makes everything applied so far durable: one redb commit with
    /// `Durability::Immediate` (an fsync). Called by the raft layer periodically and on
    /// shutdown. Does nothing if nothing was applied since the last checkpoint.
    pub fn checkpoint(&self) -> Result<(), MvccError> {
        let mut w = self.lock_writer()?;
        self.checkpoint_locked(&mut w)
    }

    /// [`MvccStore::checkpoint`] by the holder of the writer lock.
    pub(super) fn checkpoint_locked(&self, w: &mut WriterState) -> Result<(), MvccError> {
        if !w.dirty {
            return Ok(());
        }
        let mut txn = self.db().begin_write()?;
        txn.set_quick_repair(true);
        {
            let mut meta = txn.open_table(META)?;
            schema::write_progress(&mut meta, w.applied, w.rev)?;
        }
        let started = std::time::Instant::now();
        txn.commit()?;
        self.commit_latency.observe(started.elapsed());
        w.dirty = false;
        Ok(())
    }

    /// How long the durable commits of checkpoints took since open: the
    /// commits that write the database to disk, as etcd's backend commits
    /// do (`etcd_disk_backend_commit_duration_seconds`). The applies between
    /// them commit without an fsync and are not counted.
    pub fn commit_latency(&self) -> crate::latency::LatencySnapshot {
        self.commit_latency.snapshot()
    }

    /// Keys in the key index (etcd's `etcd_debugging_mvcc_keys_total`):
    /// live keys, and deleted ones until a compaction removes them.
    pub fn index_keys(&self) -> usize {
        self.index.read().map_or(0, |i| i.len())
    }

    /// Loads what a reader needs before opening its redb read transaction: the install
    /// epoch first, then the current revision (see "Concurrency").
    pub(super) fn pin(&self) -> ReadPin {
        let epoch = self.install_epoch.load(Ordering::SeqCst);
        let current = self.current_rev.load(Ordering::SeqCst);
        ReadPin { epoch, current }
    }

    /// Whether a reader pinned at `pin` may go on reading revision `at`: called under
    /// the index lock after the reader opened its redb snapshot. `StoreReplaced` if a
    /// snapshot install happened since the pin, `Compacted` if a compaction passed `at`.
    pub(super) fn check_readable(&self, pin: ReadPin, at: i64) -> Result<(), MvccError> {
        if self.install_epoch.load(Ordering::SeqCst) != pin.epoch {
            return Err(MvccError::StoreReplaced);
        }
        if at < self.compact_revision() {
            return Err(MvccError::Compacted);
        }
        Ok(())
    }

    /// Makes the store's state after a commit visible to readers.
    pub(super) fn publish(&self, rev: i64, applied: (u64, u64)) {
        self.current_rev.store(rev, Ordering::SeqCst);
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = applied;
    }

    /// The redb file, to begin a transaction (waits while a defragmentation runs). The
    /// guard is only for beginning it: redb transactions do not borrow the database.
    pub(super) fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A panic while holding the lock cannot leave the Database half changed (redb
        // keeps its own state consistent), so poisoning is ignored.
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The redb file alone: no transaction can begin while the guard lives.
    pub(super) fn db_exclusive(&self) -> RwLockWriteGuard<'_, Database> {
        self.db.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_writer(&self) -> Result<MutexGuard<'_, WriterState>, MvccError> {
        self.writer
            .lock()
            .map_err(|_| MvccError::Corrupt("an earlier apply panicked".into()))
    }

    pub(super) fn write_index(&self) -> Result<RwLockWriteGuard<'_, TreeIndex>, MvccError> {
        self.index
            .write()
            .map_err(|_| MvccError::Corrupt("key index poisoned by a panic".into()))
    }

    /// Rebuilds the in-memory lease table from the committed file (after a failed apply
    /// left it with changes that were not committed).
    pub(super) fn reload_leases(&self) -> Result<(), MvccError> {
        let rtxn = self.db().begin_read()?;
        let (_, _, attached) = rebuild_index(&rtxn.open_table(KEYS)?)?;
        let table = LeaseTable::build(lease::read_leases(&rtxn)?, attached);
        *lease::lock_write(&self.leases)? = table;
        Ok(())
    }

    /// A copy of the lease table (for tests and checks).
    #[cfg(test)]
    pub(super) fn lease_table_snapshot(&self) -> LeaseTable {
        lease::lock_read(&self.leases)
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// A copy of the key index (for tests and checks).
    #[cfg(test)]
    pub(super) fn index_snapshot(&self) -> TreeIndex {
        super::read::lock(&self.index)
            .map(|i| i.clone())
            .unwrap_or_default()
    }
}

/// Live key → the lease its latest version names (non-zero only).
pub(super) type Attachments = HashMap<Vec<u8>, i64>;

/// Rebuilds the key index from the key table (etcd's `restore`): revisions in order, a
/// key's first surviving version starts it (with its stored create revision and
/// version), later puts and tombstones extend it. Returns the index, the highest
/// revision seen (0 for an empty table) and the lease of every live key that has one.
pub(super) fn rebuild_index(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<(TreeIndex, i64, Attachments), MvccError> {
    let mut index = TreeIndex::new();
    let mut attached = Attachments::new();
    let mut last = Revision::default();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (rev, tombstone) = Revision::from_key(k.value())?;
        if rev <= last {
            return Err(MvccError::Corrupt(format!(
                "revision {rev} stored twice or out of order (after {last})"
            )));
        }
        last = rev;
        let head = schema::decode_kv_head(v.value())?;
        if tombstone || head.lease == 0 {
            attached.remove(&head.key);
        } else {
            attached.insert(head.key.clone(), head.lease);
        }
        match index.key_index_mut(&head.key) {
            Some(ki) => {
                if tombstone {
                    // A second tombstone for a deleted key is ignored, as etcd does.
                    ki.tombstone(rev);
                } else {
                    ki.put(rev);
                }
            }
            None if tombstone => {}
            None => {
                if head.version < 1 || head.create_revision < 1 || head.create_revision > rev.main {
                    return Err(MvccError::Corrupt(format!(
                        "revision {rev}: bad version {} / create revision {}",
                        head.version, head.create_revision
                    )));
                }
                index.restore(
                    &head.key,
                    Revision::new(head.create_revision, 0),
                    rev,
                    head.version,
                );
            }
        }
    }
    Ok((index, last.main, attached))
}
