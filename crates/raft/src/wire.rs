//! openraft's messages as the peer protocol's protobufs (`proto/bramblepb/raft.proto`)
//! and back.
//!
//! Everything decoded here came from the network: a malformed message is an
//! `io::Error` of kind `InvalidData`, never a panic.

use std::io;

use bramble_api::bramblepb as pb;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::vote::RaftLeaderId;

use crate::codec;
use crate::types::{LogId, TypeConfig, Vote};

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("peer message: {what}"))
}

/// A log id on the wire.
pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: codec::log_term(id),
        index: id.index,
    }
}

/// An optional log id on the wire (an unset field means none).
pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

/// A log id from the wire.
pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    codec::log_id(id.term, id.index)
}

/// A vote on the wire.
pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    let lid = v.leader_id();
    pb::Vote {
        term: lid.term,
        voted_for: *lid.node_id(),
        committed: v.is_committed(),
    }
}

/// A vote from the wire; a vote is never optional in a message.
pub fn vote_from_pb(v: Option<&pb::Vote>) -> io::Result<Vote> {
    let v = v.ok_or_else(|| invalid("missing vote"))?;
    Ok(if v.committed {
        openraft::Vote::new_committed(v.term, v.voted_for)
    } else {
        openraft::Vote::new(v.term, v.voted_for)
    })
}

/// RequestVote on the wire.
pub fn vote_request_to_pb(r: &VoteRequest<TypeConfig>, cluster_id: u64) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: opt_log_id_to_pb(r.last_log_id.as_ref()),
        leadership_transfer: r.leadership_transfer,
        cluster_id,
    }
}

/// RequestVote from the wire.
pub fn vote_request_from_pb(r: &pb::VoteRequest) -> io::Result<VoteRequest<TypeConfig>> {
    let mut req = VoteRequest::new(
        vote_from_pb(r.vote.as_ref())?,
        r.last_log_id.as_ref().map(log_id_from_pb),
    );
    req.leadership_transfer = r.leadership_transfer;
    Ok(req)
}

/// A vote reply on the wire.
pub fn vote_response_to_pb(r: &VoteResponse<TypeConfig>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_to_pb(r.last_log_id.as_ref()),
    }
}

/// A vote reply from the wire.
pub fn vote_response_from_pb(r: &pb::VoteResponse) -> io::Result<VoteResponse<TypeConfig>> {
    Ok(VoteResponse::new(
        vote_from_pb(r.vote.as_ref())?,
        r.last_log_id.as_ref().map(log_id_from_pb),
        r.vote_granted,
    ))
}

/// AppendEntries on the wire.
pub fn append_request_to_pb(
    r: &AppendEntriesRequest<TypeConfig>,
    cluster_id: u64,
) -> pb::AppendRequest {
    pb::AppendRequest {
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: opt_log_id_to_pb(r.prev_log_id.as_ref()),
        entries: r
            .entries
            .iter()
            .map(|e| pb::WireEntry {
                index: e.log_id.index,
                entry: Some(codec::entry_message(e)),
            })
            .collect(),
        leader_commit: opt_log_id_to_pb(r.leader_commit.as_ref()),
        cluster_id,
    }
}

/// AppendEntries from the wire.
pub fn append_request_from_pb(
    r: pb::AppendRequest,
) -> io::Result<AppendEntriesRequest<TypeConfig>> {
    let vote = vote_from_pb(r.vote.as_ref())?;
    let mut entries = Vec::with_capacity(r.entries.len());
    for w in r.entries {
        let e = w.entry.ok_or_else(|| invalid("entry without a record"))?;
        entries.push(codec::entry_from_message(w.index, e)?);
    }
    // openraft asserts consecutive entries; check it here so a bad peer gets
    // an error instead of crashing this member.
    for pair in entries.windows(2) {
        if pair[1].log_id.index != pair[0].log_id.index + 1 {
            return Err(invalid("entries are not consecutive"));
        }
    }
    let prev_log_id = r.prev_log_id.as_ref().map(log_id_from_pb);
    if let Some(first) = entries.first() {
        let expected = prev_log_id.map(|p| p.index + 1).unwrap_or(0);
        if first.log_id.index != expected {
            return Err(invalid("first entry does not follow prev_log_id"));
        }
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit: r.leader_commit.as_ref().map(log_id_from_pb),
    })
}

