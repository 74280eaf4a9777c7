//! The etcd Watch service: bidirectional streams of watch requests and event
//! responses, served from one shared `hub::Hub` per server.
//!
//! - `filter`: which events a watcher wants (key range, NOPUT/NODELETE);
//! - `hub`: the shared event feed and the synced/unsynced watcher groups;
//! - [`stream`]: one client's stream (create, cancel, progress, prev_kv, fragment).

mod filter;
mod hub;
pub mod stream;

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::etcdserverpb::watch_server::Watch;
use bramble_api::etcdserverpb::{WatchRequest, WatchResponse};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::who::Credentials;
use crate::ServerContext;
use hub::Hub;

/// Responses buffered per stream between the stream task and gRPC.
const OUT_BUFFER: usize = 16;

/// The Watch service.
#[derive(Clone)]
pub struct WatchService {
    ctx: Arc<ServerContext>,
    hub: Arc<Hub>,
    stop: CancellationToken,
}

impl WatchService {
    /// A Watch service over `ctx`, starting its hub (needs a Tokio runtime).
    /// Its streams end when their clients go away, or with etcd's
    /// `etcdserver: server stopped` (Unavailable, so clients reconnect
    /// elsewhere) once `stop` is cancelled: open watches would otherwise hold
    /// a graceful shutdown until its drain timeout.
    pub fn with_shutdown(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        let hub = Hub::start(ctx.node.store().clone(), ctx.node.subscribe_revisions());
        WatchService { ctx, hub, stop }
    }

    /// Serves one watch stream whose requests come from `inbound`, as made
    /// by `creds`: the same stream a gRPC client gets, for a caller in this
    /// process. It ends when `inbound` ends or the returned stream is dropped.
    pub fn open(
        &self,
        creds: Credentials,
        inbound: impl Stream<Item = Result<WatchRequest, Status>> + Unpin + Send + 'static,
    ) -> ReceiverStream<Result<WatchResponse, Status>> {
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        tokio::spawn(stream::run(
            self.ctx.clone(),
            creds,
            self.hub.clone(),
            inbound,
            tx,
            self.ctx.limits.watch_progress_notify_interval,
            self.stop.clone(),
        ));
        ReceiverStream::new(rx)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // Each create is checked as whoever these credentials name then.
        let creds = Credentials::of(&req);
        let out = self.open(creds, req.into_inner());
        Ok(Response::new(Box::pin(out)))
    }
}
