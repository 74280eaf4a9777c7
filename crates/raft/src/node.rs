//! A Raft member: the WAL, the MVCC state machine and openraft wired
//! together, with the operations the server needs (propose a command, wait
//! for a linearizable read point, report status).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::peer_server::PeerServer;
use bramble_api::bramblepb::{self as pb, Command};
use bramble_storage::mvcc::{ApplyResult, MvccOptions, MvccStore};
use bramble_storage::wal::Wal;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::{self, Limits, Refusal};
use crate::fatal::{FatalCause, FatalError, FatalSignal};
use crate::forward::Waiters;
use crate::log_store::LogStore;
use crate::network::{peer_message_limit, PeerChannels, PeerNetworkFactory};
use crate::peer_service::{PeerService, NOT_LEADER};
use crate::snapshot::SnapshotDir;
use crate::state_machine::StateMachine;
use crate::types::{Member, Raft, Request, Response};

/// The longest a request waits before it retries with the leader it
/// knows after one that was refused or never delivered.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

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
    /// etcd's `--snapshot-count`: applied entries between snapshots (0: never).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot (etcd: 5,000).
    pub snapshot_catchup_entries: u64,
    /// The cluster this member belongs to; peers of other clusters are refused.
    pub cluster_id: u64,
    /// For a member of a new cluster (etcd's `--initial-cluster-state new`):
    /// every initial member. A new member bootstraps Raft with them the first
    /// time it starts. `None` for a member joining an existing cluster (it
    /// waits for the leader to replicate to it).
    pub bootstrap: Option<BTreeMap<u64, Member>>,
    /// etcd's request limits (`--max-request-bytes`, `--max-txn-ops`), checked
    /// on every proposal, forwarded ones included.
    pub limits: Limits,
}

