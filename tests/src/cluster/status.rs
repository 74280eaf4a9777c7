//! Asking members for Maintenance.Status and MemberList, the way an operator's tools do.
//!
//! Each call gets its own single-threaded tokio runtime and is bounded by a 1 s timeout,
//! so it works from any thread (a test may itself run inside a runtime: callers put these
//! calls on a thread of their own) and a SIGSTOPped member, which accepts TCP connections but
//! never answers, costs a second rather than a hang.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// How long one Status call may take: a member that needs longer is treated as not answering.
pub(super) const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// A member's answer to Maintenance.Status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The answering member's id (from the response header).
    pub member_id: u64,
    /// The id of the leader it follows; 0 if it knows none.
    pub leader: u64,
    /// Its raft term.
    pub raft_term: u64,
    /// Its last raft log index.
    pub raft_index: u64,
    /// The last index applied to its state machine.
    pub raft_applied_index: u64,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// One entry of the cluster's member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMember {
    /// Member id.
    pub id: u64,
    /// `--name`; empty for a member added but not started yet.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until the member has started.
    pub client_urls: Vec<String>,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// One Status call to `endpoint`. Builds its own runtime, so call it from a plain thread
/// (never from inside a tokio runtime: the callers spawn one).
pub(super) fn query_status(endpoint: &str) -> Result<MemberStatus, String> {
    block_on(async {
        let mut client = connect(endpoint).await?;
        let st = client.status().await.map_err(|e| e.to_string())?;
        Ok(MemberStatus {
            member_id: st.header().map(|h| h.member_id()).unwrap_or(0),
            leader: st.leader(),
            raft_term: st.raft_term(),
            raft_index: st.raft_index(),
            raft_applied_index: st.raft_applied_index(),
            is_learner: st.is_learner(),
        })
    })
}

/// One MemberList call to `endpoint`.
pub(super) fn query_member_list(endpoint: &str) -> Result<Vec<ListedMember>, String> {
    block_on(async {
        let mut client = connect(endpoint).await?;
        let list = client.member_list().await.map_err(|e| e.to_string())?;
        Ok(list
            .members()
            .iter()
            .map(|m| ListedMember {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                client_urls: m.client_urls().to_vec(),
                is_learner: m.is_learner(),
            })
            .collect())
    })
}

/// A client for one endpoint, with the status timeouts.
async fn connect(endpoint: &str) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(STATUS_TIMEOUT)
        .with_timeout(STATUS_TIMEOUT);
    Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// Runs `f` on a fresh single-threaded runtime, bounded by [`STATUS_TIMEOUT`] overall (a
/// SIGSTOPped peer accepts TCP connections but never answers).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("build tokio runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(STATUS_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {STATUS_TIMEOUT:?}")))
    })
}
