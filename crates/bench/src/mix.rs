//! Read/write mixes (`mixed`, `txn-mixed`): which requests read, and the
//! latency of reads and writes kept apart.
//!
//! A read and a write cost a server very different amounts (a linearizable
//! read is a read-index round, a write a raft entry and an fsync), so one
//! latency distribution over both says little; the common report keeps it
//! (all requests), and the `ops` section has each kind's own. Whether request
//! `i` reads is a function of `i` and the seed, so two servers get the same
//! sequence of reads and writes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::time::Instant;
use tonic::Status;

use crate::put::{splitmix64, PutShape};
use crate::report::LatencyMs;
use crate::section::{latency, latency_line, Section};
use crate::stats::nanos;

/// The `put` shape from `put`'s flags (mixed and txn-mixed take them too).
pub(crate) fn put_shape(a: &crate::cli::PutArgs) -> Result<PutShape> {
    let shape = PutShape {
        key_size: a.key_size,
        val_size: a.val_size,
        key_space: a.key_space,
        seq_keys: a.seq_keys,
        seed: a.seed,
    };
    shape.validate()?;
    Ok(shape)
}

/// Checks a fraction of reads is within 0..=1.
pub(crate) fn check_fraction(flag: &str, fraction: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&fraction) {
        bail!("{flag} must be between 0.0 and 1.0, not {fraction}");
    }
    Ok(())
}

/// True if request `i` is a read, which a `fraction` of requests are.
pub(crate) fn reads(i: u64, seed: u64, fraction: f64) -> bool {
    // A different mix of seed and index than put's key numbers, so which
    // requests read does not depend on which key they touch. 53 bits: the
    // precision of an f64 in [0, 1).
    let bits = splitmix64(seed.rotate_left(29) ^ 0x6d_6978_6564 ^ splitmix64(!i)) >> 11;
    (bits as f64 / (1u64 << 53) as f64) < fraction
}

/// Counts and latencies of one kind of request.
#[derive(Debug, Default)]
pub(crate) struct Kind {
    /// Requests started.
    sent: AtomicU64,
    /// Requests that failed.
    errors: AtomicU64,
    /// Latency of each successful request, nanoseconds.
    latencies: Mutex<Vec<u64>>,
}

impl Kind {
    /// Runs `request`, counting and timing it as this kind.
    pub(crate) async fn time<T>(
        &self,
        request: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = request.await;
        match &result {
            Ok(_) => {
                let took = nanos(t0.elapsed());
                // A poisoned lock only means another task panicked mid-push.
                self.latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(took);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// The counts and latency percentiles so far.
    fn summary(&self) -> KindSummary {
        let latencies = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        KindSummary {
            sent: self.sent.load(Ordering::Relaxed),
            ok: latencies.len() as u64,
            errors: self.errors.load(Ordering::Relaxed),
            latency_ms: latency(latencies),
        }
    }
}

/// One kind's part of the `ops` section.
#[derive(Debug, Serialize)]
struct KindSummary {
    /// Requests started (a request abandoned at the deadline is neither ok nor an error).
    sent: u64,
    /// Requests that succeeded.
    ok: u64,
    /// Requests that failed.
    errors: u64,
    /// Latency of the successful ones.
    latency_ms: Option<LatencyMs>,
}

/// Reads and writes of one run.
#[derive(Debug, Default)]
pub(crate) struct Mix {
    /// Ranges (or read-only txns).
    pub(crate) read: Kind,
    /// Puts (or txns of one put).
    pub(crate) write: Kind,
}

impl Mix {
    /// The report's `ops` section.
    pub(crate) fn section(&self) -> Section {
        #[derive(Serialize)]
        struct Ops {
            read: KindSummary,
            write: KindSummary,
        }
        let ops = Ops {
            read: self.read.summary(),
            write: self.write.summary(),
        };
        let mut s = Section::new("ops", &ops);
        for (name, k) in [("reads", &ops.read), ("writes", &ops.write)] {
            s.text.push(format!(
                "  {name:<11} {} sent, {} ok, {} errors",
                k.sent, k.ok, k.errors
            ));
            s.text
                .push(latency_line(&format!("{name} ms"), k.latency_ms.as_ref()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_fraction_is_kept_and_deterministic() {
        let count = |seed, f| (0..10_000).filter(|&i| reads(i, seed, f)).count();
        assert_eq!(count(1, 0.0), 0);
        assert_eq!(count(1, 1.0), 10_000);
        let n = count(1, 0.9);
        assert!((8_800..=9_200).contains(&n), "{n} reads of 10000 at 0.9");
        assert_eq!(count(1, 0.9), n, "same seed, same requests");
        let a: Vec<bool> = (0..64).map(|i| reads(i, 1, 0.5)).collect();
        let b: Vec<bool> = (0..64).map(|i| reads(i, 2, 0.5)).collect();
        assert_ne!(a, b, "another seed, other requests");
        assert!(check_fraction("--read-ratio", 0.5).is_ok());
        assert!(check_fraction("--read-ratio", 1.5).is_err());
        assert!(check_fraction("--read-ratio", f64::NAN).is_err());
    }

    #[tokio::test]
    async fn kinds_count_apart() {
        let m = Mix::default();
        m.read
            .time(async { Ok::<_, Status>(()) })
            .await
            .expect("ok");
        m.read
            .time(async { Ok::<_, Status>(()) })
            .await
            .expect("ok");
        let e = m
            .write
            .time(async { Err::<(), _>(Status::unavailable("down")) })
            .await;
        assert!(e.is_err());
        let s = m.section();
        assert_eq!(s.key, "ops");
        assert_eq!(s.json["read"]["ok"], 2);
        assert_eq!(s.json["write"]["sent"], 1);
        assert_eq!(s.json["write"]["errors"], 1);
        assert!(s.json["write"]["latency_ms"].is_null());
        assert!(s.text[0].contains("2 sent, 2 ok, 0 errors"), "{:?}", s.text);
    }
}
