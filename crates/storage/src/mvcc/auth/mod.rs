//! etcd's auth store (`server/auth/store.go`): users, roles, their key permissions,
//! whether auth is enabled, and the auth revision, replicated through raft and
//! applied in log order on every member.
//!
//! The whole state is one row of the raft table, `auth` (an [`AuthRecord`], see
//! [`super::schema`]), rewritten by each change in the transaction that stores the
//! applied index, so it survives restarts and travels in snapshots with the other
//! raft rows. Auth changes are rare and the state is small (a user is its name, a
//! bcrypt hash and role names), so one row is simpler than etcd's buckets and costs
//! little.
//!
//! The auth revision starts at 1 (etcd's `NewAuthStore` commits it on a fresh
//! backend) and every change bumps it, except enabling, which etcd leaves alone.
//!
//! Password hashing is not done here: the member that receives UserAdd or
//! UserChangePassword hashes the password with bcrypt and proposes the hash (base64,
//! in `hashedPassword`, as etcd 3.6), so applying is deterministic and cheap.
//!
//! The read API for permission checks ([`MvccStore::auth_check_permitted`],
//! [`MvccStore::auth_is_admin`]) follows etcd's `isOpPermitted` and
//! `IsAdminPermitted`.

mod check;
mod error;
mod perm;
#[cfg(test)]
mod tests;
pub(super) mod token;

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine;
use bramble_api::authpb::permission::Type as PermType;
use bramble_api::authpb::{Permission, Role, User, UserAddOptions};
use bramble_api::bramblepb::command::Op;
use prost::Message;
use redb::{ReadableTable, Table};

pub use error::AuthError;

use super::error::MvccError;
use super::schema;
use super::store::MvccStore;

/// The name of etcd's superuser, and of the role that makes a user one.
pub const ROOT: &str = "root";

/// The raft table row holding the auth state.
#[derive(Clone, PartialEq, Message)]
pub(super) struct AuthRecord {
    /// The auth revision.
    #[prost(uint64, tag = "1")]
    pub revision: u64,
    /// Whether auth is enabled.
    #[prost(bool, tag = "2")]
    pub enabled: bool,
    /// Every user, by name.
    #[prost(message, repeated, tag = "3")]
    pub users: Vec<User>,
    /// Every role, by name.
    #[prost(message, repeated, tag = "4")]
    pub roles: Vec<Role>,
}

/// The auth state: what the `auth` row holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthState {
    /// Whether auth is enabled.
    pub enabled: bool,
    /// etcd's auth revision: bumped by every change (1 on a fresh store).
    pub revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// Who made a request, as a token names them: the user and the auth revision the token
/// was issued at (etcd's `AuthInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user name.
    pub user: String,
    /// The auth revision when the token was issued.
    pub revision: u64,
}

fn name_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn has_root_role(u: &User) -> bool {
    u.roles.binary_search_by(|r| r.as_str().cmp(ROOT)).is_ok()
}

/// etcd's root permission, what RoleGet answers for role `root`.
fn root_perm() -> Permission {
    Permission {
        perm_type: PermType::Readwrite as i32,
        key: Vec::new(),
        range_end: vec![0],
    }
}

/// The hash a UserAdd or UserChangePassword stores: the base64 `hashedPassword`
/// (etcd's `selectPassword` for a request its API layer already hashed).
fn stored_password(hashed: &str) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::STANDARD
        .decode(hashed)
        .map_err(|_| AuthError::NoPasswordUser)
}

impl AuthState {
    fn from_record(rec: AuthRecord) -> Result<AuthState, MvccError> {
        let mut state = AuthState {
            enabled: rec.enabled,
            revision: rec.revision,
            ..Default::default()
        };
        for u in rec.users {
            if state.users.insert(name_of(&u.name), u).is_some() {
                return Err(MvccError::Corrupt("auth row holds a user twice".into()));
            }
        }
        for r in rec.roles {
            if state.roles.insert(name_of(&r.name), r).is_some() {
                return Err(MvccError::Corrupt("auth row holds a role twice".into()));
            }
        }
        Ok(state)
    }

