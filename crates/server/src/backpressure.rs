//! Backpressure on proposals: the one gate every client write passes before
//! it reaches Raft, so that a flood of writes (or a disk that stalls while
//! they arrive) gets etcd's `etcdserver: too many requests` instead of
//! growing queues until the OOM killer stops the member.
//!
//! Two bounds, checked when a proposal arrives:
//! - etcd's own: refuse while the committed index is more than
//!   `MAX_GAP_BETWEEN_APPLY_AND_COMMIT_INDEX` ahead of the applied index
//!   (etcd's `maxGapBetweenApplyAndCommitIndex`, v3_server.go);
//! - the bytes of proposals in flight on this member. etcd bounds these by
//!   blocking proposers on an unbuffered channel while its Raft loop waits for
//!   the disk; openraft instead accepts every entry into memory, so Bramble
//!   counts them. A proposal holds its share of the budget until it is
//!   answered; one that ends without an answer (timed out, leader changed)
//!   may still sit in Raft's queues, so its share is only given back once
//!   this member has applied every entry its log held at that moment.

use std::sync::Arc;
use std::time::Duration;

use bramble_raft::{ProposeError, RaftNode, RaftStatus};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::errors;

/// etcd's `maxGapBetweenApplyAndCommitIndex`.
pub(crate) const MAX_GAP_BETWEEN_APPLY_AND_COMMIT_INDEX: u64 = 5000;

/// The least a member lets be in flight, in bytes of encoded commands.
const MIN_INFLIGHT_BYTES: usize = 64 * 1024 * 1024;
/// The budget is also at least this many requests of the largest size.
const INFLIGHT_MAX_REQUESTS: usize = 4;
/// The budget is counted in units of this many bytes; every proposal takes
/// at least one, which also bounds the number in flight (65,536 by default).
const UNIT_BYTES: usize = 1024;
/// How often a proposal that ended without an answer checks whether the
/// member applied past its log's end.
const RETIRE_POLL: Duration = Duration::from_millis(200);

/// The gate for proposals (one per member).
pub struct ProposalGate {
    budget: Arc<Semaphore>,
    units: u32,
}

/// A proposal's share of the in-flight budget, held while it is in flight.
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl ProposalGate {
    /// A gate for requests of up to `max_request_bytes`.
    pub fn new(max_request_bytes: usize) -> Self {
        let bytes = MIN_INFLIGHT_BYTES.max(max_request_bytes.saturating_mul(INFLIGHT_MAX_REQUESTS));
        let units = u32::try_from(bytes / UNIT_BYTES).unwrap_or(u32::MAX);
        ProposalGate {
            budget: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Lets a proposal of `encoded_len` bytes in, or refuses it with etcd's
    /// `too many requests`.
    pub(crate) fn admit(&self, node: &RaftNode, encoded_len: usize) -> Result<Ticket, Status> {
        self.admit_at(&node.status(), encoded_len)
    }

    /// [`ProposalGate::admit`] for a member whose Raft state is `s`.
    fn admit_at(&self, s: &RaftStatus, encoded_len: usize) -> Result<Ticket, Status> {
        if s.commit_index > s.applied_index + MAX_GAP_BETWEEN_APPLY_AND_COMMIT_INDEX {
            return Err(errors::too_many_requests());
        }
        let units = u32::try_from(encoded_len / UNIT_BYTES + 1)
            .unwrap_or(u32::MAX)
            .min(self.units);
        match self.budget.clone().try_acquire_many_owned(units) {
            Ok(permit) => Ok(Ticket { _permit: permit }),
            Err(_) => Err(errors::too_many_requests()),
        }
    }

    /// Gives `ticket` back once the proposal's outcome says its entry can no
    /// longer be waiting in Raft's queues.
    pub(crate) fn release(
        &self,
        node: &Arc<RaftNode>,
        tasks: &TaskTracker,
        ticket: Ticket,
        outcome: Result<(), &ProposeError>,
    ) {
        if outcome.is_ok() {
            // Answered: its entry was applied.
            drop(ticket);
            return;
        }
        // Maybe still queued (even "no leader" can come after a forward
        // that reached a leader): wait until everything the log holds now
        // is applied, or replaced by a new leader's entries, which are
        // applied in its place.
        // A member shutting down applies nothing more: give the ticket
        // back then too, and let go of the node.
        let until = node.status().last_log_index;
        let node = node.clone();
        let mut stopping = node.stopping();
        tasks.spawn(async move {
            while node.status().applied_index < until && !*stopping.borrow() {
                tokio::select! {
                    _ = tokio::time::sleep(RETIRE_POLL) => {}
                    _ = stopping.changed() => {}
                }
            }
            drop(ticket);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raft(commit_index: u64, applied_index: u64) -> RaftStatus {
        RaftStatus {
            leader: 1,
            term: 2,
            commit_index,
            applied_index,
            last_log_index: commit_index,
            is_learner: false,
        }
    }

    fn refused(r: Result<Ticket, Status>) -> bool {
        matches!(r, Err(s) if s.code() == tonic::Code::ResourceExhausted
            && s.message() == "etcdserver: too many requests")
    }

    #[test]
    fn refuses_when_apply_lags_commit_by_more_than_etcds_gap() {
        let a = ProposalGate::new(1536 * 1024);
        assert!(a.admit_at(&raft(5000, 0), 100).is_ok());
        assert!(a.admit_at(&raft(15_000, 10_000), 100).is_ok());
        assert!(refused(a.admit_at(&raft(5001, 0), 100)));
        assert!(refused(a.admit_at(&raft(15_001, 10_000), 100)));
    }

    #[test]
    fn bounds_the_bytes_in_flight() {
        let a = ProposalGate::new(1536 * 1024);
        let s = raft(10, 10);
        let mb = 1024 * 1024;
        let held: Vec<Ticket> = (0..63).map(|_| a.admit_at(&s, mb).expect("fits")).collect();
        // 63 MiB and 63 KiB of rounding are taken: one more MiB does not fit.
        assert!(refused(a.admit_at(&s, mb)));
        let small = a.admit_at(&s, 100).expect("a small one still fits");
        drop(held);
        assert!(
            a.admit_at(&s, 32 * mb).is_ok(),
            "answered ones give it back"
        );
        drop(small);
        // A request of any allowed size fits in an idle member's budget.
        let big = ProposalGate::new(100 * mb);
        assert!(big.admit_at(&s, 100 * mb).is_ok());
    }
}
