//! Alarms (etcd's `alarmStore` and its capped and corrupt appliers): which member raised
//! which alarm, stored with the data so that they survive restarts and travel in
//! snapshots, and the changes they refuse.
//!
//! An alarm is raised and disarmed by a raft entry ([`AlarmRequest`]) applied in log
//! order, so every member refuses the same entries:
//! - `NOSPACE` (a member's database exceeded its quota): puts, lease grants and txns
//!   that write fail with `mvcc: database space exceeded`; reads, deletes, compactions
//!   and lease revokes still work, so that space can be freed;
//! - `CORRUPT`: every change fails with `etcdserver: corrupt cluster`.
//!
//! The set lives in the raft table under `alarms` (see [`super::schema`]): a list of
//! `AlarmMember`s, sorted by member and type.

use std::sync::RwLock;

use bramble_api::bramblepb::command::Op;
use bramble_api::etcdserverpb::alarm_request::AlarmAction;
use bramble_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use prost::Message;
use redb::{ReadableTable, Table};

use super::error::MvccError;
use super::schema;
use super::txn_read::is_read_only;

/// The raft table row holding the alarms: an `AlarmResponse` with only `alarms` set.
fn encode(alarms: &[AlarmMember]) -> Vec<u8> {
    AlarmResponse {
        header: None,
        alarms: alarms.to_vec(),
    }
    .encode_to_vec()
}

/// Reads the alarms from the raft table (none if the row is absent).
pub(super) fn read(
    raft: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<AlarmMember>, MvccError> {
    match raft.get(schema::RAFT_ALARMS)? {
        None => Ok(Vec::new()),
        Some(v) => Ok(AlarmResponse::decode(v.value())?.alarms),
    }
}

/// Writes the alarms to the raft table.
pub(super) fn write(
    raft: &mut Table<'_, &'static str, &'static [u8]>,
    alarms: &[AlarmMember],
) -> Result<(), MvccError> {
    if alarms.is_empty() {
        raft.remove(schema::RAFT_ALARMS)?;
    } else {
        raft.insert(schema::RAFT_ALARMS, encode(alarms).as_slice())?;
    }
    Ok(())
}

/// The alarms of `kind` (all of them for `NONE`), as etcd's `alarmStore.Get`.
pub(super) fn get(alarms: &[AlarmMember], kind: i32) -> Vec<AlarmMember> {
    alarms
        .iter()
        .filter(|a| kind == AlarmType::None as i32 || a.alarm == kind)
        .cloned()
        .collect()
}

/// Applies an alarm request to `alarms` as etcd's applier does: GET lists, ACTIVATE
/// answers the alarm (also when it was already raised), DEACTIVATE answers the alarm
/// it removed (nothing if it was not raised). Returns whether the set changed.
pub(super) fn apply(alarms: &mut Vec<AlarmMember>, req: &AlarmRequest) -> (AlarmResponse, bool) {
    let mut resp = AlarmResponse::default();
    let member = AlarmMember {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    let key = |a: &AlarmMember| (a.member_id, a.alarm);
    let mut changed = false;
    match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Get) => resp.alarms = get(alarms, req.alarm),
        Ok(AlarmAction::Activate) => {
            if let Err(at) = alarms.binary_search_by_key(&key(&member), key) {
                alarms.insert(at, member);
                changed = true;
            }
            resp.alarms.push(member);
        }
        Ok(AlarmAction::Deactivate) => {
            if let Ok(at) = alarms.binary_search_by_key(&key(&member), key) {
                resp.alarms.push(alarms.remove(at));
                changed = true;
            }
        }
        // An action this build does not know: etcd's switch has no case for it and
        // answers an empty response.
        Err(_) => {}
    }
    (resp, changed)
}

/// Whether the alarms in force refuse `op` (etcd's corrupt and capped appliers).
pub(super) fn refusal(alarms: &[AlarmMember], op: &Op) -> Option<MvccError> {
    let raised = |kind: AlarmType| alarms.iter().any(|a| a.alarm == kind as i32);
    if matches!(op, Op::Alarm(_)) {
        return None;
    }
    if raised(AlarmType::Corrupt) {
        return Some(MvccError::CorruptCluster);
    }
    if raised(AlarmType::Nospace) {
        let writes = match op {
            Op::Put(_) | Op::LeaseGrant(_) => true,
            Op::Txn(t) => !is_read_only(t),
            _ => false,
        };
        if writes {
            return Some(MvccError::NoSpace);
        }
    }
    None
}

/// The store's alarms in memory (a copy of the raft table's row).
pub(super) fn lock_read(
    alarms: &RwLock<Vec<AlarmMember>>,
) -> std::sync::RwLockReadGuard<'_, Vec<AlarmMember>> {
    // A plain Vec replaced whole: a panic cannot leave it half written.
    alarms.read().unwrap_or_else(|e| e.into_inner())
}

/// [`lock_read`] for writing.
pub(super) fn lock_write(
    alarms: &RwLock<Vec<AlarmMember>>,
) -> std::sync::RwLockWriteGuard<'_, Vec<AlarmMember>> {
    alarms.write().unwrap_or_else(|e| e.into_inner())
}