    fn to_record(&self) -> AuthRecord {
        AuthRecord {
            revision: self.revision,
            enabled: self.enabled,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user name, sorted (etcd's UserList).
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Every role name, sorted (etcd's RoleList).
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// UserGet: the user's roles.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, AuthError> {
        self.users
            .get(name)
            .map(|u| u.roles.clone())
            .ok_or(AuthError::UserNotFound)
    }

    /// RoleGet: the role's permissions (etcd's root permission for `root`).
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, AuthError> {
        let role = self.roles.get(name).ok_or(AuthError::RoleNotFound)?;
        if name == ROOT {
            return Ok(vec![root_perm()]);
        }
        Ok(role.key_permission.clone())
    }

    fn commit_revision(&mut self) {
        self.revision += 1;
    }

    /// Applies one auth change as etcd's auth store does; `Ok(true)` if it changed
    /// the state. `None` if `op` is not an auth change.
    pub(super) fn apply(&mut self, op: &Op) -> Option<Result<bool, AuthError>> {
        Some(match op {
            Op::AuthEnable(_) => self.enable(),
            Op::AuthDisable(_) => Ok(self.disable()),
            Op::AuthUserAdd(r) => self.user_add(&r.name, r.options.as_ref(), &r.hashed_password),
            Op::AuthUserDelete(r) => self.user_delete(&r.name),
            Op::AuthUserChangePassword(r) => self.user_change_password(&r.name, &r.hashed_password),
            Op::AuthUserGrantRole(r) => self.user_grant_role(&r.user, &r.role),
            Op::AuthUserRevokeRole(r) => self.user_revoke_role(&r.name, &r.role),
            Op::AuthRoleAdd(r) => self.role_add(&r.name),
            Op::AuthRoleDelete(r) => self.role_delete(&r.role),
            Op::AuthRoleGrantPermission(r) => self.role_grant_permission(&r.name, r.perm.as_ref()),
            Op::AuthRoleRevokePermission(r) => {
                self.role_revoke_permission(&r.role, &r.key, &r.range_end)
            }
            _ => return None,
        })
    }

    /// AuthEnable: needs user `root` with role `root`; enabling twice is a no-op.
    /// The revision is not bumped (as etcd).
    fn enable(&mut self) -> Result<bool, AuthError> {
        if self.enabled {
            return Ok(false);
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(true)
    }

    fn disable(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        self.enabled = false;
        self.commit_revision();
        true
    }

    fn user_add(
        &mut self,
        name: &str,
        options: Option<&UserAddOptions>,
        hashed: &str,
    ) -> Result<bool, AuthError> {
        if name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let options = options.cloned().unwrap_or_default();
        let password = if options.no_password {
            Vec::new()
        } else {
            stored_password(hashed)?
        };
        let user = User {
            name: name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        self.users.insert(name.to_owned(), user);
        self.commit_revision();
        Ok(true)
    }

    fn user_delete(&mut self, name: &str) -> Result<bool, AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(AuthError::UserNotFound)?;
        self.commit_revision();
        Ok(true)
    }

    fn user_change_password(&mut self, name: &str, hashed: &str) -> Result<bool, AuthError> {
        let user = self.users.get(name).ok_or(AuthError::UserNotFound)?;
        let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
        let password = if no_password {
            Vec::new()
        } else {
            stored_password(hashed)?
        };
        if let Some(user) = self.users.get_mut(name) {
            user.password = password;
        }
        self.commit_revision();
        Ok(true)
    }

    fn user_grant_role(&mut self, name: &str, role: &str) -> Result<bool, AuthError> {
        if !self.users.contains_key(name) {
            return Err(AuthError::UserNotFound);
        }
        // As etcd: role root may be granted before it exists.
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let Some(user) = self.users.get_mut(name) else {
            return Err(AuthError::UserNotFound);
        };
        match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            Ok(_) => return Ok(false),
            Err(at) => user.roles.insert(at, role.to_owned()),
        }
        self.commit_revision();
        Ok(true)
    }

    fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<bool, AuthError> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|r| r != role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit_revision();
        Ok(true)
    }

    fn role_add(&mut self, name: &str) -> Result<bool, AuthError> {
        if name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        self.roles.insert(name.to_owned(), role);
        self.commit_revision();
        Ok(true)
    }

    fn role_delete(&mut self, name: &str) -> Result<bool, AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.retain(|r| r != name);
        }
        self.commit_revision();
        Ok(true)
    }

