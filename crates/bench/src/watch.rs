//! The `watch` workload: watchers on key prefixes, writers putting under them,
//! and the delivery of every event to every watcher that should see it.
//!
//! Like etcd's `benchmark watch`, watchers are opened first, many per gRPC
//! Watch stream (`--streams`, `--watch-per-stream`, streams spread over the
//! `--conns` connections), then `--clients` writers put `--total` keys. Unlike
//! etcd's tool, which only counts events, every event is matched to the put
//! that caused it (by revision; watch_tally.rs), so the report has the
//! delivery latency from the put's response (what a client that writes and
//! then waits for its watch sees) and from its send, and says whether any
//! watcher missed, repeated or reordered an event: any of those fails the run.
//!
//! The writers run under the common driver (run.rs), so they count and stop
//! as every other workload; `watch-latency` (watch_latency.rs) is this with
//! one key and a put rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::watch_client::WatchClient;
use bramble_api::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::conn::{Kv, Token};
use crate::run::{self, Outcome, Plan};
use crate::section::Section;
use crate::stats::nanos;
use crate::watch_tally::{self, Layout, PutRecord, WatcherLog};

/// `watch` flags (etcd's `benchmark watch` names where it has them; its
/// `--put-total` is the common `--total`).
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct WatchArgs {
    /// Watchers per stream; watcher j (over all streams) watches prefix j % --prefixes.
    #[arg(long, default_value_t = 10)]
    pub(crate) watch_per_stream: usize,
    /// Distinct prefixes watched; put i goes under prefix i % --prefixes.
    #[arg(long, alias = "watched-key-total", default_value_t = 10)]
    pub(crate) prefixes: usize,
    /// Prefix p is `<prefix><p>/`.
    #[arg(long, default_value = "bench-watch/")]
    pub(crate) prefix: String,
    /// Keys per prefix: put i writes key number (i / --prefixes) % --key-space.
    #[arg(long, alias = "key-space-size", default_value_t = 1000)]
    pub(crate) key_space: u64,
    /// Puts per second over all writers (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    pub(crate) put_rate: u64,
    /// The flags shared with `watch-latency`.
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) stream: StreamArgs,
}

/// The flags `watch` and `watch-latency` share: the watch streams, what the
/// watchers ask for and what the puts write.
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub(crate) struct StreamArgs {
    /// Watch streams (one gRPC Watch call each), spread round-robin over the --conns connections.
    #[arg(long, default_value_t = 10)]
    pub(crate) streams: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 32)]
    pub(crate) val_size: usize,
    /// Ask for each event's previous key-value too (more work for the server).
    #[arg(long, alias = "prevkv")]
    pub(crate) prev_kv: bool,
    /// After the last put, wait at most this many seconds for the events still owed.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_timeout: u64,
    /// Seed for the value's random bytes.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// What one watcher watches: `key`, or `[key, range_end)` when `range_end` is set.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The key, or the start of the range.
    pub(crate) key: Vec<u8>,
    /// End of the range (exclusive), empty for the single key.
    pub(crate) range_end: Vec<u8>,
}

/// Which key put number `i` writes.
#[derive(Clone, Debug)]
pub(crate) enum Keys {
    /// Under target `i % targets`: `<target's key><(i / targets) % key_space>`.
    Prefixes {
        /// Keys per target.
        key_space: u64,
    },
    /// Always the one target's key (watch-latency).
    OneKey,
}

/// A validated watch workload.
#[derive(Clone, Debug)]
pub(crate) struct WatchShape {
    /// What the watchers watch; watcher j watches `targets[j % targets.len()]`.
    pub(crate) targets: Vec<Target>,
    /// Which key each put writes.
    pub(crate) keys: Keys,
    /// Watch streams.
    pub(crate) streams: usize,
    /// Watchers per stream.
    pub(crate) per_stream: usize,
    /// Ask for previous key-values.
    pub(crate) prev_kv: bool,
    /// The value every put writes.
    pub(crate) value: Vec<u8>,
    /// Puts per second over all writers (0: unlimited); the driver's `--rate`
    /// when that is not given.
    pub(crate) put_rate: u64,
    /// How long to wait for owed events after the last put.
    pub(crate) drain: Duration,
}

