//! The backend space quota (etcd's `--quota-backend-bytes`, `etcdserver/quota.go`) and
//! the NOSPACE alarm it raises.
//!
//! As etcd: 0 means the default quota of 2 GiB, a negative value turns the quota off,
//! and a quota above 8 GiB is accepted with a warning. A put, a txn or a lease grant
//! whose cost (etcd's: 256 bytes plus key and value per put, the costlier txn branch,
//! 64 bytes per lease) would take the database file to the quota or beyond is refused
//! with `etcdserver: mvcc: database space exceeded`, and this member raises the NOSPACE
//! alarm through Raft; from then on every member refuses such changes at apply time
//! (`bramble_storage::mvcc` alarms) until the alarm is disarmed.
//!
//! etcd also checks the size after applying each entry and raises the alarm there. The
//! file size is a `stat` (blocking I/O), so Bramble does not do it on the apply path:
//! a monitor task stats the file every [`MONITOR_INTERVAL`], keeps the size for the
//! request checks above and raises the alarm when the file alone is over the quota
//! (a member that receives no client writes still raises it, as etcd's apply-time
//! check does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::alarm_request::AlarmAction;
use bramble_api::etcdserverpb::request_op::Request;
use bramble_api::etcdserverpb::{AlarmRequest, AlarmType, PutRequest, TxnRequest};
use tonic::Status;

use crate::errors;
use crate::ServerContext;

/// etcd's `DefaultQuotaBytes`: the quota when the flag is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's `MaxQuotaBytes`: above it etcd (and Bramble) warn that performance may suffer.
pub const MAX_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// How often the monitor refreshes the file size and checks it against the quota.
pub const MONITOR_INTERVAL: Duration = Duration::from_millis(500);

/// etcd's `kvOverhead`: the cost of a put beyond its key and value.
const KV_OVERHEAD: u64 = 256;
/// etcd's `leaseOverhead`: the cost of a lease grant.
const LEASE_OVERHEAD: u64 = 64;

/// The space quota of one member and the last database file size seen.
#[derive(Debug)]
pub struct Quota {
    /// The quota in bytes; `None` when turned off.
    limit: Option<u64>,
    /// The flag's value.
    flag: i64,
    /// The database file's size at the last check.
    size: AtomicU64,
    /// Bumped by each [`Quota::set_size`]: the monitor stores the size it read
    /// only if no one stored a newer one meanwhile (a defragmentation that
    /// finished while the monitor's `stat` ran).
    generation: AtomicU64,
}

