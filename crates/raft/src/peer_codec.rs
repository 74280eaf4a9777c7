//! openraft's messages as the peer protocol's protobufs (`proto/bramblepb/raft.proto`)
//! and back.
//!
//! Everything decoded here came from the network: a malformed message is an
//! `io::Error` of kind `InvalidData`, never a panic.
//!
//! The `pub` functions are those the fuzz targets call (`fuzz/src/raft_wire.rs`).

use std::io;

use bramble_api::bramblepb as pb;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};

use crate::log_codec;
use crate::types::{LogId, StoredMembership, TypeConfig, Vote};

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("peer message: {what}"))
}

/// A log id on the wire.
pub(crate) fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: log_codec::log_term(id),
        index: id.index,
    }
}

/// An optional log id on the wire (an unset field means none).
pub(crate) fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

/// A log id from the wire.
pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    log_codec::log_id(id.term, id.index)
}

/// The largest log index a peer may send. The index after an entry must
/// exist (the next entry, openraft's next index) and the state machine stores
/// an applied index + 1, so u64::MAX is refused where it arrives rather than
/// overflowing in either.
pub(crate) const MAX_LOG_INDEX: u64 = u64::MAX - 1;

/// A log id from a peer, refused if its index is beyond [`MAX_LOG_INDEX`].
pub(crate) fn checked_log_id_from_pb(id: &pb::LogId) -> io::Result<LogId> {
    check_index(id.index)?;
    Ok(log_id_from_pb(id))
}

/// An optional log id from a peer (see [`checked_log_id_from_pb`]).
pub(crate) fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> io::Result<Option<LogId>> {
    id.map(checked_log_id_from_pb).transpose()
}

fn check_index(index: u64) -> io::Result<()> {
    if index > MAX_LOG_INDEX {
        return Err(invalid("log index out of range"));
    }
    Ok(())
}

/// A vote on the wire.
pub(crate) fn vote_to_pb(v: &Vote) -> pb::Vote {
    log_codec::vote_message(v)
}

/// A vote from the wire; a vote is never optional in a message.
pub fn vote_from_pb(v: Option<&pb::Vote>) -> io::Result<Vote> {
    let v = v.ok_or_else(|| invalid("missing vote"))?;
    Ok(log_codec::vote_from_message(v))
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
        opt_log_id_from_pb(r.last_log_id.as_ref())?,
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
        opt_log_id_from_pb(r.last_log_id.as_ref())?,
        r.vote_granted,
    ))
}

/// A snapshot a leader offers, from its stream's header: checked whole before
/// anything is received, written or installed.
#[derive(Debug)]
pub(crate) struct SnapshotOffer {
    /// The sender's vote (a leader's: committed).
    pub vote: Vote,
    /// The last log entry the snapshot covers.
    pub last_log_id: LogId,
    /// The membership its state machine had applied.
    pub membership: StoredMembership,
    /// The length of its data in bytes (not 0).
    pub size: u64,
}

