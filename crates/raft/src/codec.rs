//! Encoding of Raft log entries, votes and memberships as the disk stores them.
//!
//! The formats are the prost messages in `proto/bramblepb/command.proto`, so
//! they stay readable across versions (new fields, never renumbered). Decoding
//! never panics: bytes from disk that do not parse are an `io::Error` of kind
//! `InvalidData`, which openraft treats as a storage failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use bramble_api::bramblepb as pb;
use openraft::EntryPayload;
use prost::Message;

use crate::types::{Entry, LogId, Member, Membership, Request, StoredMembership, Vote};

fn invalid(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {err}"))
}

/// Builds a log id from its parts.
pub fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::vote::leader_id_std::CommittedLeaderId::new(term),
        index,
    )
}

/// The term of a log id.
pub fn log_term(id: &LogId) -> u64 {
    id.leader_id.term
}

/// Encodes an entry's term and payload (the index is in the WAL frame).
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_message(entry).encode_to_vec()
}

/// An entry's term and payload as the WAL record's message.
pub fn entry_message(entry: &Entry) -> pb::LogEntry {
    let (payload, request_id) = match &entry.payload {
        EntryPayload::Blank => (None, 0),
        EntryPayload::Normal(req) => (
            Some(pb::log_entry::Payload::Command(req.command.clone())),
            req.request_id,
        ),
        EntryPayload::Membership(m) => (
            Some(pb::log_entry::Payload::Membership(encode_membership(m))),
            0,
        ),
    };
    pb::LogEntry {
        term: log_term(&entry.log_id),
        payload,
        request_id,
    }
}

/// Decodes an entry stored at `index`.
pub fn decode_entry(index: u64, bytes: &[u8]) -> io::Result<Entry> {
    let e = pb::LogEntry::decode(bytes).map_err(|e| invalid(&format!("log entry {index}"), e))?;
    entry_from_message(index, e)
}

/// Builds the entry at `index` from its record message.
pub fn entry_from_message(index: u64, e: pb::LogEntry) -> io::Result<Entry> {
    let payload = match e.payload {
        None => EntryPayload::Blank,
        Some(pb::log_entry::Payload::Command(command)) => EntryPayload::Normal(Request {
            command,
            request_id: e.request_id,
        }),
        Some(pb::log_entry::Payload::Membership(m)) => {
            EntryPayload::Membership(decode_membership(&m)?)
        }
    };
    Ok(openraft::Entry {
        log_id: log_id(e.term, index),
        payload,
    })
}

/// Encodes a membership configuration.
pub fn encode_membership(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::VoterSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        members: m
            .nodes()
            .map(|(id, n)| pb::Member {
                id: *id,
                name: n.name.clone(),
                peer_urls: n.peer_urls.clone(),
                client_urls: n.client_urls.clone(),
            })
            .collect(),
    }
}

/// Decodes a membership configuration, checking it is well formed.
pub fn decode_membership(m: &pb::Membership) -> io::Result<Membership> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, Member> = m
        .members
        .iter()
        .map(|n| {
            (
                n.id,
                Member {
                    name: n.name.clone(),
                    peer_urls: n.peer_urls.clone(),
                    client_urls: n.client_urls.clone(),
                },
            )
        })
        .collect();
    openraft::Membership::new(configs, nodes).map_err(|e| invalid("membership", e))
}

/// Encodes the vote (Raft hard state).
pub fn encode_vote(v: &Vote) -> Vec<u8> {
    crate::wire::vote_to_pb(v).encode_to_vec()
}

/// Decodes the vote.
pub fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    let v = pb::Vote::decode(bytes).map_err(|e| invalid("vote", e))?;
    crate::wire::vote_from_pb(Some(&v))
}

/// Encodes the state machine's last applied membership.
pub fn encode_stored_membership(m: &StoredMembership) -> Vec<u8> {
    let (has_log_id, log_term_, log_index) = match m.log_id() {
        Some(id) => (true, log_term(id), id.index),
        None => (false, 0, 0),
    };
    pb::StoredMembership {
        log_term: log_term_,
        log_index,
        has_log_id,
        membership: Some(encode_membership(m.membership())),
    }
    .encode_to_vec()
}

/// Decodes the state machine's last applied membership.
pub fn decode_stored_membership(bytes: &[u8]) -> io::Result<StoredMembership> {
    let m = pb::StoredMembership::decode(bytes).map_err(|e| invalid("stored membership", e))?;
    let membership = match &m.membership {
        Some(pm) => decode_membership(pm)?,
        None => Membership::default(),
    };
    let id = m.has_log_id.then(|| log_id(m.log_term, m.log_index));
    Ok(openraft::StoredMembership::new(id, membership))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::etcdserverpb::PutRequest;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: vec![format!("http://{name}:2379")],
        }
    }

    #[test]
    fn entries_roundtrip() {
        let put = pb::Command {
            op: Some(pb::command::Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        let members: BTreeMap<u64, Member> = [(1, member("a")), (2, member("b"))].into();
        let membership = openraft::Membership::new(vec![[1u64].into()], members).expect("valid");
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(Request {
                command: put,
                request_id: 77,
            }),
            EntryPayload::Membership(membership),
        ] {
            let e: Entry = openraft::Entry {
                log_id: log_id(7, 42),
                payload,
            };
            let back = decode_entry(42, &encode_entry(&e)).expect("decodes");
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn vote_roundtrip() {
        for v in [
            openraft::Vote::new(3, 9),
            openraft::Vote::new_committed(4, 1),
        ] {
            assert_eq!(decode_vote(&encode_vote(&v)).expect("decodes"), v);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(1, &[0xff, 0xff, 0xff]).is_err());
        assert!(decode_vote(&[0x08]).is_err());
        assert!(decode_stored_membership(&[0x22, 0x05, 0x01]).is_err());
    }
}
