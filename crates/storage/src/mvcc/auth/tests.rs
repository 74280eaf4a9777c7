//! The rules of each auth change and their errors (etcd's `auth/store_test.go`
//! cases), applied to the state directly.

use base64::Engine;
use bramble_api::authpb::permission::Type as PermType;
use bramble_api::authpb::{Permission, UserAddOptions};
use bramble_api::bramblepb::command::Op;
use bramble_api::etcdserverpb::*;

use super::{AuthError, AuthInfo, AuthState, ROOT};

fn hashed(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn user_add(name: &str) -> Op {
    Op::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: hashed("$2a$04$fakehash"),
        ..Default::default()
    })
}

fn role_add(name: &str) -> Op {
    Op::AuthRoleAdd(AuthRoleAddRequest { name: name.into() })
}

fn grant_role(user: &str, role: &str) -> Op {
    Op::AuthUserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn revoke_role(user: &str, role: &str) -> Op {
    Op::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
        name: user.into(),
        role: role.into(),
    })
}

fn grant_perm(role: &str, t: PermType, key: &str, end: &[u8]) -> Op {
    Op::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }),
    })
}

fn run(s: &mut AuthState, op: Op) -> Result<bool, AuthError> {
    s.apply(&op).expect("an auth change")
}

fn enable() -> Op {
    Op::AuthEnable(AuthEnableRequest {})
}

#[test]
fn users_and_their_errors() {
    let mut s = AuthState::default();
    assert_eq!(s.revision, 1);
    assert_eq!(run(&mut s, user_add("")), Err(AuthError::UserEmpty));
    assert_eq!(run(&mut s, user_add("u")), Ok(true));
    assert_eq!(s.revision, 2);
    assert_eq!(run(&mut s, user_add("u")), Err(AuthError::UserAlreadyExist));
    assert_eq!(s.user("u").unwrap().password, b"$2a$04$fakehash");
    assert_eq!(s.user_names(), vec!["u".to_string()]);
    assert_eq!(s.user_get("nope"), Err(AuthError::UserNotFound));
    // A hashed password that is not base64.
    let bad = Op::AuthUserAdd(AuthUserAddRequest {
        name: "v".into(),
        hashed_password: "!!".into(),
        ..Default::default()
    });
    assert_eq!(run(&mut s, bad), Err(AuthError::NoPasswordUser));
    // no_password users store no hash.
    let nopw = Op::AuthUserAdd(AuthUserAddRequest {
        name: "np".into(),
        options: Some(UserAddOptions { no_password: true }),
        hashed_password: hashed("ignored"),
        ..Default::default()
    });
    assert_eq!(run(&mut s, nopw), Ok(true));
    assert!(s.user("np").unwrap().password.is_empty());
    let chpw = |name: &str| {
        Op::AuthUserChangePassword(AuthUserChangePasswordRequest {
            name: name.into(),
            hashed_password: hashed("new"),
            ..Default::default()
        })
    };
    assert_eq!(run(&mut s, chpw("nope")), Err(AuthError::UserNotFound));
    assert_eq!(run(&mut s, chpw("u")), Ok(true));
    assert_eq!(s.user("u").unwrap().password, b"new");
    let del = |name: &str| Op::AuthUserDelete(AuthUserDeleteRequest { name: name.into() });
    assert_eq!(run(&mut s, del("nope")), Err(AuthError::UserNotFound));
    let rev = s.revision;
    assert_eq!(run(&mut s, del("u")), Ok(true));
    assert_eq!(s.revision, rev + 1);
    assert!(s.user("u").is_none());
}

