//! The watch hub: one shared event feed for every watcher of a server, with
//! etcd's synced and unsynced watcher groups.
//!
//! After each apply the hub reads the new events once from the MVCC store and
//! fans them out to the *synced* watchers (those that have everything up to
//! the hub's delivered revision) whose range and filters match. Each client
//! stream has one bounded queue; when it is full the watcher is moved to the
//! *unsynced* group (etcd's victims) instead of blocking the hub, and later
//! catches up by reading from the store itself, from its own next revision, in
//! bounded chunks, rejoining the synced group once it reaches the feed.
//! Writers never wait for watchers and memory stays bounded: at most
//! `QUEUE_LEN` messages of at most about `CHUNK_EVENTS` events per stream.
//!
//! Guarantees kept here: a watcher receives each revision's events once, in
//! revision order, with no gap (`next_rev` only moves past what was queued or
//! filtered out), and all matching events of one revision in one message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bramble_api::mvccpb::Event;
use bramble_storage::mvcc::{MvccError, MvccStore};
use tokio::sync::{mpsc, watch, Notify};

use super::filter::{event_key, event_revision, EventFilters, WatchRange};

/// Messages queued per client stream before its watchers fall behind.
pub(super) const QUEUE_LEN: usize = 128;
/// Events read from the store per step (a revision is never split, so a
/// step may hold a little more).
pub(super) const CHUNK_EVENTS: usize = 1000;
/// How often unsynced watchers retry when their queue was full.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// What the hub sends to a client stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum HubMsg {
    /// Events for one watcher, all revisions complete, in order.
    Events {
        /// The watcher.
        watch_id: i64,
        /// Which incarnation of `watch_id` (a client may reuse an id after a
        /// cancel while messages for the old watcher are still queued).
        generation: u64,
        /// The header revision (the newest revision the hub had read).
        revision: i64,
        /// The events.
        events: Vec<Event>,
    },
    /// The watcher's start revision was compacted away: it is canceled.
    Compacted {
        /// The watcher.
        watch_id: i64,
        /// Which incarnation of `watch_id`.
        generation: u64,
        /// The store's compaction revision.
        compact_revision: i64,
        /// The header revision.
        revision: i64,
    },
    /// A progress notification: every event up to `revision` was queued
    /// before it (`watch_id` -1 answers RequestProgress).
    Progress {
        /// The watcher, or -1 for the whole stream.
        watch_id: i64,
        /// Which incarnation of `watch_id` (0 for the whole stream).
        generation: u64,
        /// The revision the stream is known complete at.
        revision: i64,
    },
}

/// One watcher as the hub sees it.
#[derive(Debug)]
struct Watcher {
    generation: u64,
    range: WatchRange,
    filters: EventFilters,
    /// The first revision not yet queued (nor skipped) for this watcher.
    next_rev: i64,
    /// In the synced group: `next_rev > delivered` holds, and the feed
    /// queues its events directly.
    synced: bool,
}

impl Watcher {
    /// The events of `events` this watcher wants, from its next revision on.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                event_revision(e) >= self.next_rev
                    && self.range.contains(event_key(e))
                    && self.filters.keeps(e)
            })
            .cloned()
            .collect()
    }
}

/// One client stream.
#[derive(Debug)]
struct StreamEntry {
    tx: mpsc::Sender<HubMsg>,
    /// A RequestProgress waits for all of the stream's watchers to be synced.
    deferred_progress: bool,
}

/// The hub's shared state.
#[derive(Debug, Default)]
struct State {
    /// Every event up to this revision was queued to the synced watchers.
    delivered: i64,
    next_stream: u64,
    next_generation: u64,
    streams: HashMap<u64, StreamEntry>,
    watchers: HashMap<(u64, i64), Watcher>,
}