impl WatchShape {
    /// The `watch` workload from its flags.
    pub(crate) fn from_args(a: &WatchArgs) -> Result<WatchShape> {
        if a.prefixes == 0 || a.key_space == 0 {
            bail!("--prefixes and --key-space must be at least 1");
        }
        if a.prefix.is_empty() {
            bail!("--prefix must not be empty");
        }
        let targets = (0..a.prefixes)
            .map(|p| {
                // The '/' keeps prefix 1 from also covering prefix 10's keys.
                let key = format!("{}{p}/", a.prefix).into_bytes();
                let range_end = bramble_api::prefix_range_end(&key);
                Target { key, range_end }
            })
            .collect();
        WatchShape::new(
            targets,
            Keys::Prefixes {
                key_space: a.key_space,
            },
            a.watch_per_stream,
            a.put_rate,
            &a.stream,
        )
    }

    /// A validated workload of `per_stream` watchers on each of the
    /// `stream.streams` streams watching `targets`, and puts at `put_rate`
    /// writing `keys`, as the rest of `stream` says.
    pub(crate) fn new(
        targets: Vec<Target>,
        keys: Keys,
        per_stream: usize,
        put_rate: u64,
        stream: &StreamArgs,
    ) -> Result<WatchShape> {
        let shape = WatchShape {
            targets,
            keys,
            streams: stream.streams,
            per_stream,
            prev_kv: stream.prev_kv,
            value: crate::put::random_value(stream.val_size, stream.seed),
            put_rate,
            drain: Duration::from_secs(stream.drain_timeout),
        };
        shape.validate()?;
        Ok(shape)
    }

    /// Checks there is something to watch with.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.streams == 0 || self.per_stream == 0 {
            bail!("--streams and watchers per stream must be at least 1");
        }
        if self.targets.is_empty() {
            bail!("nothing to watch");
        }
        Ok(())
    }

    /// The key put number `i` writes, and the target it falls under.
    pub(crate) fn put_key(&self, i: u64) -> (Vec<u8>, usize) {
        let n = self.targets.len() as u64;
        match self.keys {
            Keys::OneKey => (self.targets[0].key.clone(), 0),
            Keys::Prefixes { key_space } => {
                // i % n < targets.len(), which is a usize.
                let t = usize::try_from(i % n).unwrap_or(0);
                let mut key = self.targets[t].key.clone();
                key.extend_from_slice(((i / n) % key_space).to_string().as_bytes());
                (key, t)
            }
        }
    }

    /// The layout, for the report.
    fn layout(&self) -> Layout {
        Layout {
            streams: self.streams,
            watchers: self.streams * self.per_stream,
            targets: self.targets.len(),
        }
    }
}

/// The open watchers, receiving in the background until stopped.
pub(crate) struct Watchers {
    /// One task per stream; each returns its watchers' logs and failures.
    tasks: Vec<JoinHandle<StreamLog>>,
    /// Tells the stream tasks to stop.
    stop: signal::Sender<bool>,
    /// Events received so far over all streams (to know when to stop).
    received: Arc<AtomicU64>,
    /// Each watcher's creation latency, nanoseconds.
    creates: Vec<u64>,
}

/// What one stream's task hands back.
struct StreamLog {
    /// Its watchers' events.
    watchers: Vec<WatcherLog>,
    /// What went wrong on the stream (broken, canceled or compacted watches).
    failures: Vec<String>,
}