/// The header of an InstallSnapshot stream, refused unless it is a leader's
/// snapshot that covers a well-formed position and membership: a vote that is
/// committed, a last log id within [`MAX_LOG_INDEX`] and not from a term after
/// the leader's, a membership of at least one voter whose log id is at or
/// before the last log id, and a non-empty size.
pub(crate) fn snapshot_header_from_pb(h: &pb::SnapshotHeader) -> io::Result<SnapshotOffer> {
    use prost::Message;
    let vote = vote_from_pb(h.vote.as_ref())?;
    if !vote.is_committed() {
        return Err(invalid("snapshot from a sender that is not a leader"));
    }
    let last = h
        .last_log_id
        .as_ref()
        .ok_or_else(|| invalid("snapshot without a last log id"))?;
    let last = checked_log_id_from_pb(last)?;
    if log_codec::log_term(&last) > vote.leader_id().term {
        return Err(invalid(
            "snapshot's last log id is from a later term than its leader's",
        ));
    }
    let stored = h
        .last_membership
        .as_ref()
        .ok_or_else(|| invalid("snapshot without a membership"))?;
    if stored.has_log_id {
        check_index(stored.log_index)?;
    }
    let membership = log_codec::decode_stored_membership(&stored.encode_to_vec())?;
    match membership.log_id() {
        None => return Err(invalid("snapshot membership without a log id")),
        Some(id)
            if id.index > last.index || log_codec::log_term(id) > log_codec::log_term(&last) =>
        {
            return Err(invalid("snapshot membership is after its last log id"));
        }
        Some(_) => {}
    }
    if membership.membership().voter_ids().next().is_none() {
        return Err(invalid("snapshot membership without voters"));
    }
    if h.size == 0 {
        return Err(invalid("empty snapshot"));
    }
    Ok(SnapshotOffer {
        vote,
        last_log_id: last,
        membership,
        size: h.size,
    })
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
                entry: Some(log_codec::entry_message(e)),
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
        check_index(w.index)?;
        let e = w.entry.ok_or_else(|| invalid("entry without a record"))?;
        entries.push(log_codec::entry_from_message(w.index, e)?);
    }
    // openraft asserts consecutive entries; check it here so a bad peer gets
    // an error instead of crashing this member. Indexes are at most
    // MAX_LOG_INDEX, so the next one exists; checked all the same.
    for pair in entries.windows(2) {
        if pair[0].log_id.index.checked_add(1) != Some(pair[1].log_id.index) {
            return Err(invalid("entries are not consecutive"));
        }
    }
    let prev_log_id = opt_log_id_from_pb(r.prev_log_id.as_ref())?;
    if let Some(first) = entries.first() {
        let expected = match prev_log_id {
            Some(p) => p.index.checked_add(1),
            None => Some(0),
        };
        if expected != Some(first.log_id.index) {
            return Err(invalid("first entry does not follow prev_log_id"));
        }
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit: opt_log_id_from_pb(r.leader_commit.as_ref())?,
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
            AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(p.matching.as_ref())?)
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
            log_id: log_codec::log_id(3, index),
            payload: EntryPayload::Normal(Request {
                command: pb::Command {
                    auth: None,
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
            prev_log_id: Some(log_codec::log_id(2, 4)),
            entries: vec![entry(5), entry(6)],
            leader_commit: Some(log_codec::log_id(2, 4)),
        };
        let back = append_request_from_pb(append_request_to_pb(&req, 9)).expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_codec::log_id(1, 2))),
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
        let mut req = VoteRequest::<TypeConfig>::new(
            openraft::Vote::new(4, 2),
            Some(log_codec::log_id(3, 17)),
        );
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
                prev_log_id: Some(log_codec::log_id(2, 4)),
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

    /// Indexes at u64::MAX from a peer are refused, never overflowed: in an
    /// entry, in prev_log_id (whose next index would overflow), in
    /// leader_commit, in a vote and in a reply.
    #[test]
    fn u64_max_indexes_are_errors() {
        let max = MAX_LOG_INDEX;
        let req = |prev: Option<u64>, entries: Vec<u64>, commit: Option<u64>| {
            let mut r = append_request_to_pb(
                &AppendEntriesRequest::<TypeConfig> {
                    vote: openraft::Vote::new_committed(3, 1),
                    prev_log_id: prev.map(|i| log_codec::log_id(3, i)),
                    entries: vec![],
                    leader_commit: commit.map(|i| log_codec::log_id(3, i)),
                },
                0,
            );
            r.entries = entries
                .into_iter()
                .map(|i| {
                    let mut w = append_request_to_pb(
                        &AppendEntriesRequest::<TypeConfig> {
                            vote: openraft::Vote::new_committed(3, 1),
                            prev_log_id: None,
                            entries: vec![entry(1)],
                            leader_commit: None,
                        },
                        0,
                    )
                    .entries
                    .remove(0);
                    w.index = i;
                    w
                })
                .collect();
            append_request_from_pb(r)
        };
        // The largest allowed indexes work.
        assert!(req(Some(max - 2), vec![max - 1, max], Some(max)).is_ok());
        // u64::MAX anywhere is refused.
        assert!(req(Some(max - 1), vec![u64::MAX], None).is_err());
        assert!(req(Some(max), vec![u64::MAX], None).is_err());
        assert!(
            req(Some(u64::MAX), vec![0], None).is_err(),
            "prev + 1 overflows"
        );
        assert!(req(Some(u64::MAX), vec![], None).is_err());
        assert!(req(None, vec![max, 0], None).is_err());
        assert!(req(None, vec![], Some(u64::MAX)).is_err());
        let huge = Some(pb::LogId {
            term: u64::MAX,
            index: u64::MAX,
        });
        let vote = pb::VoteRequest {
            vote: Some(vote_to_pb(&openraft::Vote::new(1, 1))),
            last_log_id: huge,
            ..Default::default()
        };
        assert!(vote_request_from_pb(&vote).is_err());
        let reply = pb::VoteResponse {
            vote: Some(vote_to_pb(&openraft::Vote::new(1, 1))),
            vote_granted: true,
            last_log_id: huge,
        };
        assert!(vote_response_from_pb(&reply).is_err());
        let partial = pb::AppendResponse {
            result: Some(pb::append_response::Result::PartialSuccess(
                pb::append_response::PartialSuccess { matching: huge },
            )),
        };
        assert!(append_response_from_pb(&partial).is_err());
    }

    fn snapshot_header() -> pb::SnapshotHeader {
        use prost::Message;
        let nodes: std::collections::BTreeMap<u64, crate::types::MemberAttributes> =
            [(1, crate::types::MemberAttributes::default())].into();
        let m = openraft::Membership::new(vec![[1u64].into()], nodes).expect("membership");
        let stored = openraft::StoredMembership::new(Some(log_codec::log_id(2, 7)), m);
        pb::SnapshotHeader {
            vote: Some(vote_to_pb(&openraft::Vote::new_committed(3, 1))),
            last_log_id: Some(pb::LogId { term: 3, index: 90 }),
            last_membership: Some(
                pb::StoredMembership::decode(
                    log_codec::encode_stored_membership(&stored).as_slice(),
                )
                .expect("stored membership"),
            ),
            cluster_id: 5,
            size: 1000,
        }
    }

    /// A snapshot header is checked whole before anything is received: each
    /// malformed field alone is refused.
    #[test]
    fn malformed_snapshot_headers_are_refused() {
        let ok = snapshot_header_from_pb(&snapshot_header()).expect("a valid header");
        assert_eq!(ok.last_log_id, log_codec::log_id(3, 90));
        assert_eq!(ok.size, 1000);
        type Breaker = fn(&mut pb::SnapshotHeader);
        let cases: &[(&str, Breaker)] = &[
            ("no vote", |h| h.vote = None),
            ("uncommitted vote", |h| {
                h.vote = Some(vote_to_pb(&openraft::Vote::new(3, 1)))
            }),
            ("no last log id", |h| h.last_log_id = None),
            ("last log id at u64::MAX", |h| {
                h.last_log_id = Some(pb::LogId {
                    term: 3,
                    index: u64::MAX,
                })
            }),
            ("last log term after the vote's", |h| {
                h.last_log_id = Some(pb::LogId { term: 4, index: 90 })
            }),
            ("no membership", |h| h.last_membership = None),
            ("membership without a log id", |h| {
                if let Some(m) = h.last_membership.as_mut() {
                    m.has_log_id = false;
                }
            }),
            ("membership after the last log id", |h| {
                if let Some(m) = h.last_membership.as_mut() {
                    m.log_index = 91;
                }
            }),
            ("membership log index u64::MAX", |h| {
                if let Some(m) = h.last_membership.as_mut() {
                    m.log_index = u64::MAX;
                }
            }),
            ("membership without voters", |h| {
                if let Some(m) = h
                    .last_membership
                    .as_mut()
                    .and_then(|m| m.membership.as_mut())
                {
                    m.configs = vec![pb::VoterSet { ids: vec![] }];
                }
            }),
            ("voter without an address", |h| {
                if let Some(m) = h
                    .last_membership
                    .as_mut()
                    .and_then(|m| m.membership.as_mut())
                {
                    m.configs = vec![pb::VoterSet { ids: vec![1, 2] }];
                }
            }),
            ("empty", |h| h.size = 0),
        ];
        for (what, break_it) in cases {
            let mut h = snapshot_header();
            break_it(&mut h);
            assert!(snapshot_header_from_pb(&h).is_err(), "{what}: {h:?}");
        }
    }
}