impl State {
    /// Queues `msg` for a stream; false when the queue is full. A closed
    /// stream's watchers are dropped.
    fn try_send(&mut self, stream: u64, msg: HubMsg) -> bool {
        let Some(s) = self.streams.get(&stream) else {
            return false;
        };
        match s.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.streams.remove(&stream);
                self.watchers.retain(|(sid, _), _| *sid != stream);
                false
            }
        }
    }

    /// Whether a stream's queue can take a message now.
    fn has_room(&self, stream: u64) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|s| s.tx.capacity() > 0 || s.tx.is_closed())
    }

    /// Fans one read of the feed (`events`, complete up to `next - 1`) out to
    /// the synced watchers; a watcher whose queue is full becomes unsynced.
    fn dispatch_synced(&mut self, events: &[Event], next: i64) {
        let keys: Vec<(u64, i64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.offer(key, events, next);
        }
        self.delivered = self.delivered.max(next - 1);
    }

    /// Offers `events` (complete from their first revision up to `next - 1`) to
    /// one watcher: queues what it wants and advances it, or leaves it
    /// unsynced at its next revision when its queue is full.
    fn offer(&mut self, key: (u64, i64), events: &[Event], next: i64) -> bool {
        let Some(w) = self.watchers.get(&key) else {
            return false;
        };
        if w.next_rev >= next {
            return true;
        }
        let wanted = w.select(events);
        let generation = w.generation;
        let sent = wanted.is_empty()
            || self.try_send(
                key.0,
                HubMsg::Events {
                    watch_id: key.1,
                    generation,
                    revision: next - 1,
                    events: wanted,
                },
            );
        if let Some(w) = self.watchers.get_mut(&key) {
            if sent {
                w.next_rev = next;
            } else {
                if w.synced {
                    tracing::debug!(
                        stream = key.0,
                        watch_id = key.1,
                        next_rev = w.next_rev,
                        "watcher fell behind: unsynced"
                    );
                }
                w.synced = false;
            }
        }
        sent
    }

    /// Answers deferred RequestProgress of streams whose watchers are all synced.
    fn flush_progress(&mut self) {
        let waiting: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deferred_progress)
            .map(|(id, _)| *id)
            .collect();
        for sid in waiting {
            let all_synced = self
                .watchers
                .iter()
                .all(|((s, _), w)| *s != sid || w.synced);
            if !all_synced {
                continue;
            }
            let msg = HubMsg::Progress {
                watch_id: -1,
                generation: 0,
                revision: self.delivered,
            };
            if self.try_send(sid, msg) {
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.deferred_progress = false;
                }
            }
        }
    }
}

/// A new watcher's parameters.
#[derive(Debug, Clone)]
pub(super) struct WatchSpec {
    /// Its keys.
    pub range: WatchRange,
    /// Its filters.
    pub filters: EventFilters,
    /// etcd's start_revision: 0 for "after now".
    pub start_revision: i64,
}

/// The shared event feed and watcher groups of one server.
pub(super) struct Hub {
    store: Arc<MvccStore>,
    state: Mutex<State>,
    wake: Notify,
}

impl Hub {
    /// A hub over `store`, fed by `revisions` (the store's current revision
    /// after each apply). Its task runs until `revisions` closes.
    pub(super) fn start(store: Arc<MvccStore>, revisions: watch::Receiver<i64>) -> Arc<Hub> {
        let hub = Arc::new(Hub::new(store));
        tokio::spawn(hub.clone().run(revisions));
        hub
    }

