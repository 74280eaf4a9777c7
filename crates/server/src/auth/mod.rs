//! etcd's Auth service: users, roles, permissions and tokens (etcd's
//! `v3rpc/auth.go` over `etcdserver/v3_server.go`).
//!
//! Changes go through Raft as [`Command`] ops and are applied by the auth store
//! (`bramble_storage::mvcc`'s `auth`); UserAdd and UserChangePassword are hashed
//! here first, with bcrypt on a blocking thread, and only the hash is proposed
//! (etcd 3.6 does the same: the plaintext never enters the log). Reads (UserGet,
//! UserList, RoleGet, RoleList, AuthStatus) wait for a read barrier and read the
//! local auth state: etcd proposes them through its log, which orders them the
//! same way against changes.
//!
//! **Enforcement** follows etcd 3.6: every service asks [`who`] who is asking (a
//! simple token, or the client certificate's common name with
//! `--client-cert-auth`); writes carry that user and the auth revision it was
//! checked at in their raft command and are checked at apply on every member
//! (`bramble_storage::mvcc`'s auth `check`, etcd's `authApplierV3`), reads are
//! checked against the local store (etcd's `doSerialize`), and the admin-only
//! requests of the Auth, Maintenance, Cluster and KV (Compact) services need role
//! root. [`ENFORCEMENT_IMPLEMENTED`] stays as the fuse that refuses AuthEnable
//! should a service ever be found unchecked.
//!
//! Simple tokens are issued by a raft entry (etcd's InternalAuthenticateRequest,
//! without the password), so every member knows every token.

mod options;
mod service;
mod token;
pub mod who;

use std::sync::Arc;

use bramble_api::bramblepb::Command;
use tokio::sync::Semaphore;

pub use options::{
    check_bcrypt_cost, parse_auth_token, AuthOptions, TokenKind, DEFAULT_BCRYPT_COST,
    DEFAULT_TOKEN_TTL_SECS, MAX_BCRYPT_COST, MIN_BCRYPT_COST,
};
pub use service::AuthService;

/// Whether every service checks permissions. Until it does, AuthEnable is
/// refused: enabling auth without enforcing it would be a security hole.
pub const ENFORCEMENT_IMPLEMENTED: bool = true;

/// bcrypt computations running at once on this member: Authenticate floods must
/// not take every blocking thread (each verification costs ~50-100 ms of CPU at
/// cost 10 on a Pi).
const MAX_CONCURRENT_BCRYPT: usize = 2;

/// The longest password bcrypt hashes (Go's bcrypt refuses longer ones, and so
/// does etcd 3.6: `bcrypt: password length exceeds 72 bytes`).
pub const MAX_PASSWORD_BYTES: usize = 72;

/// The auth state of a member that is not in the store: options, tokens, and
/// the bound on concurrent bcrypt work.
pub struct Auth {
    options: AuthOptions,
    bcrypt: Arc<Semaphore>,
}

impl Auth {
    /// The auth of a member with `options`.
    pub fn new(options: AuthOptions) -> Self {
        Auth {
            options,
            bcrypt: Arc::new(Semaphore::new(MAX_CONCURRENT_BCRYPT)),
        }
    }

    /// The options.
    pub fn options(&self) -> &AuthOptions {
        &self.options
    }

    /// Runs a bcrypt computation on a blocking thread, at most
    /// [`MAX_CONCURRENT_BCRYPT`] at once.
    async fn bcrypt<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tonic::Status> {
        let permit = self
            .bcrypt
            .clone()
            .acquire_owned()
            .await
            .map_err(crate::errors::internal)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(crate::errors::internal)
    }

    /// The bcrypt hash of `password`, base64 as etcd's `hashedPassword`.
    async fn hash(&self, password: String) -> Result<String, tonic::Status> {
        use base64::Engine;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(crate::errors::password_too_long());
        }
        let cost = self.options.bcrypt_cost;
        let hash = self
            .bcrypt(move || bcrypt::hash(password, cost))
            .await?
            .map_err(crate::errors::internal)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(hash))
    }

    /// Whether `password` matches the stored bcrypt `hash`.
    async fn verify(&self, password: String, hash: Vec<u8>) -> Result<bool, tonic::Status> {
        self.bcrypt(move || {
            std::str::from_utf8(&hash)
                .ok()
                .and_then(|h| bcrypt::verify(password, h).ok())
                .unwrap_or(false)
        })
        .await
    }
}

/// A command holding one auth op.
fn command(op: bramble_api::bramblepb::command::Op) -> Command {
    Command {
        auth: None,
        op: Some(op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// A hash made by Go's `bcrypt.GenerateFromPassword([]byte("etcd-pw"), 4)` (what
    /// etcd stores, and what a migration from etcd brings along).
    const GO_HASH: &str = "$2a$04$dkpz3cyRFtpOtLuh8mBG/e/vvZcscRO/IH1zHm/nzramLfPz3Ur1m";

    #[tokio::test]
    async fn hashes_verify_and_etcds_hashes_too() {
        let auth = Auth::new(AuthOptions {
            bcrypt_cost: 4,
            ..Default::default()
        });
        assert!(auth.verify("etcd-pw".into(), GO_HASH.into()).await.unwrap());
        assert!(!auth.verify("etcd-pW".into(), GO_HASH.into()).await.unwrap());
        assert!(!auth
            .verify("x".into(), b"not a hash".to_vec())
            .await
            .unwrap());
        let encoded = auth.hash("pw".into()).await.unwrap();
        let hash = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert!(hash.starts_with(b"$2b$04$"), "{hash:?}");
        assert!(auth.verify("pw".into(), hash.clone()).await.unwrap());
        assert!(!auth.verify("pw2".into(), hash).await.unwrap());
        // 72 bytes is bcrypt's limit; more is refused, as etcd 3.6 does.
        assert!(auth.hash("p".repeat(MAX_PASSWORD_BYTES)).await.is_ok());
        let err = auth
            .hash("p".repeat(MAX_PASSWORD_BYTES + 1))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "bcrypt: password length exceeds 72 bytes");
    }
}
