//! The etcd Maintenance service. `Status` (etcdctl `endpoint status`/`health`,
//! kube-apiserver's version and db size checks), `Snapshot` (`snapshot.rs`),
//! `Hash` and `HashKV` (`crate::hash`) and `MoveLeader` are served;
//! `Defragment` and `Downgrade` arrive with the rest of the operations issue.

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
use crate::version::{storage_version, ETCD_VERSION};
use crate::ServerContext;

mod snapshot;

/// The Maintenance service.
#[derive(Clone)]
pub(crate) struct MaintenanceService {
    ctx: Arc<ServerContext>,
}

impl MaintenanceService {
    /// A Maintenance service answering from `ctx`.
    pub(crate) fn new(ctx: Arc<ServerContext>) -> Self {
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
        let db_size = self.ctx.db_file_size().await as i64;
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
            // etcd lists the error text of its no-leader alarm.
            resp.errors.push(errors::no_leader().message().to_string());
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

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        crate::hash::hash(&self.ctx, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        crate::hash::hash_kv(&self.ctx, req.into_inner())
            .await
            .map(Response::new)
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let chunks = snapshot::start(self.ctx.node.store().clone(), storage_version());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        )))
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
