//! Matching a watch run's events to its puts: what was delivered, what was
//! missed, and how long each delivery took.
//!
//! Every put records its revision (from the response header), which watch
//! target its key falls under, and when it was sent and acknowledged. Every
//! watcher records each event's mod revision and when it arrived. A put is
//! identified by its revision (one put, one revision), so the join is exact
//! even when many puts write the same key. Kept apart from the streams
//! (watch.rs) so the counting can be tested without a server.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tokio::time::Instant;

use crate::report::LatencyMs;
use crate::section::{latency, latency_line, Section};
use crate::stats::nanos;

/// One acknowledged put.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PutRecord {
    /// The revision it wrote (its key's mod revision).
    pub(crate) revision: i64,
    /// The watch target its key falls under (index into the targets).
    pub(crate) target: usize,
    /// When the request was sent.
    pub(crate) sent: Instant,
    /// When its response arrived.
    pub(crate) acked: Instant,
}

/// What one watcher received.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatcherLog {
    /// The target it watches.
    pub(crate) target: usize,
    /// Each event's mod revision and arrival time, in arrival order.
    pub(crate) events: Vec<(i64, Instant)>,
}

/// The delivery counts and latencies of a whole run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Events that should have arrived: for each watcher, the puts under its target.
    pub(crate) expected: u64,
    /// Of those, events that did arrive (each counted once).
    pub(crate) delivered: u64,
    /// `expected - delivered`.
    pub(crate) missing: u64,
    /// Events that arrived twice at the same watcher.
    pub(crate) duplicates: u64,
    /// Events at a watcher whose revision is none of its target's puts
    /// (something else wrote under the prefix, or a put that failed committed).
    pub(crate) unexpected: u64,
    /// Events that arrived with a lower revision than one the watcher already had.
    pub(crate) out_of_order: u64,
    /// Events that arrived before their put's response did.
    pub(crate) before_ack: u64,
    /// Put acknowledged to event received, nanoseconds (0 when the event came first).
    pub(crate) from_ack: Vec<u64>,
    /// Put sent to event received, nanoseconds.
    pub(crate) from_send: Vec<u64>,
}

/// Matches every watcher's events against the puts.
pub(crate) fn tally(puts: &[PutRecord], watchers: &[WatcherLog]) -> Tally {
    let by_revision: HashMap<i64, &PutRecord> = puts.iter().map(|p| (p.revision, p)).collect();
    let mut per_target: HashMap<usize, u64> = HashMap::new();
    for p in puts {
        *per_target.entry(p.target).or_insert(0) += 1;
    }
    let mut t = Tally::default();
    for w in watchers {
        let want = per_target.get(&w.target).copied().unwrap_or(0);
        t.expected += want;
        let mut seen = HashSet::with_capacity(w.events.len());
        let mut last = i64::MIN;
        let mut delivered = 0;
        for &(revision, at) in &w.events {
            if revision < last {
                t.out_of_order += 1;
            }
            last = last.max(revision);
            let Some(put) = by_revision.get(&revision).filter(|p| p.target == w.target) else {
                t.unexpected += 1;
                continue;
            };
            if !seen.insert(revision) {
                t.duplicates += 1;
                continue;
            }
            delivered += 1;
            if at < put.acked {
                t.before_ack += 1;
            }
            t.from_ack
                .push(nanos(at.saturating_duration_since(put.acked)));
            t.from_send
                .push(nanos(at.saturating_duration_since(put.sent)));
        }
        t.delivered += delivered;
        t.missing += want - delivered;
    }
    t
}

/// The `watch` section of the report.
#[derive(Debug, Serialize)]
struct WatchSection {
    /// Watch streams (gRPC Watch calls).
    streams: usize,
    /// Watchers over all streams.
    watchers: usize,
    /// Distinct keys or prefixes watched.
    targets: usize,
    /// Events that should have been delivered (puts x watchers of their key).
    expected: u64,
    /// Of those, delivered.
    received: u64,
    /// Never delivered (a failed check).
    missing: u64,
    /// Delivered twice to one watcher (a failed check).
    duplicates: u64,
    /// Delivered out of revision order (a failed check).
    out_of_order: u64,
    /// Events for revisions this run's puts did not write (or whose put failed).
    unexpected: u64,
    /// Events that arrived before their put's response.
    before_ack: u64,
    /// Creating each watcher: create request sent to `created` response.
    create_latency_ms: Option<LatencyMs>,
    /// Put acknowledged to event received (0 when the event came first).
    delivery_from_ack_ms: Option<LatencyMs>,
    /// Put sent to event received.
    delivery_from_send_ms: Option<LatencyMs>,
    /// Streams that broke or watches the server canceled.
    stream_failures: Vec<String>,
}

/// The shape of the watchers, for the report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Watch streams.
    pub(crate) streams: usize,
    /// Watchers over all streams.
    pub(crate) watchers: usize,
    /// Distinct targets.
    pub(crate) targets: usize,
}

