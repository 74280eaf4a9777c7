//! openraft glue for Bramble: the type configuration, the WAL as openraft's
//! log storage, the MVCC store as its state machine, the peer transport, and
//! [`RaftNode`], which ties them into one running member.

pub mod codec;
pub mod fatal;
pub mod forward;
pub mod identity;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod snapshot;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use fatal::{FatalCause, FatalError, FatalSignal};
pub use membership::{MemberInfo, MembershipError};
pub use node::{NodeConfig, ProposeError, RaftNode, RaftStatus, StartError};
pub use types::{Member, TypeConfig};