impl NodeConfig {
    /// Defaults for a one-member cluster in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, member_id: u64, member: Member) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            member_id,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            mvcc_cache_bytes: 16 << 20,
            // Each checkpoint costs ~60-90 KB of writes whatever it covers
            // (docs/storage-engine.md): rare checkpoints spare the SD card,
            // and a crash only replays the WAL written since the last one.
            checkpoint_interval: Duration::from_secs(30),
            checkpoint_entries: 10_000,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            cluster_id: crate::identity::cluster_id(&[member_id]),
            bootstrap: Some([(member_id, member.clone())].into()),
            limits: Limits::default(),
            member,
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
    /// The member is shutting down.
    #[error("server stopped: {0}")]
    Stopped(String),
    /// The command failed this member's or the leader's request checks;
    /// nothing was proposed.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The member hit a fatal failure and is stopping (see [`crate::fatal`]).
    #[error("server stopped: {0}")]
    Fatal(FatalError),
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
    stop_checkpoints: watch::Sender<bool>,
    /// The store's current revision, published after each applied run.
    revisions: watch::Receiver<i64>,
    checkpointer: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Set once by the first fatal failure; then nothing more is served.
    fatal: FatalSignal,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RaftNode {
    /// Opens (or creates) the member's storage and starts Raft; a member of a
    /// new cluster that never started before bootstraps it with the initial
    /// members. Returns without waiting for peers: serve [`Self::peer_service`]
    /// next, then [`Self::wait_recovered`] if the caller wants to.
    pub async fn start(cfg: NodeConfig) -> Result<RaftNode, StartError> {
        let wal_dir = cfg.wal_dir();
        let db_path = cfg.db_path();
        // The WAL is created before the database, so a database without a
        // WAL means the WAL was lost, not a first start (etcd: wal.Exist).
        if !Wal::exists(&wal_dir).map_err(io_err(&wal_dir))? && db_path.exists() {
            return Err(StartError::WalMissing {
                wal_dir,
                db: db_path,
            });
        }
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        if let Some(parent) = db_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }

        let fatal = FatalSignal::new();
        let log_store = LogStore::open(&wal_dir)
            .map_err(io_err(&wal_dir))?
            .with_fatal(fatal.clone());
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

        let snap_dir = cfg.data_dir.join("member").join("snap");
        let snapshots = SnapshotDir::new(&snap_dir).map_err(io_err(&snap_dir))?;
        snapshots.remove_temporaries();
        let channels = PeerChannels::new(
            Duration::from_millis(cfg.election_timeout_ms.max(100)),
            peer_message_limit(cfg.limits.max_request_bytes),
        );
        let waiters = Arc::new(Waiters::new(cfg.member_id));
        let (revision_tx, revisions) = watch::channel(store.current_revision());
        let raft = Raft::new(
            cfg.member_id,
            Arc::new(config),
            PeerNetworkFactory::new(
                channels.clone(),
                cfg.cluster_id,
                Duration::from_millis(cfg.election_timeout_ms),
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

        // etcd's CheckQuorum: a leader cut off from its quorum steps down.
        tokio::spawn(crate::check_quorum::monitor(
            raft.clone(),
            Duration::from_millis(cfg.election_timeout_ms),
        ));

        let (stop_checkpoints, stop_rx) = watch::channel(false);
        tokio::spawn(crate::fatal::watch_raft_core(
            raft.metrics(),
            fatal.clone(),
            stop_rx.clone(),
        ));
        let checkpointer = tokio::spawn(checkpoint_loop(
            store.clone(),
            CheckpointPolicy {
                every: cfg.checkpoint_interval,
                entries: cfg.checkpoint_entries,
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
            stop_checkpoints,
            revisions,
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
            fatal,
        })
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
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Where a request only the leader can answer goes: `None` when this
    /// member leads, else a channel to the leader's peer URL (the peer
    /// listener also serves the leader-only lease requests). Waits for a
    /// leader at most the request timeout.
    pub async fn leader_route(&self) -> Result<Option<tonic::transport::Channel>, ProposeError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let leader = self.wait_for_leader(deadline).await?;
        if leader == self.member_id {
            return Ok(None);
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let member = m
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .ok_or(ProposeError::NoLeader)?;
        let url = member.peer_urls.first().ok_or(ProposeError::NoLeader)?;
        self.channels
            .channel(url)
            .map(Some)
            .map_err(ProposeError::Stopped)
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
    /// on a quorum) and applied on this member. A follower forwards the
    /// command to the leader (see [`crate::forward`]).
    pub async fn propose(&self, cmd: Command) -> Result<ApplyResult, ProposeError> {
        admission::check_command(&cmd, &self.limits).map_err(ProposeError::Refused)?;
        self.check_alive()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            if leader == self.member_id {
                let write = self.raft.client_write(Request::local(cmd.clone()));
                let resp = tokio::time::timeout_at(deadline, write)
                    .await
                    .map_err(|_| ProposeError::Timeout)?;
                let resp = match resp {
                    // Leadership moved between the metrics and the write;
                    // nothing was appended, so try again with the new leader.
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        self.pause_for_leader_change(leader, deadline).await?;
                        continue;
                    }
                    other => other.map_err(write_error)?,
                };
                return match resp.data {
                    Response::Command(r) => Ok(r),
                    Response::Empty => Err(ProposeError::Stopped(
                        "a command entry was applied as a blank entry".into(),
                    )),
                };
            }
            match self.forward(leader, cmd.clone(), deadline).await {
                Err(ForwardError::NotDelivered) => {
                    // The leader we knew stepped down before appending the
                    // command, or could not be reached at all: nothing was
                    // proposed, so trying again with the next leader is safe.
                    self.pause_for_leader_change(leader, deadline).await?;
                }
                Err(ForwardError::Failed(e)) => return Err(e),
                Ok(r) => return Ok(r),
            }
        }
    }

    /// Has the leader propose `cmd` and waits for it to apply here.
    async fn forward(
        &self,
        leader: u64,
        cmd: Command,
        deadline: tokio::time::Instant,
    ) -> Result<ApplyResult, ForwardError> {
        let mut client = self.leader_client(leader)?;
        let (request_id, applied) = self.waiters.register();
        let mut req = tonic::Request::new(pb::ForwardRequest {
            command: Some(crate::codec::command_record(&cmd)),
            cluster_id: self.cluster_id,
            request_id,
        });
        req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let reply = match client.forward(req).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                self.waiters.cancel(request_id);
                tracing::debug!(leader = %format!("{leader:x}"), "forward failed: {status:?}");
                return Err(forward_status(&status));
            }
        };
        match Refusal::from_pb(reply.refused) {
            Ok(None) => {}
            Ok(Some(refusal)) => {
                self.waiters.cancel(request_id);
                return Err(ForwardError::Failed(ProposeError::Refused(refusal)));
            }
            Err(unknown) => {
                self.waiters.cancel(request_id);
                return Err(ForwardError::Failed(ProposeError::Stopped(format!(
                    "the leader refused the command for a reason this member does not know ({unknown})"
                ))));
            }
        }
        match tokio::time::timeout_at(deadline, applied).await {
            Ok(Ok(result)) => Ok(result),
            // Dropped by a snapshot install: the entry was applied as part of
            // the snapshot, its individual result is gone.
            Ok(Err(_)) => Err(ForwardError::Failed(ProposeError::LeaderChanged)),
            Err(_) => {
                self.waiters.cancel(request_id);
                Err(ForwardError::Failed(ProposeError::Timeout))
            }
        }
    }

    /// A Peer-service client for the member `id`.
    pub(crate) fn leader_client(
        &self,
        id: u64,
    ) -> Result<
        bramble_api::bramblepb::peer_client::PeerClient<tonic::transport::Channel>,
        ForwardError,
    > {
        let m = self.raft.metrics().borrow_watched().clone();
        let member = m
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
            .ok_or(ForwardError::Failed(ProposeError::NoLeader))?;
        self.channels
            .client(&member)
            .map_err(|e| ForwardError::Failed(ProposeError::Stopped(e)))
    }

    /// The current leader, waiting for one to be elected (until `deadline`).
    pub(crate) async fn wait_for_leader(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<u64, ProposeError> {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
        {
            Ok(m) => m.current_leader.ok_or(ProposeError::NoLeader),
            Err(openraft::metrics::WaitError::Timeout(..)) => Err(ProposeError::NoLeader),
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }

    /// Before retrying a request `old` did not take: waits for another
    /// leader, or a short while (a member that just won an election refuses
    /// proposals until its first entry commits), but not past `deadline`.
    pub(crate) async fn pause_for_leader_change(
        &self,
        old: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ProposeError> {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ProposeError::Timeout);
        }
        let pause = RETRY_PAUSE.min(deadline - now);
        match self
            .raft
            .wait(Some(pause))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != old),
                "a new leader",
            )
            .await
        {
            Ok(_) | Err(openraft::metrics::WaitError::Timeout(..)) => Ok(()),
            Err(e) => Err(ProposeError::Stopped(e.to_string())),
        }
    }

