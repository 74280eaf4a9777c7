//! Watches: [`Client::watch`] follows the changes of a key, or of a span of
//! keys, as a [`Stream`] of etcd's `WatchResponse`s.
//!
//! A [`Watcher`] is one stream of the member's Watch service, opened in
//! process: the very stream code a gRPC client's watch runs on, so it keeps
//! the same guarantees. Each revision's matching events come once, in
//! revision order, with no gap, all of one revision in one response; a
//! watcher that falls behind catches up from the store instead of holding
//! up writers, and is canceled with [`ErrorKind::Compacted`] if the history
//! it still needs was compacted away meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bramble_api::etcdserverpb::watch_create_request::FilterType;
use bramble_api::etcdserverpb::watch_request::RequestUnion;
use bramble_api::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use bramble_raft::FatalError;
use bramble_server::auth::who::Credentials;
use bramble_server::watch::WatchService;
use futures::stream::{FusedStream, Stream};
use tokio::sync::mpsc;
use tonic::Status;

use super::options::KeySpan;
use super::Client;
use crate::error::{Error, ErrorKind};

/// What to watch: which keys (one key, a prefix, from a key, or up to an
/// explicit end), from which revision, and which events.
///
/// ```
/// use bramble::WatchOptions;
///
/// // Every change under `jobs/` since revision 42, with the value each
/// // change replaced, deletes only.
/// let opts = WatchOptions::new().prefix().start_revision(42).prev_kv().no_put();
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    span: KeySpan,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
}

impl WatchOptions {
    /// One key, its changes from now on, puts and deletes.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new();
    /// assert_eq!(opts.request("k").range_end, b"");
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key that starts with the key given to the call.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().prefix();
    /// assert_eq!(opts.request("jobs/").range_end, b"jobs0");
    /// ```
    pub fn prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }

    /// Every key from the key given to the call on.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().from_key();
    /// assert_eq!(opts.request("m").range_end, b"\0");
    /// ```
    pub fn from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }

    /// Keys from the key given to the call up to `end`, exclusive.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().range_end("c");
    /// assert_eq!(opts.request("a").range_end, b"c");
    /// ```
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::End(end.into());
        self
    }

    /// The changes from `revision` on, those already made included (the
    /// history is replayed first); 0, the default, is "from now on". A
    /// revision older than the last compaction fails the watch with
    /// [`ErrorKind::Compacted`].
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().start_revision(7);
    /// assert_eq!(opts.request("k").start_revision, 7);
    /// ```
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Each event carries the key-value pair as it was before (`prev_kv`),
    /// unless the key was created by it or that revision was compacted.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().prev_kv();
    /// assert!(opts.request("k").prev_kv);
    /// ```
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Leaves out put events (etcd's NOPUT filter): deletes only.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().no_put();
    /// assert_eq!(opts.request("k").filters.len(), 1);
    /// ```
    pub fn no_put(mut self) -> Self {
        self.no_put = true;
        self
    }

    /// Leaves out delete events (etcd's NODELETE filter): puts only.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().no_delete();
    /// assert_eq!(opts.request("k").filters.len(), 1);
    /// ```
    pub fn no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// Asks for a progress notification (a response without events, see
    /// [`WatchResponseExt::is_progress_notify`]) every
    /// `watch_progress_notify_interval` in which nothing else was sent, so
    /// the watcher learns how far the store got while its keys were quiet.
    ///
    /// ```
    /// let opts = bramble::WatchOptions::new().progress_notify();
    /// assert!(opts.request("k").progress_notify);
    /// ```
    pub fn progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }

    /// etcd's WatchCreateRequest for `key` with these options.
    ///
    /// ```
    /// let req = bramble::WatchOptions::new().prefix().request("a/");
    /// assert_eq!((req.key, req.range_end), (b"a/".to_vec(), b"a0".to_vec()));
    /// ```
    pub fn request(&self, key: impl Into<Vec<u8>>) -> WatchCreateRequest {
        let (key, range_end) = self.span.key_and_end(key.into());
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchCreateRequest {
            key,
            range_end,
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            ..Default::default()
        }
    }
}

