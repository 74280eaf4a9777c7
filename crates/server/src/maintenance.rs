//! The etcd Maintenance service. `Status` is complete (etcdctl `endpoint
//! status`/`health`, kube-apiserver's version and db size checks); the other
//! RPCs arrive with the issues that need them.

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::etcdserverpb::maintenance_server::Maintenance;
use bramble_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::errors;
use crate::ServerContext;

/// The etcd version Bramble reports. Kubernetes turns watch progress requests
/// off below 3.5.13, so this must stay at or above it.
pub const ETCD_VERSION: &str = "3.5.17";

/// The Maintenance service.
#[derive(Clone)]
pub struct MaintenanceService {
    ctx: Arc<ServerContext>,
}

impl MaintenanceService {
    /// A Maintenance service answering from `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        MaintenanceService { ctx }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarms exist yet (space quota and corruption checks come later):
        // an empty list is the true answer.
        let mut resp = AlarmResponse::default();
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let raft = self.ctx.node.status();
        let db_size = std::fs::metadata(&self.ctx.db_path)
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        let mut resp = StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size,
            // redb does not expose its free page count cheaply; the file size
            // is an upper bound, which is what quota checks need.
            db_size_in_use: db_size,
            leader: raft.leader,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            is_learner: raft.is_learner,
            ..Default::default()
        };
        if raft.leader == 0 {
            resp.errors.push("etcdserver: no leader".to_string());
        }
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(errors::unimplemented("Maintenance.Defragment"))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(errors::unimplemented("Maintenance.Hash"))
    }

    async fn hash_kv(
        &self,
        _req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        Err(errors::unimplemented("Maintenance.HashKV"))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(errors::unimplemented("Maintenance.Snapshot"))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        // etcd: only the leader moves leadership (etcdctl finds it first);
        // the answer comes once the target leads, with an empty header as
        // etcd's own MoveLeaderResponse has.
        self.ctx
            .node
            .move_leader(req.into_inner().target_id)
            .await
            .map_err(crate::cluster::membership_status)?;
        Ok(Response::new(MoveLeaderResponse::default()))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(errors::unimplemented("Maintenance.Downgrade"))
    }
}
