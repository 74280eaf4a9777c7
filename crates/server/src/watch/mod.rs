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

use crate::ServerContext;
use hub::Hub;

/// Responses buffered per stream between the stream task and gRPC.
const OUT_BUFFER: usize = 16;

/// The Watch service.
#[derive(Clone)]
pub(crate) struct WatchService {
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
    pub(crate) fn with_shutdown(ctx: Arc<ServerContext>, stop: CancellationToken) -> Self {
        let hub = Hub::start(ctx.node.store().clone(), ctx.node.subscribe_revisions());
        WatchService { ctx, hub, stop }
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
        let creds = crate::auth::who::Credentials::of(&req);
        let inbound = req.into_inner();
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
        let out = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }
}