#[test]
fn roles_grants_and_revokes() {
    let mut s = AuthState::default();
    assert_eq!(run(&mut s, role_add("")), Err(AuthError::RoleEmpty));
    assert_eq!(run(&mut s, role_add("r")), Ok(true));
    assert_eq!(run(&mut s, role_add("r")), Err(AuthError::RoleAlreadyExist));
    run(&mut s, user_add("u")).unwrap();
    assert_eq!(
        run(&mut s, grant_role("nope", "r")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        run(&mut s, grant_role("u", "nope")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(run(&mut s, grant_role("u", "r")), Ok(true));
    // Granting again changes nothing and does not bump the revision.
    let rev = s.revision;
    assert_eq!(run(&mut s, grant_role("u", "r")), Ok(false));
    assert_eq!(s.revision, rev);
    // Role root may be granted before it exists (etcd).
    assert_eq!(run(&mut s, grant_role("u", ROOT)), Ok(true));
    assert_eq!(
        s.user_get("u").unwrap(),
        vec!["r".to_string(), "root".to_string()]
    );
    assert_eq!(
        run(&mut s, revoke_role("u", "x")),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(
        run(&mut s, revoke_role("nope", "r")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(run(&mut s, revoke_role("u", ROOT)), Ok(true));

    // Permissions: sorted by key, the same range replaces the type.
    assert_eq!(
        run(&mut s, grant_perm("nope", PermType::Read, "a", b"")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        run(&mut s, grant_perm("r", PermType::Read, "", b"")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        run(&mut s, grant_perm("r", PermType::Read, "b", b"a")),
        Err(AuthError::InvalidAuthMgmt)
    );
    let no_perm = Op::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: None,
    });
    assert_eq!(run(&mut s, no_perm), Err(AuthError::PermissionNotGiven));
    run(&mut s, grant_perm("r", PermType::Write, "m", b"")).unwrap();
    run(&mut s, grant_perm("r", PermType::Read, "a", b"c")).unwrap();
    run(&mut s, grant_perm("r", PermType::Readwrite, "a", b"c")).unwrap();
    run(&mut s, grant_perm("r", PermType::Read, "z", b"\0")).unwrap();
    let perms = s.role_get("r").unwrap();
    let shown: Vec<(i32, &[u8], &[u8])> = perms
        .iter()
        .map(|p| (p.perm_type, p.key.as_slice(), p.range_end.as_slice()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (PermType::Readwrite as i32, &b"a"[..], &b"c"[..]),
            (PermType::Write as i32, b"m", b""),
            (PermType::Read as i32, b"z", b"\0"),
        ]
    );
    let revoke = |role: &str, key: &str, end: &[u8]| {
        Op::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: role.into(),
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        })
    };
    assert_eq!(
        run(&mut s, revoke("nope", "a", b"c")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        run(&mut s, revoke("r", "a", b"")),
        Err(AuthError::PermissionNotGranted)
    );
    assert_eq!(run(&mut s, revoke("r", "a", b"c")), Ok(true));
    assert_eq!(s.role_get("r").unwrap().len(), 2);

    // Deleting a role takes it from every user.
    let del = |name: &str| Op::AuthRoleDelete(AuthRoleDeleteRequest { role: name.into() });
    assert_eq!(run(&mut s, del("nope")), Err(AuthError::RoleNotFound));
    assert_eq!(run(&mut s, del("r")), Ok(true));
    assert!(s.user_get("u").unwrap().is_empty());
    assert_eq!(s.role_get("r"), Err(AuthError::RoleNotFound));
}

#[test]
fn enable_needs_root_with_role_root_and_protects_it() {
    let mut s = AuthState::default();
    assert_eq!(run(&mut s, enable()), Err(AuthError::RootUserNotExist));
    run(&mut s, user_add(ROOT)).unwrap();
    assert_eq!(run(&mut s, enable()), Err(AuthError::RootRoleNotExist));
    run(&mut s, role_add(ROOT)).unwrap();
    run(&mut s, grant_role(ROOT, ROOT)).unwrap();
    let rev = s.revision;
    assert_eq!(run(&mut s, enable()), Ok(true));
    assert!(s.enabled);
    // Enabling does not bump the revision; enabling again is a no-op.
    assert_eq!(s.revision, rev);
    assert_eq!(run(&mut s, enable()), Ok(false));
    // Role root shows etcd's root permission.
    assert_eq!(
        s.role_get(ROOT).unwrap(),
        vec![Permission {
            perm_type: PermType::Readwrite as i32,
            key: vec![],
            range_end: vec![0]
        }]
    );
    // While enabled, root cannot be deleted or lose its role, nor the role deleted.
    let del_user = Op::AuthUserDelete(AuthUserDeleteRequest { name: ROOT.into() });
    assert_eq!(
        run(&mut s, del_user.clone()),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        run(&mut s, revoke_role(ROOT, ROOT)),
        Err(AuthError::InvalidAuthMgmt)
    );
    let del_role = Op::AuthRoleDelete(AuthRoleDeleteRequest { role: ROOT.into() });
    assert_eq!(
        run(&mut s, del_role.clone()),
        Err(AuthError::InvalidAuthMgmt)
    );
    // Disabling bumps the revision; then root can go.
    assert_eq!(
        run(&mut s, Op::AuthDisable(AuthDisableRequest {})),
        Ok(true)
    );
    assert_eq!(s.revision, rev + 1);
    assert_eq!(
        run(&mut s, Op::AuthDisable(AuthDisableRequest {})),
        Ok(false)
    );
    assert_eq!(run(&mut s, del_role), Ok(true));
    assert_eq!(run(&mut s, del_user), Ok(true));
}

#[test]
fn permission_checks() {
    let mut s = AuthState::default();
    let info = |user: &str, revision| AuthInfo {
        user: user.into(),
        revision,
    };
    // Disabled: everything is allowed, even for nobody.
    assert_eq!(
        s.check_permitted(&info("x", 0), b"k", b"", PermType::Write),
        Ok(())
    );
    assert_eq!(s.is_admin(None), Ok(()));
    assert_eq!(s.password_hash("x"), Err(AuthError::AuthNotEnabled));
    for op in [
        user_add(ROOT),
        grant_role(ROOT, ROOT),
        user_add("u"),
        role_add("r1"),
        role_add("r2"),
        grant_perm("r1", PermType::Read, "a", b"c"),
        grant_perm("r2", PermType::Read, "c", b"e"),
        grant_perm("r2", PermType::Write, "w", b""),
        grant_role("u", "r1"),
        grant_role("u", "r2"),
        enable(),
    ] {
        run(&mut s, op).unwrap();
    }
    let rev = s.revision;
    let u = info("u", rev);
    assert_eq!(s.check_permitted(&u, b"b", b"", PermType::Read), Ok(()));
    // The union of both roles' ranges covers [a, e).
    assert_eq!(s.check_permitted(&u, b"a", b"e", PermType::Read), Ok(()));
    assert_eq!(
        s.check_permitted(&u, b"a", b"f", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.check_permitted(&u, b"b", b"", PermType::Write),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.check_permitted(&u, b"w", b"", PermType::Write), Ok(()));
    assert_eq!(
        s.check_permitted(&info("u", rev - 1), b"b", b"", PermType::Read),
        Err(AuthError::AuthOldRevision)
    );
    assert_eq!(
        s.check_permitted(&info("u", 0), b"b", b"", PermType::Read),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(
        s.check_permitted(&info("ghost", rev), b"b", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    // Root may do anything.
    assert_eq!(
        s.check_permitted(&info(ROOT, rev), b"\0", b"\0", PermType::Write),
        Ok(())
    );
    assert_eq!(s.is_admin(Some(&info(ROOT, rev))), Ok(()));
    assert_eq!(s.is_admin(Some(&u)), Err(AuthError::PermissionDenied));
    assert_eq!(s.is_admin(None), Err(AuthError::UserEmpty));
    assert_eq!(
        s.is_admin(Some(&info("ghost", rev))),
        Err(AuthError::UserNotFound)
    );
    // Passwords: the stored hash with the revision; unknown users fail.
    assert_eq!(s.password_hash("u").unwrap().1, rev);
    assert_eq!(s.password_hash("ghost"), Err(AuthError::AuthFailed));
}

#[test]
fn error_texts_are_etcds() {
    assert_eq!(
        AuthError::RootUserNotExist.to_string(),
        "etcdserver: root user does not exist"
    );
    assert_eq!(
        AuthError::RootRoleNotExist.to_string(),
        "etcdserver: root user does not have root role"
    );
    assert_eq!(
        AuthError::UserNotFound.to_string(),
        "etcdserver: user name not found"
    );
    assert_eq!(
        AuthError::AuthFailed.to_string(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    assert_eq!(
        AuthError::PermissionNotGranted.to_string(),
        "etcdserver: permission is not granted to the role"
    );
}

/// A state with auth enabled, root, and user `r` who may read `/r/` (prefix) only,
/// and user `w` who may write key `w` only.
fn enforcing() -> AuthState {
    let mut s = AuthState::default();
    for op in [
        user_add(ROOT),
        grant_role(ROOT, ROOT),
        user_add("r"),
        role_add("reader"),
        grant_perm("reader", PermType::Read, "/r/", b"/r0"),
        grant_role("r", "reader"),
        user_add("w"),
        role_add("writer"),
        grant_perm("writer", PermType::Write, "w", b""),
        grant_role("w", "writer"),
        enable(),
    ] {
        run(&mut s, op).expect("setup");
    }
    s
}

fn as_user(s: &AuthState, user: &str, op: Op) -> bramble_api::bramblepb::Command {
    bramble_api::bramblepb::Command {
        auth: Some(bramble_api::bramblepb::AuthHeader {
            username: user.into(),
            auth_revision: s.revision,
        }),
        op: Some(op),
    }
}

fn put(key: &str, prev_kv: bool, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        prev_kv,
        lease,
        ..Default::default()
    }
}

fn range_op(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

#[test]
fn commands_are_checked_as_etcds_auth_applier() {
    use super::super::lease::LeaseTable;
    let s = enforcing();
    let no_leases = LeaseTable::default();
    let check = |user: &str, op: Op| s.check_command(&as_user(&s, user, op), &no_leases);
    let denied = Err(AuthError::PermissionDenied);
    // Put: write on the key; prev_kv also needs read.
    assert_eq!(check("w", Op::Put(put("w", false, 0))), Ok(()));
    assert_eq!(check("w", Op::Put(put("w", true, 0))), denied);
    assert_eq!(check("r", Op::Put(put("/r/a", false, 0))), denied);
    assert_eq!(check(ROOT, Op::Put(put("/r/a", true, 0))), Ok(()));
    // No user, an unknown user, an old revision.
    let mut empty = as_user(&s, "", Op::Put(put("w", false, 0)));
    empty.auth = Some(Default::default());
    assert_eq!(
        s.check_command(&empty, &no_leases),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(check("ghost", Op::Put(put("w", false, 0))), denied);
    let mut old = as_user(&s, "w", Op::Put(put("w", false, 0)));
    old.auth.as_mut().unwrap().auth_revision -= 1;
    assert_eq!(
        s.check_command(&old, &no_leases),
        Err(AuthError::AuthOldRevision)
    );
    // A member's own command (no header) runs as root.
    let internal = bramble_api::bramblepb::Command {
        auth: None,
        op: Some(Op::Put(put("x", false, 0))),
    };
    assert_eq!(s.check_command(&internal, &no_leases), Ok(()));
    // Delete range: write on the range, prev_kv read.
    let del = |key: &str, end: &str, prev_kv| {
        Op::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv,
        })
    };
    assert_eq!(check("w", del("w", "", false)), Ok(()));
    assert_eq!(check("w", del("w", "w\0", false)), Ok(()));
    assert_eq!(check("w", del("w", "x", false)), denied);
    assert_eq!(check("w", del("w", "", true)), denied);
    // Txn: compares need read, ops by kind, nested txns too.
    let txn = |compare_key: &str, success: Vec<RequestOp>| {
        Op::Txn(TxnRequest {
            compare: vec![Compare {
                key: compare_key.into(),
                ..Default::default()
            }],
            success,
            failure: vec![],
        })
    };
    assert_eq!(
        check("r", txn("/r/a", vec![range_op("/r/", "/r0")])),
        Ok(())
    );
    assert_eq!(check("r", txn("/s", vec![])), denied);
    assert_eq!(check("r", txn("/r/a", vec![range_op("/r/", "/s")])), denied);
    assert_eq!(check("r", txn("/r/a", vec![range_op("/r/", "\0")])), denied);
    let nested = RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![range_op("/secret", "")],
        })),
    };
    assert_eq!(check("r", txn("/r/a", vec![nested])), denied);
    let nested_put = RequestOp {
        request: Some(request_op::Request::RequestPut(put("/r/a", false, 0))),
    };
    assert_eq!(check("r", txn("/r/a", vec![nested_put])), denied);
    // Admin-only changes.
    assert_eq!(check("w", role_add("x")), denied);
    assert_eq!(check(ROOT, role_add("x")), Ok(()));
    // Disabled: nothing is checked.
    let mut off = s.clone();
    run(&mut off, Op::AuthDisable(AuthDisableRequest {})).unwrap();
    assert_eq!(
        off.check_command(&as_user(&off, "r", Op::Put(put("w", false, 0))), &no_leases),
        Ok(())
    );
}

#[test]
fn lease_keys_are_checked_as_etcds_check_lease_puts() {
    use super::super::lease::LeaseTable;
    let s = enforcing();
    let mut leases = LeaseTable::build(
        [(7, 60), (8, 60)].into_iter().collect(),
        [(b"/secret".to_vec(), 7), (b"w".to_vec(), 8)]
            .into_iter()
            .collect(),
    );
    leases.attach(b"w", 8);
    let check = |user: &str, op: Op| s.check_command(&as_user(&s, user, op), &leases);
    let denied = Err(AuthError::PermissionDenied);
    // Attaching to a lease whose keys the user cannot write, or revoking it.
    assert_eq!(check("w", Op::Put(put("w", false, 7))), denied);
    assert_eq!(check("w", Op::Put(put("w", false, 8))), Ok(()));
    assert_eq!(
        check("w", Op::LeaseRevoke(LeaseRevokeRequest { id: 7 })),
        denied
    );
    assert_eq!(
        check("w", Op::LeaseRevoke(LeaseRevokeRequest { id: 8 })),
        Ok(())
    );
    assert_eq!(
        check(ROOT, Op::LeaseRevoke(LeaseRevokeRequest { id: 7 })),
        Ok(())
    );
    // A lease that does not exist: nothing to check (the apply reports it).
    assert_eq!(
        check("r", Op::LeaseRevoke(LeaseRevokeRequest { id: 9 })),
        Ok(())
    );
    // Read for time-to-live.
    let info = AuthInfo {
        user: "r".into(),
        revision: s.revision,
    };
    assert_eq!(
        s.check_lease_keys(&info, 7, &leases, PermType::Read),
        denied
    );
}
