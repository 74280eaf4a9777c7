//! Leases: grant, revoke, time-to-live, and [`LeaseKeeper`], a lease kept
//! alive by a background task for as long as the keeper lives.

use std::time::Duration;

use bramble_api::etcdserverpb::lease_server::Lease;
use bramble_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use bramble_server::auth::who::Credentials;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Client;
use crate::error::{Error, ErrorKind};

/// The shortest pause between two renewals, and between two tries of a
/// renewal that failed for a reason that may pass (no leader yet).
const MIN_RENEW_EVERY: Duration = Duration::from_millis(500);

impl Client {
    /// Grants a lease of `ttl` seconds (the member may raise it to its
    /// minimum, as etcd does); keys put with it are deleted when it ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::PutOptions;
    ///
    /// let lease = node.lease_grant(60).await?;
    /// node.put_with("session/pi-1", "up", PutOptions::new().lease(lease.id)).await?;
    /// node.lease_revoke(lease.id).await?;
    /// assert!(node.get("session/pi-1").await?.is_none(), "revoking deletes its keys");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, Error> {
        self.lease_grant_request(LeaseGrantRequest { ttl, id: 0 })
            .await
    }

    /// etcd's LeaseGrant, with every field as given (a chosen `id`).
    pub async fn lease_grant_request(
        &self,
        req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, Error> {
        self.call(self.inner.lease.lease_grant(tonic::Request::new(req)))
            .await
    }

    /// Revokes lease `id`, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        let req = LeaseRevokeRequest { id };
        self.call(self.inner.lease.lease_revoke(tonic::Request::new(req)))
            .await
    }

    /// Renews lease `id` once: its TTL in seconds from now. A lease that
    /// ended fails with [`ErrorKind::LeaseNotFound`], as etcd's clients
    /// report it.
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<i64, Error> {
        self.check_running()?;
        let resp = self
            .inner
            .lease
            .keep_alive_once(&Credentials::default(), id)
            .await
            .map_err(|s| self.error(s))?;
        if resp.ttl <= 0 {
            return Err(Error::from(bramble_server::errors::lease_not_found()));
        }
        Ok(resp.ttl)
    }

    /// Lease `id`'s remaining and granted TTL, and its keys if `keys`.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        let req = LeaseTimeToLiveRequest { id, keys };
        self.call(
            self.inner
                .lease
                .lease_time_to_live(tonic::Request::new(req)),
        )
        .await
    }

    /// Every lease's id.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse, Error> {
        self.call(
            self.inner
                .lease
                .lease_leases(tonic::Request::new(LeaseLeasesRequest {})),
        )
        .await
    }

    /// Grants a lease of `ttl` seconds and keeps it alive until the keeper
    /// is dropped (then it ends `ttl` later, or at once with
    /// [`LeaseKeeper::revoke_on_drop`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::PutOptions;
    ///
    /// // This Pi's presence: there while the program runs, gone once it stops.
    /// let presence = node.lease_keeper(10).await?.revoke_on_drop(true);
    /// node.put_with("pis/pi-1", "up", PutOptions::new().lease(presence.id())).await?;
    /// assert!(presence.is_alive());
    /// presence.revoke().await?;
    /// assert!(node.get("pis/pi-1").await?.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_keeper(&self, ttl: i64) -> Result<LeaseKeeper, Error> {
        let lease = self.lease_grant(ttl).await?;
        Ok(self.keep_alive(lease.id, lease.ttl))
    }

    /// Keeps the existing lease `id`, of `ttl` seconds, alive until the
    /// keeper is dropped.
    pub fn keep_alive(&self, id: i64, ttl: i64) -> LeaseKeeper {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(keep_alive_loop(self.clone(), id, ttl, tx));
        LeaseKeeper {
            id,
            client: self.clone(),
            lost: rx,
            task,
            revoke_on_drop: false,
        }
    }
}

/// A lease kept alive by a background task: renewed every third of its TTL,
/// as etcd's clients do, for as long as the keeper lives. If the lease
/// cannot be renewed (it was revoked, or the cluster stayed without a leader
/// for longer than the TTL), [`LeaseKeeper::lost`] resolves with why.
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    client: Client,
    lost: watch::Receiver<Option<Error>>,
    task: JoinHandle<()>,
    revoke_on_drop: bool,
}

impl LeaseKeeper {
    /// The lease's id, for puts, locks and elections.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Whether dropping the keeper revokes the lease at once (deleting its
    /// keys), instead of letting it run out its TTL. Off by default.
    pub fn revoke_on_drop(mut self, revoke: bool) -> Self {
        self.revoke_on_drop = revoke;
        self
    }

    /// Whether the lease is still kept alive.
    pub fn is_alive(&self) -> bool {
        self.lost.borrow().is_none()
    }

    /// Resolves once the lease can no longer be kept alive, with why (e.g.
    /// [`ErrorKind::LeaseNotFound`] once it was revoked).
    pub async fn lost(&self) -> Error {
        let mut rx = self.lost.clone();
        let lost = match rx.wait_for(|lost| lost.is_some()).await {
            Ok(lost) => lost.clone(),
            Err(_) => None,
        };
        lost.unwrap_or_else(keeper_gone)
    }

    /// Stops renewing and revokes the lease now, deleting its keys.
    pub async fn revoke(mut self) -> Result<(), Error> {
        self.task.abort();
        // Revoked here: nothing left for the drop to do.
        self.revoke_on_drop = false;
        self.client.lease_revoke(self.id).await.map(|_| ())
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
        if !self.revoke_on_drop {
            return;
        }
        // A drop cannot wait: revoke from a task, if a runtime still runs.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let id = self.id;
            rt.spawn(async move {
                if let Err(e) = client.lease_revoke(id).await {
                    tracing::debug!(lease = id, "revoke on drop: {e}");
                }
            });
        }
    }
}

/// The error of a keeper whose task ended without saying why (it panicked).
fn keeper_gone() -> Error {
    Error::new(
        ErrorKind::Other,
        tonic::Code::Unknown,
        "lease keeper stopped",
    )
}

/// Renews lease `id` every third of its TTL until it cannot be any more:
/// then reports why on `lost`. Failures that may pass (no leader, a timeout)
/// are retried until the lease would have run out since its last renewal.
async fn keep_alive_loop(client: Client, id: i64, ttl: i64, lost: watch::Sender<Option<Error>>) {
    let mut ttl = Duration::from_secs(ttl.max(1) as u64);
    let mut expires = Instant::now() + ttl;
    loop {
        let every = (ttl / 3).max(MIN_RENEW_EVERY);
        tokio::time::sleep(every).await;
        loop {
            match client.lease_keep_alive_once(id).await {
                Ok(renewed) => {
                    ttl = Duration::from_secs(renewed.max(1) as u64);
                    expires = Instant::now() + ttl;
                    break;
                }
                Err(e) if e.is_retryable() && Instant::now() + MIN_RENEW_EVERY < expires => {
                    tracing::debug!(lease = id, "renewal failed, retrying: {e}");
                    tokio::time::sleep(MIN_RENEW_EVERY).await;
                }
                Err(e) => {
                    let _ = lost.send(Some(e));
                    return;
                }
            }
        }
    }
}
