//! Raft's disk encoding and peer message decoding (`crates/raft/src/log_codec.rs`, `peer_codec.rs`).
//!
//! Input: a selector byte, then the bytes of one message: a stored log entry (with its
//! index in the next 8 bytes), vote or membership as the WAL and state machine keep them,
//! or a peer protobuf (prost-decoded, as tonic does) turned into openraft's types.
//! Kept thin on purpose: it calls the crate's public decode entry points by name.
//!
//! Invariants: decoding never panics, and what decodes re-encodes to something that
//! decodes to the same value.

use bramble_api::bramblepb as pb;
use bramble_raft::{log_codec, peer_codec};
use prost::Message;

/// Which decoder an input goes to (its first byte, modulo the count).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum Kind {
    /// `log_codec::decode_entry` (index from the next 8 bytes, little-endian).
    Entry = 0,
    /// `log_codec::decode_vote`.
    Vote = 1,
    /// `log_codec::decode_stored_membership`.
    StoredMembership = 2,
    /// `pb::VoteRequest` → `peer_codec::vote_request_from_pb`.
    VoteRequest = 3,
    /// `pb::VoteResponse` → `peer_codec::vote_response_from_pb`.
    VoteResponse = 4,
    /// `pb::AppendRequest` → `peer_codec::append_request_from_pb`.
    AppendRequest = 5,
    /// `pb::AppendResponse` → `peer_codec::append_response_from_pb`.
    AppendResponse = 6,
    /// `pb::SnapshotChunk` header → vote, last log id and membership, as the peer
    /// service decodes the first chunk of an InstallSnapshot stream.
    SnapshotHeader = 7,
}

const KINDS: u8 = 8;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    match sel % KINDS {
        0 => {
            let Some((index, bytes)) = bytes.split_at_checked(8) else {
                return;
            };
            let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
            if let Ok(e) = log_codec::decode_entry(index, bytes) {
                let back = log_codec::decode_entry(index, &log_codec::encode_entry(&e))
                    .expect("a decoded entry re-encodes");
                assert_eq!(format!("{back:?}"), format!("{e:?}"));
            }
        }
        1 => {
            if let Ok(v) = log_codec::decode_vote(bytes) {
                assert_eq!(
                    log_codec::decode_vote(&log_codec::encode_vote(&v)).ok(),
                    Some(v)
                );
            }
        }
        2 => {
            if let Ok(m) = log_codec::decode_stored_membership(bytes) {
                let back =
                    log_codec::decode_stored_membership(&log_codec::encode_stored_membership(&m))
                        .expect("a decoded membership re-encodes");
                assert_eq!(back, m);
            }
        }
        3 => {
            let Ok(m) = pb::VoteRequest::decode(bytes) else {
                return;
            };
            if let Ok(r) = peer_codec::vote_request_from_pb(&m) {
                let back = peer_codec::vote_request_from_pb(&peer_codec::vote_request_to_pb(&r, 1))
                    .expect("a decoded vote request re-encodes");
                assert_eq!(back, r);
            }
        }
        4 => {
            let Ok(m) = pb::VoteResponse::decode(bytes) else {
                return;
            };
            if let Ok(r) = peer_codec::vote_response_from_pb(&m) {
                let back = peer_codec::vote_response_from_pb(&peer_codec::vote_response_to_pb(&r))
                    .expect("a decoded vote response re-encodes");
                assert_eq!(back, r);
            }
        }
        5 => {
            let Ok(m) = pb::AppendRequest::decode(bytes) else {
                return;
            };
            if let Ok(r) = peer_codec::append_request_from_pb(m) {
                let back =
                    peer_codec::append_request_from_pb(peer_codec::append_request_to_pb(&r, 1))
                        .expect("a decoded append request re-encodes");
                assert_eq!(format!("{back:?}"), format!("{r:?}"));
            }
        }
        6 => {
            let Ok(m) = pb::AppendResponse::decode(bytes) else {
                return;
            };
            if let Ok(r) = peer_codec::append_response_from_pb(&m) {
                let back =
                    peer_codec::append_response_from_pb(&peer_codec::append_response_to_pb(&r))
                        .expect("a decoded append response re-encodes");
                assert_eq!(back, r);
            }
        }
        _ => {
            let Ok(chunk) = pb::SnapshotChunk::decode(bytes) else {
                return;
            };
            if let Some(h) = chunk.header {
                let _ = peer_codec::vote_from_pb(h.vote.as_ref());
                let _ = h.last_log_id.as_ref().map(peer_codec::log_id_from_pb);
                if let Some(m) = h.last_membership {
                    let _ = log_codec::decode_stored_membership(&m.encode_to_vec());
                }
            }
        }
    }
}

