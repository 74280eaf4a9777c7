//! The `watch-latency` workload: puts to one key at a steady rate, many
//! watchers of that key, and the latency from each put to each event.
//!
//! As etcd's `benchmark watch-latency`: `--streams` streams of
//! `--watchers-per-stream` watchers on one key, puts at `--put-rate` per
//! second. It is the `watch` workload (watch.rs) with a single key rather than
//! prefixes, so it reports the same things: put latency, delivery latency from
//! the put's response and from its send, and every event accounted for.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::watch::{Keys, Target, WatchShape};

/// `watch-latency` flags (etcd's names; its `--put-total` is the common `--total`).
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct WatchLatencyArgs {
    /// Watch streams (one gRPC Watch call each), spread round-robin over the --conns connections.
    #[arg(long, default_value_t = 10)]
    pub(crate) streams: usize,
    /// Watchers per stream, all on --key.
    #[arg(long, default_value_t = 10)]
    pub(crate) watchers_per_stream: usize,
    /// Puts per second over all writers (0: as fast as they go).
    #[arg(long, default_value_t = 100)]
    pub(crate) put_rate: u64,
    /// The key every put writes and every watcher watches.
    #[arg(long, default_value = "bench-watch-latency")]
    pub(crate) key: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 32)]
    pub(crate) val_size: usize,
    /// Ask for each event's previous key-value too.
    #[arg(long, alias = "prevkv")]
    pub(crate) prev_kv: bool,
    /// After the last put, wait at most this many seconds for the events still owed.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_timeout: u64,
    /// Seed for the value's random bytes.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// The `watch-latency` workload from its flags.
pub(crate) fn shape(a: &WatchLatencyArgs) -> Result<WatchShape> {
    if a.key.is_empty() {
        bail!("--key must not be empty");
    }
    let shape = WatchShape {
        targets: vec![Target {
            key: a.key.as_bytes().to_vec(),
            range_end: Vec::new(),
        }],
        keys: Keys::OneKey,
        streams: a.streams,
        per_stream: a.watchers_per_stream,
        prev_kv: a.prev_kv,
        value: crate::put::random_value(a.val_size, a.seed),
        put_rate: a.put_rate,
        drain: Duration::from_secs(a.drain_timeout),
    };
    shape.validate()?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_put_writes_the_one_watched_key() {
        let a = WatchLatencyArgs {
            streams: 1,
            watchers_per_stream: 2,
            put_rate: 100,
            key: "k".into(),
            val_size: 8,
            prev_kv: true,
            drain_timeout: 1,
            seed: 1,
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
