//! The `watch-latency` workload: puts to one key at a steady rate, many
//! watchers of that key, and the latency from each put to each event.
//!
//! As etcd's `benchmark watch-latency`: `--streams` streams of
//! `--watchers-per-stream` watchers on one key, puts at `--put-rate` per
//! second. It is the `watch` workload (watch.rs) with a single key rather than
//! prefixes, so it reports the same things: put latency, delivery latency from
//! the put's response and from its send, and every event accounted for.

use anyhow::{bail, Result};

use crate::watch::{Keys, StreamArgs, Target, WatchShape};

/// `watch-latency` flags (etcd's names; its `--put-total` is the common `--total`).
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct WatchLatencyArgs {
    /// Watchers per stream, all on --key.
    #[arg(long, default_value_t = 10)]
    pub(crate) watchers_per_stream: usize,
    /// Puts per second over all writers (0: as fast as they go).
    #[arg(long, default_value_t = 100)]
    pub(crate) put_rate: u64,
    /// The key every put writes and every watcher watches.
    #[arg(long, default_value = "bench-watch-latency")]
    pub(crate) key: String,
    /// The flags shared with `watch`.
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) stream: StreamArgs,
}

/// The `watch-latency` workload from its flags.
pub(crate) fn shape(a: &WatchLatencyArgs) -> Result<WatchShape> {
    if a.key.is_empty() {
        bail!("--key must not be empty");
    }
    let target = Target {
        key: a.key.as_bytes().to_vec(),
        range_end: Vec::new(),
    };
    WatchShape::new(
        vec![target],
        Keys::OneKey,
        a.watchers_per_stream,
        a.put_rate,
        &a.stream,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_put_writes_the_one_watched_key() {
        let a = WatchLatencyArgs {
            watchers_per_stream: 2,
            put_rate: 100,
            key: "k".into(),
            stream: StreamArgs {
                streams: 1,
                val_size: 8,
                prev_kv: true,
                drain_timeout: 1,
                seed: 1,
            },
        };
        let s = shape(&a).expect("valid");
        assert!((0..5).all(|i| s.put_key(i) == (b"k".to_vec(), 0)));
        assert!(s.targets[0].range_end.is_empty());
        assert!(shape(&WatchLatencyArgs {
            key: String::new(),
            ..a
        })
        .is_err());
    }
}