/// `kind`'s selector byte followed by `body`.
pub fn input(kind: Kind, body: &[u8]) -> Vec<u8> {
    [vec![kind as u8], body.to_vec()].concat()
}

/// Valid inputs to start from: one well-formed message of each kind.
pub fn seeds() -> Vec<Vec<u8>> {
    let vote = pb::Vote {
        term: 3,
        voted_for: 1,
        committed: true,
    };
    let membership = pb::Membership {
        configs: vec![pb::VoterSet { ids: vec![1, 2, 3] }],
        members: (1..=3)
            .map(|id| pb::Member {
                id,
                name: format!("m{id}"),
                peer_urls: vec![format!("http://m{id}:2380")],
                client_urls: vec![format!("http://m{id}:2379")],
            })
            .collect(),
    };
    let stored = pb::StoredMembership {
        log_term: 1,
        log_index: 1,
        has_log_id: true,
        membership: Some(membership.clone()),
    };
    let put = pb::LogEntry {
        term: 3,
        payload: Some(pb::log_entry::Payload::Command(log_codec::command_record(
            &pb::Command {
                auth: None,
                op: Some(pb::command::Op::Put(
                    bramble_api::etcdserverpb::PutRequest {
                        key: b"k".to_vec(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    },
                )),
            },
        ))),
        request_id: 7,
    };
    let member_entry = pb::LogEntry {
        term: 2,
        payload: Some(pb::log_entry::Payload::Membership(membership)),
        request_id: 0,
    };
    let log_id = |term, index| Some(pb::LogId { term, index });
    let append = pb::AppendRequest {
        vote: Some(vote),
        prev_log_id: log_id(2, 4),
        entries: vec![
            pb::WireEntry {
                index: 5,
                entry: Some(member_entry.clone()),
            },
            pb::WireEntry {
                index: 6,
                entry: Some(put.clone()),
            },
        ],
        leader_commit: log_id(2, 4),
        cluster_id: 9,
    };
    let entry_input = |e: &pb::LogEntry| [5u64.to_le_bytes().to_vec(), e.encode_to_vec()].concat();
    vec![
        input(Kind::Entry, &entry_input(&put)),
        input(Kind::Entry, &entry_input(&member_entry)),
        input(Kind::Vote, &vote.encode_to_vec()),
        input(Kind::StoredMembership, &stored.encode_to_vec()),
        input(
            Kind::VoteRequest,
            &pb::VoteRequest {
                vote: Some(vote),
                last_log_id: log_id(3, 17),
                leadership_transfer: true,
                cluster_id: 9,
            }
            .encode_to_vec(),
        ),
        input(
            Kind::VoteResponse,
            &pb::VoteResponse {
                vote: Some(vote),
                vote_granted: true,
                last_log_id: log_id(3, 17),
            }
            .encode_to_vec(),
        ),
        input(Kind::AppendRequest, &append.encode_to_vec()),
        input(
            Kind::AppendResponse,
            &pb::AppendResponse {
                result: Some(pb::append_response::Result::PartialSuccess(
                    pb::append_response::PartialSuccess {
                        matching: log_id(2, 3),
                    },
                )),
            }
            .encode_to_vec(),
        ),
        input(
            Kind::SnapshotHeader,
            &pb::SnapshotChunk {
                header: Some(pb::SnapshotHeader {
                    vote: Some(vote),
                    last_log_id: log_id(3, 100),
                    last_membership: Some(stored),
                    cluster_id: 9,
                    size: 1000,
                }),
                data: b"BRAMSNAP".to_vec(),
            }
            .encode_to_vec(),
        ),
    ]
}
