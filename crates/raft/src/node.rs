//! A Raft member: the WAL, the MVCC state machine and openraft wired
//! together, with the operations the server needs (propose a command, wait
//! for a linearizable read point, report status).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_storage::mvcc::{ApplyResult, MvccOptions, MvccStore};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log_store::LogStore;
use crate::network::NoPeers;
use crate::state_machine::StateMachine;
use crate::types::{Member, Raft, Request, Response};

/// How to start a member.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// etcd's `--data-dir`; the layout inside mirrors etcd's `member/`.
    pub data_dir: PathBuf,
    /// This member's id (derived from its name, peer URLs and cluster token).
    pub member_id: u64,
    /// This member's identity and addresses.
    pub member: Member,
    /// etcd's `--heartbeat-interval`, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// etcd's `--election-timeout`, in milliseconds.
    pub election_timeout_ms: u64,
    /// redb's page cache for the MVCC database.
    pub mvcc_cache_bytes: usize,
    /// The longest the state machine goes without a checkpoint (a durable
    /// redb commit) while it changes.
    pub checkpoint_interval: Duration,
    /// A checkpoint is also taken after this many applied entries.
    pub checkpoint_entries: u64,
}

impl NodeConfig {
    /// Defaults for a one-member cluster in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, member_id: u64, member: Member) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            member_id,
            member,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            mvcc_cache_bytes: 16 << 20,
            // Each checkpoint costs ~60-90 KB of writes whatever it covers
            // (docs/storage-engine.md): rare checkpoints spare the SD card,
            // and a crash only replays the WAL written since the last one.
            checkpoint_interval: Duration::from_secs(30),
            checkpoint_entries: 10_000,
        }
    }

    /// The WAL directory (etcd's `member/wal`).
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("member").join("wal")
    }

    /// The MVCC database file (etcd's `member/snap/db`).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("member").join("snap").join("db")
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or its files could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The MVCC database could not be opened.
    #[error("mvcc database: {0}")]
    Mvcc(String),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal or a read barrier failed; the server maps these to etcd's errors.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (etcd: `etcdserver: no leader`).
    #[error("no leader")]
    NoLeader,
    /// The leader changed while the request was in flight, outcome unknown.
    #[error("leader changed")]
    LeaderChanged,
    /// The request did not complete in time.
    #[error("request timed out")]
    Timeout,
    /// The member is shutting down or hit a fatal storage error.
    #[error("server stopped: {0}")]
    Stopped(String),
}

/// What the Maintenance.Status RPC reports about Raft.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftStatus {
    /// The leader's member id, 0 if unknown.
    pub leader: u64,
    /// The current term.
    pub term: u64,
    /// The last committed log index.
    pub commit_index: u64,
    /// The last applied log index.
    pub applied_index: u64,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// A running Raft member.
