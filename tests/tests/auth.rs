//! etcd's Auth service end to end: etcdctl's `user` and `role` commands and the Auth
//! gRPC requests, on a fresh Bramble and a fresh etcd, outputs compared; users and roles
//! replicated to every member of a 3-member cluster and kept across restarts; the auth
//! flags; and AuthEnable's preconditions (enforcement: tests/auth_enforcement.rs).
//!
//! The reference is etcd 3.6 (with its etcdctl). Where etcd 3.4 answered differently,
//! Bramble answers as 3.6 and the steps are compared with 3.6 (`etcd36_answers_and_auth_enable`):
//! - granting a permission over an inverted range (`/z /x`): 3.4 stored it, 3.6 refuses it
//!   (`etcdserver: invalid auth management`, `isValidPermissionRange`);
//! - `role get root`: 3.6 answers the root permission (everything, read and write), 3.4
//!   the role's stored permissions (none);
//! - a password longer than 72 bytes: 3.6's bcrypt refuses it, 3.4's truncated it.
//!
//! And where etcd fails: a role name over 32 KiB stops etcd 3.4 (bbolt's key limit, a
//! fatal `cannot put key into bucket (key too large)`); Bramble stores it. A permission
//! grant without a permission crashes etcd 3.4 (nil pointer); 3.5 and 3.6 answer
//! `etcdserver: permission not given`, and so does Bramble.

use std::time::Duration;

use bramble_api::authpb::Permission;
use bramble_api::etcdserverpb::auth_client::AuthClient;
use bramble_api::etcdserverpb::*;
use bramble_tests::target::Kind;
use bramble_tests::Cluster;
use bramble_tests::Server;
use tonic::transport::Channel;

/// etcdctl `user` and `role` steps, compared with etcd.
const STEPS: &[&str] = &[
    // A key revision above 1, so the headers show auth changes do not take one.
    "put /k v",
    "put /k v2",
    "user add alice --new-user-password=pw",
    "user add alice --new-user-password=pw",
    "user add --interactive=false bob:secret",
    "user add :x",
    "user add nopw --no-password",
    "user get alice",
    "user get nobody",
    "user list",
    "role add r1",
    "role add r1",
    "role add r2",
    "role grant-permission r1 read /a",
    "role grant-permission r1 readwrite /p --prefix",
    "role grant-permission r1 write /f --from-key",
    "role grant-permission r1 read /x /z",
    "role grant-permission r1 write /x /z",
    "role grant-permission r2 readwrite /b",
    "role grant-permission nobody read /a",
    "role get r1",
    "role get r1 -w json",
    "role get nobody",
    "role list",
    "user grant-role alice r1",
    "user grant-role alice r1",
    "user grant-role alice r2",
    "user grant-role alice nosuch",
    "user grant-role nobody r1",
    "user grant-role alice root",
    "user get alice",
    "user get alice -w json",
    "user revoke-role alice nosuch",
    "user revoke-role alice root",
    "user revoke-role nobody r1",
    "user get alice --detail",
    "role revoke-permission r1 /a",
    "role revoke-permission r1 /a",
    "role revoke-permission r1 /p --prefix",
    "role revoke-permission r1 /f --from-key",
    "role revoke-permission r1 /x",
    "role revoke-permission nobody /a",
    "role get r1",
    "user passwd alice --interactive=false",
    "user passwd nobody --interactive=false",
    "role delete r2",
    "user get alice",
    "role delete r2",
    "user delete bob",
    "user delete bob",
    "user list -w json",
    "role add root",
    "user add root --new-user-password=rootpw",
    "user grant-role root root",
    "user get root",
    "auth disable",
    "user delete root",
    "role delete root",
    "user list",
    "role list",
    "role add jsonrole -w json",
    "user add --interactive=false jsonuser:pw -w json",
    "user grant-role jsonuser jsonrole -w json",
    "role grant-permission jsonrole read /j -w json",
    "user delete jsonuser -w json",
];

#[test]
fn etcdctl_user_and_role_commands_match_etcd() {
    let run = |kind: Kind| {
        let server = Server::start(kind);
        let ctl = server.etcdctl();
        STEPS.iter().map(|l| ctl.step(l, None)).collect::<Vec<_>>()
    };
    let etcd = run(Kind::Etcd);
    let bramble = run(Kind::Bramble);
    for (e, b) in etcd.iter().zip(&bramble) {
        assert_eq!(b, e, "step `{}`: bramble (left) vs etcd (right)", e.line);
    }
    // The transcript did something: errors and successes both occurred.
    assert!(etcd.iter().any(|o| o.code == 0) && etcd.iter().any(|o| o.code != 0));
}