impl Client {
    /// Watches `key` (and the keys `opts` adds): resolves once the member
    /// has made the watch, so every change made after it resolves (or from
    /// `opts`' start revision on) is in the stream.
    ///
    /// Fails with [`ErrorKind::Compacted`] (and its
    /// [`compact_revision`](Error::compact_revision), to watch again from)
    /// when the start revision was compacted away, and with the member's
    /// reason (code `FailedPrecondition`, as etcd's clients report it) when
    /// the member refuses the watch, e.g. for a range that ends before it
    /// starts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::WatchOptions;
    /// use futures::StreamExt;
    ///
    /// let mut jobs = node.watch("jobs/", WatchOptions::new().prefix()).await?;
    /// let rev = node.put("jobs/1", "resize").await?.header.unwrap().revision;
    /// let resp = jobs.next().await.expect("a response")?;
    /// let kv = resp.events[0].kv.as_ref().unwrap();
    /// assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"jobs/1"[..], rev));
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        opts: WatchOptions,
    ) -> Result<Watcher, Error> {
        self.watch_request(opts.request(key)).await
    }

    /// etcd's Watch create, with every field as given (a chosen
    /// `watch_id`, `fragment`); see [`Client::watch`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::api::etcdserverpb::WatchCreateRequest;
    ///
    /// let req = WatchCreateRequest {
    ///     key: b"k".to_vec(),
    ///     watch_id: 7,
    ///     ..Default::default()
    /// };
    /// let watcher = node.watch_request(req).await?;
    /// assert_eq!(watcher.watch_id(), 7);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch_request(&self, req: WatchCreateRequest) -> Result<Watcher, Error> {
        if let Some(e) = self.fatal_error() {
            return Err(e.into());
        }
        // A stream opened now would end at once, maybe after its created
        // answer: refuse it outright instead.
        if self.inner.stop.is_cancelled() {
            return Err(Error::from(bramble_server::errors::stopped()));
        }
        let service = self.inner.watch.get_or_init(|| {
            WatchService::with_shutdown(self.inner.ctx.clone(), self.inner.stop.clone())
        });
        // Unbounded: the stream's task takes requests only while it is not
        // waiting to hand out a response, so a cancel or progress request
        // must not wait for the caller to read the stream. Only the caller
        // makes requests, so only the caller can fill it.
        let (requests, mut inbound) = mpsc::unbounded_channel::<WatchRequest>();
        let inbound = futures::stream::poll_fn(move |cx| inbound.poll_recv(cx).map(|r| r.map(Ok)));
        let ctx = self.inner.ctx.clone();
        let mut watcher = Watcher {
            watch_id: req.watch_id,
            client: self.clone(),
            requests,
            responses: service.open(Credentials::default(), inbound).into_inner(),
            partial: None,
            first: None,
            fatal: Box::pin(async move { ctx.node.fatal().wait().await }),
            ended: false,
        };
        let start_revision = req.start_revision;
        // Read before the create: compaction only moves forward, so a start
        // below it now is surely refused. (Read after, a compaction racing
        // the create could leave this waiting for an answer that may never
        // come: a watcher created in time is not cancelled by it.)
        let compacted = self.inner.ctx.node.store().compact_revision();
        watcher.send(RequestUnion::CreateRequest(req))?;
        // The stream's first answer is the create's: created, or refused
        // (created and canceled at once, with the reason).
        let created = watcher.recv().await?;
        if created.canceled {
            return Err(refused(created.cancel_reason));
        }
        watcher.watch_id = created.watch_id;
        // etcd makes a watch from a compacted revision, then cancels it at
        // once with the compaction's revision; the member answers that
        // before anything else, so it is the next answer when the history
        // is gone. (If a compaction overtakes the watch later, the stream
        // ends with the same error.)
        if start_revision > 0 && start_revision < compacted {
            let next = watcher.recv().await?;
            if next.canceled && next.compact_revision > 0 {
                return Err(Error::watch_compacted(next.compact_revision));
            }
            watcher.first = Some(next);
        }
        Ok(watcher)
    }
}

