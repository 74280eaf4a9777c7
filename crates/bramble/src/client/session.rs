//! What locks and elections share, as etcd's `concurrency.Session` does for
//! its Mutex and Election: the lease their keys are put with (granted and
//! kept alive by the call, or the caller's own), the contender key a
//! cancelled call must not leave behind, and how a holder learns it lost.

use bramble_api::mvccpb::KeyValue;

use super::{Client, LeaseKeeper, RangeOptions};
use crate::error::{Error, ErrorKind};

/// TTL in seconds of the lease a lock or campaign grants for itself (etcd's
/// `concurrency` default session TTL).
pub(super) const SESSION_TTL: i64 = 60;

/// Revokes a lock's or campaign's own session lease, if it has one; one
/// that ran out already leaves nothing to give up.
pub(super) async fn end_session(session: Option<LeaseKeeper>) -> Result<(), Error> {
    let Some(session) = session else {
        return Ok(());
    };
    match session.revoke().await {
        Err(e) if e.kind() == ErrorKind::LeaseNotFound => Ok(()),
        other => other,
    }
}

impl Client {
    /// A session lease of [`SESSION_TTL`] kept alive until dropped, then
    /// revoked (so a lock or campaign given up leaves no key behind).
    pub(super) async fn own_session(&self) -> Result<LeaseKeeper, Error> {
        Ok(self.lease_keeper(SESSION_TTL).await?.revoke_on_drop(true))
    }

    /// Resolves once `key` is no longer held on this member (it was deleted,
    /// or `held` says it is someone else's now); fails once the member stops.
    /// Reads are local and re-done on every applied revision: a member cut off
    /// from the cluster sees nothing change, which the session lease's keeper
    /// reports instead (it cannot renew).
    pub(super) async fn key_gone(
        &self,
        key: &[u8],
        held: impl Fn(&KeyValue) -> bool,
    ) -> Result<(), Error> {
        let mut revisions = self.inner.ctx.node.subscribe_revisions();
        loop {
            revisions.borrow_and_update();
            let resp = self
                .range(key.to_vec(), RangeOptions::new().serializable())
                .await?;
            if !resp.kvs.first().is_some_and(&held) {
                return Ok(());
            }
            tokio::select! {
                changed = revisions.changed() => {
                    changed.map_err(|_| Error::from(bramble_server::errors::stopped()))?
                }
                _ = self.inner.stop.cancelled() => {
                    return Err(Error::from(bramble_server::errors::stopped()))
                }
            }
        }
    }
}

/// Whichever comes first: the session lease lost (if the call keeps it), or
/// `gone` (the key no longer held, as `gone_error` describes it).
pub(super) async fn first_loss(
    session: Option<&LeaseKeeper>,
    gone: impl std::future::Future<Output = Result<(), Error>>,
    gone_error: impl FnOnce() -> Error,
) -> Error {
    let gone = async move {
        match gone.await {
            Ok(()) => gone_error(),
            Err(e) => e,
        }
    };
    match session {
        Some(keeper) => tokio::select! {
            e = keeper.lost() => e,
            e = gone => e,
        },
        None => gone.await,
    }
}

/// The key a contender with `lease` puts in lock or election `name`:
/// `<name>/<lease as Go's %x>`, as the server's recipe names it.
pub(super) fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(hex.as_bytes());
    key
}

/// A contender key that a lock or campaign call put (or is about to): if
/// the call ends without holding it (an error, or the future dropped while
/// waiting), the key is deleted, as etcd's Mutex.Lock unlocks and
/// Election.Campaign resigns when their wait fails. Otherwise the caller's
/// own lease would keep it there, queueing every later contender behind it.
pub(super) struct PendingKey {
    armed: Option<(Client, Vec<u8>)>,
}

impl PendingKey {
    /// Arms the guard for `key`.
    pub(super) fn new(client: &Client, key: Vec<u8>) -> Self {
        PendingKey {
            armed: Some((client.clone(), key)),
        }
    }

    /// The call holds the key: keep it.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        let Some((client, key)) = self.armed.take() else {
            return;
        };
        // A drop cannot wait: delete from a task, if a runtime still runs
        // (else the key goes when its lease does).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = client.delete(key).await {
                    tracing::debug!("deleting an abandoned contender key: {e}");
                }
            });
        }
    }
}