/// An AppendEntries reply on the wire.
pub fn append_response_to_pb(r: &AppendEntriesResponse<TypeConfig>) -> pb::AppendResponse {
    use pb::append_response::{Conflict, PartialSuccess, Result as R, Success};
    let result = match r {
        AppendEntriesResponse::Success => R::Success(Success {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(PartialSuccess {
            matching: opt_log_id_to_pb(m.as_ref()),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(Conflict {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendResponse {
        result: Some(result),
    }
}

/// An AppendEntries reply from the wire.
pub fn append_response_from_pb(
    r: &pb::AppendResponse,
) -> io::Result<AppendEntriesResponse<TypeConfig>> {
    use pb::append_response::Result as R;
    Ok(match &r.result {
        Some(R::Success(_)) => AppendEntriesResponse::Success,
        Some(R::PartialSuccess(p)) => {
            AppendEntriesResponse::PartialSuccess(p.matching.as_ref().map(log_id_from_pb))
        }
        Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
        Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(vote_from_pb(Some(v))?),
        None => return Err(invalid("append reply without a result")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, Request};
    use bramble_api::etcdserverpb::PutRequest;
    use openraft::EntryPayload;

    fn entry(index: u64) -> Entry {
        openraft::Entry {
            log_id: codec::log_id(3, index),
            payload: EntryPayload::Normal(Request {
                command: pb::Command {
                    op: Some(pb::command::Op::Put(PutRequest {
                        key: b"k".to_vec(),
                        ..Default::default()
                    })),
                },
                request_id: index * 10,
            }),
        }
    }

    #[test]
    fn append_roundtrip() {
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(3, 1),
            prev_log_id: Some(codec::log_id(2, 4)),
            entries: vec![entry(5), entry(6)],
            leader_commit: Some(codec::log_id(2, 4)),
        };
        let back = append_request_from_pb(append_request_to_pb(&req, 9)).expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(codec::log_id(1, 2))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(openraft::Vote::new(9, 2)),
        ] {
            let back = append_response_from_pb(&append_response_to_pb(&resp)).expect("decodes");
            assert_eq!(back, resp);
        }
    }

    #[test]
    fn vote_roundtrip() {
        let mut req =
            VoteRequest::<TypeConfig>::new(openraft::Vote::new(4, 2), Some(codec::log_id(3, 17)));
        req.leadership_transfer = true;
        let back = vote_request_from_pb(&vote_request_to_pb(&req, 1)).expect("decodes");
        assert_eq!(back, req);
        let resp = VoteResponse::<TypeConfig>::new(openraft::Vote::new(4, 2), None, true);
        assert_eq!(
            vote_response_from_pb(&vote_response_to_pb(&resp)).expect("decodes"),
            resp
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(vote_request_from_pb(&pb::VoteRequest::default()).is_err());
        assert!(append_response_from_pb(&pb::AppendResponse::default()).is_err());
        let mut bad = append_request_to_pb(
            &AppendEntriesRequest::<TypeConfig> {
                vote: openraft::Vote::new_committed(3, 1),
                prev_log_id: Some(codec::log_id(2, 4)),
                entries: vec![entry(5), entry(7)],
                leader_commit: None,
            },
            0,
        );
        assert!(append_request_from_pb(bad.clone()).is_err());
        bad.entries.truncate(1);
        bad.prev_log_id = None;
        assert!(
            append_request_from_pb(bad).is_err(),
            "index 5 after no entry"
        );
    }
}
