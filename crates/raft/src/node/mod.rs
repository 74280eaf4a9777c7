//! A Raft member: the WAL, the MVCC state machine and openraft wired
//! together, with the operations the server needs (propose a command, wait
//! for a linearizable read point, report status).

mod checkpoint;
mod compactor;
mod leadership;
mod meters;
mod propose;
mod routing;

pub use leadership::LeadershipError;
pub(crate) use routing::attempt;
pub use routing::{Attempt, LeaderPeer};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::peer_server::PeerServer;
use bramble_storage::mvcc::MvccStore;
use bramble_storage::wal::{WalMeter, WalRelease};
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::Limits;
use crate::config::NodeConfig;
use crate::error::ProposeError;
use crate::fatal::{FatalCause, FatalSignal};
use crate::forwarded_proposals::Waiters;
use crate::member_storage::MemberStorage;
use crate::network::{peer_message_limit, PeerChannels, PeerNetworkFactory};
use crate::peer_rtt::PeerRtt;
use crate::peer_service::PeerService;
use crate::state_machine::StateMachine;
use crate::types::Raft;

use checkpoint::{checkpoint_loop, CheckpointPolicy};
use compactor::{compaction_loop, CompactionPacing};

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
    /// `--force-new-cluster` could not rewrite the membership.
    #[error("force new cluster: {0}")]
    ForceNewCluster(#[from] crate::force_new_cluster::ForceError),
    /// The state machine exists but the WAL (the Raft log and vote) is gone:
    /// starting afresh could vote twice in one term, so the member refuses.
    #[error(
        "{wal_dir}: no write-ahead log, but {db} exists: this member's raft log and vote are \
         lost, and starting afresh could vote twice in one term; refusing to start \
         (restore member/wal, or remove the member, wipe its data dir and add it again)",
        wal_dir = .wal_dir.display(),
        db = .db.display()
    )]
    WalMissing {
        /// etcd's `member/wal`.
        wal_dir: PathBuf,
        /// The state machine's database, `member/snap/db`.
        db: PathBuf,
    },
}

