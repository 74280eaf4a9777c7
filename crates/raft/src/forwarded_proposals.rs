//! Proposals a follower forwards to its leader, and the waiters that answer
//! them.
//!
//! As in etcd, a follower does not ask the leader for the result of a
//! command: it tags the command with a request id, has the leader propose it,
//! and answers its client when its *own* state machine applies the entry with
//! that id. Applying is deterministic, so the result is the leader's; and the
//! client's next read on this member already sees its write.

use std::collections::HashMap;
use std::sync::Mutex;

use bramble_storage::mvcc::ApplyResult;
use tokio::sync::oneshot;

use crate::idutil::IdGenerator;

/// The clients waiting for their forwarded commands to apply on this member.
pub struct Waiters {
    pending: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
    ids: IdGenerator,
}

impl Waiters {
    /// Waiters for member `member_id`. Request ids are etcd's
    /// ([`IdGenerator`]), so ids differ across members and across restarts.
    pub fn new(member_id: u64) -> Self {
        Waiters {
            pending: Mutex::new(HashMap::new()),
            ids: IdGenerator::new(member_id),
        }
    }

    /// Registers a waiter: returns its request id (never 0) and the receiver
    /// of the command's apply result.
    pub fn register(&self) -> (u64, oneshot::Receiver<ApplyResult>) {
        let (tx, rx) = oneshot::channel();
        let id = self.ids.next();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        (id, rx)
    }

    /// Forgets a waiter whose request failed before it could apply.
    pub fn cancel(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }

    /// Cancels waiter `id` when dropped, however the forward that registered
    /// it ends. Its future is dropped when the client goes away, and an entry
    /// the leader then never applies would otherwise stay here for good: the
    /// waiters are bounded by the proposals in flight only if every one is
    /// forgotten (cancelling one already completed does nothing).
    pub(crate) fn cancel_on_drop(&self, id: u64) -> CancelOnDrop<'_> {
        CancelOnDrop { waiters: self, id }
    }

    /// Hands an applied command's result to its waiter. Gives the result back
    /// when nobody here waits for it (the command came from another member).
    pub fn complete(&self, id: u64, result: ApplyResult) -> Option<ApplyResult> {
        if id == 0 {
            return Some(result);
        }
        let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        match waiter {
            Some(tx) => {
                // A waiter that gave up (timed out) dropped its receiver: fine.
                let _ = tx.send(result);
                None
            }
            None => Some(result),
        }
    }

    /// Drops every waiter (their clients get an error): a snapshot was
    /// installed, so entries they wait for may never be applied one by one.
    pub(crate) fn fail_all(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    /// How many clients wait.
    pub fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Whether no client waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// See [`Waiters::cancel_on_drop`].
pub(crate) struct CancelOnDrop<'a> {
    waiters: &'a Waiters,
    id: u64,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.waiters.cancel(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_storage::mvcc::MvccError;

    fn result() -> ApplyResult {
        ApplyResult::Error(MvccError::Compacted)
    }

    #[test]
    fn ids_are_unique_and_non_zero() {
        let w = Waiters::new(0x1234_5678_9abc_def0);
        let (a, _ra) = w.register();
        let (b, _rb) = w.register();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0xdef0);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn complete_reaches_the_waiter_once() {
        let w = Waiters::new(1);
        let (id, mut rx) = w.register();
        assert!(w.complete(id, result()).is_none());
        assert!(rx.try_recv().is_ok());
        assert!(w.complete(id, result()).is_some(), "second time: no waiter");
        assert!(w.complete(0, result()).is_some());
        let (id, rx) = w.register();
        drop(rx);
        assert!(
            w.complete(id, result()).is_none(),
            "gave-up waiter swallows it"
        );
        let (id, mut rx) = w.register();
        w.cancel(id);
        assert!(rx.try_recv().is_err());
        let (id, mut rx) = w.register();
        drop(w.cancel_on_drop(id));
        assert!(rx.try_recv().is_err());
        assert!(w.is_empty(), "a dropped forward leaves no waiter");
        let (_, mut rx) = w.register();
        w.fail_all();
        assert!(rx.try_recv().is_err());
        assert!(w.is_empty());
    }
}
