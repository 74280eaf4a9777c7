//! The k8s workload's watches: one watch per resource prefix on one gRPC stream (as
//! apiserver's watch cache has them: `WithPrefix`, `WithPrevKV`, `WithProgressNotify`, from
//! the initial LIST's revision + 1), progress requests on it, and the delivery latency of
//! every event from its write's acknowledgement.
//!
//! Writers report each acknowledged write's revision ([`Deliveries::acked`]); the watch
//! reports each event's ([`Deliveries::seen`]); whichever comes second times the
//! delivery. An event that arrives before its write's acknowledgement counts as 0 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::watch_client::WatchClient;
use bramble_api::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use bramble_api::mvccpb::event::EventType;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::ops::{OpKind, Recorder};
use super::store::prefix_end;
use crate::conn::Token;
use crate::stats;

/// The resource prefixes watched, as kube-apiserver lays out its keys.
pub(crate) const PREFIXES: [&str; 4] = [
    "/registry/leases/",
    "/registry/minions/",
    "/registry/pods/",
    "/registry/events/",
];

/// Index of events' prefix in [`PREFIXES`] (deletes there are lease expiries).
pub(crate) const EVENTS: usize = 3;

/// Which of [`PREFIXES`] `key` is under.
pub(crate) fn prefix_of(key: &[u8]) -> Option<usize> {
    PREFIXES.iter().position(|p| key.starts_with(p.as_bytes()))
}

/// Where a revision's delivery stands.
#[derive(Clone, Copy, Debug)]
enum Mark {
    /// The write was acknowledged at this instant; no event yet.
    Acked(Instant),
    /// The event arrived first.
    Seen,
}

/// Counts of writes and events per prefix, and the pending deliveries.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Revisions acknowledged or seen, but not both yet.
    marks: Mutex<HashMap<i64, Mark>>,
    /// Acknowledged writes per prefix.
    writes: [AtomicU64; 4],
    /// Events delivered per prefix (puts and deletes).
    events: [AtomicU64; 4],
    /// Of the events' deletes, those no write of this run made: lease expiries.
    expired: AtomicU64,
    /// The highest acknowledged write revision.
    last_write: AtomicI64,
}

impl Deliveries {
    /// Records the acknowledged write at `rev` of a key under `PREFIXES[prefix]`.
    pub(crate) fn acked(&self, prefix: usize, rev: i64, recorder: &Recorder) {
        if let Some(n) = self.writes.get(prefix) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.last_write.fetch_max(rev, Ordering::Relaxed);
        let now = Instant::now();
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.remove(&rev) {
            Some(Mark::Seen) => recorder.latency(OpKind::WatchEvent, 0),
            Some(Mark::Acked(_)) | None => {
                marks.insert(rev, Mark::Acked(now));
            }
        }
    }

    /// Records an event at `rev` under `PREFIXES[prefix]`; `expiry` for a delete no write
    /// of this run made (an event's lease ran out).
    fn seen(&self, prefix: usize, rev: i64, expiry: bool, recorder: &Recorder) {
        if let Some(n) = self.events.get(prefix) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if expiry {
            self.expired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.remove(&rev) {
            Some(Mark::Acked(at)) => {
                recorder.latency(OpKind::WatchEvent, stats::nanos(at.elapsed()))
            }
            Some(Mark::Seen) | None => {
                marks.insert(rev, Mark::Seen);
            }
        }
    }

    /// The highest acknowledged write revision.
    pub(crate) fn last_write(&self) -> i64 {
        self.last_write.load(Ordering::Relaxed)
    }

    /// Writes and events per prefix, for the report.
    pub(crate) fn report(&self) -> Vec<PrefixReport> {
        PREFIXES
            .iter()
            .enumerate()
            .map(|(i, p)| PrefixReport {
                prefix: p,
                writes: self.writes[i].load(Ordering::Relaxed),
                events: self.events[i].load(Ordering::Relaxed),
                expired: if i == EVENTS {
                    self.expired.load(Ordering::Relaxed)
                } else {
                    0
                },
            })
            .collect()
    }
}

/// One watched prefix in the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PrefixReport {
    /// The prefix.
    pub(crate) prefix: &'static str,
    /// Writes acknowledged under it during the run.
    pub(crate) writes: u64,
    /// Events the watch delivered (`writes + expired` when none was lost).
    pub(crate) events: u64,
    /// Deletes by lease expiry (events' prefix only).
    pub(crate) expired: u64,
}

/// The running watch stream.
pub(crate) struct Watches {
    /// Sends requests on the stream.
    requests: mpsc::Sender<WatchRequest>,
    /// The revision of the latest progress notification.
    progress: Arc<AtomicI64>,
    /// When the pending progress request was sent.
    pending: Arc<Mutex<Option<Instant>>>,
    /// Reads the stream.
    reader: JoinHandle<()>,
}

