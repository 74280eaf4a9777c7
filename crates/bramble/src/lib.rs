//! Bramble: an etcd v3 compatible, Raft-replicated key-value store for
//! Raspberry Pi clusters.
//!
//! Two ways in: the `bramble` binary (etcd's flags, etcd's gRPC API), and
//! [`Node`], the same store embedded in your own program. The binary also
//! carries snapshot tools ([`snapshot_command`]), as etcdutl does for etcd.

#![warn(missing_docs, unreachable_pub)]

mod backups;
mod client;
mod client_listeners;
pub mod config;
mod config_file;
mod defaults;
mod error;
mod identity_file;
pub mod logging;
mod node;
mod publish;
pub mod server;
pub mod snapshot_command;
mod snapshot_restore;
mod systemd;
mod tls;
mod unsupported_flags;

pub use bramble_api as api;
pub use client::{
    Client, Compare, DeleteOptions, Leadership, LeaseKeeper, LockGuard, NumberCompare, PutOptions,
    RangeOptions, Txn, TxnOp, ValueCompare, WatchOptions, WatchResponseExt, Watcher,
};
pub use error::{Error, ErrorKind};
pub use node::{ClusterState, ListenAddr, Node, NodeOptions, PeerTls};

/// Bramble's version, as clap shows it.
pub(crate) const VERSION_LINE: &str = env!("CARGO_PKG_VERSION");
