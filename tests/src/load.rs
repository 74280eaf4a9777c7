//! Load for maintenance measurements: fill a server with values from concurrent clients,
//! and a writer that keeps putting one key and records its longest put (how long a
//! maintenance operation stalls writes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::client;

/// Puts `n` values of `size` bytes under `prefix` (keys `prefix` + 8 digits) with
/// `concurrency` clients.
pub async fn fill(endpoint: &str, prefix: &str, n: usize, size: usize, concurrency: usize) {
    let value = vec![b'v'; size];
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut c = client::connect_endpoint(endpoint).await;
        let value = value.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(concurrency) {
                c.put(format!("{prefix}{i:08}"), value.clone(), None)
                    .await
                    .unwrap_or_else(|e| panic!("put {i}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("fill task");
    }
}

/// The number in variable `name` (a measurement's size), else `default`.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A client putting `key` in a loop, one put at a time, until stopped.
pub struct WriteProbe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(Duration, u64)>,
}

impl WriteProbe {
    /// Starts putting `key` on `endpoint`.
    pub async fn start(endpoint: &str, key: &str) -> WriteProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let mut c = client::connect_endpoint(endpoint).await;
        let key = key.to_string();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                let mut puts = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    c.put(key.as_str(), "probe", None)
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                    worst = worst.max(t.elapsed());
                    puts += 1;
                }
                (worst, puts)
            })
        };
        WriteProbe { stop, task }
    }

    /// Stops the writer: the longest put it saw and how many puts it made.
    pub async fn stop(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("write probe task")
    }
}