pub struct RaftNode {
    raft: Raft,
    store: Arc<MvccStore>,
    member_id: u64,
    request_timeout: Duration,
    stop_checkpoints: watch::Sender<bool>,
    /// The store's current revision, published after each applied run.
    revisions: watch::Receiver<i64>,
    checkpointer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RaftNode {
    /// Opens (or creates) the member's storage, starts Raft and, for a new
    /// one-member cluster, bootstraps it. Returns once the member has
    /// recovered what it had committed before a restart.
    pub async fn start(cfg: NodeConfig) -> Result<RaftNode, StartError> {
        let wal_dir = cfg.wal_dir();
        let db_path = cfg.db_path();
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        if let Some(parent) = db_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }

        let log_store = LogStore::open(&wal_dir).map_err(io_err(&wal_dir))?;
        let store = Arc::new(
            MvccStore::open(
                &db_path,
                MvccOptions {
                    cache_size_bytes: cfg.mvcc_cache_bytes,
                },
            )
            .map_err(|e| StartError::Mvcc(e.to_string()))?,
        );

        let config = Config {
            cluster_name: "bramble".into(),
            heartbeat_interval: cfg.heartbeat_interval_ms,
            election_timeout_min: cfg.election_timeout_ms,
            election_timeout_max: cfg.election_timeout_ms * 2,
            // No snapshots yet (see crate::snapshot); the WAL keeps everything.
            snapshot_policy: SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let (revision_tx, revisions) = watch::channel(store.current_revision());
        let raft = Raft::new(
            cfg.member_id,
            Arc::new(config),
            NoPeers,
            log_store,
            StateMachine::new(store.clone(), revision_tx),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<u64, Member> = [(cfg.member_id, cfg.member.clone())].into();
            raft.initialize(members)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }
        raft.wait_for_recovery(Some(Duration::from_secs(60)))
            .await
            .map_err(|e| StartError::Raft(format!("recovery: {e}")))?;

        let (stop_checkpoints, stop_rx) = watch::channel(false);
        let checkpointer = tokio::spawn(checkpoint_loop(
            store.clone(),
            CheckpointPolicy {
                every: cfg.checkpoint_interval,
                entries: cfg.checkpoint_entries,
            },
            stop_rx,
        ));
        // etcd's request timeout: 5 s plus two election timeouts.
        let request_timeout =
            Duration::from_secs(5) + Duration::from_millis(2 * cfg.election_timeout_ms);
        Ok(RaftNode {
            raft,
            store,
            member_id: cfg.member_id,
            request_timeout,
            stop_checkpoints,
            revisions,
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
        })
    }

    /// The MVCC store, for reads.
    pub fn store(&self) -> &Arc<MvccStore> {
        &self.store
    }

    /// The store's current revision as it changes: updated after each applied
    /// run of entries (the watch hub's wake-up). Closed when Raft stops.
    pub fn subscribe_revisions(&self) -> watch::Receiver<i64> {
        self.revisions.clone()
    }

    /// This member's id.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// Proposes a command and returns its result once it is committed (durable
    /// on a quorum) and applied.
    pub async fn propose(&self, cmd: Command) -> Result<ApplyResult, ProposeError> {
        let write = self.raft.client_write(Request(cmd));
        let resp = tokio::time::timeout(self.request_timeout, write)
            .await
            .map_err(|_| ProposeError::Timeout)?
            .map_err(write_error)?;
        match resp.data {
            Response::Command(r) => Ok(r),
            Response::Empty => Err(ProposeError::Stopped(
                "a command entry was applied as a blank entry".into(),
            )),
        }
    }

    /// Waits until this member's state machine reflects everything committed
    /// before the call (Raft read index), so a following local read is
    /// linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let wait = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        tokio::time::timeout(self.request_timeout, wait)
            .await
            .map_err(|_| ProposeError::Timeout)?
            .map_err(read_error)?;
        Ok(())
    }

    /// The current Raft term (cheap: every response header carries it).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Raft's view of this member, for Maintenance.Status.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        RaftStatus {
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            commit_index: m.cluster_committed.map(|l| l.index).unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            is_learner: m.state == ServerState::Learner,
        }
    }

    /// Stops Raft and makes the state machine durable. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.stop_checkpoints.send(true);
        let handle = self.checkpointer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("final checkpoint failed: {e}"),
            Err(e) => tracing::error!("final checkpoint task failed: {e}"),
        }
    }
}

/// When to checkpoint the state machine.
#[derive(Debug, Clone, Copy)]
struct CheckpointPolicy {
    /// At most this long between checkpoints while entries are applied.
    every: Duration,
    /// Or after this many applied entries.
    entries: u64,
}

/// Makes the applied state durable now and then, so a restart replays only
/// the WAL written since (and the WAL could later be trimmed up to it).
async fn checkpoint_loop(
    store: Arc<MvccStore>,
    policy: CheckpointPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let poll = policy.every.min(Duration::from_secs(1));
    let mut last = store.applied();
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
        let now = store.applied();
        let behind = now.0.saturating_sub(last.0);
        if behind == 0 || (behind < policy.entries && last_at.elapsed() < policy.every) {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint()).await {
            Ok(Ok(())) => {
                last = now;
                last_at = tokio::time::Instant::now();
            }
            Ok(Err(e)) => tracing::error!("checkpoint failed: {e}"),
            Err(e) => tracing::error!("checkpoint task failed: {e}"),
        }
    }
}

fn write_error(
    e: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NoLeader,
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ProposeError::LeaderChanged,
        RaftError::APIError(other) => ProposeError::Stopped(other.to_string()),
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}

fn read_error(
    e: RaftError<crate::types::TypeConfig, LinearizableReadError<crate::types::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => ProposeError::NoLeader,
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => ProposeError::Timeout,
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}
