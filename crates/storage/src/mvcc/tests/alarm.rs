//! Tests of `../alarm.rs`: what each alarm refuses, etcd's answers to alarm requests,
//! and that alarms survive a reopen and travel in snapshots.

use bramble_api::etcdserverpb::alarm_request::AlarmAction;
use bramble_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};

use super::*;

fn alarm_cmd(action: AlarmAction, member_id: u64, alarm: AlarmType) -> Command {
    Command {
        auth: None,
        op: Some(Op::Alarm(AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        })),
    }
}

fn alarm(s: &TestStore, action: AlarmAction, member_id: u64, kind: AlarmType) -> Vec<AlarmMember> {
    match s.apply(alarm_cmd(action, member_id, kind)) {
        ApplyResult::Alarm(AlarmResponse { alarms, .. }) => alarms,
        other => panic!("alarm: {other:?}"),
    }
}

fn member(member_id: u64, kind: AlarmType) -> AlarmMember {
    AlarmMember {
        member_id,
        alarm: kind as i32,
    }
}

fn refused(r: ApplyResult) -> MvccError {
    match r {
        ApplyResult::Error(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn nospace_refuses_writes_but_not_reads_deletes_compactions_or_revokes() {
    let s = TestStore::new();
    s.put("a", "1");
    s.put("b", "1");
    s.grant(7, 100).unwrap();
    let raised = alarm(&s, AlarmAction::Activate, 9, AlarmType::Nospace);
    assert_eq!(raised, vec![member(9, AlarmType::Nospace)]);
    // Raising it again answers it again (etcd), and changes nothing.
    assert_eq!(
        alarm(&s, AlarmAction::Activate, 9, AlarmType::Nospace),
        raised
    );
    assert_eq!(s.store.alarms(), raised);
    let rev = s.store.current_revision();

    assert_eq!(refused(s.apply(put_cmd(put("a", "2")))), MvccError::NoSpace);
    assert_eq!(refused(s.apply(grant_cmd(8, 100))), MvccError::NoSpace);
    let write_txn = TxnRequest {
        success: vec![op_put("c", "1")],
        ..Default::default()
    };
    assert_eq!(refused(s.apply(txn_cmd(write_txn))), MvccError::NoSpace);
    let delete_txn = TxnRequest {
        failure: vec![op_del("a", "")],
        ..Default::default()
    };
    assert_eq!(refused(s.apply(txn_cmd(delete_txn))), MvccError::NoSpace);
    assert_eq!(
        s.store.current_revision(),
        rev,
        "a refused change took a revision"
    );

    let read_txn = TxnRequest {
        success: vec![op_range(range("a", ""))],
        ..Default::default()
    };
    assert_eq!(s.txn(read_txn).unwrap().responses.len(), 1);
    assert_eq!(s.get("a").unwrap().value, b"1");
    assert_eq!(s.del("b", ""), 1);
    assert_eq!(s.compact(rev + 1).unwrap(), rev + 1);
    assert_eq!(s.revoke(7).unwrap(), rev + 1);

    assert_eq!(
        alarm(&s, AlarmAction::Deactivate, 9, AlarmType::Nospace),
        raised
    );
    // Disarming what is not raised answers nothing.
    assert!(alarm(&s, AlarmAction::Deactivate, 9, AlarmType::Nospace).is_empty());
    assert!(s.store.alarms().is_empty());
    assert_eq!(s.put("a", "2"), rev + 2);
}

#[test]
fn corrupt_refuses_every_change_and_get_filters_by_type() {
    let s = TestStore::new();
    s.put("a", "1");
    alarm(&s, AlarmAction::Activate, 2, AlarmType::Nospace);
    alarm(&s, AlarmAction::Activate, 1, AlarmType::Corrupt);
    for cmd in [
        put_cmd(put("a", "2")),
        del_cmd("a", ""),
        compact_cmd(1),
        grant_cmd(3, 10),
        revoke_cmd(3),
    ] {
        assert_eq!(refused(s.apply(cmd)), MvccError::CorruptCluster);
    }
    assert_eq!(s.get("a").unwrap().value, b"1");
    assert_eq!(
        alarm(&s, AlarmAction::Get, 0, AlarmType::None),
        vec![member(1, AlarmType::Corrupt), member(2, AlarmType::Nospace)]
    );
    assert_eq!(
        alarm(&s, AlarmAction::Get, 0, AlarmType::Corrupt),
        vec![member(1, AlarmType::Corrupt)]
    );
    alarm(&s, AlarmAction::Deactivate, 1, AlarmType::Corrupt);
    // NOSPACE still raised: deletes work again, puts do not.
    assert_eq!(s.del("a", ""), 1);
    assert_eq!(refused(s.apply(put_cmd(put("a", "3")))), MvccError::NoSpace);
}

#[test]
fn alarms_survive_reopen_and_travel_in_snapshots() {
    let s = TestStore::new();
    s.put("a", "1");
    alarm(&s, AlarmAction::Activate, 5, AlarmType::Nospace);
    let s = s.reopen();
    assert_eq!(s.store.alarms(), vec![member(5, AlarmType::Nospace)]);
    assert_eq!(refused(s.apply(put_cmd(put("a", "2")))), MvccError::NoSpace);

    let mut snap = Vec::new();
    s.store.write_snapshot(&mut snap).unwrap();
    let other = TestStore::new();
    other.put("x", "y");
    other.store.install_snapshot(&mut snap.as_slice()).unwrap();
    assert_eq!(other.store.alarms(), vec![member(5, AlarmType::Nospace)]);

    // And a snapshot without alarms clears them.
    alarm(&s, AlarmAction::Deactivate, 5, AlarmType::Nospace);
    let mut snap = Vec::new();
    s.store.write_snapshot(&mut snap).unwrap();
    other.store.install_snapshot(&mut snap.as_slice()).unwrap();
    assert!(other.store.alarms().is_empty());
    let other = other.reopen();
    assert!(other.store.alarms().is_empty());
}
