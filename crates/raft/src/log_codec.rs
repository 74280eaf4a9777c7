//! Encoding of Raft log entries, votes and memberships as the disk stores them.
//!
//! The formats are the prost messages in `proto/bramblepb/command.proto`, so
//! they stay readable across versions (new fields, never renumbered). Decoding
//! never panics: bytes from disk that do not parse are an `io::Error` of kind
//! `InvalidData`, which openraft treats as a storage failure.
//!
//! The peer protocol carries entries and memberships in these same messages;
//! [`crate::peer_codec`] converts openraft's RPCs around them.
//!
//! The `pub` items are those the fuzz targets (`fuzz/src/raft_wire.rs`), the
//! server's request checks and this crate's integration tests call.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use bramble_api::bramblepb::{self as pb, Command};
use bramble_api::etcdserverpb as pb_etcd;
use openraft::vote::RaftLeaderId;
use openraft::EntryPayload;
use prost::Message;

use crate::types::{Entry, LogId, MemberAttributes, Membership, Request, StoredMembership, Vote};

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
pub(crate) fn log_term(id: &LogId) -> u64 {
    id.leader_id.term
}

/// Encodes an entry's term and payload (the index is in the WAL frame).
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_message(entry).encode_to_vec()
}

/// An entry's term and payload as the WAL record's message.
pub(crate) fn entry_message(entry: &Entry) -> pb::LogEntry {
    let (payload, request_id) = match &entry.payload {
        EntryPayload::Blank => (None, 0),
        EntryPayload::Normal(req) => (
            Some(pb::log_entry::Payload::Command(command_record(
                &req.command,
            ))),
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
pub(crate) fn entry_from_message(index: u64, e: pb::LogEntry) -> io::Result<Entry> {
    let payload = match e.payload {
        None => EntryPayload::Blank,
        Some(pb::log_entry::Payload::Command(record)) => EntryPayload::Normal(Request {
            command: command_from_record(record)
                .map_err(|err| invalid(&format!("log entry {index}"), err))?,
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

/// A command as the WAL stores it and peers send it: each operation encoded
/// on its own (see `CommandRecord` in `proto/bramblepb/command.proto`).
pub fn command_record(cmd: &Command) -> pb::CommandRecord {
    use pb::command::Op;
    use pb::command_record::Op as Rec;
    let op = cmd.op.as_ref().map(|op| match op {
        Op::Put(r) => Rec::Put(r.encode_to_vec()),
        Op::DeleteRange(r) => Rec::DeleteRange(r.encode_to_vec()),
        Op::Txn(r) => Rec::Txn(r.encode_to_vec()),
        Op::Compaction(r) => Rec::Compaction(r.encode_to_vec()),
        Op::LeaseGrant(r) => Rec::LeaseGrant(r.encode_to_vec()),
        Op::LeaseRevoke(r) => Rec::LeaseRevoke(r.encode_to_vec()),
        Op::Alarm(r) => Rec::Alarm(r.encode_to_vec()),
        Op::AuthEnable(r) => Rec::AuthEnable(r.encode_to_vec()),
        Op::AuthDisable(r) => Rec::AuthDisable(r.encode_to_vec()),
        Op::AuthUserAdd(r) => Rec::AuthUserAdd(r.encode_to_vec()),
        Op::AuthUserDelete(r) => Rec::AuthUserDelete(r.encode_to_vec()),
        Op::AuthUserChangePassword(r) => Rec::AuthUserChangePassword(r.encode_to_vec()),
        Op::AuthUserGrantRole(r) => Rec::AuthUserGrantRole(r.encode_to_vec()),
        Op::AuthUserRevokeRole(r) => Rec::AuthUserRevokeRole(r.encode_to_vec()),
        Op::AuthRoleAdd(r) => Rec::AuthRoleAdd(r.encode_to_vec()),
        Op::AuthRoleDelete(r) => Rec::AuthRoleDelete(r.encode_to_vec()),
        Op::AuthRoleGrantPermission(r) => Rec::AuthRoleGrantPermission(r.encode_to_vec()),
        Op::AuthRoleRevokePermission(r) => Rec::AuthRoleRevokePermission(r.encode_to_vec()),
        Op::AuthAuthenticate(r) => Rec::AuthAuthenticate(r.encode_to_vec()),
    });
    pb::CommandRecord {
        op,
        auth: cmd.auth.clone(),
    }
}

/// The command a record holds. The operation is decoded as a message of its
/// own, with prost's whole recursion budget: any request the gRPC layer could
/// decode decodes here too.
pub(crate) fn command_from_record(record: pb::CommandRecord) -> io::Result<Command> {
    use pb::command::Op;
    use pb::command_record::Op as Rec;
    fn op<M: Message + Default>(what: &str, bytes: &[u8]) -> io::Result<M> {
        M::decode(bytes).map_err(|e| invalid(what, e))
    }
    let op = match record.op {
        None => None,
        Some(Rec::AuthAuthenticate(b)) => Some(Op::AuthAuthenticate(op("auth_authenticate", &b)?)),
        Some(Rec::Put(b)) => Some(Op::Put(op("put", &b)?)),
        Some(Rec::DeleteRange(b)) => Some(Op::DeleteRange(op("delete_range", &b)?)),
        Some(Rec::Txn(b)) => Some(Op::Txn(op("txn", &b)?)),
        Some(Rec::Compaction(b)) => Some(Op::Compaction(op("compaction", &b)?)),
        Some(Rec::LeaseGrant(b)) => Some(Op::LeaseGrant(op("lease_grant", &b)?)),
        Some(Rec::LeaseRevoke(b)) => Some(Op::LeaseRevoke(op("lease_revoke", &b)?)),
        Some(Rec::Alarm(b)) => Some(Op::Alarm(op("alarm", &b)?)),
        Some(Rec::AuthEnable(b)) => Some(Op::AuthEnable(op("auth_enable", &b)?)),
        Some(Rec::AuthDisable(b)) => Some(Op::AuthDisable(op("auth_disable", &b)?)),
        Some(Rec::AuthUserAdd(b)) => Some(Op::AuthUserAdd(op("auth_user_add", &b)?)),
        Some(Rec::AuthUserDelete(b)) => Some(Op::AuthUserDelete(op("auth_user_delete", &b)?)),
        Some(Rec::AuthUserChangePassword(b)) => Some(Op::AuthUserChangePassword(op(
            "auth_user_change_password",
            &b,
        )?)),
        Some(Rec::AuthUserGrantRole(b)) => {
            Some(Op::AuthUserGrantRole(op("auth_user_grant_role", &b)?))
        }
        Some(Rec::AuthUserRevokeRole(b)) => {
            Some(Op::AuthUserRevokeRole(op("auth_user_revoke_role", &b)?))
        }
        Some(Rec::AuthRoleAdd(b)) => Some(Op::AuthRoleAdd(op("auth_role_add", &b)?)),
        Some(Rec::AuthRoleDelete(b)) => Some(Op::AuthRoleDelete(op("auth_role_delete", &b)?)),
        Some(Rec::AuthRoleGrantPermission(b)) => Some(Op::AuthRoleGrantPermission(op(
            "auth_role_grant_permission",
            &b,
        )?)),
        Some(Rec::AuthRoleRevokePermission(b)) => Some(Op::AuthRoleRevokePermission(op(
            "auth_role_revoke_permission",
            &b,
        )?)),
    };
    Ok(Command {
        auth: record.auth,
        op,
    })
}

/// The deepest nesting of messages prost decodes: a top-level message and
/// 100 levels below it (prost's recursion limit, which this crate keeps on so
/// that a hostile message cannot overflow the stack). The gRPC layer decodes
/// a client's request with this budget, and so does `command_from_record`
/// for the operation it stores.
pub const MAX_DECODED_DEPTH: usize = 101;

/// Whether `txn`, as a message of its own, nests more than `levels` messages
/// deep (itself included), counting as prost does: each compare, request op
/// and operation is a level. Looks no deeper than `levels`, so a hostile
/// txn cannot make it recurse without bound.
pub(crate) fn txn_nests_deeper_than(txn: &pb_etcd::TxnRequest, levels: usize) -> bool {
    use pb_etcd::request_op::Request as Op;
    let Some(below) = levels.checked_sub(1) else {
        return true;
    };
    let ops = txn.success.iter().chain(&txn.failure);
    if txn.compare.is_empty() && txn.success.is_empty() && txn.failure.is_empty() {
        return false;
    }
    // A compare or a request op needs one level below this txn.
    if below == 0 {
        return true;
    }
    ops.into_iter().any(|op| match &op.request {
        None => false,
        Some(Op::RequestTxn(t)) => txn_nests_deeper_than(t, below - 1),
        // A range, put or delete: a message without messages inside.
        Some(Op::RequestRange(_) | Op::RequestPut(_) | Op::RequestDeleteRange(_)) => below < 2,
    })
}

/// Encodes a membership configuration.
pub(crate) fn encode_membership(m: &Membership) -> pb::Membership {
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
pub(crate) fn decode_membership(m: &pb::Membership) -> io::Result<Membership> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, MemberAttributes> = m
        .members
        .iter()
        .map(|n| {
            (
                n.id,
                MemberAttributes {
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
    vote_message(v).encode_to_vec()
}

/// Decodes the vote.
pub fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    let v = pb::Vote::decode(bytes).map_err(|e| invalid("vote", e))?;
    Ok(vote_from_message(&v))
}

/// A vote as the protobuf both the WAL's hard state and the peer protocol
/// carry.
pub(crate) fn vote_message(v: &Vote) -> pb::Vote {
    let lid = v.leader_id();
    pb::Vote {
        term: lid.term,
        voted_for: *lid.node_id(),
        committed: v.is_committed(),
    }
}

/// The vote a [`vote_message`] holds.
pub(crate) fn vote_from_message(v: &pb::Vote) -> Vote {
    if v.committed {
        openraft::Vote::new_committed(v.term, v.voted_for)
    } else {
        openraft::Vote::new(v.term, v.voted_for)
    }
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
    use bramble_api::etcdserverpb::{PutRequest, TxnRequest};

    fn member(name: &str) -> MemberAttributes {
        MemberAttributes {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: vec![format!("http://{name}:2379")],
        }
    }

    #[test]
    fn entries_roundtrip() {
        let put = pb::Command {
            auth: None,
            op: Some(pb::command::Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        let members: BTreeMap<u64, MemberAttributes> = [(1, member("a")), (2, member("b"))].into();
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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn put_op(key: &str) -> pb_etcd::RequestOp {
        pb_etcd::RequestOp {
            request: Some(pb_etcd::request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(t: TxnRequest) -> pb_etcd::RequestOp {
        pb_etcd::RequestOp {
            request: Some(pb_etcd::request_op::Request::RequestTxn(t)),
        }
    }

    /// `levels` txns nested in each other's success branch with a put in the
    /// innermost, or (`put_at_bottom` false) the put one level up beside an
    /// empty innermost txn.
    fn nested(levels: usize, put_at_bottom: bool) -> TxnRequest {
        let mut t = if put_at_bottom {
            TxnRequest {
                success: vec![put_op("k")],
                ..Default::default()
            }
        } else {
            TxnRequest {
                success: vec![put_op("k"), txn_op(TxnRequest::default())],
                ..Default::default()
            }
        };
        let wraps = if put_at_bottom {
            levels - 1
        } else {
            levels - 2
        };
        for _ in 0..wraps {
            t = TxnRequest {
                success: vec![txn_op(t)],
                ..Default::default()
            };
        }
        t
    }

    fn txn_command(t: TxnRequest) -> Command {
        Command {
            auth: None,
            op: Some(pb::command::Op::Txn(t)),
        }
    }

    /// Records written before LogEntry and ForwardRequest carried a
    /// CommandRecord (encoded by `protoc --encode` with the old protos, the
    /// bytes prost wrote) decode unchanged.
    #[test]
    fn records_of_the_old_format_decode() {
        let e = decode_entry(9, &hex("080712080a060a016b120176204d")).expect("old put entry");
        assert_eq!(e.log_id, log_id(7, 9));
        let EntryPayload::Normal(req) = e.payload else {
            panic!("not a command: {e:?}")
        };
        assert_eq!(req.request_id, 77);
        let put = Command {
            auth: None,
            op: Some(pb::command::Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        assert_eq!(req.command, put);
        assert_eq!(
            encode_entry(&decode_entry(9, &hex("080712080a060a016b120176204d")).expect("decodes")),
            hex("080712080a060a016b120176204d"),
            "the new format writes the same bytes"
        );

        let nested_hex = "080312191a170a051a01632001120e220c120a12080a016e1201771805";
        let e = decode_entry(3, &hex(nested_hex)).expect("old nested txn entry");
        let EntryPayload::Normal(req) = e.payload else {
            panic!("not a command: {e:?}")
        };
        let inner = TxnRequest {
            success: vec![pb_etcd::RequestOp {
                request: Some(pb_etcd::request_op::Request::RequestPut(PutRequest {
                    key: b"n".to_vec(),
                    value: b"w".to_vec(),
                    lease: 5,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let outer = TxnRequest {
            compare: vec![pb_etcd::Compare {
                key: b"c".to_vec(),
                target_union: Some(pb_etcd::compare::TargetUnion::Version(1)),
                ..Default::default()
            }],
            success: vec![txn_op(inner)],
            failure: vec![],
        };
        assert_eq!(req.command, txn_command(outer));
        assert_eq!(encode_entry(&e_again(3, nested_hex)), hex(nested_hex));

        let fwd =
            pb::ForwardRequest::decode(hex("0a0c1a0a120812060a016612017810091805").as_slice())
                .expect("old forward request");
        assert_eq!((fwd.cluster_id, fwd.request_id), (9, 5));
        let cmd = command_from_record(fwd.command.expect("a command")).expect("decodes");
        let Some(pb::command::Op::Txn(t)) = cmd.op else {
            panic!("not a txn: {cmd:?}")
        };
        assert_eq!(t.success.len(), 1);
    }

    fn e_again(index: u64, h: &str) -> Entry {
        decode_entry(index, &hex(h)).expect("decodes")
    }

    /// Every operation survives its record, and the record's bytes are the
    /// typed Command's (the field numbers of the two messages agree).
    #[test]
    fn command_records_roundtrip_every_operation() {
        use bramble_api::etcdserverpb::{
            CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
        };
        use pb::command::Op;
        let ops = [
            None,
            Some(Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                lease: 3,
                ..Default::default()
            })),
            Some(Op::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
                prev_kv: true,
            })),
            Some(Op::Txn(nested(3, true))),
            Some(Op::Compaction(CompactionRequest {
                revision: 12,
                physical: true,
            })),
            Some(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 7 })),
            Some(Op::LeaseRevoke(LeaseRevokeRequest { id: 7 })),
            Some(Op::AuthEnable(Default::default())),
            Some(Op::AuthDisable(Default::default())),
            Some(Op::AuthUserAdd(
                bramble_api::etcdserverpb::AuthUserAddRequest {
                    name: "u".into(),
                    hashed_password: "aGFzaA==".into(),
                    options: Some(bramble_api::authpb::UserAddOptions { no_password: true }),
                    ..Default::default()
                },
            )),
            Some(Op::AuthUserDelete(Default::default())),
            Some(Op::AuthUserChangePassword(Default::default())),
            Some(Op::AuthUserGrantRole(Default::default())),
            Some(Op::AuthUserRevokeRole(Default::default())),
            Some(Op::AuthRoleAdd(Default::default())),
            Some(Op::AuthRoleDelete(Default::default())),
            Some(Op::AuthRoleGrantPermission(
                bramble_api::etcdserverpb::AuthRoleGrantPermissionRequest {
                    name: "r".into(),
                    perm: Some(bramble_api::authpb::Permission {
                        perm_type: 2,
                        key: b"a".to_vec(),
                        range_end: b"\0".to_vec(),
                    }),
                },
            )),
            Some(Op::AuthRoleRevokePermission(Default::default())),
        ];
        for op in ops {
            let cmd = Command { auth: None, op };
            let record = command_record(&cmd);
            assert_eq!(record.encode_to_vec(), cmd.encode_to_vec(), "{cmd:?}");
            let back = command_from_record(
                pb::CommandRecord::decode(cmd.encode_to_vec().as_slice()).expect("record"),
            )
            .expect("command");
            assert_eq!(back, cmd);
        }
    }

    /// `txn_nests_deeper_than` agrees with prost's own decoder about the
    /// deepest txn it decodes, for several shapes around the limit.
    #[test]
    fn the_depth_bound_is_prosts() {
        let mut shapes = Vec::new();
        for levels in [1, 2, 49, 50, 51, 52, 60] {
            shapes.push((levels, nested(levels, true)));
            if levels >= 2 {
                shapes.push((levels, nested(levels, false)));
            }
            // Only a compare at the bottom, in the failure branch.
            let mut t = TxnRequest {
                compare: vec![pb_etcd::Compare {
                    key: b"c".to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            for _ in 1..levels {
                t = TxnRequest {
                    failure: vec![txn_op(t)],
                    ..Default::default()
                };
            }
            shapes.push((levels, t));
            // An empty op (no request) at the bottom.
            let mut t = TxnRequest {
                success: vec![pb_etcd::RequestOp { request: None }],
                ..Default::default()
            };
            for _ in 1..levels {
                t = TxnRequest {
                    success: vec![txn_op(t)],
                    ..Default::default()
                };
            }
            shapes.push((levels, t));
        }
        let mut decodable_at_51 = false;
        for (levels, t) in shapes {
            let decodes = TxnRequest::decode(t.encode_to_vec().as_slice()).is_ok();
            assert_eq!(
                !txn_nests_deeper_than(&t, MAX_DECODED_DEPTH),
                decodes,
                "{levels} levels: {t:?}"
            );
            decodable_at_51 |= levels == 51 && decodes;
        }
        assert!(decodable_at_51, "the deepest decodable txn has 51 levels");
        assert!(TxnRequest::decode(nested(50, true).encode_to_vec().as_slice()).is_ok());
        assert!(TxnRequest::decode(nested(51, true).encode_to_vec().as_slice()).is_err());
    }

    /// The deepest txn the gRPC layer decodes goes through every encoding a
    /// command takes: the WAL record, an AppendEntries entry, a forwarded
    /// proposal. (Before CommandRecord each wrapper took levels from it.)
    #[test]
    fn the_deepest_decodable_txn_survives_every_encoding() {
        for t in [nested(51, false), nested(50, true)] {
            assert!(TxnRequest::decode(t.encode_to_vec().as_slice()).is_ok());
            let cmd = txn_command(t);
            let entry: Entry = openraft::Entry {
                log_id: log_id(2, 10),
                payload: EntryPayload::Normal(Request {
                    command: cmd.clone(),
                    request_id: 4,
                }),
            };
            // The WAL record.
            let back = decode_entry(10, &encode_entry(&entry)).expect("WAL record decodes");
            assert_eq!(format!("{back:?}"), format!("{entry:?}"));
            // AppendEntries, as bytes on the wire.
            let req = openraft::raft::AppendEntriesRequest::<crate::types::TypeConfig> {
                vote: openraft::Vote::new_committed(2, 1),
                prev_log_id: Some(log_id(2, 9)),
                entries: vec![entry.clone()],
                leader_commit: None,
            };
            let bytes = crate::peer_codec::append_request_to_pb(&req, 1).encode_to_vec();
            let decoded =
                pb::AppendRequest::decode(bytes.as_slice()).expect("AppendRequest decodes");
            let back = crate::peer_codec::append_request_from_pb(decoded).expect("entries decode");
            assert_eq!(format!("{back:?}"), format!("{req:?}"));
            // A forwarded proposal.
            let fwd = pb::ForwardRequest {
                command: Some(command_record(&cmd)),
                cluster_id: 1,
                request_id: 4,
            };
            let decoded = pb::ForwardRequest::decode(fwd.encode_to_vec().as_slice())
                .expect("ForwardRequest decodes");
            let back =
                command_from_record(decoded.command.expect("command")).expect("command decodes");
            assert_eq!(back, cmd);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(1, &[0xff, 0xff, 0xff]).is_err());
        assert!(decode_vote(&[0x08]).is_err());
        assert!(decode_stored_membership(&[0x22, 0x05, 0x01]).is_err());
    }
}