/// What etcd 3.6 answers where 3.4 differed (see the module docs), and AuthEnable's
/// preconditions, compared with etcd 3.6; then the auth revision both report.
#[test]
fn etcd36_answers_and_auth_enable() {
    const STEPS: &[&str] = &[
        "role add r",
        "role grant-permission r read /z /x",
        "role add root",
        "role get root",
        // AuthEnable needs user root with role root (etcd's errors), then enables.
        "auth enable",
        "user add root --new-user-password=x",
        "user grant-role root root",
        "auth enable",
    ];
    let run = |kind: Kind| {
        let server = Server::start(kind);
        let ctl = server.etcdctl();
        let steps: Vec<_> = STEPS.iter().map(|l| ctl.step(l, None)).collect();
        (steps, auth_status_as_root(&server.endpoint()))
    };
    let (etcd, etcd_status) = run(Kind::Etcd);
    let (bramble, bramble_status) = run(Kind::Bramble);
    for (e, b) in etcd.iter().zip(&bramble) {
        assert_eq!(b, e, "step `{}`: bramble (left) vs etcd (right)", e.line);
    }
    let inverted = &bramble[1];
    assert!(
        inverted
            .stderr
            .ends_with("Error: etcdserver: invalid auth management\n"),
        "{inverted:?}"
    );
    assert_eq!(bramble.last().map(|s| s.code), Some(0), "{bramble:?}");
    // 1 at start, then role add r, role add root, user add root, grant-role: 5
    // (enabling does not bump it).
    assert_eq!(bramble_status, (true, 5));
    assert_eq!(bramble_status, etcd_status);
}

/// AuthStatus as root (password `x`): (enabled, auth revision).
fn auth_status_as_root(endpoint: &str) -> (bool, u64) {
    let status = block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let token = AuthClient::new(ch.clone())
            .authenticate(AuthenticateRequest {
                name: "root".into(),
                password: "x".into(),
            })
            .await
            .expect("authenticate")
            .into_inner()
            .token;
        let mut req = tonic::Request::new(AuthStatusRequest {});
        req.metadata_mut()
            .insert("token", token.parse().expect("ascii token"));
        AuthClient::new(ch).auth_status(req).await
    })
    .expect("auth status")
    .into_inner();
    (status.enabled, status.auth_revision)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

async fn auth_client(endpoint: &str) -> AuthClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect");
    AuthClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The code and message of an answer, or `ok`.
fn shown<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

/// Bad inputs at the gRPC level, each answered as etcd does (code and text).
async fn bad_inputs(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut c = auth_client(endpoint).await;
    let huge_name = "r".repeat(16 * 1024);
    let mut out = Vec::new();
    macro_rules! case {
        ($what:expr, $call:expr) => {
            out.push(($what, shown($call.await)));
        };
    }
    case!(
        "user add with an empty name",
        c.user_add(AuthUserAddRequest {
            name: String::new(),
            password: "x".into(),
            ..Default::default()
        })
    );
    case!(
        "user add",
        c.user_add(AuthUserAddRequest {
            name: "u".into(),
            password: "pw".into(),
            ..Default::default()
        })
    );
    case!(
        "user add again",
        c.user_add(AuthUserAddRequest {
            name: "u".into(),
            password: "other".into(),
            ..Default::default()
        })
    );
    case!(
        "user get of an unknown user",
        c.user_get(AuthUserGetRequest {
            name: "ghost".into()
        })
    );
    case!(
        "user delete of an unknown user",
        c.user_delete(AuthUserDeleteRequest {
            name: "ghost".into()
        })
    );
    case!(
        "password change of an unknown user",
        c.user_change_password(AuthUserChangePasswordRequest {
            name: "ghost".into(),
            password: "x".into(),
            ..Default::default()
        })
    );
    case!(
        "grant of an unknown role",
        c.user_grant_role(AuthUserGrantRoleRequest {
            user: "u".into(),
            role: "nosuch".into()
        })
    );
    case!(
        "role add with an empty name",
        c.role_add(AuthRoleAddRequest {
            name: String::new()
        })
    );
    case!(
        "role add with a 16 KiB name",
        c.role_add(AuthRoleAddRequest {
            name: huge_name.clone()
        })
    );
    case!(
        "role get of the 16 KiB name",
        c.role_get(AuthRoleGetRequest {
            role: huge_name.clone()
        })
    );
    case!(
        "grant of the 16 KiB role",
        c.user_grant_role(AuthUserGrantRoleRequest {
            user: "u".into(),
            role: huge_name.clone()
        })
    );
    case!(
        "role get of an unknown role",
        c.role_get(AuthRoleGetRequest {
            role: "ghost".into()
        })
    );
    case!(
        "role delete of an unknown role",
        c.role_delete(AuthRoleDeleteRequest {
            role: "ghost".into()
        })
    );
    case!(
        "permission to an unknown role",
        c.role_grant_permission(AuthRoleGrantPermissionRequest {
            name: "ghost".into(),
            perm: Some(Permission {
                perm_type: 0,
                key: b"k".to_vec(),
                range_end: Vec::new()
            })
        })
    );
    case!(
        "revoke of a permission never granted",
        c.role_revoke_permission(AuthRoleRevokePermissionRequest {
            role: huge_name.clone(),
            key: b"k".to_vec(),
            range_end: Vec::new()
        })
    );
    case!(
        "authenticate while auth is disabled",
        c.authenticate(AuthenticateRequest {
            name: "u".into(),
            password: "pw".into()
        })
    );
    case!(
        "authenticate with a wrong password while auth is disabled",
        c.authenticate(AuthenticateRequest {
            name: "u".into(),
            password: "wrong".into()
        })
    );
    case!(
        "auth disable while disabled",
        c.auth_disable(AuthDisableRequest {})
    );
    let list = c.user_list(AuthUserListRequest {}).await;
    out.push((
        "user list",
        list.map(|r| r.into_inner().users.join(","))
            .unwrap_or_else(|e| e.to_string()),
    ));
    out
}

