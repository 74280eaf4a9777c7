//! Bramble: an etcd v3 compatible, Raft-replicated key-value store for
//! Raspberry Pi clusters.
//!
//! Two ways in: the `bramble` binary (etcd's flags, etcd's gRPC API), and
//! [`Node`], the same store embedded in your own program. The binary also
//! carries snapshot tools (`snapshot_command`), as etcdutl does for etcd.
//!
//! The binary's modules (`config`, `server`, `logging`, `snapshot_command`)
//! and their dependencies (clap, YAML, systemd, ...) are behind the default
//! feature `cli`; an embedding program can leave it out:
//! `bramble = { version = "0.1", default-features = false }`.

#![warn(missing_docs, unreachable_pub)]

// The embedding API.
mod client;
mod client_listeners;
mod defaults;
mod error;
mod identity_file;
mod node;
mod publish;

// The `bramble` binary (feature `cli`).
#[cfg(feature = "cli")]
mod backups;
#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "cli")]
mod config_file;
#[cfg(feature = "cli")]
pub mod logging;
#[cfg(feature = "cli")]
pub mod server;
#[cfg(feature = "cli")]
pub mod snapshot_command;
#[cfg(feature = "cli")]
mod snapshot_restore;
#[cfg(feature = "cli")]
mod systemd;
#[cfg(feature = "cli")]
mod tls;
#[cfg(feature = "cli")]
mod unsupported_flags;

pub use bramble_api as api;
pub use client::{
    Client, Compare, DeleteOptions, Leadership, LeaseKeeper, LockGuard, NumberCompare, PutOptions,
    RangeOptions, Txn, TxnOp, ValueCompare, WatchOptions, WatchResponseExt, Watcher,
};
pub use error::{Error, ErrorKind};
pub use node::{ClusterState, ListenAddr, Node, NodeOptions, PeerTls};

/// Bramble's version, as clap shows it.
#[cfg(feature = "cli")]
pub(crate) const VERSION_LINE: &str = env!("CARGO_PKG_VERSION");
