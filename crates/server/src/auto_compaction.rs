//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as
//! etcd's `v3compactor`: only the leader compacts, by proposing an ordinary Compact
//! through Raft, so every member forgets the same history.
//!
//! - `periodic` keeps a window of history in time. The revision is sampled every tenth
//!   of the period (at most an hour); after the first full period, and then every
//!   period (at most an hour), the oldest sample, taken about one period ago, is
//!   compacted.
//! - `revision` keeps a number of revisions: every five minutes, the current revision
//!   minus the retention is compacted, unless that was the last one compacted.
//!
//! A failed compaction is logged and retried at the next sample, as etcd does; a
//! revision already compacted counts as done.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::CompactionRequest;
use bramble_storage::mvcc::{ApplyResult, MvccError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ServerContext;

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history in time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// How often the revision mode compacts (etcd's `revInterval`).
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The periodic mode samples this many times per period (etcd's `retryDivisor`).
const SAMPLES_PER_PERIOD: u32 = 10;
/// The periodic mode compacts at least this often.
const MAX_COMPACT_INTERVAL: Duration = Duration::from_secs(3600);

/// The periodic mode's schedule: samples of the revision and when to compact which.
#[derive(Debug)]
struct PeriodicSchedule {
    period: Duration,
    /// Revisions sampled, oldest first; the first is about one period old.
    samples: VecDeque<i64>,
    /// How long after the last success the next compaction is due: the whole period
    /// for the first one, then the compact interval.
    due_after: Duration,
    last_success: Instant,
}

impl PeriodicSchedule {
    fn new(period: Duration, now: Instant) -> PeriodicSchedule {
        PeriodicSchedule {
            period,
            samples: VecDeque::with_capacity(Self::samples_kept(period)),
            due_after: period,
            last_success: now,
        }
    }

    fn compact_interval(period: Duration) -> Duration {
        period.min(MAX_COMPACT_INTERVAL)
    }

    /// Time between two samples (at least a millisecond, so tiny periods do not spin).
    fn sample_interval(period: Duration) -> Duration {
        (Self::compact_interval(period) / SAMPLES_PER_PERIOD).max(Duration::from_millis(1))
    }

    fn samples_kept(period: Duration) -> usize {
        let per = Self::sample_interval(period).as_nanos().max(1);
        usize::try_from(period.as_nanos() / per)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }

    /// Records the revision now (before waiting for the next sample).
    fn sample(&mut self, rev: i64) {
        self.samples.push_back(rev);
        if self.samples.len() > Self::samples_kept(self.period) {
            self.samples.pop_front();
        }
    }

    /// After a sample interval: the revision to compact, if one is due.
    fn due(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.due_after {
            return None;
        }
        self.due_after = Self::compact_interval(self.period);
        self.samples.front().copied()
    }

    fn succeeded(&mut self, now: Instant) {
        self.last_success = now;
    }
}

/// Runs the policy until `stop`. Only the leader proposes; on the others the samples
/// go on, so a new leader starts with a full window.
pub async fn run(ctx: Arc<ServerContext>, policy: AutoCompaction, stop: CancellationToken) {
    match policy {
        AutoCompaction::Periodic(period) => run_periodic(&ctx, period, &stop).await,
        AutoCompaction::Revision(keep) => run_revision(&ctx, keep, &stop).await,
    }
}

async fn run_periodic(ctx: &Arc<ServerContext>, period: Duration, stop: &CancellationToken) {
    let mut schedule = PeriodicSchedule::new(period, Instant::now());
    let interval = PeriodicSchedule::sample_interval(period);
    loop {
        schedule.sample(ctx.node.store().current_revision());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !is_leader(ctx) {
            continue;
        }
        let Some(rev) = schedule.due(Instant::now()) else {
            continue;
        };
        tracing::info!(revision = rev, compact_period = ?period, "starting auto periodic compaction");
        if compact(ctx, rev).await {
            schedule.succeeded(Instant::now());
        }
    }
}

async fn run_revision(ctx: &Arc<ServerContext>, keep: i64, stop: &CancellationToken) {
    let mut previous = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REVISION_INTERVAL) => {}
        }
        if !is_leader(ctx) {
            continue;
        }
        let rev = ctx.node.store().current_revision().saturating_sub(keep);
        if rev <= 0 || rev == previous {
            continue;
        }
        tracing::info!(
            revision = rev,
            retention = keep,
            "starting auto revision compaction"
        );
        if compact(ctx, rev).await {
            previous = rev;
        }
    }
}

fn is_leader(ctx: &ServerContext) -> bool {
    ctx.node.status().leader == ctx.identity.member_id
}

/// Proposes a compaction at `rev`; true if it is done (or was already).
async fn compact(ctx: &Arc<ServerContext>, rev: i64) -> bool {
    let started = Instant::now();
    let cmd = Command {
        auth: None,
        op: Some(Op::Compaction(CompactionRequest {
            revision: rev,
            physical: false,
        })),
    };
    match ctx.propose(cmd).await {
        Ok(ApplyResult::Error(MvccError::Compacted)) | Ok(ApplyResult::Compaction(_)) => {
            tracing::info!(revision = rev, took = ?started.elapsed(), "completed auto compaction");
            true
        }
        Ok(ApplyResult::Error(e)) => {
            tracing::warn!(revision = rev, error = %e, "failed auto compaction; will retry");
            false
        }
        Ok(other) => {
            tracing::warn!(revision = rev, result = ?other, "auto compaction: unexpected result");
            false
        }
        Err(status) => {
            tracing::warn!(revision = rev, error = %status.message(), "failed auto compaction; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_compacts_the_sample_one_period_old() {
        // A 10 s period: samples every second, 11 kept, first compaction after 10 s.
        let period = Duration::from_secs(10);
        assert_eq!(
            PeriodicSchedule::sample_interval(period),
            Duration::from_secs(1)
        );
        assert_eq!(PeriodicSchedule::samples_kept(period), 11);
        let t0 = Instant::now();
        let mut s = PeriodicSchedule::new(period, t0);
        let mut compacted = Vec::new();
        for second in 1..=25u64 {
            // The revision grows by 10 a second.
            s.sample(second as i64 * 10);
            if let Some(rev) = s.due(t0 + Duration::from_secs(second)) {
                compacted.push((second, rev));
                s.succeeded(t0 + Duration::from_secs(second));
            }
        }
        // After 10 s the oldest sample (taken at 1 s: revision 10), then every 10 s the
        // one taken 10 s before.
        assert_eq!(compacted, vec![(10, 10), (20, 100)]);
    }

    #[test]
    fn long_periods_compact_hourly_with_the_whole_window() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            PeriodicSchedule::sample_interval(day),
            Duration::from_secs(360)
        );
        assert_eq!(PeriodicSchedule::samples_kept(day), 241);
        let t0 = Instant::now();
        let mut s = PeriodicSchedule::new(day, t0);
        s.sample(1);
        assert_eq!(
            s.due(t0 + Duration::from_secs(3600)),
            None,
            "not before a day"
        );
        assert_eq!(s.due(t0 + day), Some(1));
        s.succeeded(t0 + day);
        assert_eq!(s.due(t0 + day + Duration::from_secs(3599)), None);
        assert_eq!(s.due(t0 + day + Duration::from_secs(3600)), Some(1));
    }
}
