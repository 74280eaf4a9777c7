//! etcd's defaults for the client-facing settings, in one place (the Raft
//! member's are in [`bramble_raft::defaults`], re-exported here). Each says
//! which etcd flag it is the default of.

use std::time::Duration;

pub use bramble_raft::defaults::*;

/// `--experimental-watch-progress-notify-interval`: how often watchers that
/// asked for progress notifications get one.
pub const WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// `--grpc-keepalive-min-time`: the shortest interval between client pings
/// that etcd tolerates.
pub const GRPC_KEEPALIVE_MIN_TIME: Duration = Duration::from_secs(5);

/// `--grpc-keepalive-interval`: the server pings a connection it has heard
/// nothing from for this long.
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// `--grpc-keepalive-timeout`: how long a ping may go unanswered before the
/// connection is closed.
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// etcd 3.7's `KV.RangeStream` aims its chunks at `--max-request-bytes` (1.5 MiB by
/// default, growing or shrinking each chunk's key count towards it); Bramble bounds
/// each chunk's encoded size by it (a single larger key-value is a chunk of its own).
pub const RANGE_STREAM_CHUNK_BYTES: usize = MAX_REQUEST_BYTES;
