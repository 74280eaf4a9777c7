//! Corruption detection as etcd 3.6 does it (`etcdserver/corrupt.go`): members
//! compare their HashKV, and a mismatch raises the CORRUPT alarm through Raft,
//! which makes every member refuse changes (`etcdserver: corrupt cluster`).
//!
//! - the initial check (`--feature-gates=InitialCorruptCheck=true`): before a
//!   member that has data serves clients, it asks its peers for their hash at its
//!   own revision and refuses to start (`found data inconsistency with peers`) if a
//!   peer with the same compact revision has another hash;
//! - the periodic check (`--corrupt-check-time`): the leader compares its hash with
//!   its followers' at its revision and raises the alarm for a member that differs;
//! - the compact hash check (`--feature-gates=CompactHashCheck=true`,
//!   `--compact-hash-check-time`): members keep the hash computed at each
//!   compaction (the last 10, in memory); the leader compares followers' hashes of
//!   the same compaction and raises the alarm for the members outside the majority.
//!
//! Members ask each other over the peer listener ([`peer`]); the verdicts are
//! `compare`'s.

pub(crate) mod compare;
pub mod peer;

use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::alarm_request::AlarmAction;
use bramble_api::etcdserverpb::{AlarmRequest, AlarmType};
use bramble_raft::RaftNode;
use tokio::sync::Mutex;

use crate::ServerContext;
use compare::CompactVerdict;
use peer::{local_hash, peer_hashes};

/// The error text etcd's initial check fails with, after the member id.
pub const INITIAL_CHECK_FAILED: &str = "found data inconsistency with peers";

/// Which checks run, and how often.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorruptionChecks {
    /// etcd's `InitialCorruptCheck` feature gate.
    pub initial: bool,
    /// etcd's `--corrupt-check-time`; `None` (0) turns the periodic check off.
    pub periodic: Option<Duration>,
    /// etcd's `CompactHashCheck` feature gate with `--compact-hash-check-time`.
    pub compact_hash: Option<Duration>,
}

/// etcd's `InitialCheck`: this member's hash at its current revision against its
/// peers'. Fails with etcd's error when a peer with the same compact revision has
/// another hash; peers that do not answer, are behind, or compacted differently are
/// skipped (logged), as in etcd.
pub async fn initial_check(node: &RaftNode) -> Result<(), String> {
    let me = node.member_id();
    let timeout = request_timeout(node);
    tracing::info!(
        local_member_id = %format!("{me:x}"),
        timeout = ?timeout,
        "starting initial corruption check"
    );
    let local = local_hash(node.store(), 0)
        .await
        .map_err(|e| format!("{me:x} failed to fetch hash ({e})"))?;
    let peers = peer_hashes(node, local.hash_revision, timeout).await;
    if !compare::initial_mismatches(me, &local, &peers).is_empty() {
        return Err(format!("{me:x} {INITIAL_CHECK_FAILED}"));
    }
    tracing::info!(
        local_member_id = %format!("{me:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// Starts the periodic and compact hash checks that `checks` turns on, as tasks
/// of `ctx`'s member that end when Raft stops. Each runs on the leader only.
pub fn start(ctx: &Arc<ServerContext>, checks: CorruptionChecks) {
    // etcd's `latestRevisionChecked`: compactions already checked on the whole
    // cluster are not checked again.
    let checked = Arc::new(Mutex::new(0i64));
    if let Some(every) = checks.periodic {
        tracing::info!(
            local_member_id = %format!("{:x}", ctx.identity.member_id),
            interval = ?every,
            "enabled corruption checking"
        );
        spawn_every(ctx, every, |ctx| async move {
            if let Err(e) = periodic_check(&ctx).await {
                tracing::warn!("failed to check hash KV: {e}");
            }
        });
    }
    if let Some(every) = checks.compact_hash {
        spawn_every(ctx, every, move |ctx| {
            let checked = checked.clone();
            async move { compact_hash_check(&ctx, &checked).await }
        });
    }
}

/// Runs `check` every `every` while this member leads, until Raft stops.
fn spawn_every<F, Fut>(ctx: &Arc<ServerContext>, every: Duration, check: F)
where
    F: Fn(Arc<ServerContext>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(ctx);
    let mut stopping = ctx.node.stopping();
    ctx.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let Some(ctx) = weak.upgrade() else {
                return;
            };
            if ctx.node.status().leader == ctx.identity.member_id && ctx.node.check_alive().is_ok()
            {
                check(ctx).await;
            }
        }
    });
}