    /// Waits until this member's state machine reflects everything committed
    /// before the call (Raft read index), so a following local read is
    /// linearizable. A follower asks the leader for the read index.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        self.check_alive()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            if leader == self.member_id {
                let wait = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
                tokio::time::timeout_at(deadline, wait)
                    .await
                    .map_err(|_| ProposeError::Timeout)?
                    .map_err(read_error)?;
                return Ok(());
            }
            let mut client = match self.leader_client(leader) {
                Ok(c) => c,
                Err(ForwardError::Failed(e)) => return Err(e),
                Err(ForwardError::NotDelivered) => return Err(ProposeError::NoLeader),
            };
            let mut req = tonic::Request::new(pb::ReadIndexRequest {
                cluster_id: self.cluster_id,
            });
            req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let index = match client.read_index(req).await {
                Ok(r) => r.into_inner().read_index,
                Err(status) => match forward_status(&status) {
                    ForwardError::NotDelivered => {
                        self.pause_for_leader_change(leader, deadline).await?;
                        continue;
                    }
                    ForwardError::Failed(e) => return Err(e),
                },
            };
            let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
            return match self
                .raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "read index applied")
                .await
            {
                Ok(_) => Ok(()),
                Err(openraft::metrics::WaitError::Timeout(..)) => Err(ProposeError::Timeout),
                Err(e) => Err(ProposeError::Stopped(e.to_string())),
            };
        }
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
            last_log_index: m.last_log_index.unwrap_or(0),
            is_learner: m.state == ServerState::Learner,
        }
    }

    /// Stops Raft and makes the state machine durable. Idempotent. A
    /// failure on the way (the last checkpoint's commit, or a core that had
    /// failed before it was stopped) is reported to [`Self::fatal`].
    pub async fn shutdown(&self) {
        let _ = self.stop_checkpoints.send(true);
        let handle = self.checkpointer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
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
    fatal: FatalSignal,
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
            // A failed redb commit leaves the database in doubt (etcd
            // panics on a failed backend commit).
            Ok(Err(e)) => return fatal.trip(FatalCause::Checkpoint, e),
            Err(e) => return fatal.trip(FatalCause::Checkpoint, e),
        }
    }
}

pub(crate) fn write_error(
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

/// Why forwarding to the leader failed.
pub(crate) enum ForwardError {
    /// The receiver was not the leader and proposed nothing, or the request
    /// never reached it: safe to retry.
    NotDelivered,
    /// Anything else; the command may or may not have been committed.
    Failed(ProposeError),
}

impl From<ProposeError> for ForwardError {
    fn from(e: ProposeError) -> Self {
        ForwardError::Failed(e)
    }
}

/// Maps the leader's answer to a forwarded request.
pub(crate) fn forward_status(status: &tonic::Status) -> ForwardError {
    use tonic::Code;
    match status.code() {
        Code::FailedPrecondition if status.message() == NOT_LEADER => ForwardError::NotDelivered,
        // tonic's status for a connection that could not be made: the
        // request was never sent.
        Code::Unavailable if status.message() == "tcp connect error" => ForwardError::NotDelivered,
        Code::Aborted => ForwardError::Failed(ProposeError::LeaderChanged),
        Code::DeadlineExceeded | Code::Cancelled => ForwardError::Failed(ProposeError::Timeout),
        // The leader is unreachable: whether it got the command is unknown,
        // which etcd reports as a timeout too.
        Code::Unavailable => ForwardError::Failed(ProposeError::Timeout),
        _ => ForwardError::Failed(ProposeError::Stopped(status.message().to_string())),
    }
}