/// A watch's responses, as a [`Stream`]: etcd's `WatchResponse`s, each with
/// the events of one or more whole revisions in order (`header.revision` is
/// the newest revision the member had read), or without events for a
/// progress notification ([`WatchResponseExt::is_progress_notify`]).
///
/// The stream ends after [`Watcher::cancel`]; or with one error, then the
/// end: [`ErrorKind::Compacted`] if the watcher fell behind a compaction
/// (its [`compact_revision`](Error::compact_revision) is where to watch
/// again from), [`ErrorKind::Stopped`] once the member closes or fails for
/// good (with its [`fatal`](Error::fatal) failure). Dropping the watcher
/// ends the watch on the member. A response the member sends in fragments
/// (`fragment` in [`Client::watch_request`]) comes whole, as etcd's
/// clients put it back together.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bramble::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
/// use bramble::api::mvccpb::event::EventType;
/// use bramble::WatchOptions;
/// use futures::StreamExt;
///
/// let mut w = node.watch("door", WatchOptions::new()).await?;
/// node.put("door", "open").await?;
/// node.delete("door").await?;
/// let mut seen = Vec::new();
/// while seen.len() < 2 {
///     let resp = w.next().await.expect("open")?;
///     seen.extend(resp.events.iter().map(|e| e.r#type()));
/// }
/// assert_eq!(seen, [EventType::Put, EventType::Delete]);
/// # node.close().await;
/// # Ok(())
/// # }
/// ```
pub struct Watcher {
    watch_id: i64,
    client: Client,
    /// The stream's requests (cancel, progress); dropping it ends the
    /// stream on the member.
    requests: mpsc::UnboundedSender<WatchRequest>,
    responses: mpsc::Receiver<Result<WatchResponse, Status>>,
    /// The parts so far of a response sent in fragments.
    partial: Option<WatchResponse>,
    /// An answer read ahead by [`Client::watch_request`] (while checking for
    /// a compacted start), to hand out first.
    first: Option<WatchResponse>,
    /// Resolves with the member's fatal failure: the member then sends
    /// nothing more, so the stream ends with it.
    fatal: Pin<Box<dyn Future<Output = FatalError> + Send + Sync>>,
    /// The stream ended: nothing more comes.
    ended: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("watch_id", &self.watch_id)
            .field("client", &self.client)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// The watch's id on its stream (etcd's `watch_id`), as the responses
    /// carry it; progress answers to [`Watcher::request_progress`] carry -1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use futures::StreamExt;
    ///
    /// let mut w = node.watch("k", bramble::WatchOptions::new()).await?;
    /// node.put("k", "v").await?;
    /// assert_eq!(w.next().await.expect("open")?.watch_id, w.watch_id());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// Asks for a progress notification (etcd's RequestProgress): once every
    /// event up to the store's current revision was sent, a response without
    /// events whose `header.revision` is that revision, with `watch_id` -1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use bramble::WatchResponseExt;
    /// use futures::StreamExt;
    ///
    /// let mut w = node.watch("k", bramble::WatchOptions::new()).await?;
    /// let rev = node.put("k", "v").await?.header.unwrap().revision;
    /// assert_eq!(w.next().await.expect("open")?.events.len(), 1);
    /// // Quiet since: the member says how far it got.
    /// w.request_progress().await?;
    /// let progress = w.next().await.expect("open")?;
    /// assert!(progress.is_progress_notify());
    /// assert_eq!(progress.header.unwrap().revision, rev);
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn request_progress(&self) -> Result<(), Error> {
        self.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
    }

    /// Cancels the watch: the responses already on their way still come,
    /// then the stream ends (without an error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// use futures::StreamExt;
    ///
    /// let mut w = node.watch("k", bramble::WatchOptions::new()).await?;
    /// w.cancel().await?;
    /// assert!(w.next().await.is_none());
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel(&self) -> Result<(), Error> {
        let cancel = WatchCancelRequest {
            watch_id: self.watch_id,
        };
        self.send(RequestUnion::CancelRequest(cancel))
    }