/// Logs what `--force-new-cluster` did, with etcd's line first.
fn log_forced(outcome: &crate::force_new_cluster::ForceOutcome, member_id: u64, cluster_id: u64) {
    use crate::force_new_cluster::ForceOutcome;
    match outcome {
        ForceOutcome::NothingToForce => tracing::warn!(
            "force new cluster: no existing raft state in the data dir; starting a new \
             cluster from the flags (the flag has no effect)"
        ),
        ForceOutcome::AlreadyAlone { last_index } => tracing::warn!(
            "forcing restart of member {member_id:x} in cluster {cluster_id:x} at commit \
             index {last_index}: it already is the only member"
        ),
        ForceOutcome::Forced {
            index,
            applied_index,
            removed,
        } => {
            // etcd 3.4: "forcing restart of member %s in cluster %s at commit index %d".
            tracing::warn!(
                "forcing restart of member {member_id:x} in cluster {cluster_id:x} at commit \
                 index {applied_index}"
            );
            let removed: Vec<String> = removed.iter().map(|id| format!("{id:x}")).collect();
            tracing::warn!(
                "force new cluster: removed members [{}] with a membership entry at index \
                 {index}; log entries after the applied index {applied_index} are kept and \
                 committed (etcd discards those beyond its commit index)",
                removed.join(", ")
            );
        }
    }
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
    /// The last index in this member's log (appended, maybe not yet durable
    /// or committed).
    pub last_log_index: u64,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// A running Raft member.
pub struct RaftNode {
    raft: Raft,
    store: Arc<MvccStore>,
    member_id: u64,
    cluster_id: u64,
    /// How long a proposal or read barrier may take (etcd's request timeout).
    request_timeout: Duration,
    /// Connections to the other members, for forwarding.
    channels: PeerChannels,
    /// This member's clients waiting for forwarded proposals to apply.
    waiters: Arc<Waiters>,
    /// Where received snapshots land.
    snap_dir: PathBuf,
    /// The request limits every proposal must meet.
    limits: Limits,
    /// Turns true when [`Self::shutdown`] starts: background loops that hold
    /// this node (checkpoints, the fatal watch, callers' own) end on it.
    stopping: watch::Sender<bool>,
    /// Reports when the WAL's directory lock is released after shutdown.
    wal_release: WalRelease,
    /// The store's current revision, published after each applied run.
    revisions: watch::Receiver<i64>,
    /// The checkpoint and compaction loops, which shutdown waits for (they hold
    /// the store).
    background: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Set once by the first fatal failure; then nothing more is served.
    fatal: FatalSignal,
    /// The WAL's counters, for metrics (does not hold the WAL open).
    wal_meter: WalMeter,
    /// Leader changes seen (`meters::count_leader_changes`).
    leader_changes: Arc<std::sync::atomic::AtomicU64>,
    /// Heartbeat round trips to each peer.
    peer_rtt: PeerRtt,
    /// Set once this member saw itself in a committed membership: from then on
    /// its absence there means it was removed (`membership::is_removed`).
    pub(crate) seen_in_membership: std::sync::atomic::AtomicBool,
}

/// How long [`RaftNode::shutdown`] waits for openraft's tasks to let go of
/// the WAL.
const WAL_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl RaftNode {
    /// Opens (or creates) the member's storage and starts Raft; a member of a
    /// new cluster that never started before bootstraps it with the initial
    /// members. Returns without waiting for peers: serve [`Self::peer_service`]
    /// next, then [`Self::wait_recovered`] if the caller wants to.
    pub async fn start(cfg: NodeConfig) -> Result<RaftNode, StartError> {
        let fatal = FatalSignal::new();
        let MemberStorage {
            log_store,
            store,
            snapshots,
            forced,
        } = MemberStorage::open(&cfg, fatal.clone()).await?;
        if let Some(outcome) = &forced {
            log_forced(outcome, cfg.member_id, cfg.cluster_id);
        }
        let wal_release = log_store.wal().release();
        let wal_meter = log_store.wal().meter();

        let config = Config {
            cluster_name: "bramble".into(),
            heartbeat_interval: cfg.heartbeat_interval_ms,
            // openraft campaigns once a follower has not heard from a leader
            // for lease + a random timeout in [min, max), where the lease (the
            // time a follower refuses other candidates) is max. With etcd's
            // election timeout E, min = E/2 and max = 3E/4 give a lease of
            // 0.75 E and an election after [1.25, 1.5) E of silence, inside
            // etcd's [1, 2) E with check-quorum.
            election_timeout_min: cfg.election_timeout_ms / 2,
            election_timeout_max: cfg.election_timeout_ms * 3 / 4,
            // A member cut off by a partition asks before it campaigns, so it
            // does not depose a healthy leader with a higher term on return.
            enable_pre_vote: Some(true),
            // Send new entries to followers as soon as they are handed to the
            // WAL, so the leader's fsync and the followers' run in parallel.
            broadcast_submitted_on_append: Some(true),
            // A restarted leader must win an election like any member. openraft
            // can otherwise resume leadership from its vote alone, which is safe
            // only if its log held everything it committed; here the followers
            // may have committed an entry the leader's WAL had not synced yet, and
            // the state machine is not flushed per apply. (A Jepsen-style test
            // caught a stale linearizable read after kill -9 of all members.)
            enable_leader_restore: Some(false),
            // etcd's --snapshot-count: a snapshot every so many applied
            // entries, after which the WAL before it is purged.
            snapshot_policy: if cfg.snapshot_count == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(cfg.snapshot_count)
            },
            // etcd keeps 5,000 entries behind a snapshot so a follower a little
            // behind catches up from the log instead of a whole snapshot.
            max_in_snapshot_log_to_keep: cfg.snapshot_catchup_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let snap_dir = snapshots.path().to_path_buf();
        let channels = PeerChannels::new(
            Duration::from_millis(cfg.election_timeout_ms.max(100)),
            peer_message_limit(cfg.limits.max_request_bytes),
            cfg.peer_connector.clone(),
        );
        let waiters = Arc::new(Waiters::new(cfg.member_id));
        let (revision_tx, revisions) = watch::channel(store.current_revision());
        let peer_rtt = PeerRtt::default();
        let raft = Raft::new(
            cfg.member_id,
            Arc::new(config),
            PeerNetworkFactory::new(
                channels.clone(),
                cfg.cluster_id,
                Duration::from_millis(cfg.election_timeout_ms),
                peer_rtt.clone(),
            ),
            log_store,
            StateMachine::new(
                store.clone(),
                revision_tx,
                waiters.clone(),
                snapshots,
                fatal.clone(),
            ),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            if let Some(members) = &cfg.bootstrap {
                if !members.contains_key(&cfg.member_id) {
                    return Err(StartError::Raft(format!(
                        "member {:x} is not among the initial members",
                        cfg.member_id
                    )));
                }
                raft.initialize(members.clone())
                    .await
                    .map_err(|e| StartError::Raft(e.to_string()))?;
            }
        }

        // A forced member is the only voter: campaign now rather than after an
        // election timeout of silence (its first entry as leader commits the log).
        if matches!(
            forced,
            Some(crate::force_new_cluster::ForceOutcome::Forced { .. })
        ) {
            if let Err(e) = raft.trigger().elect(false).await {
                tracing::warn!("force new cluster: campaign: {e}");
            }
        }

        // etcd's CheckQuorum: a leader cut off from its quorum steps down.
        tokio::spawn(crate::check_quorum::monitor(
            raft.clone(),
            Duration::from_millis(cfg.election_timeout_ms),
        ));

        let (stopping, stop_rx) = watch::channel(false);
        tokio::spawn(crate::fatal::watch_raft_core(
            raft.metrics(),
            raft.server_metrics(),
            fatal.clone(),
            stop_rx.clone(),
        ));
        let leader_changes = Arc::default();
        tokio::spawn(meters::count_leader_changes(
            raft.server_metrics(),
            Arc::clone(&leader_changes),
            stop_rx.clone(),
        ));
        let checkpointer = tokio::spawn(checkpoint_loop(
            store.clone(),
            CheckpointPolicy {
                every: cfg.checkpoint_interval,
                entries: cfg.checkpoint_entries,
            },
            stop_rx.clone(),
            fatal.clone(),
        ));
        let compactor = tokio::spawn(compaction_loop(
            store.clone(),
            CompactionPacing {
                batch_limit: cfg.compaction_batch_limit,
                pause: cfg.compaction_sleep_interval,
            },
            stop_rx,
            fatal.clone(),
        ));
        // etcd's request timeout: 5 s plus two election timeouts.
        let request_timeout =
            Duration::from_secs(5) + Duration::from_millis(2 * cfg.election_timeout_ms);
        Ok(RaftNode {
            raft,
            store,
            member_id: cfg.member_id,
            cluster_id: cfg.cluster_id,
            request_timeout,
            channels,
            waiters,
            snap_dir,
            limits: cfg.limits,
            stopping,
            wal_release,
            revisions,
            background: std::sync::Mutex::new(vec![checkpointer, compactor]),
            fatal,
            wal_meter,
            leader_changes,
            peer_rtt,
            seen_in_membership: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Turns true once [`Self::shutdown`] started: a task that holds this
    /// node ends on it, so the node (and its WAL and database) can be released.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// This member's fatal failure signal (see [`crate::fatal`]).
    pub fn fatal(&self) -> &FatalSignal {
        &self.fatal
    }

    /// Fails once the member hit a fatal failure: nothing may be served from
    /// a store that no longer moves.
    pub fn check_alive(&self) -> Result<(), ProposeError> {
        match self.fatal.get() {
            Some(e) => Err(ProposeError::Fatal(e)),
            None => Ok(()),
        }
    }

    /// The gRPC service other members talk to; serve it on the peer URLs.
    pub fn peer_service(&self) -> PeerServer<PeerService> {
        PeerService::new(
            self.raft.clone(),
            self.cluster_id,
            self.snap_dir.clone(),
            self.limits,
        )
        .into_server(self.channels.max_message())
    }

    /// Waits (at most `timeout`) until this member has applied everything it
    /// had committed before a restart. A one-member cluster gets there from
    /// its own WAL; a member of a larger one needs a leader.
    pub async fn wait_recovered(&self, timeout: Duration) -> Result<(), StartError> {
        self.raft
            .wait_for_recovery(Some(timeout))
            .await
            .map(|_| ())
            .map_err(|e| StartError::Raft(format!("recovery: {e}")))
    }

    /// The openraft handle (for the membership operations in this crate).
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This member's cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// etcd's request timeout for this member.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The MVCC store this member applies to (reads go to it directly).
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

    /// The current Raft term as this member knows it.
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
            last_log_index: m.last_log_index.unwrap_or(0),
            is_learner: m.state == ServerState::Learner,
        }
    }

    /// Stops Raft and makes the state machine durable. Idempotent. A
    /// failure on the way (the last checkpoint's commit, or a core that had
    /// failed before it was stopped) is reported to [`Self::fatal`].
    pub async fn shutdown(&self) {
        let _ = self.stopping.send(true);
        let handles = self
            .background
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for h in handles {
            let _ = h.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        // openraft's state machine worker (it holds the log and the state
        // machine) ends a moment after the core: wait for it, so that the
        // data dir can be opened again once this returns.
        let deadline = tokio::time::Instant::now() + WAL_RELEASE_TIMEOUT;
        while !self.wal_release.is_released() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "raft shutdown: the WAL is still held after {WAL_RELEASE_TIMEOUT:?}"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let state = self.raft.metrics().borrow_watched().running_state.clone();
        if let Some(why) = crate::fatal::failure_after_shutdown(&state) {
            self.fatal.trip(FatalCause::RaftCore, why);
        }
        if self.fatal.get().is_some() {
            // The state on disk is in doubt: do not touch it again.
            return;
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fatal.trip(FatalCause::Checkpoint, e),
            Err(e) => self.fatal.trip(FatalCause::Checkpoint, e),
        }
    }
}