    fn role_grant_permission(
        &mut self,
        name: &str,
        perm: Option<&Permission>,
    ) -> Result<bool, AuthError> {
        let perm = perm.ok_or(AuthError::PermissionNotGiven)?;
        if !perm::is_valid_range(&perm.key, &perm.range_end) {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        // Sorted by key (etcd's `permSlice`); the same key and range_end: the type
        // is replaced.
        let perms = &mut role.key_permission;
        let at = perms.partition_point(|p| p.key < perm.key);
        if perms
            .get(at)
            .is_some_and(|p| p.key == perm.key && p.range_end == perm.range_end)
        {
            perms[at].perm_type = perm.perm_type;
        } else {
            perms.push(Permission {
                perm_type: perm.perm_type,
                key: perm.key.clone(),
                range_end: perm.range_end.clone(),
            });
            // Stable, as Go's sort.Sort is not: equal keys keep their order here;
            // etcd's order among permissions of one key is unspecified.
            perms.sort_by(|a, b| a.key.cmp(&b.key));
        }
        self.commit_revision();
        Ok(true)
    }

    fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<bool, AuthError> {
        let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != key || p.range_end != range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.commit_revision();
        Ok(true)
    }

    /// etcd's `CheckPassword` without the bcrypt comparison: the stored hash of
    /// `name` and the auth revision, or why authentication fails.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    /// etcd's `isOpPermitted`: whether `info` may do `want` over `key` or
    /// `[key, range_end)`. Everything is allowed while auth is disabled.
    pub fn check_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        want: PermType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self
            .users
            .get(&info.user)
            .ok_or(AuthError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let perms = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter());
        if perm::is_range_permitted(perms, key, range_end, want) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`: whether `info` may manage the cluster (has role
    /// root). Everything is allowed while auth is disabled.
    pub fn is_admin(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let info = info
            .filter(|i| !i.user.is_empty())
            .ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(&info.user).ok_or(AuthError::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }
}

impl AuthState {
    /// etcd's `authStore.Authenticate` at apply (the password was checked by the
    /// proposer): whether `name` may get a token.
    pub(super) fn authenticate(&self, name: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            return Err(AuthError::AuthFailed);
        }
        Ok(())
    }
}

/// What an applied auth change does to the tokens (etcd's `invalidateUser` on
/// UserDelete and UserChangePassword, `disable` on AuthDisable).
pub(super) fn token_change(op: &Op) -> Option<token::TokenChange> {
    use token::TokenChange;
    match op {
        Op::AuthUserDelete(r) => Some(TokenChange::InvalidateUser(r.name.clone())),
        Op::AuthUserChangePassword(r) => Some(TokenChange::InvalidateUser(r.name.clone())),
        Op::AuthDisable(_) => Some(TokenChange::Clear),
        _ => None,
    }
}

/// Whether `op` is an auth change (applied by [`AuthState::apply`]).
pub(super) fn is_auth_change(op: &Op) -> bool {
    matches!(
        op,
        Op::AuthEnable(_)
            | Op::AuthDisable(_)
            | Op::AuthUserAdd(_)
            | Op::AuthUserDelete(_)
            | Op::AuthUserChangePassword(_)
            | Op::AuthUserGrantRole(_)
            | Op::AuthUserRevokeRole(_)
            | Op::AuthRoleAdd(_)
            | Op::AuthRoleDelete(_)
            | Op::AuthRoleGrantPermission(_)
            | Op::AuthRoleRevokePermission(_)
    )
}

/// The `auth` row of a store holding `users` and `roles` (etcd's `authpb` records,
/// as etcd's buckets hold them) at auth `revision`, auth disabled: what an import
/// from an etcd database stores. Refuses a user or role stored twice, an empty
/// name, or revision 0 (etcd's revision starts at 1).
pub(crate) fn imported_row(
    revision: u64,
    users: Vec<User>,
    roles: Vec<Role>,
) -> Result<Vec<u8>, MvccError> {
    if revision == 0 {
        return Err(MvccError::Corrupt("auth revision 0".into()));
    }
    if users.iter().any(|u| u.name.is_empty()) || roles.iter().any(|r| r.name.is_empty()) {
        return Err(MvccError::Corrupt("a user or role without a name".into()));
    }
    let rec = AuthRecord {
        revision,
        enabled: false,
        users,
        roles,
    };
    let state = AuthState::from_record(rec)?;
    Ok(state.to_record().encode_to_vec())
}

/// Reads the auth state from the raft table (the fresh state if the row is absent).
pub(super) fn read(
    raft: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<AuthState, MvccError> {
    match raft.get(schema::RAFT_AUTH)? {
        None => Ok(AuthState::default()),
        Some(v) => AuthState::from_record(AuthRecord::decode(v.value())?),
    }
}

/// Writes the auth state to the raft table.
pub(super) fn write(
    raft: &mut Table<'_, &'static str, &'static [u8]>,
    state: &AuthState,
) -> Result<(), MvccError> {
    raft.insert(
        schema::RAFT_AUTH,
        state.to_record().encode_to_vec().as_slice(),
    )?;
    Ok(())
}

/// The store's auth state in memory (a copy of the raft table's row).
pub(super) fn lock_read(auth: &RwLock<AuthState>) -> RwLockReadGuard<'_, AuthState> {
    // Replaced whole after a commit: a panic cannot leave it half written.
    auth.read().unwrap_or_else(|e| e.into_inner())
}

/// [`lock_read`] for writing.
pub(super) fn lock_write(auth: &RwLock<AuthState>) -> RwLockWriteGuard<'_, AuthState> {
    auth.write().unwrap_or_else(|e| e.into_inner())
}

impl MvccStore {
    /// A copy of the auth state as applied so far (users, roles, enabled, revision).
    /// Cheap enough for auth management requests; permission checks use the methods
    /// below, which do not copy.
    pub fn auth_state(&self) -> AuthState {
        lock_read(&self.auth).clone()
    }

    /// Whether auth is enabled.
    pub fn auth_enabled(&self) -> bool {
        lock_read(&self.auth).enabled
    }

    /// The auth revision.
    pub fn auth_revision(&self) -> u64 {
        lock_read(&self.auth).revision
    }

    /// See [`AuthState::check_permitted`].
    pub fn auth_check_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        want: PermType,
    ) -> Result<(), AuthError> {
        lock_read(&self.auth).check_permitted(info, key, range_end, want)
    }

    /// See [`AuthState::is_admin`].
    pub fn auth_is_admin(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        lock_read(&self.auth).is_admin(info)
    }

    /// Who the simple token `token` names, if it is live (its life is extended).
    pub fn auth_token_info(&self, token: &str) -> Option<AuthInfo> {
        self.tokens.info(token, self.auth_revision())
    }

    /// Simple tokens live `ttl` after their last use (etcd's `--auth-token-ttl`).
    pub fn auth_set_token_ttl(&self, ttl: std::time::Duration) {
        self.tokens.set_ttl(ttl);
    }

    /// etcd's `checkTxnAuth` for a txn served locally (a read-only one).
    pub fn auth_check_txn(
        &self,
        info: &AuthInfo,
        txn: &bramble_api::etcdserverpb::TxnRequest,
    ) -> Result<(), MvccError> {
        let leases = super::lease::lock_read(&self.leases)?;
        Ok(lock_read(&self.auth).check_txn(info, txn, &leases)?)
    }

    /// etcd's lease checks outside apply: `want` on every key attached to `lease`
    /// unless `info` is an admin (WRITE for keep-alive, READ for time-to-live).
    pub fn auth_check_lease_keys(
        &self,
        info: &AuthInfo,
        lease: i64,
        want: PermType,
    ) -> Result<(), MvccError> {
        let leases = super::lease::lock_read(&self.leases)?;
        Ok(lock_read(&self.auth).check_lease_keys(info, lease, &leases, want)?)
    }

    /// See [`AuthState::password_hash`].
    pub fn auth_password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), AuthError> {
        lock_read(&self.auth).password_hash(name)
    }
}