    /// Sends one request on the stream; the stream's task is gone only when
    /// the member stopped.
    fn send(&self, req: RequestUnion) -> Result<(), Error> {
        let req = WatchRequest {
            request_union: Some(req),
        };
        match self.requests.send(req) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.client.error(bramble_server::errors::stopped())),
        }
    }

    /// The stream's next whole response, as it came (before
    /// [`Watcher::outcome`]).
    async fn recv(&mut self) -> Result<WatchResponse, Error> {
        match std::future::poll_fn(|cx| self.poll_whole(cx)).await {
            Some(Ok(resp)) => Ok(resp),
            Some(Err(status)) => Err(self.client.error(status)),
            None => Err(self.client.error(bramble_server::errors::stopped())),
        }
    }

    /// The stream's next response, its fragments joined (etcd's clients
    /// do the same).
    fn poll_whole(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<WatchResponse, Status>>> {
        loop {
            let mut resp = match ready!(self.responses.poll_recv(cx)) {
                Some(Ok(resp)) => resp,
                other => return Poll::Ready(other),
            };
            if let Some(mut whole) = self.partial.take() {
                whole.events.append(&mut resp.events);
                whole.fragment = resp.fragment;
                resp = whole;
            }
            if !resp.fragment {
                return Poll::Ready(Some(Ok(resp)));
            }
            self.partial = Some(resp);
        }
    }

    /// What the stream yields for `resp`: the response, or its end when it
    /// cancels the watch (quietly for a cancel asked for, else an error).
    fn outcome(&mut self, resp: WatchResponse) -> Option<Result<WatchResponse, Error>> {
        if !resp.canceled {
            return Some(Ok(resp));
        }
        self.ended = true;
        if resp.compact_revision > 0 {
            Some(Err(Error::watch_compacted(resp.compact_revision)))
        } else if !resp.cancel_reason.is_empty() {
            Some(Err(refused(resp.cancel_reason)))
        } else {
            None
        }
    }
}

impl Stream for Watcher {
    type Item = Result<WatchResponse, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(resp) = this.first.take() {
            return Poll::Ready(this.outcome(resp));
        }
        let item = match this.poll_whole(cx) {
            // A member that failed for good sends nothing more: say why.
            Poll::Pending => match this.fatal.as_mut().poll(cx) {
                Poll::Ready(fatal) => {
                    this.ended = true;
                    Some(Err(fatal.into()))
                }
                Poll::Pending => return Poll::Pending,
            },
            Poll::Ready(Some(Ok(resp))) => this.outcome(resp),
            Poll::Ready(Some(Err(status))) => {
                this.ended = true;
                Some(Err(this.client.error(status)))
            }
            // The stream's task ends without a word only when the member
            // stopped and its last answer did not fit in the buffer.
            Poll::Ready(None) => {
                this.ended = true;
                Some(Err(this.client.error(bramble_server::errors::stopped())))
            }
        };
        Poll::Ready(item)
    }
}

impl FusedStream for Watcher {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// What etcd's clients make of a watch the member refused or canceled with
/// a reason: `FailedPrecondition`, the reason as the text.
fn refused(reason: String) -> Error {
    Error::new(ErrorKind::Other, tonic::Code::FailedPrecondition, reason)
}

/// Telling a watch's responses apart (etcd's `WatchResponse` methods).
pub trait WatchResponseExt {
    /// A progress notification: no events, only how far the member's store
    /// got (`header.revision`), every change up to which was sent before.
    /// Comes for [`WatchOptions::progress_notify`] and
    /// [`Watcher::request_progress`] (etcd's `IsProgressNotify`).
    ///
    /// ```
    /// use bramble::api::etcdserverpb::{ResponseHeader, WatchResponse};
    /// use bramble::WatchResponseExt;
    ///
    /// let progress = WatchResponse {
    ///     header: Some(ResponseHeader { revision: 9, ..Default::default() }),
    ///     ..Default::default()
    /// };
    /// assert!(progress.is_progress_notify());
    /// ```
    fn is_progress_notify(&self) -> bool;
}

impl WatchResponseExt for WatchResponse {
    fn is_progress_notify(&self) -> bool {
        self.events.is_empty()
            && !self.canceled
            && !self.created
            && self.compact_revision == 0
            && self.header.as_ref().is_some_and(|h| h.revision != 0)
    }
}
