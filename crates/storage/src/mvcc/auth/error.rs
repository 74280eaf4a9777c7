//! Errors of the auth store, with etcd's gRPC texts (`rpctypes/error.go`): clients
//! match on them. The server crate maps each to etcd's status code.

use thiserror::Error;

/// An error of an auth request (etcd's `auth.Err*`, as its gRPC layer words them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// AuthEnable without a user named `root`.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while user `root` lacks role `root`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// UserAdd with an empty name; also a permission check without a user.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// A request naming a user that does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// A request naming a role that does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// RoleAdd with an empty name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Authenticate with an unknown user or a wrong password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// RoleGrantPermission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// A request the user's roles do not allow.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that is unknown or expired.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// A change that would lock root out (while enabled), or an invalid permission
    /// range.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// A token issued before the last auth change.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// Authenticate as a user created with `no_password`, or a hashed password that is
    /// not base64 (etcd's `ErrNoPasswordUser`, which its gRPC layer does not map: its
    /// text reaches clients as is, with code Unknown).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
}
