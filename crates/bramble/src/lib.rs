//! Bramble: an etcd v3 compatible, Raft-replicated key-value store for
//! Raspberry Pi clusters.
//!
//! Two ways in: the `bramble` binary (etcd's flags, etcd's gRPC API), and
//! [`Node`], the same store embedded in your own program.

pub mod config;
mod identity_file;
pub mod node;
mod publish;
pub mod server;

pub use bramble_api as api;
pub use node::{ClusterState, Error, Node, NodeOptions};

/// Bramble's version, as clap shows it.
pub const VERSION_LINE: &str = env!("CARGO_PKG_VERSION");