/// Opens every stream and watcher (before the timed run), waiting for each
/// watcher's `created` response so no put can precede it.
pub(crate) async fn open(
    channels: &[Channel],
    token: &Token,
    shape: &WatchShape,
    timeout: Duration,
) -> Result<Watchers> {
    let (stop, stopped) = signal::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(shape.streams);
    let mut creates = Vec::with_capacity(shape.streams * shape.per_stream);
    for s in 0..shape.streams {
        let channel = channels[s % channels.len()].clone();
        let mut client = WatchClient::with_interceptor(channel, token.clone());
        // The sender lives on in the stream's task: dropping it would end the
        // request stream, which a server may take as the client going away.
        let (tx, rx) = mpsc::channel(shape.per_stream + 1);
        let mut ids = HashMap::with_capacity(shape.per_stream);
        let mut logs = Vec::with_capacity(shape.per_stream);
        // The first create is queued before the call: a server may send the
        // response headers, which the call waits for, only with its first message.
        let mut sent = Instant::now();
        let first = &shape.targets[(s * shape.per_stream) % shape.targets.len()];
        tx.send(create_request(first, shape.prev_kv))
            .await
            .context("queueing the first watch create request")?;
        let mut responses = tokio::time::timeout(timeout, client.watch(ReceiverStream::new(rx)))
            .await
            .with_context(|| format!("opening watch stream {s}: timed out"))?
            .with_context(|| format!("opening watch stream {s}"))?
            .into_inner();
        for w in 0..shape.per_stream {
            let target = (s * shape.per_stream + w) % shape.targets.len();
            if w > 0 {
                sent = Instant::now();
                tx.send(create_request(&shape.targets[target], shape.prev_kv))
                    .await
                    .with_context(|| format!("watch stream {s} closed while creating watchers"))?;
            }
            let id = next_created(&mut responses, timeout)
                .await
                .with_context(|| format!("creating watcher {w} on stream {s}"))?;
            creates.push(nanos(sent.elapsed()));
            ids.insert(id, w);
            logs.push(WatcherLog {
                target,
                events: Vec::new(),
            });
        }
        tasks.push(tokio::spawn(receive(
            responses,
            tx,
            ids,
            logs,
            stopped.clone(),
            received.clone(),
        )));
    }
    Ok(Watchers {
        tasks,
        stop,
        received,
        creates,
    })
}

/// A request creating a watcher on `target`, from the store's current revision.
fn create_request(target: &Target, prev_kv: bool) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: target.key.clone(),
                range_end: target.range_end.clone(),
                prev_kv,
                ..Default::default()
            },
        )),
    }
}

/// Waits for the next `created` response on a stream; its watch id.
async fn next_created(responses: &mut Streaming<WatchResponse>, timeout: Duration) -> Result<i64> {
    loop {
        let reply = tokio::time::timeout(timeout, responses.message())
            .await
            .context("timed out waiting for the created response")?
            .context("watch stream")?;
        let Some(reply) = reply else {
            bail!("the server ended the watch stream");
        };
        if reply.created {
            if reply.canceled {
                bail!("the server refused the watch: {}", reply.cancel_reason);
            }
            return Ok(reply.watch_id);
        }
        // Anything else is an event for a watcher created earlier, written
        // by someone else before this run's puts started: not ours to count.
    }
}

