//! The lease clock: when each lease expires, as the leader sees it, and the loop that
//! revokes expired leases through Raft (etcd's lessor `runLoop` / `revokeExpiredLeases`).
//!
//! Expiry times are not replicated state. Only the leader keeps them, in memory: a lease
//! the clock has not seen yet (every lease after a restart, or after this member became
//! leader) gets its full TTL from that moment plus an election timeout, which is etcd's
//! "extend on promote", so clients have a whole TTL to renew after a failover or restart.
//!
//! The clock belongs to one term: used in another term it starts over, so a member that
//! leads again never trusts expiries from an earlier term, when another leader may have
//! renewed the lease since. Starting over only ever moves expiries later.
//!
//! Why a new leader never expires a lease its predecessor just renewed: the old leader
//! renews only shortly after a quorum acknowledged it (see
//! `LeaseService::ensure_leadership`), and no other member can be elected before the
//! followers' leader lease from that acknowledgement runs out; the new leader then adds
//! an election timeout to a whole TTL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::LeaseRevokeRequest;
use bramble_raft::idutil::IdGenerator;
use bramble_storage::mvcc::{ApplyResult, MvccError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ServerContext;

/// How often the leader looks for expired leases (etcd: 500 ms).
pub(super) const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Most revokes proposed per check (etcd: `leaseRevokeRate / 2` = 500).
pub(super) const REVOKES_PER_CHECK: usize = 500;

/// etcd's minimum lease TTL for a heartbeat interval and election timeout (ms):
/// `ceil(1.5 * election ticks * heartbeat)` in seconds (2 s with etcd's defaults).
pub fn min_lease_ttl(heartbeat_ms: u64, election_ms: u64) -> i64 {
    let heartbeat = heartbeat_ms.max(1);
    let ticks = election_ms / heartbeat;
    let min_ms = (3 * ticks / 2) * heartbeat;
    i64::try_from(min_ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// The leader's in-memory lease clock, shared by every Lease service of a server and
/// its expiry loop.
#[derive(Debug)]
pub struct Lessor {
    /// etcd's minimum TTL, seconds: grants below it are raised to it.
    pub min_ttl: i64,
    /// Assigns ids to grants that ask for id 0.
    pub ids: IdGenerator,
    /// Added to the TTL of a lease first seen by this leader (etcd: an election timeout).
    promote_extend: Duration,
    state: Mutex<Clock>,
    started: OnceLock<()>,
}

#[derive(Debug, Default)]
struct Clock {
    /// The term these expiries belong to.
    term: u64,
    /// Lease id → when it expires (only for leases seen since this member led).
    expiry: HashMap<i64, Instant>,
    /// Leases whose revoke is being proposed by the expiry loop.
    revoking: HashSet<i64>,
}

fn deadline(now: Instant, ttl: i64) -> Instant {
    let secs = u64::try_from(ttl).unwrap_or(0);
    now.checked_add(Duration::from_secs(secs))
        .unwrap_or_else(|| now + Duration::from_secs(86400 * 365 * 100))
}

impl Lessor {
    /// A clock for a member with `member_id`, whose minimum TTL is `min_ttl` seconds;
    /// leases it first sees as leader get `promote_extend` on top of their TTL.
    pub fn new(member_id: u64, min_ttl: i64, promote_extend: Duration) -> Self {
        Lessor {
            min_ttl,
            ids: IdGenerator::new(member_id),
            promote_extend,
            state: Mutex::new(Clock::default()),
            started: OnceLock::new(),
        }
    }

    /// What a lease first seen by this leader gets on top of its TTL.
    pub(crate) fn promote_extend(&self) -> Duration {
        self.promote_extend
    }

    fn lock(&self) -> MutexGuard<'_, Clock> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clock of `term`: started over if it was another term's.
    fn clock(&self, term: u64) -> MutexGuard<'_, Clock> {
        let mut clock = self.lock();
        if clock.term != term {
            clock.term = term;
            clock.expiry.clear();
            clock.revoking.clear();
        }
        clock
    }

    /// Lease `id` (granted `ttl`) expires `ttl` seconds from now (a grant or a renew
    /// in `term`).
    pub(crate) fn refresh(&self, id: i64, ttl: i64, term: u64) {
        self.clock(term)
            .expiry
            .insert(id, deadline(Instant::now(), ttl));
    }

    /// Forgets lease `id` (revoked).
    pub(crate) fn forget(&self, id: i64) {
        self.lock().expiry.remove(&id);
    }

    /// When lease `id` (granted `ttl`) expires by the clock of `term`; a lease not seen
    /// yet starts its full TTL (plus the promote extension) now.
    pub(crate) fn expiry(&self, id: i64, ttl: i64, term: u64) -> Instant {
        let start = Instant::now() + self.promote_extend;
        *self
            .clock(term)
            .expiry
            .entry(id)
            .or_insert_with(|| deadline(start, ttl))
    }

    /// Starts the expiry loop for `ctx` once (later calls do nothing), on the context's
    /// task tracker. It stops when the Raft node stops or the context is dropped.
    pub fn start(ctx: &Arc<ServerContext>) {
        if ctx.lessor.started.set(()).is_err() {
            return;
        }
        let weak = Arc::downgrade(ctx);
        ctx.tasks.spawn(expiry_loop(weak, ctx.node.stopping()));
    }

    /// The expired leases to revoke now by the clock of `term` (marked as being revoked),
    /// given every lease as (id, TTL). Drops clock entries of leases that no longer exist.
    fn due(&self, leases: &[(i64, i64)], now: Instant, term: u64) -> Vec<i64> {
        let mut clock = self.clock(term);
        let live: HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        clock.expiry.retain(|id, _| live.contains(id));
        clock.revoking.retain(|id| live.contains(id));
        let mut due = Vec::new();
        let start = now + self.promote_extend;
        for &(id, ttl) in leases {
            let at = *clock
                .expiry
                .entry(id)
                .or_insert_with(|| deadline(start, ttl));
            if at <= now && !clock.revoking.contains(&id) {
                due.push(id);
                if due.len() == REVOKES_PER_CHECK {
                    break;
                }
            }
        }
        for id in &due {
            clock.revoking.insert(*id);
        }
        due
    }

    fn revoked(&self, id: i64, gone: bool) {
        let mut clock = self.lock();
        clock.revoking.remove(&id);
        if gone {
            clock.expiry.remove(&id);
        }
    }

    /// Forgets every expiry (this member is not the leader).
    fn clear(&self) {
        let mut clock = self.lock();
        clock.expiry.clear();
    }
}

/// Every [`CHECK_INTERVAL`], on the leader: proposes a revoke for each expired lease, as
/// the leader of the term whose clock expired it (never forwarded: etcd's
/// `revokeExpiredLeases` refuses to revoke on a member that may no longer lead).
async fn expiry_loop(ctx: Weak<ServerContext>, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let Some(ctx) = ctx.upgrade() else {
            return;
        };
        let node = &ctx.node;
        let status = node.status();
        if status.leader != node.member_id() {
            ctx.lessor.clear();
            continue;
        }
        let term = status.term;
        let leases = match node.store().leases() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "lease expiry: cannot list leases");
                continue;
            }
        };
        for id in ctx.lessor.due(&leases, Instant::now(), term) {
            let task_ctx = ctx.clone();
            ctx.tasks.spawn(async move {
                let ctx = task_ctx;
                let cmd = Command {
                    auth: None,
                    op: Some(Op::LeaseRevoke(LeaseRevokeRequest { id })),
                };
                let gone = match ctx.node.propose_as_leader(cmd, term).await {
                    Ok(ApplyResult::LeaseRevoke(_)) => {
                        tracing::debug!(lease = id, "expired lease revoked");
                        true
                    }
                    Ok(ApplyResult::Error(MvccError::LeaseNotFound)) => true,
                    Ok(other) => {
                        tracing::warn!(lease = id, result = ?other, "expired lease revoke");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "expired lease revoke failed; retrying");
                        false
                    }
                };
                ctx.lessor.revoked(id, gone);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_as_etcd() {
        // etcd defaults: 100 ms heartbeat, 1000 ms election: 15 ticks * 100 ms = 1.5 s → 2.
        assert_eq!(min_lease_ttl(100, 1000), 2);
        assert_eq!(min_lease_ttl(100, 2000), 3);
        assert_eq!(min_lease_ttl(500, 5000), 8);
        assert_eq!(min_lease_ttl(0, 0), 0);
    }

    #[test]
    fn due_leases() {
        let l = Lessor::new(1, 2, Duration::from_secs(1));
        let now = Instant::now();
        l.refresh(1, 5, 7);
        // Lease 2 was never seen: it gets its full TTL from now, plus 1 s.
        assert!(l.due(&[(1, 5), (2, 1)], now, 7).is_empty());
        assert!(l
            .due(&[(1, 5), (2, 1)], now + Duration::from_millis(1500), 7)
            .is_empty());
        let later = now + Duration::from_secs(2);
        assert_eq!(l.due(&[(1, 5), (2, 1)], later, 7), vec![2]);
        // Being revoked: not due again until the revoke is over.
        assert!(l.due(&[(1, 5), (2, 1)], later, 7).is_empty());
        l.revoked(2, false);
        assert_eq!(l.due(&[(1, 5), (2, 1)], later, 7), vec![2]);
        // Gone from the store: forgotten.
        let much_later = now + Duration::from_secs(6);
        assert_eq!(l.due(&[(1, 5)], much_later, 7), vec![1]);
        assert_eq!(l.lock().expiry.len(), 1);
    }

    #[test]
    fn another_term_starts_the_clock_over() {
        let l = Lessor::new(1, 2, Duration::from_secs(1));
        let now = Instant::now();
        l.refresh(1, 5, 3);
        assert_eq!(l.due(&[(1, 5)], now + Duration::from_secs(6), 3), vec![1]);
        // Leading again in term 5: another leader may have renewed lease 1 in term 4, so
        // it gets a whole TTL plus the promote extension from now, not the old expiry.
        assert!(l.due(&[(1, 5)], now + Duration::from_secs(6), 5).is_empty());
        assert!(l.expiry(1, 5, 5) >= now + Duration::from_secs(6));
        // A renewal from a term that is over does not shorten anything either.
        l.refresh(1, 5, 4);
        assert!(l.expiry(1, 5, 5) >= now + Duration::from_secs(6));
    }
}
