//! Everything in Bramble that touches the disk.
//!
//! - [`wal`]: the Raft log, our write-ahead log: segmented, preallocated,
//!   crc32-framed, group-committed.
//! - [`mvcc`]: etcd's multi-version key-value model (revisions, key index,
//!   range/put/delete/txn/compact) on redb, the Raft state machine.
//! - [`atomic_file`]: small files replaced whole or not at all.

#![warn(missing_docs, unreachable_pub)]

pub mod atomic_file;
pub mod mvcc;
pub mod wal;
