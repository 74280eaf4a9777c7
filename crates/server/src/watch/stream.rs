//! One client's bidirectional watch stream: create and cancel requests,
//! RequestProgress, periodic progress notifications, and the responses the
//! hub queues for the stream's watchers (with prev_kv and fragmenting), as
//! etcd's `serverWatchStream` does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::etcdserverpb::watch_request::RequestUnion;
use bramble_api::etcdserverpb::{
    RangeRequest, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use bramble_api::mvccpb::event::EventType;
use bramble_api::mvccpb::Event;
use bramble_storage::mvcc::{AuthError, MvccStore};
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::filter::{EventFilters, WatchRange};
use super::hub::{Hub, HubMsg, WatchSpec};
use crate::auth::who::{self, Credentials};
use crate::errors::auth_status;
use crate::{errors, ServerContext};

/// etcd's `mvcc: watcher range is empty`.
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
/// etcd's `mvcc: duplicate watch ID provided on the WatchStream`.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// clientv3's AutoWatchID: the client lets the server choose.
const AUTO_WATCH_ID: i64 = 0;
/// clientv3's InvalidWatchID.
const INVALID_WATCH_ID: i64 = -1;

/// Per-watcher options the stream applies to the hub's messages.
#[derive(Debug, Clone, Copy)]
struct Opts {
    /// The hub's incarnation of this id: messages for an older watcher that
    /// had the same id are dropped.
    generation: u64,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last progress tick (etcd elides the
    /// notification otherwise).
    idle: bool,
}

/// The state of one client stream.
struct WatchStream {
    ctx: Arc<ServerContext>,
    hub: Arc<Hub>,
    id: u64,
    watchers: HashMap<i64, Opts>,
    next_id: i64,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    /// The credentials the stream was opened with.
    creds: Credentials,
}

/// The stream ended (the client went away): stop.
struct Gone;

/// Serves one stream until the client closes it or goes away.
pub(super) async fn run(
    ctx: Arc<ServerContext>,
    creds: Credentials,
    hub: Arc<Hub>,
    mut inbound: impl Stream<Item = Result<WatchRequest, Status>> + Unpin,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    progress_interval: Duration,
    stop: CancellationToken,
) {
    let (id, mut queue) = hub.open_stream();
    let mut s = WatchStream {
        ctx,
        creds,
        hub: hub.clone(),
        id,
        watchers: HashMap::new(),
        next_id: 0,
        out,
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + progress_interval,
        progress_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            req = inbound.next() => match req {
                Some(Ok(req)) => s.handle(req).await,
                // The client closed its side (or broke the stream): etcd ends it.
                None | Some(Err(_)) => Err(Gone),
            },
            msg = queue.recv() => match msg {
                Some(msg) => s.deliver(msg).await,
                None => Err(Gone),
            },
            _ = ticker.tick() => {
                s.progress_tick();
                Ok(())
            }
            _ = s.out.closed() => Err(Gone),
            _ = stop.cancelled() => {
                let _ = s.out.try_send(Err(errors::stopped()));
                Err(Gone)
            }
        };
        if step.is_err() {
            break;
        }
    }
    hub.close_stream(id);
}

impl WatchStream {
    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let mut h = Some(ResponseHeader {
            revision,
            ..Default::default()
        });
        self.ctx.identity.fill(&mut h, &self.ctx.node);
        h
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                // etcd answers only cancels of watchers that exist.
                if self.watchers.remove(&c.watch_id).is_some()
                    && self.hub.cancel(self.id, c.watch_id)
                {
                    let header = self.header(self.ctx.node.store().current_revision());
                    self.send(WatchResponse {
                        header,
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.hub.request_progress(self.id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Gone> {
        let refuse = |reason: &str, rev: i64, this: &Self| WatchResponse {
            header: this.header(rev),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let current = self.ctx.node.store().current_revision();
        self.ctx.settle(&self.creds).await;
        if let Err(reason) = self.permitted(&c) {
            return self.send(refuse(&reason, current, self)).await;
        }
        let range = match WatchRange::from_request(&c.key, &c.range_end) {
            Ok(r) => r,
            Err(_) => return self.send(refuse(EMPTY_RANGE, current, self)).await,
        };
        let watch_id = if c.watch_id == AUTO_WATCH_ID {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        } else if self.watchers.contains_key(&c.watch_id) {
            return self.send(refuse(DUPLICATE_ID, current, self)).await;
        } else {
            c.watch_id
        };
        // The created response goes out before anything the hub queues for
        // the watcher, since this task sends both in order.
        let (revision, generation) = self.hub.add_watcher(
            self.id,
            watch_id,
            WatchSpec {
                range,
                filters: EventFilters::from_request(&c.filters),
                start_revision: c.start_revision,
            },
        );
        self.watchers.insert(
            watch_id,
            Opts {
                generation,
                prev_kv: c.prev_kv,
                fragment: c.fragment,
                progress_notify: c.progress_notify,
                idle: true,
            },
        );
        self.send(WatchResponse {
            header: self.header(revision),
            watch_id,
            created: true,
            ..Default::default()
        })
        .await
    }

    /// etcd's `isWatchPermitted`: read on the whole watched range, as whoever the
    /// stream's credentials name now; the refusal is etcd's cancel reason (its
    /// gRPC error's text; anything but a bad token, an old revision or no user
    /// is `permission denied`).
    fn permitted(&self, c: &WatchCreateRequest) -> Result<(), String> {
        let store = self.ctx.node.store();
        let checked = self.ctx.who_from(&self.creds).and_then(|who| {
            // etcd: an empty key is the smallest key, `\0`.
            let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
            store
                .auth_check_permitted(&who::or_empty(who), key, &c.range_end, PermType::Read)
                .map_err(auth_status)
        });
        checked.map_err(|status| {
            let (code, msg) = match status.code() {
                Code::Unauthenticated | Code::InvalidArgument => {
                    (status.code(), status.message().to_owned())
                }
                _ => (
                    Code::PermissionDenied,
                    AuthError::PermissionDenied.to_string(),
                ),
            };
            format!("rpc error: code = {code:?} desc = {msg}")
        })
    }

    /// etcd's periodic progress: for each progress_notify watcher that had no
    /// events since the last tick.
    fn progress_tick(&mut self) {
        for (id, o) in self.watchers.iter_mut() {
            if o.progress_notify && o.idle {
                self.hub.progress_notify(self.id, *id);
            }
            o.idle = true;
        }
    }

    /// Whether `watch_id` still names the watcher incarnation `generation`.
    fn is_current(&self, watch_id: i64, generation: u64) -> bool {
        self.watchers
            .get(&watch_id)
            .is_some_and(|o| o.generation == generation)
    }

    async fn deliver(&mut self, msg: HubMsg) -> Result<(), Gone> {
        match msg {
            HubMsg::Events {
                watch_id,
                generation,
                revision,
                mut events,
            } => {
                // Events already queued for a canceled watcher are dropped.
                let Some(opts) = self
                    .watchers
                    .get_mut(&watch_id)
                    .filter(|o| o.generation == generation)
                else {
                    return Ok(());
                };
                opts.idle = false;
                let opts = *opts;
                if opts.prev_kv {
                    let store = self.ctx.node.store().clone();
                    events = match tokio::task::spawn_blocking(move || {
                        add_prev_kvs(&store, &mut events);
                        events
                    })
                    .await
                    {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::error!("watch: prev_kv task failed: {e}");
                            return Err(Gone);
                        }
                    };
                }
                let resp = WatchResponse {
                    header: self.header(revision),
                    watch_id,
                    events,
                    ..Default::default()
                };
                if opts.fragment {
                    for part in fragments(resp, self.ctx.limits.max_request_bytes) {
                        self.send(part).await?;
                    }
                    Ok(())
                } else {
                    self.send(resp).await
                }
            }
            HubMsg::Compacted {
                watch_id,
                generation,
                compact_revision,
                revision,
            } => {
                if !self.is_current(watch_id, generation) {
                    return Ok(());
                }
                self.watchers.remove(&watch_id);
                // etcd's compacted cancel carries no revision in its header.
                let mut header = self.header(revision);
                if let Some(h) = header.as_mut() {
                    h.revision = 0;
                }
                self.send(WatchResponse {
                    header,
                    watch_id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                })
                .await
            }
            HubMsg::Progress {
                watch_id,
                generation,
                revision,
            } => {
                if watch_id != INVALID_WATCH_ID && !self.is_current(watch_id, generation) {
                    return Ok(());
                }
                self.send(WatchResponse {
                    header: self.header(revision),
                    watch_id,
                    ..Default::default()
                })
                .await
            }
        }
    }
}

/// etcd's prev_kv: the key as it was at the event's revision - 1, for every
/// event that is not a creation; omitted when that revision is compacted.
fn add_prev_kvs(store: &MvccStore, events: &mut [Event]) {
    for ev in events.iter_mut() {
        let Some(kv) = ev.kv.as_ref() else { continue };
        let created = ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
        if created {
            continue;
        }
        let req = RangeRequest {
            key: kv.key.clone(),
            revision: kv.mod_revision - 1,
            ..Default::default()
        };
        if let Ok(mut r) = store.range(&req) {
            if !r.kvs.is_empty() {
                ev.prev_kv = Some(r.kvs.swap_remove(0));
            }
        }
    }
}

/// etcd's `sendFragments`: a response of at least `max_bytes` with two or
/// more events is split into responses of fewer than `max_bytes` (at least
/// one event each), all but the last marked `fragment`.
///
/// Linear in the number of events: a part's encoded size is the size of the
/// response without events plus the size of each event's field, so it is
/// kept as a running sum instead of re-encoding the part for every event.
///
/// Public (the only public item of `watch`) for its benchmark,
/// `benches/benches/watch_fragments.rs`.
pub fn fragments(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.events.len() < 2 || resp.encoded_len() < max_bytes {
        return vec![resp];
    }
    let mut template = resp;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let base = template.encoded_len();
    let mut parts = Vec::new();
    let mut cur = template.clone();
    let mut size = base;
    for ev in events {
        let len = event_field_len(&ev);
        // etcd adds the event, and moves it to a new part if the part is
        // then too large and has another event.
        if !cur.events.is_empty() && size + len >= max_bytes {
            debug_assert_eq!(size, cur.encoded_len());
            parts.push(std::mem::replace(&mut cur, template.clone()));
            size = base;
        }
        cur.events.push(ev);
        size += len;
    }
    cur.fragment = false;
    parts.push(cur);
    parts
}

/// The bytes `ev` adds to a [`WatchResponse`]: its field's tag, length and body.
fn event_field_len(ev: &Event) -> usize {
    /// `WatchResponse.events`' field number.
    const EVENTS_FIELD: u32 = 11;
    prost::encoding::message::encoded_len(EVENTS_FIELD, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::mvccpb::KeyValue;

    fn ev(rev: i64, size: usize) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: format!("k{rev}").into_bytes(),
                value: vec![b'x'; size],
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_as_etcd() {
        let small = WatchResponse {
            watch_id: 3,
            events: vec![ev(1, 10), ev(2, 10)],
            ..Default::default()
        };
        assert_eq!(fragments(small.clone(), 1000), vec![small]);
        let one_big = WatchResponse {
            events: vec![ev(1, 5000)],
            ..Default::default()
        };
        assert_eq!(fragments(one_big.clone(), 1000).len(), 1);

        let big = WatchResponse {
            watch_id: 3,
            events: (1..=10).map(|r| ev(r, 300)).collect(),
            ..Default::default()
        };
        let parts = fragments(big.clone(), 1000);
        assert!(parts.len() > 1);
        let (last, init) = parts.split_last().unwrap();
        assert!(init.iter().all(|p| p.fragment && p.encoded_len() < 1000));
        assert!(!last.fragment);
        assert!(parts
            .iter()
            .all(|p| p.watch_id == 3 && !p.events.is_empty()));
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, big.events);
    }

    /// etcd's `sendFragments`, translated literally (it re-measures the
    /// part after each event): the specification the linear version follows.
    fn etcd_send_fragments(wr: &WatchResponse, max: usize) -> Vec<WatchResponse> {
        if wr.encoded_len() < max || wr.events.len() < 2 {
            return vec![wr.clone()];
        }
        let mut ow = wr.clone();
        ow.events.clear();
        ow.fragment = true;
        let mut out = Vec::new();
        let mut idx = 0;
        loop {
            let mut cur = ow.clone();
            for ev in &wr.events[idx..] {
                cur.events.push(ev.clone());
                if cur.events.len() > 1 && cur.encoded_len() >= max {
                    cur.events.pop();
                    break;
                }
                idx += 1;
            }
            if idx == wr.events.len() {
                cur.fragment = false;
            }
            let last = !cur.fragment;
            out.push(cur);
            if last {
                return out;
            }
        }
    }

    #[test]
    fn fragments_match_etcd_for_mixed_sizes() {
        // Sizes around the limit and around varint length boundaries (127,
        // 128, 16383, 16384 bytes), in an order that is not monotonic.
        let sizes = [
            0, 1, 100, 127, 128, 129, 900, 1000, 2000, 16383, 16384, 20000,
        ];
        let events: Vec<Event> = (0..200)
            .map(|i| ev(i as i64 + 1, sizes[(i * 7) % sizes.len()]))
            .collect();
        let header = Some(ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 1_000_000,
            raft_term: 3,
        });
        for max in [1, 50, 999, 1000, 1024, 4096, 20000, 100_000, 10_000_000] {
            for n in [0, 1, 2, 3, 17, 200] {
                let resp = WatchResponse {
                    header,
                    watch_id: 7,
                    events: events[..n].to_vec(),
                    ..Default::default()
                };
                assert_eq!(
                    fragments(resp.clone(), max),
                    etcd_send_fragments(&resp, max),
                    "max {max}, {n} events"
                );
            }
        }
    }

    /// 100,000 events of ~100 bytes into 1.5 MiB parts: the quadratic
    /// version encoded each part once per event (about 15,000 events a
    /// part); see the `watch_fragments` bench for the timings.
    #[test]
    fn fragments_many_events() {
        let n = 100_000;
        let resp = WatchResponse {
            watch_id: 1,
            events: (1..=n).map(|r| ev(r, 64)).collect(),
            ..Default::default()
        };
        let max = 1536 * 1024;
        let parts = fragments(resp, max);
        assert!(parts.len() > 1);
        let mut next = 1;
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert!(p.encoded_len() < max);
            // Each part is full: the next part's first event did not fit.
            if let Some(following) = parts.get(i + 1) {
                assert!(p.encoded_len() + event_field_len(&following.events[0]) >= max);
            }
            for e in &p.events {
                assert_eq!(e.kv.as_ref().map(|kv| kv.mod_revision), Some(next));
                next += 1;
            }
        }
        assert_eq!(next, n + 1);
    }
}
