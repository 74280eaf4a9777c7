//! etcd's defaults for the settings a Raft member needs, in one place: the
//! `bramble` flags, `bramble::NodeOptions::new` and [`crate::NodeConfig::new`]
//! all take them from here. Each says which etcd flag it is the default of.

/// `--heartbeat-interval`: milliseconds between the leader's heartbeats.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// `--election-timeout`: milliseconds a follower waits for a heartbeat
/// before it starts an election.
pub const ELECTION_TIMEOUT_MS: u64 = 1000;

/// `--snapshot-count`: applied entries between snapshots.
pub const SNAPSHOT_COUNT: u64 = 100_000;

/// `--experimental-snapshot-catchup-entries`: entries kept in the log behind
/// a snapshot, so a follower a little behind needs no snapshot.
pub const SNAPSHOT_CATCHUP_ENTRIES: u64 = 5_000;

/// `--compaction-batch-limit`: key-table rows a compaction's deletion looks at
/// per transaction (etcd's 1000).
pub const COMPACTION_BATCH_LIMIT: usize = bramble_storage::mvcc::DEFAULT_COMPACTION_BATCH_LIMIT;

/// `--compaction-sleep-interval`: the pause between two deletion transactions
/// of a compaction (etcd's 10 ms).
pub const COMPACTION_SLEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// `--max-request-bytes`: the largest client request, 1.5 MiB.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// `--max-txn-ops`: the most operations in one txn branch.
pub const MAX_TXN_OPS: usize = 128;
