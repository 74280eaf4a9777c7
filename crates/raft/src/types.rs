//! The openraft type configuration: what a log entry carries, what applying
//! one returns, and what the cluster keeps of each member.

use std::fmt;

use bramble_api::bramblepb::Command;
use bramble_storage::mvcc::ApplyResult;

/// What the cluster knows of a member besides its id: its `--name` and its
/// addresses (etcd's member attributes). Whether it votes is in the voter sets.
///
/// This is openraft's `Node` type, so it travels in membership log entries.
/// etcd's full member record (id, learner flag) is `membership::MemberInfo`
/// (the API's `etcdserverpb::Member`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAttributes {
    /// etcd's `--name`.
    pub name: String,
    /// etcd's `--initial-advertise-peer-urls`: where peers reach this node.
    pub peer_urls: Vec<String>,
    /// etcd's `--advertise-client-urls`: where clients reach this node.
    pub client_urls: Vec<String>,
}

impl fmt::Display for MemberAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// A client command proposed to Raft: openraft's application data.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What to apply.
    pub command: Command,
    /// Non-zero when a follower forwarded the command to the leader: the
    /// follower answers its client once it applied the entry with this id
    /// (see `crate::forwarded_proposals`).
    pub request_id: u64,
}

impl Request {
    /// A command proposed by the member that serves the client.
    pub fn local(command: Command) -> Self {
        Request {
            command,
            request_id: 0,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use bramble_api::bramblepb::command::Op;
        let what = match &self.command.op {
            Some(Op::Put(_)) => "put",
            Some(Op::DeleteRange(_)) => "delete_range",
            Some(Op::Txn(_)) => "txn",
            Some(Op::Compaction(_)) => "compaction",
            Some(Op::LeaseGrant(_)) => "lease_grant",
            Some(Op::LeaseRevoke(_)) => "lease_revoke",
            Some(Op::Alarm(_)) => "alarm",
            Some(Op::AuthEnable(_)) => "auth_enable",
            Some(Op::AuthDisable(_)) => "auth_disable",
            Some(Op::AuthUserAdd(_)) => "auth_user_add",
            Some(Op::AuthUserDelete(_)) => "auth_user_delete",
            Some(Op::AuthUserChangePassword(_)) => "auth_user_change_password",
            Some(Op::AuthUserGrantRole(_)) => "auth_user_grant_role",
            Some(Op::AuthUserRevokeRole(_)) => "auth_user_revoke_role",
            Some(Op::AuthRoleAdd(_)) => "auth_role_add",
            Some(Op::AuthRoleDelete(_)) => "auth_role_delete",
            Some(Op::AuthRoleGrantPermission(_)) => "auth_role_grant_permission",
            Some(Op::AuthRoleRevokePermission(_)) => "auth_role_revoke_permission",
            Some(Op::AuthAuthenticate(_)) => "auth_authenticate",
            None => "empty",
        };
        f.write_str(what)
    }
}

/// What applying an entry produced: openraft's application response.
#[derive(Debug)]
pub enum Response {
    /// A client command's result (which may be an etcd error such as a
    /// compacted revision: those are deterministic results, not failures).
    Command(ApplyResult),
    /// A blank or membership entry: nothing to report.
    Empty,
}

openraft::declare_raft_types!(
    /// Bramble's Raft types: etcd-style single leader per term (`leader_id_std`),
    /// so a log id is (term, index) like etcd's raft.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = MemberAttributes,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// A log id: (term, index).
pub(crate) type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A log entry as openraft sees it.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// The Raft hard state.
pub(crate) type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A cluster configuration.
pub(crate) type Membership = openraft::Membership<u64, MemberAttributes>;
/// The membership the state machine last applied, with its log id.
pub(crate) type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// The Raft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