impl Quota {
    /// The quota for etcd's `--quota-backend-bytes` value `flag`; logs what etcd logs.
    pub fn from_flag(flag: i64) -> Quota {
        let limit = match u64::try_from(flag) {
            Err(_) => {
                tracing::info!(quota_name = "v3-applier", "disabled backend quota");
                None
            }
            Ok(0) => {
                tracing::info!(
                    quota_name = "v3-applier",
                    quota_size_bytes = DEFAULT_QUOTA_BYTES,
                    "enabled backend quota with default value"
                );
                Some(DEFAULT_QUOTA_BYTES)
            }
            Ok(bytes) => {
                if bytes > MAX_QUOTA_BYTES {
                    tracing::warn!(
                        quota_name = "v3-applier",
                        quota_size_bytes = bytes,
                        quota_maximum_size_bytes = MAX_QUOTA_BYTES,
                        "quota exceeds the maximum value"
                    );
                }
                tracing::info!(
                    quota_name = "v3-applier",
                    quota_size_bytes = bytes,
                    "enabled backend quota"
                );
                Some(bytes)
            }
        };
        Quota {
            limit,
            flag,
            size: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The quota in bytes, `None` when turned off (Status' `db_size_quota` is 0 then).
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Status' `db_size_quota` (etcd 3.6): the quota in force, or the flag's
    /// (negative) value when the quota is off.
    pub fn status_value(&self) -> i64 {
        self.limit
            .map_or(self.flag, |l| i64::try_from(l).unwrap_or(i64::MAX))
    }

    /// Records the database file's size.
    pub(crate) fn set_size(&self, size: u64) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.size.store(size, Ordering::SeqCst);
    }

    /// Stores `size`, read after [`Quota::generation`] was `seen`, unless a newer size
    /// was stored since. Returns whether it was stored.
    fn set_size_if_unchanged(&self, seen: u64, size: u64) -> bool {
        self.generation
            .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| self.size.store(size, Ordering::SeqCst))
            .is_ok()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether a change costing `cost` bytes fits (etcd's `backendQuota.Available`).
    fn available(&self, cost: u64) -> bool {
        self.limit
            .is_none_or(|limit| self.size.load(Ordering::SeqCst).saturating_add(cost) < limit)
    }
}

/// etcd's `costPut`.
fn cost_put(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// etcd's `costTxn`: the costlier branch, counting its (top-level) puts.
fn cost_txn(t: &TxnRequest) -> u64 {
    let branch = |ops: &[bramble_api::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => cost_put(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// The quota check etcd's quota servers make before a put, txn or lease grant: `Ok`
/// for any other operation; otherwise, when it does not fit, raises this member's
/// NOSPACE alarm and refuses with etcd's error.
pub(crate) async fn check(ctx: &Arc<ServerContext>, op: &Op) -> Result<(), Status> {
    let cost = match op {
        Op::Put(p) => cost_put(p),
        Op::Txn(t) => cost_txn(t),
        Op::LeaseGrant(_) => LEASE_OVERHEAD,
        _ => return Ok(()),
    };
    if ctx.quota.available(cost) {
        return Ok(());
    }
    raise_nospace(ctx).await;
    Err(errors::no_space())
}

/// Proposes this member's NOSPACE alarm unless it is raised already. Failures are
/// logged: the request is refused either way, and the monitor tries again.
async fn raise_nospace(ctx: &Arc<ServerContext>) {
    let me = ctx.identity.member_id;
    let raised = ctx
        .node
        .store()
        .alarms()
        .iter()
        .any(|a| a.member_id == me && a.alarm == AlarmType::Nospace as i32);
    if raised {
        return;
    }
    tracing::warn!(
        quota_size_bytes = ctx.quota.limit.unwrap_or(0),
        db_size_bytes = ctx.quota.size.load(Ordering::SeqCst),
        "database space exceeded; raising the NOSPACE alarm"
    );
    let cmd = Command {
        auth: None,
        op: Some(Op::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: me,
            alarm: AlarmType::Nospace as i32,
        })),
    };
    if let Err(e) = ctx.propose(cmd).await {
        tracing::warn!("raising the NOSPACE alarm: {}", e.message());
    }
}

/// Starts the monitor of `ctx`'s member (once per context, with its tasks): it
/// refreshes the file size every [`MONITOR_INTERVAL`] and raises the NOSPACE alarm
/// when the file alone reaches the quota. It ends when Raft stops.
pub fn start_monitor(ctx: &Arc<ServerContext>) {
    let weak = Arc::downgrade(ctx);
    let mut stopping = ctx.node.stopping();
    ctx.tasks.spawn(async move {
        loop {
            let Some(ctx) = weak.upgrade() else {
                return;
            };
            let seen = ctx.quota.generation();
            let size = ctx.db_file_size().await;
            if ctx.quota.set_size_if_unchanged(seen, size) && !ctx.quota.available(0) {
                raise_nospace(&ctx).await;
            }
            drop(ctx);
            tokio::select! {
                _ = tokio::time::sleep(MONITOR_INTERVAL) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::etcdserverpb::RequestOp;

    fn put(key: &str, value_len: usize) -> PutRequest {
        PutRequest {
            key: key.as_bytes().to_vec(),
            value: vec![0; value_len],
            ..Default::default()
        }
    }

    #[test]
    fn flag_values_as_etcd() {
        assert_eq!(Quota::from_flag(0).limit(), Some(DEFAULT_QUOTA_BYTES));
        assert_eq!(Quota::from_flag(-1).limit(), None);
        assert_eq!(Quota::from_flag(16 << 20).limit(), Some(16 << 20));
        assert_eq!(Quota::from_flag(9 << 30).limit(), Some(9 << 30));
    }

    #[test]
    fn costs_and_availability_as_etcd() {
        assert_eq!(cost_put(&put("key", 100)), 256 + 3 + 100);
        let op = |p| RequestOp {
            request: Some(Request::RequestPut(p)),
        };
        let txn = TxnRequest {
            success: vec![op(put("a", 10))],
            failure: vec![op(put("b", 10)), op(put("c", 10))],
            ..Default::default()
        };
        assert_eq!(cost_txn(&txn), 2 * (256 + 11));
        let q = Quota::from_flag(1000);
        q.set_size(600);
        assert!(q.available(399));
        // etcd: size + cost must stay below the quota.
        assert!(!q.available(400));
        // A size read before a newer one was stored is dropped.
        let seen = q.generation();
        q.set_size(10);
        assert!(!q.set_size_if_unchanged(seen, 900));
        assert!(q.available(989));
        let seen = q.generation();
        assert!(q.set_size_if_unchanged(seen, 900));
        assert!(!q.available(100));
        let off = Quota::from_flag(-1);
        off.set_size(u64::MAX);
        assert!(off.available(u64::MAX));
    }
}
