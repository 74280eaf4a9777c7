//! What the embedded watch tests share: a member with short Raft ticks, and
//! reading a watcher's responses and events with a timeout.

// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

use std::time::Duration;

use bramble::api::etcdserverpb::{ResponseHeader, WatchResponse};
use bramble::api::mvccpb::event::EventType;
use bramble::api::mvccpb::Event;
use bramble::{Node, NodeOptions, Watcher};
use futures::StreamExt;
use tokio::time::timeout;

/// Longest wait for anything the member should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub async fn open(dir: &std::path::Path) -> Node {
    let mut opts = NodeOptions::new(dir);
    opts.heartbeat_interval_ms = 20;
    opts.election_timeout_ms = 100;
    Node::open(opts).await.expect("open")
}

/// The watcher's next response, which must come, without an error.
pub async fn next(w: &mut Watcher) -> WatchResponse {
    timeout(PATIENCE, w.next())
        .await
        .expect("a response in time")
        .expect("the stream is open")
        .expect("not an error")
}

/// The watcher's next `n` events (from as many responses as they come in).
pub async fn events(w: &mut Watcher, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = next(w).await;
        assert!(!resp.events.is_empty(), "unexpected response {resp:?}");
        out.extend(resp.events);
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

/// (type, key, value, mod revision) of an event.
pub fn summary(e: &Event) -> (EventType, String, String, i64) {
    let kv = e.kv.as_ref().expect("event kv");
    (
        e.r#type(),
        String::from_utf8_lossy(&kv.key).into_owned(),
        String::from_utf8_lossy(&kv.value).into_owned(),
        kv.mod_revision,
    )
}

/// The revision in a write's answer header.
pub fn rev(header: Option<ResponseHeader>) -> i64 {
    header.expect("header").revision
}