impl Watches {
    /// Opens the stream and one watch per prefix from `start_rev`; returns once the
    /// server confirmed all of them.
    pub(crate) async fn start(
        channel: Channel,
        token: Token,
        start_rev: i64,
        deliveries: Arc<Deliveries>,
        recorder: Arc<Recorder>,
        timeout: Duration,
    ) -> Result<Watches> {
        let (tx, rx) = mpsc::channel(16);
        for p in PREFIXES {
            let create = WatchCreateRequest {
                key: p.as_bytes().to_vec(),
                range_end: prefix_end(p.as_bytes()),
                start_revision: start_rev,
                progress_notify: true,
                prev_kv: true,
                ..Default::default()
            };
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .await
            .context("queueing a watch")?;
        }
        let mut client = WatchClient::with_interceptor(channel, token);
        let mut stream = tokio::time::timeout(timeout, client.watch(ReceiverStream::new(rx)))
            .await
            .context("opening the watch stream: timed out")?
            .context("opening the watch stream")?
            .into_inner();
        let mut created = 0;
        while created < PREFIXES.len() {
            let reply = tokio::time::timeout(timeout, stream.message())
                .await
                .context("creating the watches: timed out")?
                .context("creating the watches")?;
            let Some(reply) = reply else {
                bail!("the server closed the watch stream while creating the watches");
            };
            if reply.canceled {
                bail!("the server refused a watch: {}", reply.cancel_reason);
            }
            if reply.created {
                created += 1;
            }
        }

        let progress = Arc::new(AtomicI64::new(0));
        let pending: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let (p, pend) = (progress.clone(), pending.clone());
        let reader = tokio::spawn(async move {
            loop {
                let reply = match stream.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(status) => {
                        recorder.error(OpKind::WatchEvent, &status);
                        break;
                    }
                };
                if reply.canceled {
                    let why = format!(
                        "watch {} canceled (compact revision {}): {}",
                        reply.watch_id, reply.compact_revision, reply.cancel_reason
                    );
                    recorder.error(OpKind::WatchEvent, &tonic::Status::aborted(why));
                    continue;
                }
                if reply.events.is_empty() && !reply.created {
                    // A progress notification: every watch has seen all up to here.
                    let rev = reply.header.as_ref().map_or(0, |h| h.revision);
                    p.fetch_max(rev, Ordering::Relaxed);
                    let sent = pend.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(t0) = sent {
                        recorder.ok(OpKind::Progress, t0);
                    }
                    continue;
                }
                for ev in &reply.events {
                    let Some(kv) = &ev.kv else { continue };
                    let Some(prefix) = prefix_of(&kv.key) else {
                        continue;
                    };
                    let delete = ev.r#type == EventType::Delete as i32;
                    // This run never deletes events: their deletes are lease expiries
                    // (the delete's revision is no write of ours).
                    let expiry = delete && prefix == EVENTS;
                    deliveries.seen(prefix, kv.mod_revision, expiry, &recorder);
                }
            }
        });
        Ok(Watches {
            requests: tx,
            progress,
            pending,
            reader,
        })
    }

    /// Sends a progress request (apiserver's `RequestWatchProgress`), unless one is
    /// still unanswered.
    pub(crate) async fn request_progress(&self) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_some() {
                return;
            }
            *pending = Some(Instant::now());
        }
        let request = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        };
        // A closed stream shows up as the reader's error; nothing to add here.
        let _ = self.requests.send(request).await;
    }

    /// Waits until a progress notification says every watch has seen revision `rev`,
    /// asking for progress meanwhile; false if `timeout` passed first.
    pub(crate) async fn caught_up(&self, rev: i64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.progress.load(Ordering::Relaxed) >= rev {
                return true;
            }
            self.request_progress().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.progress.load(Ordering::Relaxed) >= rev
    }

    /// Closes the stream.
    pub(crate) fn stop(self) {
        drop(self.requests);
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of(b"/registry/pods/ns-1/pod-2"), Some(2));
        assert_eq!(
            prefix_of(b"/registry/leases/kube-node-lease/node-0"),
            Some(0)
        );
        assert_eq!(prefix_of(b"compact_rev_key"), None);
    }

    #[test]
    fn delivery_timed_whichever_comes_second() {
        let d = Deliveries::default();
        let r = Recorder::new(true);
        d.acked(2, 10, &r);
        d.seen(2, 10, false, &r);
        d.seen(0, 11, false, &r);
        d.acked(0, 11, &r);
        d.seen(EVENTS, 12, true, &r);
        let (_, _, _, ops) = r.finish();
        assert_eq!(ops["watch-event"].count, 2);
        let rep = d.report();
        assert_eq!((rep[2].writes, rep[2].events), (1, 1));
        assert_eq!((rep[EVENTS].events, rep[EVENTS].expired), (1, 1));
        assert_eq!(d.last_write(), 11);
        assert!(d.marks.lock().expect("lock").is_empty());
    }
}
