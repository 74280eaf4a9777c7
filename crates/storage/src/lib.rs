//! Everything in Bramble that touches the disk.
//!
//! - [`wal`]: the Raft log, our write-ahead log: segmented, preallocated,
//!   crc32-framed, group-committed.
//! - [`mvcc`]: etcd's multi-version key-value model (revisions, key index,
//!   range/put/delete/txn/compact) on redb, the Raft state machine.
//! - [`etcd_import`]: etcd's snapshot files (bbolt) read and converted for a restore.
//! - [`atomic_file`]: small files replaced whole or not at all.
//! - [`latency`]: disk latency histograms (WAL fsync, database commit) the
//!   server exports as etcd's metrics.

#![warn(missing_docs, unreachable_pub)]

pub mod atomic_file;
pub mod etcd_import;
pub mod latency;
pub mod mvcc;
pub mod wal;
