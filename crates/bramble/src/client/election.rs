//! Leader elections, as etcd's `concurrency.Election` with a session: the
//! member's Election service (v3election) makes the candidate whose key is
//! oldest the leader; a [`Leadership`] is held until resigned or dropped, or
//! its session lease is lost. Anyone can ask who leads, or follow each new
//! leader with [`Client::observe`].

use bramble_api::mvccpb::KeyValue;
use bramble_api::v3electionpb::election_server::Election;
use bramble_api::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use futures::stream::{self, BoxStream, Stream, StreamExt};

use super::session::{contender_key, first_loss, PendingKey};
use super::{Client, LeaseKeeper};
use crate::error::{Error, ErrorKind};

impl Client {
    /// Stands in election `name` with `value`, waiting until elected (every
    /// older candidate resigned or lost its lease). Like [`Client::lock`],
    /// the candidacy is held with a session lease of 60 seconds kept alive
    /// while the [`Leadership`] lives; dropping the future while it waits
    /// withdraws the candidacy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// let leader = node.election_leader("scheduler").await?.expect("elected");
    /// assert_eq!(leader.value, b"pi-1");
    /// assert_eq!(leader.key, leadership.key());
    /// leadership.resign().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn campaign(
        &self,
        name: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Leadership, Error> {
        let session = self.own_session().await?;
        let lease = session.id();
        let (name, value) = (name.into(), value.into());
        // As for a lock: a session lost while waiting is no election.
        let leader = tokio::select! {
            r = self.stand(name, value, lease) => r?,
            e = session.lost() => return Err(e),
        };
        Ok(self.leadership(leader, Some(session)))
    }

    /// Stands in election `name` with `value` and the caller's lease `lease`
    /// (which the caller keeps alive): the leadership ends when the lease
    /// does, and [`Leadership::resign`] leaves the lease alone. Lease 0 is
    /// refused (use [`Client::campaign`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let session = node.lease_keeper(5).await?;
    /// let leadership = node.campaign_with_lease("scheduler", "pi-1", session.id()).await?;
    /// assert_eq!(leadership.lease(), session.id());
    /// leadership.resign().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn campaign_with_lease(
        &self,
        name: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<Leadership, Error> {
        if lease == 0 {
            return Err(Error::invalid_argument(
                "campaign with lease 0: the candidacy needs a lease that is kept alive (use \
                 campaign)",
            ));
        }
        let leader = self.stand(name.into(), value.into(), lease).await?;
        Ok(self.leadership(leader, None))
    }

    /// The Campaign call: puts the candidate key and waits until it is the
    /// oldest; a call that ends without being elected deletes its key.
    async fn stand(&self, name: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<LeaderKey, Error> {
        let pending = PendingKey::new(self, contender_key(&name, lease));
        let req = CampaignRequest { name, lease, value };
        let resp = self
            .call(self.inner.election.campaign(tonic::Request::new(req)))
            .await?;
        let leader = resp.leader.ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                tonic::Code::Internal,
                "campaign answered without a leader key",
            )
        })?;
        pending.disarm();
        Ok(leader)
    }

    fn leadership(&self, leader: LeaderKey, session: Option<LeaseKeeper>) -> Leadership {
        Leadership {
            client: self.clone(),
            leader,
            session,
            resigned: false,
        }
    }

    /// The leader of election `name` (its key, value and lease), or `None`
    /// if nobody is elected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// assert!(node.election_leader("scheduler").await?.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn election_leader(
        &self,
        name: impl Into<Vec<u8>>,
    ) -> Result<Option<KeyValue>, Error> {
        let req = LeaderRequest { name: name.into() };
        match self
            .call(self.inner.election.leader(tonic::Request::new(req)))
            .await
        {
            Ok(resp) => Ok(resp.kv),
            Err(e) if e.kind() == ErrorKind::ElectionNoLeader => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows election `name`: yields its leader now (if any) and each time
    /// that changes (a new leader, or a new value proclaimed), as etcd's
    /// Observe. Leaders may be skipped by a slow reader, never reordered. The
    /// stream ends with an error when the member stops.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use futures::StreamExt;
    ///
    /// let mut leaders = Box::pin(node.observe("scheduler"));
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// let first = leaders.next().await.expect("a leader")?;
    /// assert_eq!(first.value, b"pi-1");
    /// leadership.proclaim("pi-1, busy").await?;
    /// let again = leaders.next().await.expect("a new value")?;
    /// assert_eq!(again.value, b"pi-1, busy");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe(
        &self,
        name: impl Into<Vec<u8>>,
    ) -> impl Stream<Item = Result<KeyValue, Error>> + Send + 'static {
        let client = self.clone();
        let req = LeaderRequest { name: name.into() };
        stream::once(async move {
            let started = client
                .call(client.inner.election.observe(tonic::Request::new(req)))
                .await;
            let leaders: BoxStream<'static, Result<KeyValue, Error>> = match started {
                Ok(leaders) => leaders
                    .filter_map(move |r| {
                        let out = match r {
                            Ok(resp) => resp.kv.map(Ok),
                            Err(status) => Some(Err(client.error(status))),
                        };
                        std::future::ready(out)
                    })
                    .boxed(),
                Err(e) => stream::once(std::future::ready(Err(e))).boxed(),
            };
            leaders
        })
        .flatten()
    }
}

