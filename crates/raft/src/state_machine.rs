//! openraft's state machine over the MVCC store.
//!
//! Committed entries are applied to [`MvccStore`] without an fsync each: the
//! WAL is the durable record. The store is checkpointed (a durable redb
//! commit that includes the applied index) by [`Checkpointer`] every so often
//! and on shutdown; after a crash openraft replays the WAL from the
//! checkpoint's applied index.

use std::io;
use std::sync::Arc;

use bramble_storage::mvcc::{ApplyResult, MvccStore, RaftEntry};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::watch;

use crate::codec;
use crate::forward::Waiters;
use crate::snapshot::{not_supported, SnapshotData};
use crate::types::{LogId, Response, StoredMembership, TypeConfig};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

fn storage_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The store's position for a Raft log index.
///
/// openraft numbers the first log entry (the initial membership) 0, while the
/// store keeps 0 for "nothing applied yet"; so the store records index + 1.
fn store_index(raft_index: u64) -> u64 {
    raft_index + 1
}

/// The Raft state machine: the MVCC store plus the last applied membership.
pub struct StateMachine {
    store: Arc<MvccStore>,
    /// Clients of this member waiting for their forwarded commands to apply.
    waiters: Arc<Waiters>,
    /// Publishes the store's current revision after each applied run, so the
    /// watch hub learns about new events without polling.
    revisions: watch::Sender<i64>,
}

impl StateMachine {
    /// Wraps an opened store; `revisions` is told the current revision after
    /// every applied run of entries.
    pub fn new(
        store: Arc<MvccStore>,
        revisions: watch::Sender<i64>,
        waiters: Arc<Waiters>,
    ) -> Self {
        StateMachine {
            store,
            revisions,
            waiters,
        }
    }

    /// Applies a run of committed entries in one store transaction (one redb
    /// commit for the whole run), returning each entry's result (`None` for
    /// blank and membership entries).
    fn apply_run(&self, entries: &[crate::types::Entry]) -> io::Result<Vec<Option<ApplyResult>>> {
        // Membership entries are stored encoded; encode them before borrowing.
        let blobs: Vec<Option<Vec<u8>>> = entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Membership(m) => {
                    let stored = openraft::StoredMembership::new(Some(e.log_id), m.clone());
                    Some(codec::encode_stored_membership(&stored))
                }
                _ => None,
            })
            .collect();
        let run: Vec<(u64, u64, RaftEntry<'_>)> = entries
            .iter()
            .zip(&blobs)
            .map(|(e, blob)| {
                let what = match (&e.payload, blob) {
                    (EntryPayload::Normal(req), _) => RaftEntry::Command(&req.command),
                    (EntryPayload::Membership(_), Some(b)) => RaftEntry::Membership(b),
                    _ => RaftEntry::Blank,
                };
                (
                    store_index(e.log_id.index),
                    codec::log_term(&e.log_id),
                    what,
                )
            })
            .collect();
        let results = self.store.apply_entries(&run).map_err(storage_err)?;
        if results.len() != entries.len() {
            return Err(io::Error::other(format!(
                "store applied {} results for {} entries",
                results.len(),
                entries.len()
            )));
        }
        Ok(results)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let (index, term) = self.store.applied();
        let applied = (index > 0).then(|| codec::log_id(term, index - 1));
        let membership = match self.store.raft_membership().map_err(storage_err)? {
            Some(blob) => codec::decode_stored_membership(&blob)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        // openraft hands over everything committed so far; applying it as one
        // run costs one store commit instead of one per entry.
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            batch.push(entry);
            responders.push(responder);
        }
        let request_ids: Vec<u64> = batch
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Normal(req) => req.request_id,
                _ => 0,
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let results = self.apply_run(&batch)?;
        // Watchers first learn about the new revisions, then the clients whose
        // writes made them: a client that watches after its put sees no gap.
        let rev = self.store.current_revision();
        self.revisions.send_if_modified(|r| {
            let newer = rev > *r;
            if newer {
                *r = rev;
            }
            newer
        });
        for ((result, responder), request_id) in
            results.into_iter().zip(responders).zip(request_ids)
        {
            // A command a client of this member forwarded to the leader: the
            // client gets this member's own result (see crate::forward).
            let result = match result {
                Some(r) => self.waiters.complete(request_id, r),
                None => None,
            };
            if let Some(responder) = responder {
                // Blank and membership entries answer with an empty success:
                // only client commands carry a result.
                responder.send(match result {
                    Some(r) => Response::Command(r),
                    None => Response::Empty,
                });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> NoSnapshots {
        NoSnapshots
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta,
        _snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        Err(not_supported())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(None)
    }
}

/// The snapshot builder until snapshots exist (see [`crate::snapshot`]).
pub struct NoSnapshots;

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        Err(not_supported())
    }
}
