//! openraft glue for Bramble: the type configuration, the WAL as openraft's
//! log storage, the MVCC store as its state machine, the peer transport, and
//! [`RaftNode`], which ties them into one running member.

pub mod admission;
pub mod check_quorum;
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

pub use check_quorum::LeadershipError;
pub use fatal::{FatalCause, FatalError, FatalSignal};
pub use membership::{MemberInfo, MembershipError};
pub use node::{NodeConfig, ProposeError, RaftNode, RaftStatus, StartError};
pub use types::{Member, TypeConfig};