/// Being the leader of an election. Dropping it resigns, from a spawned task
/// if a Tokio runtime is running (with none, the leadership ends when its
/// lease does); [`Leadership::resign`] does it now and reports how it went.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bramble::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
/// let first = node.campaign("scheduler", "pi-1").await?;
/// let client = node.client();
/// let second = tokio::spawn(async move { client.campaign("scheduler", "pi-2").await });
/// drop(first); // resigns: the waiting candidate is elected
/// let second = second.await.unwrap()?;
/// assert_eq!(node.election_leader("scheduler").await?.unwrap().value, b"pi-2");
/// second.resign().await?;
/// # node.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the leadership resigns it"]
pub struct Leadership {
    client: Client,
    /// etcd's proof of leadership: the key, and the create revision it must
    /// still have.
    leader: LeaderKey,
    /// The session lease this campaign granted for itself (none with a
    /// caller's lease): revoked on resign.
    session: Option<LeaseKeeper>,
    /// Resigned already: nothing for the drop to do.
    resigned: bool,
}

impl Leadership {
    /// The leader's key (`<name>/<lease in hex>`), which holds its value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// let kv = node.get(leadership.key()).await?.expect("the leader's key");
    /// assert_eq!(kv.value, b"pi-1");
    /// # leadership.resign().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(&self) -> &[u8] {
        &self.leader.key
    }

    /// The lease the leadership is held with.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// assert_eq!(node.get(leadership.key()).await?.unwrap().lease, leadership.lease());
    /// # leadership.resign().await?;
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lease(&self) -> i64 {
        self.leader.lease
    }

    /// Replaces the leader's value, while still the leader; a leader that
    /// lost its key fails with [`ErrorKind::ElectionNotLeader`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::ErrorKind;
    ///
    /// let leadership = node.campaign("scheduler", "starting").await?;
    /// leadership.proclaim("ready").await?;
    /// assert_eq!(node.election_leader("scheduler").await?.unwrap().value, b"ready");
    /// node.delete(leadership.key()).await?; // deposed
    /// let err = leadership.proclaim("still here?").await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ElectionNotLeader);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        let req = ProclaimRequest {
            leader: Some(self.leader.clone()),
            value: value.into(),
        };
        self.client
            .call(
                self.client
                    .inner
                    .election
                    .proclaim(tonic::Request::new(req)),
            )
            .await
            .map(|_| ())
    }

    /// Resolves once this is no longer the leader: its session lease could
    /// not be kept alive (the error says why), its key was deleted or
    /// replaced ([`ErrorKind::ElectionNotLeader`]), or the member stopped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::ErrorKind;
    ///
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// node.delete(leadership.key()).await?;
    /// assert_eq!(leadership.lost().await.kind(), ErrorKind::ElectionNotLeader);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lost(&self) -> Error {
        let rev = self.leader.rev;
        let gone = self
            .client
            .key_gone(&self.leader.key, |kv| kv.create_revision == rev);
        first_loss(self.session.as_ref(), gone, || {
            Error::new(
                ErrorKind::ElectionNotLeader,
                tonic::Code::Unknown,
                "election: not leader",
            )
        })
        .await
    }

    /// Gives the leadership up now (the next candidate is elected), then
    /// revokes the session lease [`Client::campaign`] granted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let leadership = node.campaign("scheduler", "pi-1").await?;
    /// leadership.resign().await?;
    /// assert!(node.election_leader("scheduler").await?.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resign(mut self) -> Result<(), Error> {
        self.resigned = true;
        resign(&self.client, self.leader.clone(), self.session.take()).await
    }
}

/// Resigns `leader`, then revokes the campaign's own session lease, if any.
async fn resign(
    client: &Client,
    leader: LeaderKey,
    session: Option<LeaseKeeper>,
) -> Result<(), Error> {
    let req = ResignRequest {
        leader: Some(leader),
    };
    let resigned = client
        .call(client.inner.election.resign(tonic::Request::new(req)))
        .await;
    let revoked = super::session::end_session(session).await;
    resigned?;
    revoked
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if self.resigned {
            return;
        }
        let session = self.session.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let leader = self.leader.clone();
            rt.spawn(async move {
                if let Err(e) = resign(&client, leader, session).await {
                    tracing::debug!("resign on drop: {e}");
                }
            });
        }
    }
}
