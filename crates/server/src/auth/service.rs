//! The `etcdserverpb.Auth` gRPC service (see [`super`]).

use std::sync::Arc;

use bramble_api::bramblepb::command::Op;
use bramble_api::etcdserverpb::auth_server::Auth as AuthRpc;
use bramble_api::etcdserverpb::*;
use bramble_storage::mvcc::{ApplyResult, AuthError, AuthInfo, AuthState};
use tonic::{Request, Response, Status};

use super::{command, ENFORCEMENT_IMPLEMENTED};
use crate::errors::{self, auth_status};
use crate::ServerContext;

/// The Auth service of a member.
pub struct AuthService {
    ctx: Arc<ServerContext>,
}

impl AuthService {
    /// The service over `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        AuthService { ctx }
    }

    /// Proposes an auth change and waits for it: the header of its response.
    /// Changes need an admin (etcd's `needAdminPermission`), checked at apply as
    /// `who`.
    async fn change(
        &self,
        op: Op,
        who: Option<AuthInfo>,
    ) -> Result<Option<ResponseHeader>, Status> {
        let mut header = match self.ctx.propose_as(command(op), who.as_ref()).await? {
            ApplyResult::Auth(h) => h,
            ApplyResult::Error(e) => return Err(errors::mvcc_status(&e)),
            other => return Err(errors::internal(format!("auth change answered {other:?}"))),
        };
        self.ctx.identity.fill(&mut header, &self.ctx.node);
        Ok(header)
    }

    /// The auth state after a read barrier (what etcd's log-ordered read sees),
    /// and who asked, as of that state.
    async fn state<T>(&self, req: &Request<T>) -> Result<(AuthState, Option<AuthInfo>), Status> {
        let creds = crate::auth::who::Credentials::of(req);
        self.ctx
            .node
            .read_barrier()
            .await
            .map_err(crate::propose_status)?;
        self.ctx.settle(&creds).await;
        let who = self.ctx.who_from(&creds)?;
        Ok((self.ctx.node.store().auth_state(), who))
    }

    /// A response header as of now.
    fn header(&self) -> Option<ResponseHeader> {
        let mut h = None;
        self.ctx.identity.fill(&mut h, &self.ctx.node);
        h
    }
}

fn auth_err(e: AuthError) -> Status {
    auth_status(e)
}

#[tonic::async_trait]
impl AuthRpc for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        if !ENFORCEMENT_IMPLEMENTED {
            return Err(errors::auth_enable_refused());
        }
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthEnable(AuthEnableRequest {}), who)
            .await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthDisable(AuthDisableRequest {}), who)
            .await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        // etcd 3.6: an admin only (its `needAdminPermission`; later etcd lets
        // anyone ask).
        let (state, who) = self.state(&req).await?;
        state.is_admin(who.as_ref()).map_err(auth_err)?;
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: state.enabled,
            auth_revision: state.revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = req.into_inner();
        self.ctx
            .node
            .read_barrier()
            .await
            .map_err(crate::propose_status)?;
        let store = self.ctx.node.store().clone();
        // etcd's loop: the password is checked against the auth state of one
        // revision; if the state moved while the token was being issued, the
        // check is done again (the password may have changed).
        loop {
            let (hash, checked) = store.auth_password_hash(&name).map_err(auth_err)?;
            if !self.ctx.auth.verify(password.clone(), hash).await? {
                tracing::warn!(user = %name, "invalid authentication was requested");
                return Err(auth_err(AuthError::AuthFailed));
            }
            let simple_token = super::token::prefix().map_err(errors::internal)?;
            let op = Op::AuthAuthenticate(bramble_api::bramblepb::AuthAuthenticate {
                name: name.clone(),
                simple_token,
            });
            // No auth header: Authenticate needs no user (etcd's neither).
            let resp = match self.ctx.propose(command(op)).await? {
                ApplyResult::Authenticated(r) => r,
                ApplyResult::Error(e) => return Err(errors::mvcc_status(&e)),
                other => return Err(errors::internal(format!("authenticate answered {other:?}"))),
            };
            if checked == store.auth_revision() {
                return Ok(Response::new(AuthenticateResponse {
                    header: self.header(),
                    token: resp.token,
                }));
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let mut r = req.into_inner();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        if r.name.is_empty() {
            // The store refuses it: no need to hash.
            return Err(auth_err(AuthError::UserEmpty));
        }
        if !no_password {
            r.hashed_password = self.ctx.auth.hash(std::mem::take(&mut r.password)).await?;
        }
        r.password.clear();
        let header = self.change(Op::AuthUserAdd(r), who).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let (state, who) = self.state(&req).await?;
        let name = req.into_inner().name;
        // etcd: an admin, or the user asking about itself.
        if let Err(e) = state.is_admin(who.as_ref()) {
            if who.as_ref().is_none_or(|w| w.user != name) {
                return Err(auth_err(e));
            }
        }
        let roles = state.user_get(&name).map_err(auth_err)?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let (state, who) = self.state(&req).await?;
        state.is_admin(who.as_ref()).map_err(auth_err)?;
        let users = state.user_names();
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthUserDelete(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let mut r = req.into_inner();
        if !r.password.is_empty() {
            r.hashed_password = self.ctx.auth.hash(std::mem::take(&mut r.password)).await?;
        }
        let header = self.change(Op::AuthUserChangePassword(r), who).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthUserGrantRole(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthUserRevokeRole(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self.change(Op::AuthRoleAdd(req.into_inner()), who).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let (state, who) = self.state(&req).await?;
        let role = req.into_inner().role;
        // etcd: an admin, or a user that has the role.
        if let Err(e) = state.is_admin(who.as_ref()) {
            let has = who
                .as_ref()
                .and_then(|w| state.user(&w.user))
                .is_some_and(|u| u.roles.contains(&role));
            if !has {
                return Err(auth_err(e));
            }
        }
        let perm = state.role_get(&role).map_err(auth_err)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let (state, who) = self.state(&req).await?;
        state.is_admin(who.as_ref()).map_err(auth_err)?;
        let roles = state.role_names();
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthRoleDelete(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthRoleGrantPermission(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let who = self.ctx.who(&req).await?;
        let header = self
            .change(Op::AuthRoleRevokePermission(req.into_inner()), who)
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
