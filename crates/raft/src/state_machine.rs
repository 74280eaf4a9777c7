//! openraft's state machine over the MVCC store.
//!
//! Committed entries are applied to [`MvccStore`] without an fsync each: the
//! WAL is the durable record. The store is checkpointed (a durable redb
//! commit that includes the applied index) by the checkpoint loop
//! (`node/checkpoint.rs`) every so often and on shutdown; after a crash
//! openraft replays the WAL from the checkpoint's applied index.

use std::io;
use std::sync::Arc;

use bramble_storage::mvcc::{ApplyResult, MvccStore, RaftEntry};
use futures::{Stream, TryStreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::watch;

use crate::fatal::{FatalCause, FatalSignal};
use crate::forwarded_proposals::Waiters;
use crate::log_codec;
use crate::snapshot::{SnapshotData, SnapshotDir, SnapshotFileMeta};
use crate::types::{LogId, Response, StoredMembership, TypeConfig};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// Payload bytes the state machine applies in one run (one redb transaction)
/// at most, beyond its first entry.
const APPLY_RUN_BYTES: usize = 8 << 20;

/// The bytes `entry` brings into a run: its command's encoded size.
fn payload_bytes(entry: &crate::types::Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(req) => prost::Message::encoded_len(&req.command),
        _ => 0,
    }
}

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
    /// Where snapshots are kept.
    snapshots: SnapshotDir,
    /// Publishes the store's current revision after each applied run, so the
    /// watch hub learns about new events without polling.
    revisions: watch::Sender<i64>,
    /// Every error returned to openraft stops its core: each is reported
    /// here first, with its cause.
    fatal: FatalSignal,
}

impl StateMachine {
    /// Wraps an opened store; `revisions` is told the current revision after
    /// every applied run of entries.
    pub fn new(
        store: Arc<MvccStore>,
        revisions: watch::Sender<i64>,
        waiters: Arc<Waiters>,
        snapshots: SnapshotDir,
        fatal: FatalSignal,
    ) -> Self {
        StateMachine {
            store,
            revisions,
            waiters,
            snapshots,
            fatal,
        }
    }

    /// Reports `e` as fatal (`cause`) and hands it back for openraft.
    fn fail(&self, cause: FatalCause, e: io::Error) -> io::Error {
        self.fatal.trip(cause, &e);
        e
    }

    /// Tells watchers about the store's current revision if it moved on.
    fn publish_revision(&self) {
        let rev = self.store.current_revision();
        self.revisions.send_if_modified(|r| {
            let newer = rev > *r;
            if newer {
                *r = rev;
            }
            newer
        });
    }

    /// Applies one run of entries (see [`apply_run`]) and answers their
    /// clients.
    async fn apply_batch(
        &self,
        batch: Vec<crate::types::Entry>,
        responders: Vec<Option<ApplyResponder<TypeConfig>>>,
    ) -> io::Result<()> {
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
        let store = self.store.clone();
        let results = tokio::task::spawn_blocking(move || apply_run(&store, &batch))
            .await
            .map_err(storage_err)??;
        // Watchers first learn about the new revisions, then the clients whose
        // writes made them: a client that watches after its put sees no gap.
        self.publish_revision();
        for ((result, responder), request_id) in
            results.into_iter().zip(responders).zip(request_ids)
        {
            // A command a client of this member forwarded to the leader: the
            // client gets this member's own result (see crate::forwarded_proposals).
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
}

/// Applies a run of committed entries to `store` in one transaction (one redb
/// commit for the whole run), returning each entry's result (`None` for blank
/// and membership entries). Blocking: a run may hold values of up to
/// `--max-request-bytes` each, which take redb long enough to stall a runtime
/// worker (and the peer RPCs queued on it) if done there.
fn apply_run(
    store: &MvccStore,
    entries: &[crate::types::Entry],
) -> io::Result<Vec<Option<ApplyResult>>> {
    // Membership entries are stored encoded; encode them before borrowing.
    let blobs: Vec<Option<Vec<u8>>> = entries
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Membership(m) => {
                let stored = openraft::StoredMembership::new(Some(e.log_id), m.clone());
                Some(log_codec::encode_stored_membership(&stored))
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
                log_codec::log_term(&e.log_id),
                what,
            )
        })
        .collect();
    let results = store.apply_entries(&run).map_err(storage_err)?;
    if results.len() != entries.len() {
        return Err(io::Error::other(format!(
            "store applied {} results for {} entries",
            results.len(),
            entries.len()
        )));
    }
    Ok(results)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let (index, term) = self.store.applied();
        let applied = (index > 0).then(|| log_codec::log_id(term, index - 1));
        // A read of the database: off the runtime, like every store call.
        let store = self.store.clone();
        let membership = tokio::task::spawn_blocking(move || store.raft_membership())
            .await
            .map_err(storage_err)
            .and_then(|read| read.map_err(storage_err))
            .and_then(|blob| match blob {
                Some(blob) => log_codec::decode_stored_membership(&blob),
                None => Ok(StoredMembership::default()),
            })
            .map_err(|e| self.fail(FatalCause::Apply, e))?;
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        // openraft hands over everything committed so far; applying it in
        // runs costs one store commit per run instead of one per entry. Runs
        // are bounded in bytes: after a restart everything committed since the
        // last checkpoint comes at once (100 MB of it took 250 MB of memory
        // when applied as one run), and the entries are read lazily
        // (`LogStore::entries_stream`).
        loop {
            let mut batch = Vec::new();
            let mut responders = Vec::new();
            let mut bytes = 0usize;
            let mut more = true;
            while bytes < APPLY_RUN_BYTES {
                let next = entries
                    .try_next()
                    .await
                    .map_err(|e| self.fail(FatalCause::Apply, e))?;
                match next {
                    Some((entry, responder)) => {
                        bytes = bytes.saturating_add(payload_bytes(&entry));
                        batch.push(entry);
                        responders.push(responder);
                    }
                    None => {
                        more = false;
                        break;
                    }
                }
            }
            self.apply_batch(batch, responders)
                .await
                .map_err(|e| self.fail(FatalCause::Apply, e))?;
            if !more {
                return Ok(());
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            fatal: self.fatal.clone(),
        }
    }

