//! Who is asking (etcd's `EtcdServer.AuthInfoFromCtx`): the one place every service
//! turns a request's credentials into the user its permissions are checked as.
//!
//! With auth disabled nobody is anybody: `None`, and every check passes. With auth
//! enabled: the simple token in the `token` metadata key (etcd's clients), or
//! `authorization` (etcd's gRPC gateway), with an optional `Bearer ` prefix; an
//! unknown or expired token is `etcdserver: invalid auth token`. Without a token, and
//! with `--client-cert-auth`, the common name of the client's verified certificate is
//! the user, at the current auth revision (etcd's `AuthInfoFromTLS`), unless the
//! request came through etcd's gRPC gateway (`grpcgateway-accept`), whose certificate
//! is the gateway's own. Otherwise `None`: the checks then fail with `etcdserver:
//! user name is empty`.

use bramble_api::bramblepb::AuthHeader;
use bramble_storage::mvcc::{AuthError, AuthInfo, MvccStore};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::errors::auth_status;

/// The metadata keys a token may come in (etcd's `TokenFieldNameGRPC` and
/// `TokenFieldNameSwagger`).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// The metadata keys that carry credentials (tokens, and the gateway's mark).
pub(crate) const CREDENTIAL_KEYS: [&str; 3] = ["token", "authorization", "grpcgateway-accept"];

/// The credentials of a request, taken from it before it is consumed.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<Result<String, ()>>,
    common_name: Option<String>,
    via_gateway: bool,
}

impl Credentials {
    /// The credentials `req` carries.
    pub fn of<T>(req: &tonic::Request<T>) -> Credentials {
        Self::from_parts(
            req.metadata(),
            req.extensions().get::<bramble_tls::ConnInfo>(),
        )
    }

    /// The credentials in `metadata`, on the connection `conn`.
    pub fn from_parts(metadata: &MetadataMap, conn: Option<&bramble_tls::ConnInfo>) -> Credentials {
        let token = TOKEN_KEYS.iter().find_map(|k| metadata.get(*k)).map(|v| {
            v.to_str()
                .map(|s| s.strip_prefix("Bearer ").unwrap_or(s).to_owned())
                .map_err(|_| ())
        });
        Credentials {
            token,
            common_name: conn.and_then(|c| c.common_name.clone()),
            via_gateway: metadata.contains_key("grpcgateway-accept"),
        }
    }
}

impl Credentials {
    /// The raft index a simple token names (`<letters>.<index>`), if it has the
    /// token's shape.
    pub(crate) fn token_index(&self) -> Option<u64> {
        let Some(Ok(token)) = &self.token else {
            return None;
        };
        let (_, index) = token.split_once('.')?;
        index.parse().ok()
    }
}

/// etcd's `AuthInfoFromCtx` against `store` (see the module docs);
/// `client_cert_auth` is `--client-cert-auth`.
pub fn auth_info(
    store: &MvccStore,
    creds: &Credentials,
    client_cert_auth: bool,
) -> Result<Option<AuthInfo>, AuthError> {
    if !store.auth_enabled() {
        return Ok(None);
    }
    match &creds.token {
        Some(Ok(token)) => {
            return store
                .auth_token_info(token)
                .map(Some)
                .ok_or(AuthError::InvalidAuthToken)
        }
        Some(Err(())) => return Err(AuthError::InvalidAuthToken),
        None => {}
    }
    if !client_cert_auth || creds.via_gateway {
        return Ok(None);
    }
    Ok(creds.common_name.as_ref().map(|cn| AuthInfo {
        user: cn.clone(),
        revision: store.auth_revision(),
    }))
}

/// The header a client's proposal carries: its user and auth revision, empty for
/// none (which every check refuses while auth is enabled, as etcd's empty header).
pub fn header(info: Option<&AuthInfo>) -> AuthHeader {
    match info {
        Some(i) => AuthHeader {
            username: i.user.clone(),
            auth_revision: i.revision,
        },
        None => AuthHeader::default(),
    }
}

/// Who asks, or nobody: the empty user etcd's checks get when no credentials came
/// (`&auth.AuthInfo{}`).
pub fn or_empty(info: Option<AuthInfo>) -> AuthInfo {
    info.unwrap_or(AuthInfo {
        user: String::new(),
        revision: 0,
    })
}

/// etcd's `requireAuthInfo`: with auth enabled, a request without a user is
/// `etcdserver: user name is empty`.
pub fn require(store: &MvccStore, info: Option<&AuthInfo>) -> Result<(), Status> {
    if store.auth_enabled() && info.is_none() {
        return Err(auth_status(AuthError::UserEmpty));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_either_key_with_or_without_bearer() {
        for (key, value, want) in [
            ("token", "abc.1", "abc.1"),
            ("authorization", "Bearer abc.2", "abc.2"),
            ("token", "Bearer abc.3", "abc.3"),
        ] {
            let mut md = MetadataMap::new();
            md.insert(key, value.parse().unwrap());
            let c = Credentials::from_parts(&md, None);
            assert_eq!(c.token, Some(Ok(want.to_owned())), "{key}: {value}");
        }
        let mut md = MetadataMap::new();
        md.insert("grpcgateway-accept", "x".parse().unwrap());
        let conn = bramble_tls::ConnInfo {
            remote_addr: None,
            common_name: Some("cn".into()),
        };
        let c = Credentials::from_parts(&md, Some(&conn));
        assert!(c.via_gateway && c.token.is_none());
        assert_eq!(c.common_name.as_deref(), Some("cn"));
    }
}
