//! Authenticate and simple tokens on a real in-process member (issued through raft, so
//! kept by the store), changes refused without an admin's token, and the plaintext of a
//! password never reaching the data dir.

use bramble::{Node, NodeOptions};
use bramble_api::etcdserverpb::auth_server::Auth;
use bramble_api::etcdserverpb::*;
use bramble_server::auth::AuthService;
use bramble_storage::mvcc::AuthInfo;
use tonic::{Code, Request};

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle)
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_tokens_and_no_plaintext_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = NodeOptions::new(dir.path());
    opts.auth.bcrypt_cost = 4;
    let node = Node::open(opts).await.expect("open");
    let ctx = node.context().clone();
    let svc = AuthService::new(ctx.clone());
    let secret = "plaintext-Zq9xK2-never-stored";
    for (name, password, no_password) in [("root", secret, false), ("np", "", true)] {
        svc.user_add(Request::new(AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            options: Some(bramble_api::authpb::UserAddOptions { no_password }),
            ..Default::default()
        }))
        .await
        .expect("user add");
    }
    svc.role_add(Request::new(AuthRoleAddRequest {
        name: "root".into(),
    }))
    .await
    .expect("role add");
    svc.user_grant_role(Request::new(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    }))
    .await
    .expect("grant");
    let hash = ctx
        .node
        .store()
        .auth_state()
        .user("root")
        .expect("root")
        .password
        .clone();
    assert!(hash.starts_with(b"$2"), "a bcrypt hash: {hash:?}");

    // Disabled: etcd's answer, whatever the password.
    let err = svc
        .authenticate(Request::new(AuthenticateRequest {
            name: "root".into(),
            password: secret.into(),
        }))
        .await
        .expect_err("auth is disabled");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled"
        )
    );
    // Enabled through the service (no token needed while disabled).
    svc.auth_enable(Request::new(AuthEnableRequest {}))
        .await
        .expect("auth enable");
    assert!(ctx.node.store().auth_enabled());
    let authenticate = |name: &str, password: &str| {
        svc.authenticate(Request::new(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        }))
    };
    let token = authenticate("root", secret)
        .await
        .expect("right password")
        .into_inner()
        .token;
    let (prefix, index) = token.split_once('.').expect("simple token");
    assert_eq!(prefix.len(), 16);
    assert!(index.parse::<u64>().is_ok(), "{token}");
    let revision = ctx.node.store().auth_revision();
    assert_eq!(
        ctx.node.store().auth_token_info(&token),
        Some(AuthInfo {
            user: "root".into(),
            revision
        })
    );
    assert_eq!(ctx.node.store().auth_token_info("bogus.1"), None);
    // With auth enabled, changes need an admin's token.
    let with_token = |token: &str, req: AuthUserChangePasswordRequest| {
        let mut req = Request::new(req);
        req.metadata_mut()
            .insert("token", token.parse().expect("ascii token"));
        req
    };
    let err = svc
        .user_change_password(Request::new(AuthUserChangePasswordRequest {
            name: "root".into(),
            password: "new-pw".into(),
            ..Default::default()
        }))
        .await
        .expect_err("no token");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "etcdserver: user name is empty")
    );
    let err = svc
        .user_change_password(with_token(
            "bogus.1",
            AuthUserChangePasswordRequest {
                name: "root".into(),
                password: "new-pw".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad token");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, "etcdserver: invalid auth token")
    );
    for (name, password, code, text) in [
        (
            "root",
            "wrong",
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            "ghost",
            secret,
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            "np",
            "",
            Code::Unknown,
            "auth: authentication failed, password was given for no password user",
        ),
    ] {
        let err = authenticate(name, password).await.expect_err(name);
        assert_eq!((err.code(), err.message()), (code, text), "{name}");
    }
    // A password change forgets the user's tokens.
    svc.user_change_password(with_token(
        &token,
        AuthUserChangePasswordRequest {
            name: "root".into(),
            password: "new-pw".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("passwd");
    assert_eq!(ctx.node.store().auth_token_info(&token), None);
    let token = authenticate("root", "new-pw")
        .await
        .expect("new password")
        .into_inner()
        .token;
    // While enabled, root stays.
    let mut delete = Request::new(AuthUserDeleteRequest {
        name: "root".into(),
    });
    delete
        .metadata_mut()
        .insert("token", token.parse().expect("ascii token"));
    let err = svc
        .user_delete(delete)
        .await
        .expect_err("root is protected");
    assert_eq!(err.message(), "etcdserver: invalid auth management");

    let hash = ctx
        .node
        .store()
        .auth_state()
        .user("root")
        .expect("root")
        .password
        .clone();
    drop(svc);
    drop(ctx);
    node.close().await;
    drop(node);
    assert!(
        !files_contain(dir.path(), secret.as_bytes()),
        "the plaintext password reached the data dir"
    );
    // The current hash is in the store (the check can see what it looks for).
    assert!(files_contain(dir.path(), &hash), "the hash is stored");

    // A data dir with auth enabled is served with auth still enabled.
    let mut opts = NodeOptions::new(dir.path());
    opts.auth.bcrypt_cost = 4;
    let node = Node::open(opts).await.expect("reopen");
    assert!(node.context().node.store().auth_enabled());
    node.close().await;
}
