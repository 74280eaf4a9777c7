//! The bound on the writer's queue: bytes submitted but not yet durable.
//!
//! A submission reserves its encoded size before it is queued and the writer
//! thread gives it back once the group carrying it has been synced (or has
//! failed). While the bound is reached, [`super::Wal::submit`] waits and
//! [`super::Wal::try_submit`] hands the batch back: a disk that stalls backs
//! up into the submitter (Raft, which then stops acknowledging appends)
//! instead of into memory.
//!
//! The reservation is made before the state lock is taken and released
//! without it, so a waiting submitter never holds up the writer (a bounded
//! channel sent to under the state lock would deadlock: the writer needs that
//! lock to finish a group and make room).

use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Result, WalError};

/// Bytes reserved by queued and in-flight batches, against a limit.
pub(crate) struct QueueBound {
    limit: u64,
    state: Mutex<Reserved>,
    room: Condvar,
}

struct Reserved {
    bytes: u64,
    /// Set when the writer thread exits: nothing will make room any more.
    closed: bool,
}

impl QueueBound {
    /// A bound of `limit` bytes.
    pub(crate) fn new(limit: u64) -> QueueBound {
        QueueBound {
            limit,
            state: Mutex::new(Reserved {
                bytes: 0,
                closed: false,
            }),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Reserved> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `bytes` more fit. An empty queue takes any batch: a batch
    /// larger than the limit (one entry of a large `--max-request-bytes`)
    /// is queued alone rather than refused.
    fn fits(&self, r: &Reserved, bytes: u64) -> bool {
        r.bytes == 0 || r.bytes.saturating_add(bytes) <= self.limit
    }

    /// Reserves `bytes` if they fit now; `Ok(false)` if the queue is full.
    pub(crate) fn try_reserve(&self, bytes: u64) -> Result<bool> {
        let mut r = self.lock();
        if r.closed {
            return Err(WalError::Closed);
        }
        if !self.fits(&r, bytes) {
            return Ok(false);
        }
        r.bytes = r.bytes.saturating_add(bytes);
        Ok(true)
    }

    /// Reserves `bytes`, waiting for the writer to make room.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<()> {
        let mut r = self.lock();
        loop {
            if r.closed {
                return Err(WalError::Closed);
            }
            if self.fits(&r, bytes) {
                r.bytes = r.bytes.saturating_add(bytes);
                return Ok(());
            }
            r = self.room.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reserves `bytes` without waiting, over the limit if need be: for the
    /// writer thread itself (a completion callback that submits), which
    /// would otherwise wait for room only it can make.
    pub(crate) fn reserve_now(&self, bytes: u64) -> Result<()> {
        let mut r = self.lock();
        if r.closed {
            return Err(WalError::Closed);
        }
        r.bytes = r.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Gives back `bytes` reserved earlier.
    pub(crate) fn release(&self, bytes: u64) {
        let mut r = self.lock();
        debug_assert!(r.bytes >= bytes, "releasing {bytes} of {} bytes", r.bytes);
        r.bytes = r.bytes.saturating_sub(bytes);
        drop(r);
        self.room.notify_all();
    }

    /// Wakes every waiter with [`WalError::Closed`]: the writer is gone.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> u64 {
        self.lock().bytes
    }
}

/// Closes the bound when dropped: the writer thread holds one, so waiters
/// are woken however it exits (shutdown or a panic).
pub(crate) struct CloseOnDrop<'a>(pub(crate) &'a QueueBound);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}
