//! How to start a member: [`NodeConfig`], its defaults and the paths it
//! derives inside the data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::Limits;
use crate::types::MemberAttributes;

/// How to start a member.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// etcd's `--data-dir`; the layout inside mirrors etcd's `member/`.
    pub data_dir: PathBuf,
    /// This member's id (derived from its name, peer URLs and cluster token).
    pub member_id: u64,
    /// This member's name and addresses.
    pub member: MemberAttributes,
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
    /// etcd's `--compaction-batch-limit`: key-table rows a compaction's deletion
    /// looks at per transaction.
    pub compaction_batch_limit: usize,
    /// etcd's `--compaction-sleep-interval`: the pause between two of those
    /// transactions.
    pub compaction_sleep_interval: Duration,
    /// etcd's `--snapshot-count`: applied entries between snapshots (0: never).
    pub snapshot_count: u64,
    /// etcd's `--experimental-snapshot-catchup-entries`: entries kept in the
    /// log behind a snapshot.
    pub snapshot_catchup_entries: u64,
    /// The cluster this member belongs to; peers of other clusters are refused.
    pub cluster_id: u64,
    /// For a member of a new cluster (etcd's `--initial-cluster-state new`):
    /// every initial member. A new member bootstraps Raft with them the first
    /// time it starts. `None` for a member joining an existing cluster (it
    /// waits for the leader to replicate to it).
    pub bootstrap: Option<BTreeMap<u64, MemberAttributes>>,
    /// etcd's request limits (`--max-request-bytes`, `--max-txn-ops`), checked
    /// on every proposal, forwarded ones included.
    pub limits: Limits,
    /// etcd's `--force-new-cluster`: before Raft starts, make this member the
    /// only one of its cluster, keeping its data (see [`crate::force_new_cluster`]).
    pub force_new_cluster: bool,
    /// How this member dials its peers: plain TCP for `http://` peer URLs, TLS with
    /// the peer certificate for `https://` ones.
    pub peer_connector: bramble_tls::Connector,
}

impl NodeConfig {
    /// Defaults for a one-member cluster in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, member_id: u64, member: MemberAttributes) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            member_id,
            heartbeat_interval_ms: crate::defaults::HEARTBEAT_INTERVAL_MS,
            election_timeout_ms: crate::defaults::ELECTION_TIMEOUT_MS,
            mvcc_cache_bytes: 16 << 20,
            // Each checkpoint costs ~60-90 KB of writes whatever it covers
            // (docs/storage-engine.md): rare checkpoints spare the SD card,
            // and a crash only replays the WAL written since the last one.
            checkpoint_interval: Duration::from_secs(30),
            checkpoint_entries: 10_000,
            compaction_batch_limit: crate::defaults::COMPACTION_BATCH_LIMIT,
            compaction_sleep_interval: crate::defaults::COMPACTION_SLEEP_INTERVAL,
            snapshot_count: crate::defaults::SNAPSHOT_COUNT,
            snapshot_catchup_entries: crate::defaults::SNAPSHOT_CATCHUP_ENTRIES,
            cluster_id: crate::derived_ids::cluster_id(&[member_id]),
            bootstrap: Some([(member_id, member.clone())].into()),
            limits: Limits::default(),
            force_new_cluster: false,
            peer_connector: bramble_tls::Connector::default(),
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
