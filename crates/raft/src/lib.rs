//! openraft glue for Bramble: the type configuration, the WAL as openraft's
//! log storage, the MVCC store as its state machine, the peer transport, and
//! [`RaftNode`], which ties them into one running member.

#![warn(missing_docs, unreachable_pub)]

// A module is public when something outside this crate uses one of its items: the server
// and bramble crates, this crate's integration tests (`tests/`: openraft's storage suite
// and the log store test need `forwarded_proposals`, `log_store`, `snapshot`, `state_machine` and
// `types`, which nothing else outside uses) or the fuzz targets (`log_codec`, `peer_codec`). Inside a public module only
// those items, and the types their signatures name, are `pub`.
pub mod admission;
mod check_quorum;
mod config;
pub mod defaults;
pub mod derived_ids;
mod error;
pub mod fatal;
pub mod force_new_cluster;
pub mod forwarded_proposals;
pub mod idutil;
pub mod log_codec;
pub mod log_store;
mod member_storage;
mod membership;
pub mod network;
pub mod node;
pub mod peer_codec;
mod peer_rtt;
pub mod peer_service;
pub mod refusal;
pub mod restore;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use config::NodeConfig;
pub use error::ProposeError;
pub use fatal::{FatalCause, FatalError, FatalSignal};
pub use membership::{MemberInfo, MembershipError};
pub use node::{LeadershipError, RaftNode, RaftStatus, StartError};
pub use types::{MemberAttributes, TypeConfig};
