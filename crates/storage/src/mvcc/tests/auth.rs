//! The auth state goes through the apply loop, survives a reopen and travels in
//! snapshots.

use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::{
    AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, ResponseHeader,
};

use super::*;
use crate::mvcc::AuthError;

fn cmd(op: Op) -> Command {
    Command {
        auth: None,
        op: Some(op),
    }
}

fn user_add(name: &str) -> Command {
    cmd(Op::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        // base64 of "hash"
        hashed_password: "aGFzaA==".into(),
        ..Default::default()
    }))
}

#[test]
fn auth_changes_apply_persist_and_travel_in_snapshots() {
    let s = TestStore::new();
    s.put("a", "1");
    assert_eq!(
        s.apply(user_add("u")),
        ApplyResult::Auth(Some(ResponseHeader {
            revision: 2,
            ..Default::default()
        }))
    );
    // An auth change takes no key revision.
    assert_eq!(s.store.current_revision(), 2);
    assert_eq!(
        s.apply(user_add("u")),
        ApplyResult::Error(MvccError::Auth(AuthError::UserAlreadyExist))
    );
    s.apply(cmd(Op::AuthRoleAdd(AuthRoleAddRequest {
        name: "r".into(),
    })));
    s.apply(cmd(Op::AuthUserGrantRole(AuthUserGrantRoleRequest {
        user: "u".into(),
        role: "r".into(),
    })));
    let state = s.store.auth_state();
    assert_eq!(state.revision, 4);
    assert_eq!(state.user("u").unwrap().password, b"hash");
    assert_eq!(state.user_get("u").unwrap(), vec!["r".to_string()]);

    let s = s.reopen();
    assert_eq!(s.store.auth_state(), state);

    let mut snap = Vec::new();
    s.store.write_snapshot(&mut snap).unwrap();
    let other = TestStore::new();
    other.apply(user_add("someone-else"));
    other.store.install_snapshot(&mut snap.as_slice()).unwrap();
    assert_eq!(other.store.auth_state(), state);
    let other = other.reopen();
    assert_eq!(other.store.auth_state(), state);

    // A snapshot of a store without auth changes resets the state.
    let fresh = TestStore::new();
    fresh.put("x", "y");
    fresh.put("x", "z");
    fresh.put("x", "w");
    fresh.put("x", "v");
    fresh.put("x", "u");
    let mut snap = Vec::new();
    fresh.store.write_snapshot(&mut snap).unwrap();
    other.store.install_snapshot(&mut snap.as_slice()).unwrap();
    assert_eq!(other.store.auth_state(), crate::mvcc::AuthState::default());
}