    // A failed install or snapshot read needs no report here: openraft's
    // core stops on it and `crate::fatal` reports that, with this error.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let store = self.store.clone();
        let path = snapshot.path.clone();
        let info = tokio::task::spawn_blocking(move || store.install_snapshot_file(&path))
            .await
            .map_err(storage_err)?
            .map_err(storage_err)?;
        let expected = meta
            .last_log_id
            .as_ref()
            .map(|id| (store_index(id.index), log_codec::log_term(id)))
            .unwrap_or((0, 0));
        if info.applied != expected {
            // The store now holds the snapshot's state; a mismatch means the
            // sender labelled it wrongly, and applying on top would diverge.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "installed snapshot is at (index, term) {:?}, its metadata says {:?}",
                    info.applied, expected
                ),
            ));
        }
        let file_meta = SnapshotFileMeta {
            last_log_id: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let snapshots = self.snapshots.clone();
        let data = snapshot.path;
        tokio::task::spawn_blocking(move || snapshots.commit(&data, &file_meta))
            .await
            .map_err(storage_err)??;
        // Entries the snapshot covers are never applied one by one here, so
        // clients waiting for them would wait forever: they get an error.
        self.waiters.fail_all();
        self.publish_revision();
        tracing::info!(
            index = info.applied.0.saturating_sub(1),
            term = info.applied.1,
            revision = info.revision,
            bytes = info.bytes,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let snapshots = self.snapshots.clone();
        let current = tokio::task::spawn_blocking(move || snapshots.current())
            .await
            .map_err(storage_err)??;
        Ok(current.map(|(path, meta)| Snapshot {
            meta: openraft::storage::SnapshotMeta {
                last_log_id: meta.last_log_id,
                last_membership: meta.membership,
            },
            snapshot: SnapshotData { path },
        }))
    }
}

/// Builds snapshots: a checkpoint of the store streamed to a file, while the
/// state machine goes on applying (the stream reads one redb snapshot).
pub struct SnapshotBuilder {
    store: Arc<MvccStore>,
    snapshots: SnapshotDir,
    fatal: FatalSignal,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let built = self.build().await;
        if let Err(e) = &built {
            // openraft stops on a failed build too; say why first.
            self.fatal.trip(FatalCause::Snapshot, e);
        }
        built
    }
}

impl SnapshotBuilder {
    /// Writes the store's checkpoint to a new snapshot file.
    async fn build(&mut self) -> Result<Snapshot, io::Error> {
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = snapshots.temp_path("building");
            let info = match store.write_snapshot_file(&tmp) {
                Ok(info) => info,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(storage_err(e));
                }
            };
            let (index, term) = info.applied;
            let last_log_id = (index > 0).then(|| log_codec::log_id(term, index - 1));
            let membership = match &info.membership {
                Some(blob) => log_codec::decode_stored_membership(blob)?,
                None => StoredMembership::default(),
            };
            let meta = SnapshotFileMeta {
                last_log_id,
                membership: membership.clone(),
            };
            let path = snapshots.commit(&tmp, &meta)?;
            tracing::info!(
                index = index.saturating_sub(1),
                revision = info.revision,
                bytes = info.bytes,
                "built a snapshot"
            );
            Ok(Snapshot {
                meta: openraft::storage::SnapshotMeta {
                    last_log_id,
                    last_membership: membership,
                },
                snapshot: SnapshotData { path },
            })
        })
        .await
        .map_err(storage_err)?
    }
}
