//! openraft's own storage test suite (`openraft::testing::log::Suite`) run
//! against Bramble's adapters: [`LogStore`] (the WAL) as the log and
//! [`StateMachine`] (the MVCC store) as the state machine, each case on a
//! fresh data directory.
//!
//! Each case runs on its own (rather than through `Suite::test_all`, which
//! stops at the first failure), so a failure names its case. The cases that
//! do not apply to this design are listed in [`NOT_APPLICABLE`] with the
//! reason.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bramble_raft::fatal::FatalSignal;
use bramble_raft::forwarded_proposals::Waiters;
use bramble_raft::log_store::LogStore;
use bramble_raft::snapshot::SnapshotDir;
use bramble_raft::state_machine::StateMachine;
use bramble_raft::TypeConfig;
use bramble_storage::mvcc::{MvccOptions, MvccStore};
use bramble_storage::wal::WalOptions;
use futures::future::join_all;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use tempfile::TempDir;

/// Builds a log and a state machine in a new temporary data directory (the
/// guard, removed when a case is done).
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let read_error = |e: std::io::Error| StorageError::read(TypeConfig::err_from_error(&e));
        let dir = tempfile::tempdir().map_err(read_error)?;
        // No fdatasync and small segments: the suite checks what the
        // adapters return, not what survives a crash (the WAL's own tests
        // and tests/crash.rs do), and 45 cases of syncing votes and
        // preallocating 16 MiB segments take many seconds.
        let wal = WalOptions {
            sync: false,
            segment_size: 64 << 10,
            ..WalOptions::default()
        };
        let log = LogStore::open_with(&dir.path().join("wal"), wal).map_err(read_error)?;
        let store = MvccStore::open(&dir.path().join("db"), MvccOptions::default())
            .map_err(|e| read_error(std::io::Error::other(e)))?;
        let snapshots = SnapshotDir::new(dir.path().join("snap")).map_err(read_error)?;
        let (revisions, _) = tokio::sync::watch::channel(0);
        let sm = StateMachine::new(
            Arc::new(store),
            revisions,
            Arc::new(Waiters::new(1)),
            snapshots,
            FatalSignal::new(),
        );
        Ok((dir, log, sm))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, TempDir>;

/// Cases of the suite that do not apply, and why.
///
/// - `delete_logs_after_none`: truncates the whole log, entry 0 included.
///   The WAL can drop entries after an index but not entry 0 itself, and
///   `LogStore::truncate_after` refuses (loudly) rather than keep it
///   silently: openraft's entry 0 is the initial membership, the same on
///   every member that has it, so Raft never asks to replace it (a conflict
///   is always found after a matching entry; with nothing purged that is
///   entry 0 at the latest).
const NOT_APPLICABLE: &[&str] = &["delete_logs_after_none"];

/// One case of the suite, on its own data directory.
type Case = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// The named cases of the suite, each building its own log and state
/// machine when run.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$((
            stringify!($case),
            Box::pin(async {
                let (_dir, log, sm) = Builder
                    .build()
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?;
                S::$case(log, sm).await
            }) as Case,
        )),*]
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    let cases = cases!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_membership_from_empty_log_and_sm,
        get_initial_state_membership_from_sm_inlog_is_smaller,
        get_initial_state_membership_from_log_insm_is_smaller,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_inverted_log_order,
        get_initial_state_conflict_at_same_index,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        leader_bounded_stream,
        entries_stream,
        try_get_log_entry,
        log_reader_reads_new_entries,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_after_11,
        delete_logs_after_5,
        delete_logs_after_0,
        delete_logs_after_none,
        append_to_log,
        snapshot_meta,
        snapshot_meta_optional,
        apply_single,
        apply_multiple,
    );
    assert_eq!(cases.len(), 44, "every case of Suite::test_store listed");
    // Concurrently: several cases sleep a second each (for stores that purge
    // in the background), and each has its own directory.
    let (names, runs): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .filter(|(name, _)| !NOT_APPLICABLE.contains(name))
        .unzip();
    let failed: Vec<String> = join_all(runs)
        .await
        .into_iter()
        .zip(names)
        .filter_map(|(result, name)| result.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
    S::transfer_snapshot(&Builder)
        .await
        .expect("transfer_snapshot");
}

/// What `delete_logs_after_none` asks instead gets a refusal, and the log
/// keeps every entry (see [`NOT_APPLICABLE`]).
#[tokio::test]
async fn truncating_entry_0_is_refused_and_keeps_the_log() {
    use openraft::storage::RaftLogStorage;
    use openraft::RaftLogReader;

    let (_dir, mut log, _sm) = Builder.build().await.expect("build");
    S::feed_10_logs_vote_self(&mut log).await.expect("feed");
    assert!(log.truncate_after(None).await.is_err());
    let entries = log.try_get_log_entries(0..100).await.expect("read");
    assert_eq!(entries.len(), 11);
}