    /// A hub without its task (tests drive it step by step).
    fn new(store: Arc<MvccStore>) -> Hub {
        let delivered = store.current_revision();
        Hub {
            store,
            state: Mutex::new(State {
                delivered,
                ..State::default()
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client stream: its id and the queue the hub fills.
    pub(super) fn open_stream(&self) -> (u64, mpsc::Receiver<HubMsg>) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let mut st = self.lock();
        st.next_stream += 1;
        let id = st.next_stream;
        st.streams.insert(
            id,
            StreamEntry {
                tx,
                deferred_progress: false,
            },
        );
        (id, rx)
    }

    /// Forgets a stream and its watchers.
    pub(super) fn close_stream(&self, stream: u64) {
        let mut st = self.lock();
        st.streams.remove(&stream);
        st.watchers.retain(|(sid, _), _| *sid != stream);
    }

    /// Adds watcher `watch_id` (unique on the stream: the caller checks) and
    /// returns the revision for its created response (the store's current
    /// revision, after which a start-now watcher sees every event) and the
    /// watcher's generation, which the hub's messages for it carry.
    pub(super) fn add_watcher(&self, stream: u64, watch_id: i64, spec: WatchSpec) -> (i64, u64) {
        let current = self.store.current_revision();
        let mut st = self.lock();
        let next_rev = if spec.start_revision == 0 {
            current + 1
        } else {
            spec.start_revision.max(1)
        };
        let synced = next_rev > st.delivered;
        st.next_generation += 1;
        let generation = st.next_generation;
        st.watchers.insert(
            (stream, watch_id),
            Watcher {
                generation,
                range: spec.range,
                filters: spec.filters,
                next_rev,
                synced,
            },
        );
        drop(st);
        if !synced {
            self.wake.notify_one();
        }
        (current, generation)
    }

    /// Removes a watcher; false if it does not exist (any more).
    pub(super) fn cancel(&self, stream: u64, watch_id: i64) -> bool {
        self.lock().watchers.remove(&(stream, watch_id)).is_some()
    }

    /// RequestProgress: queues a progress notification for the stream once all
    /// of its watchers are synced.
    pub(super) fn request_progress(&self, stream: u64) {
        let mut st = self.lock();
        if let Some(s) = st.streams.get_mut(&stream) {
            s.deferred_progress = true;
        }
        st.flush_progress();
        drop(st);
        self.wake.notify_one();
    }

    /// A periodic progress notification for one watcher: queued only if it is
    /// synced and its queue has room (etcd skips it otherwise).
    pub(super) fn progress_notify(&self, stream: u64, watch_id: i64) {
        let mut st = self.lock();
        let synced = st
            .watchers
            .get(&(stream, watch_id))
            .filter(|w| w.synced)
            .map(|w| w.generation);
        if let Some(generation) = synced {
            let revision = st.delivered;
            st.try_send(
                stream,
                HubMsg::Progress {
                    watch_id,
                    generation,
                    revision,
                },
            );
        }
    }

    /// Number of watchers in (synced, unsynced) (tests only).
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        let synced = st.watchers.values().filter(|w| w.synced).count();
        (synced, st.watchers.len() - synced)
    }

    /// The hub's task: follow the feed, catch up unsynced watchers, answer
    /// deferred progress requests.
    async fn run(self: Arc<Self>, mut revisions: watch::Receiver<i64>) {
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let target = *revisions.borrow_and_update();
            self.follow_feed(target).await;
            let more = self.catch_up().await;
            self.lock().flush_progress();
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let waiting = {
                let st = self.lock();
                st.watchers.values().any(|w| !w.synced)
                    || st.streams.values().any(|s| s.deferred_progress)
            };
            tokio::select! {
                changed = revisions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = self.wake.notified() => {}
                _ = retry.tick(), if waiting => {}
            }
        }
    }

    /// Reads the store in blocking context.
    async fn read(&self, from: i64) -> Result<(Vec<Event>, i64), MvccError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.events(from, CHUNK_EVENTS)).await {
            Ok(r) => r,
            Err(e) => Err(MvccError::Corrupt(format!("event read task: {e}"))),
        }
    }

    /// Reads the feed up to (at least) `target` and fans it out.
    async fn follow_feed(&self, target: i64) {
        loop {
            let from = self.lock().delivered + 1;
            if from > target {
                return;
            }
            match self.read(from).await {
                Ok((events, next)) => {
                    self.lock().dispatch_synced(&events, next);
                    if next <= from {
                        return;
                    }
                }
                Err(MvccError::Compacted) => {
                    // The hub fell behind a compaction: everyone catches up
                    // (and the ones that lost history get a compacted cancel).
                    let current = self.store.current_revision();
                    let mut st = self.lock();
                    for w in st.watchers.values_mut() {
                        if w.next_rev <= current {
                            w.synced = false;
                        }
                    }
                    st.delivered = st.delivered.max(current);
                    return;
                }
                Err(e) => {
                    tracing::error!("watch hub: reading events from {from}: {e}");
                    return;
                }
            }
        }
    }

    /// One catch-up step for the unsynced watchers: one read from the oldest
    /// next revision among them. True when something moved and more remains.
    async fn catch_up(&self) -> bool {
        // Watchers whose stream queue is full cannot take anything now; left
        // out, so that one stalled client does not hold back the others.
        let from = {
            let st = self.lock();
            st.watchers
                .iter()
                .filter(|((sid, _), w)| !w.synced && st.has_room(*sid))
                .map(|(_, w)| w.next_rev)
                .min()
        };
        let Some(from) = from else {
            return false;
        };
        let mut moved = false;
        match self.read(from).await {
            Ok((events, next)) => {
                let mut st = self.lock();
                let keys: Vec<(u64, i64)> = st
                    .watchers
                    .iter()
                    .filter(|(_, w)| !w.synced && w.next_rev >= from && w.next_rev < next)
                    .map(|(k, _)| *k)
                    .collect();
                for key in keys {
                    if st.offer(key, &events, next) {
                        moved = true;
                    }
                }
                let delivered = st.delivered;
                for (key, w) in st.watchers.iter_mut() {
                    if !w.synced && w.next_rev > delivered {
                        tracing::debug!(
                            stream = key.0,
                            watch_id = key.1,
                            next_rev = w.next_rev,
                            "watcher caught up: synced"
                        );
                        w.synced = true;
                    }
                }
            }
            Err(MvccError::Compacted) => {
                let compact_revision = self.store.compact_revision();
                let revision = self.store.current_revision();
                let mut st = self.lock();
                let keys: Vec<((u64, i64), u64)> = st
                    .watchers
                    .iter()
                    .filter(|(_, w)| !w.synced && w.next_rev < compact_revision)
                    .map(|(k, w)| (*k, w.generation))
                    .collect();
                for (key, generation) in keys {
                    let msg = HubMsg::Compacted {
                        watch_id: key.1,
                        generation,
                        compact_revision,
                        revision,
                    };
                    if st.try_send(key.0, msg) {
                        st.watchers.remove(&key);
                        moved = true;
                    }
                }
            }
            Err(e) => tracing::error!("watch hub: catching up from {from}: {e}"),
        }
        let st = self.lock();
        moved && st.watchers.values().any(|w| !w.synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::bramblepb::{command::Op, Command};
    use bramble_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
    use bramble_api::mvccpb::event::EventType;

    struct Fixture {
        _dir: tempdir::Dir,
        store: Arc<MvccStore>,
        index: u64,
    }

    mod tempdir {
        /// A scratch directory removed on drop.
        pub(super) struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "bramble-hub-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).expect("temp dir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempdir::Dir::new();
            let store = MvccStore::open(&dir.0.join("db"), Default::default()).expect("open");
            Fixture {
                _dir: dir,
                store: Arc::new(store),
                index: 0,
            }
        }
        fn apply(&mut self, op: Op) {
            self.index += 1;
            self.store
                .apply(
                    self.index,
                    1,
                    &Command {
                        auth: None,
                        op: Some(op),
                    },
                )
                .expect("apply");
        }
        fn put(&mut self, k: &str, v: &str) {
            self.apply(Op::Put(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            }));
        }
        fn del(&mut self, k: &str) {
            self.apply(Op::DeleteRange(DeleteRangeRequest {
                key: k.into(),
                ..Default::default()
            }));
        }
    }

    fn spec(prefix: &str, start: i64) -> WatchSpec {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        WatchSpec {
            range: WatchRange::from_request(prefix.as_bytes(), &end).unwrap(),
            filters: EventFilters::default(),
            start_revision: start,
        }
    }

    /// (type, key, revision) of an event.
    type Summary = (i32, String, i64);

    /// (watch id, events) of each queued message.
    fn drain(rx: &mut mpsc::Receiver<HubMsg>) -> Vec<(i64, Vec<Summary>)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            match m {
                HubMsg::Events {
                    watch_id, events, ..
                } => out.push((
                    watch_id,
                    events
                        .iter()
                        .map(|e| {
                            (
                                e.r#type,
                                String::from_utf8_lossy(event_key(e)).into_owned(),
                                event_revision(e),
                            )
                        })
                        .collect(),
                )),
                other => out.push((-100, vec![(0, format!("{other:?}"), 0)])),
            }
        }
        out
    }

    const P: i32 = EventType::Put as i32;
    const D: i32 = EventType::Delete as i32;

    #[tokio::test]
    async fn synced_watchers_get_matching_events_once() {
        let mut f = Fixture::new();
        let hub = Hub::new(f.store.clone());
        let (sid, mut rx) = hub.open_stream();
        hub.add_watcher(sid, 1, spec("a/", 0));
        let mut nodel = spec("a/", 0);
        nodel.filters.no_delete = true;
        hub.add_watcher(sid, 2, nodel);
        f.put("a/1", "x"); // 2
        f.put("b/1", "x"); // 3
        f.del("a/1"); // 4
        hub.follow_feed(f.store.current_revision()).await;
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2, "{got:?}");
        let mut got = got;
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got[0],
            (1, vec![(P, "a/1".into(), 2), (D, "a/1".into(), 4)])
        );
        assert_eq!(got[1], (2, vec![(P, "a/1".into(), 2)]));
        hub.follow_feed(f.store.current_revision()).await;
        assert!(drain(&mut rx).is_empty());
        assert_eq!(hub.counts(), (2, 0));
    }

    #[tokio::test]
    async fn a_reused_id_is_a_new_generation() {
        let mut f = Fixture::new();
        let hub = Hub::new(f.store.clone());
        let (sid, mut rx) = hub.open_stream();
        let (_, old) = hub.add_watcher(sid, 7, spec("k", 0));
        f.put("k", "1");
        hub.follow_feed(f.store.current_revision()).await;
        assert!(hub.cancel(sid, 7));
        assert!(!hub.cancel(sid, 7));
        let (_, new) = hub.add_watcher(sid, 7, spec("k", 0));
        assert_ne!(old, new);
        // The message queued before the cancel names the old watcher, which the
        // stream drops.
        match rx.try_recv() {
            Ok(HubMsg::Events { generation, .. }) => assert_eq!(generation, old),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn full_queue_unsyncs_then_catches_up_without_gap() {
        let mut f = Fixture::new();
        let hub = Hub::new(f.store.clone());
        let (sid, mut rx) = hub.open_stream();
        hub.add_watcher(sid, 1, spec("k", 0));
        let total = QUEUE_LEN + 50;
        for i in 0..total {
            f.put("k", &i.to_string());
            hub.follow_feed(f.store.current_revision()).await;
        }
        assert_eq!(hub.counts(), (0, 1), "the watcher fell behind");
        let mut revs = Vec::new();
        for _ in 0..100 {
            for (_, evs) in drain(&mut rx) {
                revs.extend(evs.iter().map(|e| e.2));
            }
            hub.catch_up().await;
            if hub.counts() == (1, 0) {
                break;
            }
        }
        for (_, evs) in drain(&mut rx) {
            revs.extend(evs.iter().map(|e| e.2));
        }
        assert_eq!(hub.counts(), (1, 0), "synced again");
        let want: Vec<i64> = (2..2 + total as i64).collect();
        assert_eq!(revs, want, "ordered, unique, no gap");
        // Live again.
        f.put("k", "live");
        hub.follow_feed(f.store.current_revision()).await;
        assert_eq!(drain(&mut rx)[0].1[0].2, 2 + total as i64);
    }

    #[tokio::test]
    async fn a_stalled_stream_does_not_hold_back_other_lagging_watchers() {
        let mut f = Fixture::new();
        let hub = Hub::new(f.store.clone());
        let (stalled, _stalled_rx) = hub.open_stream();
        hub.add_watcher(stalled, 1, spec("k", 0));
        for i in 0..QUEUE_LEN + 10 {
            f.put("k", &i.to_string());
            hub.follow_feed(f.store.current_revision()).await;
        }
        assert_eq!(hub.counts(), (0, 1), "the stalled watcher is unsynced");
        // More than one catch-up chunk further on, a new stream replays recent
        // history: it must get it although the stalled watcher's next revision
        // is more than a chunk older than its own.
        for i in 0..CHUNK_EVENTS + 100 {
            f.put("k", &i.to_string());
        }
        hub.follow_feed(f.store.current_revision()).await;
        let start = f.store.current_revision() - 50;
        let (reader, mut rx) = hub.open_stream();
        hub.add_watcher(reader, 1, spec("k", start));
        let mut got = Vec::new();
        for _ in 0..10 {
            hub.catch_up().await;
            for (_, evs) in drain(&mut rx) {
                got.extend(evs.iter().map(|e| e.2));
            }
        }
        let current = f.store.current_revision();
        assert_eq!(got, (start..=current).collect::<Vec<i64>>());
        assert_eq!(hub.counts(), (1, 1));
    }

    #[tokio::test]
    async fn historical_and_compacted_watchers() {
        let mut f = Fixture::new();
        for i in 0..5 {
            f.put("h", &i.to_string()); // 2..=6
        }
        let hub = Hub::new(f.store.clone());
        let (sid, mut rx) = hub.open_stream();
        hub.add_watcher(sid, 1, spec("h", 4));
        assert_eq!(hub.counts(), (0, 1));
        hub.catch_up().await;
        assert_eq!(
            drain(&mut rx),
            vec![(
                1,
                vec![(P, "h".into(), 4), (P, "h".into(), 5), (P, "h".into(), 6)]
            )]
        );
        assert_eq!(hub.counts(), (1, 0));
        f.apply(Op::Compaction(CompactionRequest {
            revision: 5,
            physical: false,
        }));
        hub.add_watcher(sid, 2, spec("h", 3));
        hub.catch_up().await;
        assert_eq!(hub.counts(), (1, 0));
        match rx.try_recv() {
            Ok(HubMsg::Compacted {
                watch_id: 2,
                generation: 2,
                compact_revision: 5,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // RequestProgress once all synced.
        hub.request_progress(sid);
        assert_eq!(
            rx.try_recv().ok(),
            Some(HubMsg::Progress {
                watch_id: -1,
                generation: 0,
                revision: 6
            })
        );
    }

    #[tokio::test]
    async fn progress_waits_for_unsynced_watchers() {
        let mut f = Fixture::new();
        f.put("p", "1"); // 2
        let hub = Hub::new(f.store.clone());
        let (sid, mut rx) = hub.open_stream();
        hub.add_watcher(sid, 1, spec("p", 1));
        hub.request_progress(sid);
        assert!(rx.try_recv().is_err(), "deferred while unsynced");
        hub.catch_up().await;
        hub.lock().flush_progress();
        assert!(matches!(rx.try_recv(), Ok(HubMsg::Events { .. })));
        assert!(matches!(
            rx.try_recv(),
            Ok(HubMsg::Progress {
                watch_id: -1,
                generation: 0,
                revision: 2
            })
        ));
    }
}