/// etcd's `PeriodicCheck` (see [`compare::periodic_blame`]).
async fn periodic_check(ctx: &Arc<ServerContext>) -> Result<(), String> {
    let node = &ctx.node;
    let first = local_hash(node.store(), 0)
        .await
        .map_err(|e| e.to_string())?;
    let peers = peer_hashes(node, first.hash_revision, request_timeout(node)).await;
    node.read_barrier().await.map_err(|e| e.to_string())?;
    let second = local_hash(node.store(), 0)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(id) = compare::periodic_blame(ctx.identity.member_id, &first, &second, &peers) {
        raise_corrupt(ctx, id).await;
    }
    Ok(())
}

/// etcd's `CompactHashCheck`: the hashes this member stored at compactions, newest
/// first and newer than the last one checked on the whole cluster, each compared
/// with the peers' for the same compaction until one is checked on every member or
/// raises an alarm.
async fn compact_hash_check(ctx: &Arc<ServerContext>, checked: &Mutex<i64>) {
    let node = &ctx.node;
    let me = ctx.identity.member_id;
    tracing::info!(
        local_member_id = %format!("{me:x}"),
        "starting compact hash check"
    );
    let latest_checked = *checked.lock().await;
    let mut hashes = node.store().compaction_hashes();
    hashes.sort_by_key(|h| std::cmp::Reverse(h.hash_revision));
    hashes.retain(|h| h.hash_revision > latest_checked);
    let total = hashes.len();
    for (i, hash) in hashes.into_iter().enumerate() {
        let peers = peer_hashes(node, hash.hash_revision, request_timeout(node)).await;
        if peers.is_empty() {
            continue;
        }
        match compare::compact_verdict(me, &hash, &peers) {
            CompactVerdict::Incomplete => continue,
            CompactVerdict::Consistent => {
                let mut latest = checked.lock().await;
                *latest = (*latest).max(hash.hash_revision);
            }
            CompactVerdict::Corrupt(ids) => {
                for id in ids {
                    raise_corrupt(ctx, id).await;
                }
            }
        }
        tracing::info!(
            number_of_hashes_checked = i + 1,
            "finished compaction hash check"
        );
        return;
    }
    tracing::info!(
        number_of_hashes_checked = total,
        "finished compaction hash check"
    );
}

/// etcd's `triggerCorruptAlarm`: proposes the CORRUPT alarm for `member` (0: the
/// whole cluster) through Raft, unless it is raised already.
async fn raise_corrupt(ctx: &Arc<ServerContext>, member: u64) {
    let raised = ctx
        .node
        .store()
        .alarms()
        .iter()
        .any(|a| a.member_id == member && a.alarm == AlarmType::Corrupt as i32);
    if raised {
        return;
    }
    tracing::error!(
        member_id = %format!("{member:x}"),
        "data inconsistency found; raising the CORRUPT alarm"
    );
    let cmd = Command {
        auth: None,
        op: Some(Op::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: member,
            alarm: AlarmType::Corrupt as i32,
        })),
    };
    if let Err(e) = ctx.propose(cmd).await {
        tracing::warn!("raising the CORRUPT alarm: {}", e.message());
    }
}

/// How long a peer has to answer: etcd's request timeout.
fn request_timeout(node: &RaftNode) -> Duration {
    node.request_deadline()
        .saturating_duration_since(tokio::time::Instant::now())
}
