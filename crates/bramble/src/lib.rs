//! Bramble: an etcd v3 compatible, Raft-replicated key-value store for
//! Raspberry Pi clusters, as a server binary and as a library.
//!
//! Two ways in: the `bramble` binary (etcd's flags, etcd's gRPC API), and
//! [`Node`], the same store embedded in your own program: a replicated
//! configuration, leader election or locks for a service on a few Pis,
//! without a separate etcd. The binary also carries snapshot tools
//! (`snapshot_command`), as etcdutl does for etcd.
//!
//! # Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bramble::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let dir = dir.path();
//! use bramble::{Compare, Node, NodeOptions, RangeOptions, Txn, TxnOp};
//!
//! // A one-member store in `dir`; see NodeOptions for a cluster.
//! let node = Node::open(NodeOptions::new(dir)).await?;
//! node.put("config/interval", "30s").await?;
//! let interval = node.get("config/interval").await?.expect("just put");
//! assert_eq!(interval.value, b"30s");
//!
//! // Write a default only if nobody set it yet.
//! let default = Txn::new()
//!     .when([Compare::create_revision("config/log-level").eq(0)])
//!     .and_then([TxnOp::put("config/log-level", "info")]);
//! assert!(node.txn(default).await?.succeeded);
//! let config = node.range("config/", RangeOptions::new().prefix()).await?;
//! assert_eq!(config.count, 2);
//! node.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`Node`] dereferences to a [`Client`] (cheap to clone, for tasks) with
//! every call: key-value reads and writes with [`RangeOptions`],
//! [`PutOptions`] and [`DeleteOptions`]; transactions ([`Txn`], [`Compare`],
//! [`TxnOp`]); watches as `Stream`s ([`Client::watch`], [`WatchOptions`]);
//! leases, kept alive by a [`LeaseKeeper`]; locks ([`Client::lock`],
//! [`LockGuard`]) and elections ([`Client::campaign`], [`Leadership`],
//! [`Client::observe`]); membership ([`Client::member_list`],
//! [`Client::member_add`], ...). Errors are an [`Error`] with an
//! [`ErrorKind`] to match on, and etcd's gRPC code and text.
//!
//! Several programs that each embed a [`Node`] form one Raft cluster over
//! the peer port ([`NodeOptions::initial_cluster`],
//! [`NodeOptions::listen_peer_addrs`]), and an embedded member can serve
//! etcd's gRPC API too ([`NodeOptions::listen_client_addrs`]) so `etcdctl`
//! can look inside. docs/embedding.md in the repository has the whole
//! story, and `examples/` a configuration store, a leader election on three
//! Pis and a work queue with leases.
//!
//! # Features
//!
//! The binary's modules (`config`, `server`, `logging`, `snapshot_command`)
//! and their dependencies (clap, YAML, systemd, ...) are behind the default
//! feature `cli`; an embedding program leaves it out:
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
