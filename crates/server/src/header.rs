//! Response headers: who answered (cluster and member), at which revision and
//! Raft term, as etcd fills them.

use bramble_api::etcdserverpb::ResponseHeader;
use bramble_raft::RaftNode;

/// A member's identity, as every response header carries it: its cluster's
/// id and its own (kept in `<data-dir>/member/identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// etcd's cluster id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
}

impl Identity {
    /// Fills `header` (created if absent) with identity and Raft term; the
    /// revision is kept when the store already set it, else the current one.
    pub(crate) fn fill(&self, header: &mut Option<ResponseHeader>, node: &RaftNode) {
        let h = header.get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member_id;
        h.raft_term = node.term();
        if h.revision == 0 {
            h.revision = node.store().current_revision();
        }
    }
}