/// Builds the report's `watch` section; missing, duplicated or reordered
/// events and broken streams are failed checks.
pub(crate) fn section(
    layout: Layout,
    t: Tally,
    creates: Vec<u64>,
    stream_failures: Vec<String>,
) -> Section {
    let body = WatchSection {
        streams: layout.streams,
        watchers: layout.watchers,
        targets: layout.targets,
        expected: t.expected,
        received: t.delivered,
        missing: t.missing,
        duplicates: t.duplicates,
        out_of_order: t.out_of_order,
        unexpected: t.unexpected,
        before_ack: t.before_ack,
        create_latency_ms: latency(creates),
        delivery_from_ack_ms: latency(t.from_ack),
        delivery_from_send_ms: latency(t.from_send),
        stream_failures,
    };
    let mut s = Section::new("watch", &body);
    s.text.push(format!(
        "  watch       {} watchers on {} streams, {} targets: {} of {} events delivered, {} missing, {} duplicated, {} out of order, {} unexpected, {} before the put's response",
        body.watchers,
        body.streams,
        body.targets,
        body.received,
        body.expected,
        body.missing,
        body.duplicates,
        body.out_of_order,
        body.unexpected,
        body.before_ack
    ));
    s.text
        .push(latency_line("create ms", body.create_latency_ms.as_ref()));
    s.text.push(latency_line(
        "ack->event",
        body.delivery_from_ack_ms.as_ref(),
    ));
    s.text.push(latency_line(
        "send->event",
        body.delivery_from_send_ms.as_ref(),
    ));
    if body.missing > 0 {
        s.failed_checks.push(format!(
            "{} of {} watch events were never delivered",
            body.missing, body.expected
        ));
    }
    if body.duplicates > 0 {
        s.failed_checks.push(format!(
            "{} watch events were delivered twice",
            body.duplicates
        ));
    }
    if body.out_of_order > 0 {
        s.failed_checks.push(format!(
            "{} watch events arrived out of revision order",
            body.out_of_order
        ));
    }
    for f in &body.stream_failures {
        s.failed_checks.push(format!("watch stream: {f}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(revision: i64, target: usize, t0: Instant) -> PutRecord {
        PutRecord {
            revision,
            target,
            sent: t0,
            acked: t0 + Duration::from_millis(2),
        }
    }

    #[test]
    fn counts_delivered_missing_duplicate_and_foreign_events() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Revisions 10 and 11 under target 0, 12 under target 1.
        let puts = [put(10, 0, t0), put(11, 0, t0), put(12, 1, t0)];
        let watchers = [
            // Everything for target 0, the second one before its put's response.
            WatcherLog {
                target: 0,
                events: vec![(10, ms(5)), (11, ms(1))],
            },
            // Target 0 again: misses 11, gets 10 twice and a foreign revision.
            WatcherLog {
                target: 0,
                events: vec![(10, ms(3)), (10, ms(4)), (99, ms(4))],
            },
            // Target 1: gets 12, and 10 which is not under its target.
            WatcherLog {
                target: 1,
                events: vec![(12, ms(6)), (10, ms(7))],
            },
        ];
        let t = tally(&puts, &watchers);
        assert_eq!(t.expected, 2 + 2 + 1);
        assert_eq!(t.delivered, 2 + 1 + 1);
        assert_eq!(t.missing, 1);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.unexpected, 2);
        assert_eq!(t.out_of_order, 1, "10 after 12 at the third watcher");
        assert_eq!(t.before_ack, 1);
        let mut from_ack = t.from_ack.clone();
        from_ack.sort_unstable();
        assert_eq!(from_ack, [0, 1_000_000, 3_000_000, 4_000_000]);
        let mut from_send = t.from_send.clone();
        from_send.sort_unstable();
        assert_eq!(from_send, [1_000_000, 3_000_000, 5_000_000, 6_000_000]);

        let layout = Layout {
            streams: 1,
            watchers: 3,
            targets: 2,
        };
        let s = section(layout, t, vec![1], vec!["broke".into()]);
        assert_eq!(s.json["missing"], 1);
        assert_eq!(s.json["received"], 4);
        assert_eq!(s.failed_checks.len(), 4, "{:?}", s.failed_checks);
    }

    #[test]
    fn a_perfect_run_fails_no_check() {
        let t0 = Instant::now();
        let puts = [put(1, 0, t0), put(2, 0, t0)];
        let w = WatcherLog {
            target: 0,
            events: vec![(1, t0), (2, t0)],
        };
        let t = tally(&puts, &[w.clone(), w]);
        assert_eq!((t.expected, t.delivered, t.missing), (4, 4, 0));
        let layout = Layout {
            streams: 1,
            watchers: 2,
            targets: 1,
        };
        let s = section(layout, t, Vec::new(), Vec::new());
        assert!(s.failed_checks.is_empty(), "{:?}", s.failed_checks);
        assert_eq!(s.json["expected"], 4);
    }
}