#[test]
fn bad_inputs_get_etcds_errors() {
    let answers = |kind: Kind| {
        let server = Server::start(kind);
        block_on(bad_inputs(&server.endpoint()))
    };
    let etcd = answers(Kind::Etcd);
    let bramble = answers(Kind::Bramble);
    assert_eq!(bramble.len(), etcd.len());
    for ((what, b), (_, e)) in bramble.iter().zip(&etcd) {
        assert_eq!(b, e, "{what}: bramble (left) vs etcd (right)");
    }
    // A password too long for bcrypt: etcd 3.6 refuses it (3.4 truncated it).
    let server = Server::start(Kind::Bramble);
    let answer = block_on(async {
        let mut c = auth_client(&server.endpoint()).await;
        shown(
            c.user_add(AuthUserAddRequest {
                name: "big".into(),
                password: "p".repeat(1 << 20),
                ..Default::default()
            })
            .await,
        )
    });
    assert_eq!(answer, "Unknown: bcrypt: password length exceeds 72 bytes");
    let answer = block_on(async {
        let mut c = auth_client(&server.endpoint()).await;
        let _ = c.role_add(AuthRoleAddRequest { name: "r".into() }).await;
        shown(
            c.role_grant_permission(AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: None,
            })
            .await,
        )
    });
    assert_eq!(answer, "InvalidArgument: etcdserver: permission not given");
    // A 64 KiB role name (etcd 3.4 dies on it, see the module docs) is stored.
    let name = "r".repeat(64 * 1024);
    let answers = block_on(async {
        let mut c = auth_client(&server.endpoint()).await;
        let added = shown(c.role_add(AuthRoleAddRequest { name: name.clone() }).await);
        let listed = c
            .role_list(AuthRoleListRequest {})
            .await
            .map(|r| r.into_inner().roles);
        (added, listed.ok())
    });
    assert_eq!(
        answers,
        ("ok".to_string(), Some(vec!["r".to_string(), name]))
    );
}

#[test]
fn users_and_roles_replicate_and_survive_restarts() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let first = cluster.member(0).etcdctl();
    for step in [
        "user add carol --new-user-password=pw",
        "role add ops",
        "role grant-permission ops readwrite /ops/ --prefix",
        "user grant-role carol ops",
    ] {
        assert_eq!(first.step(step, None).code, 0, "{step}");
    }
    let check = |cluster: &Cluster| {
        for i in 0..cluster.len() {
            let ctl = cluster.member(i).etcdctl();
            assert_eq!(
                ctl.step("user get carol", None).stdout,
                "User: carol\nRoles: ops\n",
                "member {i}"
            );
            assert_eq!(
                ctl.step("role get ops", None).stdout,
                "Role ops\nKV Read:\n\t[/ops/, /ops0) (prefix /ops/)\nKV Write:\n\t[/ops/, /ops0) (prefix /ops/)\n",
                "member {i}"
            );
            let status = block_on(async {
                let mut c = auth_client(&cluster.member(i).endpoint()).await;
                c.auth_status(AuthStatusRequest {}).await
            })
            .expect("auth status")
            .into_inner();
            assert_eq!(
                (status.enabled, status.auth_revision),
                (false, 5),
                "member {i}"
            );
        }
    };
    check(&cluster);
    cluster.restart_all();
    check(&cluster);
    // A change made after the restart, on another member, reaches every member.
    let last = cluster.member(2).etcdctl();
    assert_eq!(last.step("user delete carol", None).code, 0);
    for i in 0..cluster.len() {
        let out = &cluster.member(i).etcdctl().step("user list", None);
        assert_eq!(out.stdout, "", "member {i}");
    }
}
