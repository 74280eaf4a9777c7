//! Unit tests of `network.rs`: cutting batches to the peer message limit,
//! partial success, transfer time.

use super::*;
use crate::types::{Entry, Request};
use bramble_api::etcdserverpb::PutRequest;
use openraft::EntryPayload;

/// Entry `index` putting a value of `len` bytes.
fn entry(index: u64, len: usize) -> Entry {
    openraft::Entry {
        log_id: log_codec::log_id(2, index),
        payload: EntryPayload::Normal(Request {
            command: pb::Command {
                auth: None,
                op: Some(pb::command::Op::Put(PutRequest {
                    key: b"k".to_vec(),
                    value: vec![7; len],
                    ..Default::default()
                })),
            },
            request_id: index,
        }),
    }
}

fn batch(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: openraft::Vote::new_committed(2, 1),
        prev_log_id: Some(log_codec::log_id(2, 9)),
        entries: sizes
            .iter()
            .enumerate()
            .map(|(k, &len)| entry(10 + k as u64, len))
            .collect(),
        leader_commit: None,
    }
}

#[test]
fn oversized_batches_are_cut_to_the_message_limit() {
    let rpc = batch(&[1000, 1000, 1000, 1000]);
    let mut msg = peer_codec::append_request_to_pb(&rpc, 1);
    assert_eq!(fit_entries(&mut msg, usize::MAX), 4);
    assert_eq!(fit_entries(&mut msg, 2500), 2);
    assert!(msg.encoded_len() <= 2500);
    // At least one entry goes, even one over the limit (the caller
    // refuses to send that).
    assert_eq!(fit_entries(&mut msg, 10), 1);
    let back = peer_codec::append_request_from_pb(msg).expect("a valid request");
    assert_eq!(back.entries.len(), 1);
    assert_eq!(back.entries[0].log_id, log_codec::log_id(2, 10));
}

#[test]
fn a_cut_batch_reports_partial_success_up_to_the_last_entry_sent() {
    let rpc = batch(&[10, 10, 10]);
    assert_eq!(
        partial(AppendEntriesResponse::Success, &rpc, 2),
        AppendEntriesResponse::PartialSuccess(Some(log_codec::log_id(2, 11)))
    );
    assert_eq!(
        partial(AppendEntriesResponse::Success, &rpc, 3),
        AppendEntriesResponse::Success
    );
    // A refusal is the follower's answer to the whole batch.
    assert_eq!(
        partial(AppendEntriesResponse::Conflict, &rpc, 1),
        AppendEntriesResponse::Conflict
    );
    let higher = openraft::Vote::new(5, 3);
    assert_eq!(
        partial(AppendEntriesResponse::HigherVote(higher), &rpc, 1),
        AppendEntriesResponse::HigherVote(higher)
    );
    let heartbeat = batch(&[]);
    assert_eq!(
        partial(AppendEntriesResponse::Success, &heartbeat, 0),
        AppendEntriesResponse::Success
    );
}

#[test]
fn large_messages_get_time_to_travel() {
    assert_eq!(transfer_time(0), Duration::ZERO);
    assert!(transfer_time(1000) < Duration::from_millis(1));
    let big = transfer_time(17_000_000);
    assert!(
        big > Duration::from_secs(3) && big < Duration::from_secs(5),
        "{big:?}"
    );
}

#[test]
fn the_largest_request_always_fits_in_a_peer_message() {
    for max_request in [
        0,
        crate::defaults::MAX_REQUEST_BYTES,
        33_554_432,
        MAX_REQUEST_BYTES_LIMIT,
    ] {
        let limit = peer_message_limit(max_request);
        assert!(limit >= max_request + ENTRY_OVERHEAD, "{max_request}");
        assert!(limit as u64 >= REPLICATION_BATCH_BYTES + ENTRY_OVERHEAD as u64);
        assert!(check_max_request_bytes(max_request).is_ok());
    }
    // Members with the default limit still take what a member with a
    // larger one (up to 64 MiB) sends.
    assert_eq!(
        peer_message_limit(crate::defaults::MAX_REQUEST_BYTES),
        MIN_PEER_MESSAGE
    );
    assert!(check_max_request_bytes(MAX_REQUEST_BYTES_LIMIT + 1).is_err());
    assert_eq!(
        peer_message_limit(usize::MAX),
        peer_message_limit(MAX_REQUEST_BYTES_LIMIT)
    );
}
