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
    async fn change(&self, op: Op) -> Result<Option<ResponseHeader>, Status> {
        let mut header = match self.ctx.propose(command(op)).await? {
            ApplyResult::Auth(h) => h,
            ApplyResult::Error(e) => return Err(errors::mvcc_status(&e)),
            other => return Err(errors::internal(format!("auth change answered {other:?}"))),
        };
        self.ctx.identity.fill(&mut header, &self.ctx.node);
        Ok(header)
    }

    /// The auth state after a read barrier (what etcd's log-ordered read sees).
    async fn state(&self) -> Result<AuthState, Status> {
        self.ctx
            .node
            .read_barrier()
            .await
            .map_err(crate::propose_status)?;
        Ok(self.ctx.node.store().auth_state())
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
        _req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        if !ENFORCEMENT_IMPLEMENTED {
            return Err(errors::auth_enable_refused());
        }
        let header = self.change(Op::AuthEnable(AuthEnableRequest {})).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        _req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.change(Op::AuthDisable(AuthDisableRequest {})).await?;
        self.ctx.auth.tokens.clear();
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        _req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let state = self.state().await?;
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
        let (hash, revision) = store.auth_password_hash(&name).map_err(auth_err)?;
        if !self.ctx.auth.verify(password, hash).await? {
            tracing::warn!(user = %name, "invalid authentication was requested");
            return Err(auth_err(AuthError::AuthFailed));
        }
        // The user may have changed while bcrypt ran: etcd retries then; here the
        // token carries the revision checked, and a permission check refuses it
        // as old if anything changed since.
        let index = store.applied().0;
        let token = self
            .ctx
            .auth
            .tokens
            .assign(
                AuthInfo {
                    user: name,
                    revision,
                },
                index,
            )
            .map_err(errors::internal)?;
        Ok(Response::new(AuthenticateResponse {
            header: self.header(),
            token,
        }))
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
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
        let header = self.change(Op::AuthUserAdd(r)).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let roles = self
            .state()
            .await?
            .user_get(&req.into_inner().name)
            .map_err(auth_err)?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        _req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let users = self.state().await?.user_names();
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let r = req.into_inner();
        let name = r.name.clone();
        let header = self.change(Op::AuthUserDelete(r)).await?;
        self.ctx.auth.tokens.invalidate_user(&name);
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let mut r = req.into_inner();
        if !r.password.is_empty() {
            r.hashed_password = self.ctx.auth.hash(std::mem::take(&mut r.password)).await?;
        }
        let name = r.name.clone();
        let header = self.change(Op::AuthUserChangePassword(r)).await?;
        self.ctx.auth.tokens.invalidate_user(&name);
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let header = self.change(Op::AuthUserGrantRole(req.into_inner())).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let header = self
            .change(Op::AuthUserRevokeRole(req.into_inner()))
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let header = self.change(Op::AuthRoleAdd(req.into_inner())).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let perm = self
            .state()
            .await?
            .role_get(&req.into_inner().role)
            .map_err(auth_err)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        _req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let roles = self.state().await?.role_names();
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let header = self.change(Op::AuthRoleDelete(req.into_inner())).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let header = self
            .change(Op::AuthRoleGrantPermission(req.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let header = self
            .change(Op::AuthRoleRevokePermission(req.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
