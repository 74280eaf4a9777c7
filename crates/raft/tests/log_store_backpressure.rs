//! `LogStore::append` when the WAL's queue is full: it waits for room off
//! the runtime, and every entry still lands in order and is acknowledged.

use bramble_raft::log_codec;
use bramble_raft::log_store::LogStore;
use bramble_raft::types::Entry;
use bramble_raft::TypeConfig;
use bramble_storage::wal::WalOptions;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::RaftLogReader;

#[tokio::test]
async fn appends_beyond_a_full_queue_land_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A one-byte bound: every append finds the previous one still queued
    // or syncing (fdatasync on) and has to wait for it.
    let options = WalOptions {
        queue_bytes: 1,
        ..WalOptions::default()
    };
    let mut log = LogStore::open_with(dir.path(), options).expect("open");
    let mut acks = Vec::new();
    for index in 0..20u64 {
        let (tx, rx) = TypeConfig::oneshot();
        let entry = Entry::new_blank(log_codec::log_id(1, index));
        log.append([entry], IOFlushed::signal(tx))
            .await
            .expect("append");
        acks.push(rx);
    }
    for (index, ack) in acks.into_iter().enumerate() {
        ack.await
            .expect("callback called")
            .unwrap_or_else(|e| panic!("entry {index} not durable: {e}"));
    }
    let entries = log.try_get_log_entries(0..100).await.expect("read");
    let ids: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_codec::log_id(1, 19)));
}