/// A stream's task: records every event's revision and arrival time against
/// its watcher until told to stop. Holds `_requests` so the request stream
/// stays open.
async fn receive(
    mut responses: Streaming<WatchResponse>,
    _requests: mpsc::Sender<WatchRequest>,
    ids: HashMap<i64, usize>,
    mut logs: Vec<WatcherLog>,
    mut stop: signal::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> StreamLog {
    let mut failures = Vec::new();
    loop {
        let message = tokio::select! {
            // A dropped sender (the run gave up) stops the task as well.
            _ = stop.changed() => break,
            m = responses.message() => m,
        };
        let reply = match message {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                failures.push("the server ended the stream".to_string());
                break;
            }
            Err(status) => {
                failures.push(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        };
        let at = Instant::now();
        let Some(&w) = ids.get(&reply.watch_id) else {
            continue;
        };
        if reply.canceled {
            failures.push(format!(
                "watch {} canceled: {}",
                reply.watch_id, reply.cancel_reason
            ));
        }
        if reply.compact_revision != 0 {
            failures.push(format!(
                "watch {} fell behind a compaction at revision {}",
                reply.watch_id, reply.compact_revision
            ));
        }
        received.fetch_add(reply.events.len() as u64, Ordering::Relaxed);
        for event in reply.events {
            if let Some(kv) = event.kv {
                logs[w].events.push((kv.mod_revision, at));
            }
        }
    }
    StreamLog {
        watchers: logs,
        failures,
    }
}

/// The writers' request: put number `i`, recording its revision and times.
fn put_op(
    shape: &WatchShape,
    records: Arc<Mutex<Vec<PutRecord>>>,
) -> impl Fn(Kv, u64) -> run::OpFuture + Send + Sync {
    let shape = Arc::new(shape.clone());
    move |mut kv: Kv, i: u64| {
        let (key, target) = shape.put_key(i);
        let request = PutRequest {
            key,
            value: shape.value.clone(),
            ..Default::default()
        };
        let records = records.clone();
        Box::pin(async move {
            let sent = Instant::now();
            let reply = kv.put(request).await?.into_inner();
            let acked = Instant::now();
            let Some(header) = reply.header else {
                return Err(Status::internal(
                    "bramble-bench: a Put response has no header",
                ));
            };
            // A poisoned lock only means another task panicked mid-push.
            let mut r = records.lock().unwrap_or_else(|p| p.into_inner());
            r.push(PutRecord {
                revision: header.revision,
                target,
                sent,
                acked,
            });
            Ok(())
        })
    }
}

/// Runs the writers under the common driver (which paces them at
/// `--put-rate`, as its `--rate`), waits (up to the drain time) for the
/// events still owed, stops the watchers and matches events to puts.
pub(crate) async fn run(
    clients: Vec<Kv>,
    plan: Plan,
    shape: &WatchShape,
    watchers: Watchers,
) -> (Outcome, Section) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let outcome = run::drive(clients, plan, put_op(shape, records.clone())).await;
    let puts = std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()));

    let layout = shape.layout();
    let mut per_target = vec![0u64; shape.targets.len()];
    for p in &puts {
        per_target[p.target] += 1;
    }
    let expected: u64 = (0..layout.watchers)
        .map(|j| per_target[j % shape.targets.len()])
        .sum();
    let drain_until = Instant::now() + shape.drain;
    while watchers.received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = watchers.stop.send(true);
    let mut logs = Vec::with_capacity(layout.watchers);
    let mut failures = Vec::new();
    for task in watchers.tasks {
        match task.await {
            Ok(log) => {
                logs.extend(log.watchers);
                failures.extend(log.failures);
            }
            Err(e) => failures.push(format!("a watch stream's task failed: {e}")),
        }
    }
    let tally = watch_tally::tally(&puts, &logs);
    let section = watch_tally::section(layout, tally, watchers.creates, failures);
    (outcome, section)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> WatchArgs {
        WatchArgs {
            watch_per_stream: 3,
            prefixes: 3,
            prefix: "w/".into(),
            key_space: 2,
            put_rate: 0,
            stream: StreamArgs {
                streams: 2,
                val_size: 4,
                prev_kv: false,
                drain_timeout: 1,
                seed: 1,
            },
        }
    }

    #[test]
    fn puts_go_round_robin_under_the_prefixes() {
        let s = WatchShape::from_args(&args()).expect("valid");
        assert_eq!(s.targets[1].key, b"w/1/");
        assert_eq!(s.targets[1].range_end, b"w/10");
        let keys: Vec<(String, usize)> = (0..7)
            .map(|i| {
                let (k, t) = s.put_key(i);
                (String::from_utf8_lossy(&k).into_owned(), t)
            })
            .collect();
        let want = [
            ("w/0/0", 0),
            ("w/1/0", 1),
            ("w/2/0", 2),
            ("w/0/1", 0),
            ("w/1/1", 1),
            ("w/2/1", 2),
            ("w/0/0", 0),
        ];
        let want: Vec<(String, usize)> = want.iter().map(|(k, t)| (k.to_string(), *t)).collect();
        assert_eq!(keys, want);
        // Every key is inside its target's range and no other's.
        for i in 0..30 {
            let (k, t) = s.put_key(i);
            for (j, target) in s.targets.iter().enumerate() {
                let inside = k >= target.key && k < target.range_end;
                assert_eq!(inside, j == t, "key {k:?} target {j}");
            }
        }
        assert_eq!(s.layout().watchers, 6);
        assert_eq!(s.value.len(), 4);
    }

    #[test]
    fn bad_flags_are_refused() {
        for a in [
            WatchArgs {
                prefixes: 0,
                ..args()
            },
            WatchArgs {
                stream: StreamArgs {
                    streams: 0,
                    ..args().stream
                },
                ..args()
            },
            WatchArgs {
                watch_per_stream: 0,
                ..args()
            },
            WatchArgs {
                prefix: String::new(),
                ..args()
            },
        ] {
            assert!(WatchShape::from_args(&a).is_err(), "{a:?}");
        }
    }
}
