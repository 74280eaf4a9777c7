//! Distributed locks, as etcd's `concurrency.Mutex` with a session: the
//! member's Lock service (v3lock) queues contenders by the create revision of
//! their keys, and a [`LockGuard`] holds the lock until it is unlocked or
//! dropped, or its session lease is lost.

use bramble_api::v3lockpb::lock_server::Lock;
use bramble_api::v3lockpb::{LockRequest, UnlockRequest};

use super::session::{contender_key, first_loss, PendingKey};
use super::{Client, LeaseKeeper};
use crate::error::{Error, ErrorKind};

impl Client {
    /// Takes lock `name`, waiting while someone else holds it. The lock is
    /// held with a session lease of 60 seconds (etcd's default) that a
    /// [`LeaseKeeper`] keeps alive while the guard lives: if this program
    /// stops, the lock is free again at most 60 seconds later.
    ///
    /// Dropping the returned future while it waits leaves nothing behind: the
    /// session lease is revoked, which deletes the contender key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let guard = node.lock("jobs/resize").await?;
    /// assert!(guard.key().starts_with(b"jobs/resize/"));
    /// // ... work only one holder may do at a time ...
    /// guard.unlock().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lock(&self, name: impl Into<Vec<u8>>) -> Result<LockGuard, Error> {
        let session = self.own_session().await?;
        let lease = session.id();
        let name = name.into();
        // A session lost while waiting would delete our key and could let the
        // wait end as if the lock were ours: stop waiting instead.
        let key = tokio::select! {
            r = self.acquire_lock(name, lease) => r?,
            e = session.lost() => return Err(e),
        };
        Ok(self.lock_guard(key, lease, Some(session)))
    }

    /// Takes lock `name` with the caller's lease `lease` (which the caller
    /// keeps alive, e.g. with [`Client::lease_keeper`]): the lock ends when
    /// the lease does, and [`LockGuard::unlock`] leaves the lease alone.
    /// Lease 0 is refused (use [`Client::lock`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// // A short TTL: the lock is free 5 s after this program stops.
    /// let session = node.lease_keeper(5).await?;
    /// let guard = node.lock_with_lease("backup", session.id()).await?;
    /// assert_eq!(guard.lease(), session.id());
    /// guard.unlock().await?;
    /// assert!(session.is_alive(), "the caller's lease outlives the lock");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lock_with_lease(
        &self,
        name: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<LockGuard, Error> {
        if lease == 0 {
            return Err(Error::invalid_argument(
                "lock with lease 0: the lock needs a lease that is kept alive (use lock)",
            ));
        }
        let key = self.acquire_lock(name.into(), lease).await?;
        Ok(self.lock_guard(key, lease, None))
    }

    /// The Lock call: puts the contender key and waits until it is the
    /// oldest; a call that ends without the lock deletes its key. Returns
    /// the key.
    async fn acquire_lock(&self, name: Vec<u8>, lease: i64) -> Result<Vec<u8>, Error> {
        let pending = PendingKey::new(self, contender_key(&name, lease));
        let req = LockRequest { name, lease };
        let resp = self
            .call(self.inner.lock.lock(tonic::Request::new(req)))
            .await?;
        pending.disarm();
        Ok(resp.key)
    }

    fn lock_guard(&self, key: Vec<u8>, lease: i64, session: Option<LeaseKeeper>) -> LockGuard {
        LockGuard {
            client: self.clone(),
            key,
            lease,
            session,
            released: false,
        }
    }
}

/// A held lock. Dropping it unlocks, from a spawned task if a Tokio runtime
/// is running (with none, the lock ends when its lease does: at most the
/// session TTL later for [`Client::lock`]); [`LockGuard::unlock`] does it now
/// and reports how it went.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bramble::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
/// let first = node.lock("printer").await?;
/// let client = node.client();
/// let second = tokio::spawn(async move { client.lock("printer").await });
/// drop(first); // the waiting task gets the lock
/// let second = second.await.unwrap()?;
/// second.unlock().await?;
/// # node.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    client: Client,
    key: Vec<u8>,
    lease: i64,
    /// The session lease this lock granted for itself (none with a caller's
    /// lease): revoked on unlock.
    session: Option<LeaseKeeper>,
    /// Unlocked already: nothing for the drop to do.
    released: bool,
}

impl LockGuard {
    /// The lock's key (`<name>/<lease in hex>`): it exists exactly as long
    /// as the lock is held, so it can guard writes in a transaction
    /// (`Compare::create_revision(key).gt(0)`), as etcd's `Mutex.IsOwner`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::{Compare, Txn, TxnOp};
    ///
    /// let guard = node.lock("config").await?;
    /// // Write only while still holding the lock.
    /// let write = Txn::new()
    ///     .when([Compare::create_revision(guard.key()).gt(0)])
    ///     .and_then([TxnOp::put("config/mode", "fast")]);
    /// assert!(node.txn(write).await?.succeeded);
    /// # guard.unlock().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The lease the lock is held with.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let guard = node.lock("config").await?;
    /// let kv = node.get(guard.key()).await?.expect("held");
    /// assert_eq!(kv.lease, guard.lease());
    /// # guard.unlock().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Resolves once the lock is no longer held: its session lease could not
    /// be kept alive (the error says why, e.g. the cluster had no leader for
    /// longer than the TTL), its key was deleted
    /// ([`ErrorKind::KeyNotFound`]), or the member stopped. Work done under
    /// the lock should stop then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::ErrorKind;
    ///
    /// let guard = node.lock("config").await?;
    /// node.delete(guard.key()).await?; // an operator breaks the lock
    /// assert_eq!(guard.lost().await.kind(), ErrorKind::KeyNotFound);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lost(&self) -> Error {
        let lease = self.lease;
        let gone = self.client.key_gone(&self.key, |kv| kv.lease == lease);
        first_loss(self.session.as_ref(), gone, || {
            Error::new(
                ErrorKind::KeyNotFound,
                tonic::Code::NotFound,
                format!(
                    "lock lost: its key {} is gone",
                    String::from_utf8_lossy(&self.key)
                ),
            )
        })
        .await
    }

    /// Releases the lock now (v3lock's Unlock deletes its key), then revokes
    /// the session lease [`Client::lock`] granted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let guard = node.lock("config").await?;
    /// let key = guard.key().to_vec();
    /// guard.unlock().await?;
    /// assert!(node.get(key).await?.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn unlock(mut self) -> Result<(), Error> {
        self.released = true;
        let key = std::mem::take(&mut self.key);
        release(&self.client, key, self.session.take()).await
    }
}

/// Unlocks `key`, then revokes the lock's own session lease, if any.
async fn release(client: &Client, key: Vec<u8>, session: Option<LeaseKeeper>) -> Result<(), Error> {
    let req = UnlockRequest { key };
    let unlocked = client
        .call(client.inner.lock.unlock(tonic::Request::new(req)))
        .await;
    let revoked = super::session::end_session(session).await;
    unlocked?;
    revoked
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let session = self.session.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let key = std::mem::take(&mut self.key);
            rt.spawn(async move {
                if let Err(e) = release(&client, key, session).await {
                    tracing::debug!("unlock on drop: {e}");
                }
            });
        }
    }
}
