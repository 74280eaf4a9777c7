//! The etcd Maintenance service. `Status` (etcdctl `endpoint status`/`health`,
//! kube-apiserver's version and db size checks), `Snapshot` (`snapshot.rs`),
//! `Hash` and `HashKV` (`crate::hash`), `MoveLeader`, `Alarm` (through Raft,
//! see `bramble_storage::mvcc` alarms and `crate::quota`) and `Defragment` are
//! served; `Downgrade` answers etcd's refusals (`downgrade.rs`).

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::bramblepb::{command::Op, Command};
use bramble_api::etcdserverpb::maintenance_server::Maintenance;
use bramble_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeInfo, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};
use bramble_storage::mvcc::ApplyResult;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::errors;
use crate::version::{storage_version, ETCD_VERSION};
use crate::ServerContext;

mod downgrade;
mod snapshot;

/// An alarm as etcd's Status lists it: gogo-protobuf's compact text of the
/// `AlarmMember` (`memberID:<id> alarm:<TYPE> `, each field followed by a space).
fn alarm_text(a: &AlarmMember) -> String {
    let kind = AlarmType::try_from(a.alarm)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| a.alarm.to_string());
    let mut text = String::new();
    // Zero values are left out, as proto3 text does.
    if a.member_id != 0 {
        text.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        text.push_str(&format!("alarm:{kind} "));
    }
    text
}

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
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // etcd: GET needs a user, the others an admin.
        if req.get_ref().action == bramble_api::etcdserverpb::alarm_request::AlarmAction::Get as i32
        {
            let who = self.ctx.who(&req).await?;
            crate::auth::who::require(self.ctx.node.store(), who.as_ref())?;
        } else {
            self.ctx.require_admin(&req).await?;
        }
        // As etcd, every alarm request (GET included) goes through Raft: the
        // answer reflects every alarm change before it in the log.
        let cmd = Command {
            auth: None,
            op: Some(Op::Alarm(req.into_inner())),
        };
        let mut resp = match self.ctx.propose(cmd).await? {
            ApplyResult::Alarm(r) => r,
            ApplyResult::Error(e) => return Err(errors::mvcc_status(&e)),
            other => return Err(errors::internal(format!("alarm answered {other:?}"))),
        };
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        // etcd 3.6: with auth enabled, a user (any).
        let who = self.ctx.who(&req).await?;
        crate::auth::who::require(self.ctx.node.store(), who.as_ref())?;
        let raft = self.ctx.node.status();
        let db_size = self.ctx.db_file_size().await;
        // Never waits for the applier (see `crate::space`).
        let in_use = self.ctx.space_in_use.get(db_size);
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut resp = StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size: to_i64(db_size),
            db_size_in_use: to_i64(in_use),
            leader: raft.leader,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            is_learner: raft.is_learner,
            storage_version: storage_version(),
            db_size_quota: self.ctx.quota.status_value(),
            // Bramble never downgrades (see `downgrade`): never enabled.
            downgrade_info: Some(DowngradeInfo::default()),
            ..Default::default()
        };
        if raft.leader == 0 {
            // etcd lists the error text of its no-leader alarm.
            resp.errors.push(errors::no_leader().message().to_string());
        }
        // Then each alarm raised, as Go's protobuf text of the AlarmMember.
        for a in self.ctx.node.store().alarms() {
            resp.errors.push(alarm_text(&a));
        }
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        // redb's compaction needs the database alone: applies and reads wait
        // while it runs (as etcd's defragmentation blocks its backend), on a
        // blocking thread, never the runtime's.
        let store = self.ctx.node.store().clone();
        let path = self.ctx.db_path.clone();
        tracing::info!("starting defragment");
        let info = tokio::task::spawn_blocking(move || store.defragment(&path))
            .await
            .map_err(errors::internal)?
            .map_err(|e| errors::mvcc_status(&e))?;
        // The quota checks see the freed space at once, not at the monitor's
        // next look (an operator disarms NOSPACE right after this).
        self.ctx.quota.set_size(info.size_after);
        self.ctx.space_in_use.refresh();
        tracing::info!("finished defragment");
        // etcd answers with an empty response (no header).
        Ok(Response::new(DefragmentResponse::default()))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        crate::hash::hash(&self.ctx, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        crate::hash::hash_kv(&self.ctx, req.into_inner())
            .await
            .map(Response::new)
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.ctx.require_admin(&req).await?;
        let chunks = snapshot::start(self.ctx.node.store().clone(), storage_version());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.ctx.require_admin(&req).await?;
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
        req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.ctx.require_admin(&req).await?;
        let mut resp = downgrade::answer(&req.into_inner())?;
        self.ctx.identity.fill(&mut resp.header, &self.ctx.node);
        Ok(Response::new(resp))
    }
}
