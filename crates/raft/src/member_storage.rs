//! Opening a member's storage at startup: the WAL (replayed), the MVCC
//! database and the snapshot directory, on a blocking thread.
//!
//! Replaying a WAL of many segments and opening (maybe repairing) a redb
//! database take seconds on an SD card; done inside `RaftNode::start` on a
//! runtime worker they would stall every task scheduled there, the embedding
//! program's included.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bramble_storage::mvcc::{MvccOptions, MvccStore};
use bramble_storage::wal::Wal;

use crate::config::NodeConfig;
use crate::fatal::FatalSignal;
use crate::force_new_cluster::{force_new_cluster, ForceOutcome};
use crate::log_store::LogStore;
use crate::node::StartError;
use crate::snapshot::SnapshotDir;
use crate::types::MemberAttributes;

/// A member's storage, opened.
pub(crate) struct MemberStorage {
    /// The Raft log, reporting its failures to the member's fatal signal.
    pub(crate) log_store: LogStore,
    /// The state machine's store.
    pub(crate) store: Arc<MvccStore>,
    /// Where snapshots are kept (`member/snap`), temporaries removed.
    pub(crate) snapshots: SnapshotDir,
    /// What `--force-new-cluster` did, if it was given.
    pub(crate) forced: Option<ForceOutcome>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl MemberStorage {
    /// Opens (or creates) the storage `cfg` describes, on a blocking thread;
    /// the log reports its failures to `fatal`.
    pub(crate) async fn open(
        cfg: &NodeConfig,
        fatal: FatalSignal,
    ) -> Result<MemberStorage, StartError> {
        let wal_dir = cfg.wal_dir();
        let db_path = cfg.db_path();
        let snap_dir = cfg.data_dir.join("member").join("snap");
        let options = MvccOptions {
            cache_size_bytes: cfg.mvcc_cache_bytes,
        };
        let force = cfg
            .force_new_cluster
            .then(|| (cfg.member_id, cfg.member.clone()));
        tokio::task::spawn_blocking(move || open(wal_dir, db_path, snap_dir, options, fatal, force))
            .await
            .map_err(|e| StartError::Io {
                path: cfg.data_dir.clone(),
                source: std::io::Error::other(e),
            })?
    }
}

/// [`MemberStorage::open`]'s blocking part.
fn open(
    wal_dir: PathBuf,
    db_path: PathBuf,
    snap_dir: PathBuf,
    options: MvccOptions,
    fatal: FatalSignal,
    force: Option<(u64, MemberAttributes)>,
) -> Result<MemberStorage, StartError> {
    // The WAL is created before the database, so a database without a
    // WAL means the WAL was lost, not a first start (etcd: wal.Exist).
    if !Wal::exists(&wal_dir).map_err(io_error(&wal_dir))? && db_path.exists() {
        return Err(StartError::WalMissing {
            wal_dir,
            db: db_path,
        });
    }
    std::fs::create_dir_all(&wal_dir).map_err(io_error(&wal_dir))?;
    if let Some(parent) = db_path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let log_store = LogStore::open(&wal_dir)
        .map_err(io_error(&wal_dir))?
        .with_fatal(fatal);
    let store =
        Arc::new(MvccStore::open(&db_path, options).map_err(|e| StartError::Mvcc(e.to_string()))?);
    let snapshots = SnapshotDir::new(&snap_dir).map_err(io_error(&snap_dir))?;
    snapshots.remove_temporaries();
    // Before openraft reads the log: it must start from the rewritten membership.
    let forced = match force {
        Some((member_id, attributes)) => Some(
            force_new_cluster(log_store.wal(), &store, member_id, &attributes)
                .map_err(StartError::ForceNewCluster)?,
        ),
        None => None,
    };
    Ok(MemberStorage {
        log_store,
        store,
        snapshots,
        forced,
    })
}
