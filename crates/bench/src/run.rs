//! The load driver: `clients` concurrent tasks draining one bounded request
//! count before one deadline, timing every request.
//!
//! Workloads (put, range, txn-put, txn-cas) only say how to send request
//! number `i` on a client; the driver owns concurrency, bounds and
//! bookkeeping so every workload counts and stops the same way. Work is
//! handed out from a shared counter rather than split up front, so a slow
//! connection does not leave its clients with a long tail while the others
//! sit idle (etcd's benchmark does the same with a shared request channel).
//!
//! A client is usually a bare KV stub, but can carry per-client state
//! (txn-cas's client remembers its key's last revision): each client is one
//! task sending one request at a time, so that state never sees two
//! requests at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::stats;

/// How many error messages are kept (and printed as they happen); the rest
/// are only counted, so a dead server cannot flood the terminal.
const ERROR_SAMPLES: usize = 5;

/// A request in flight, as workloads hand it to [`drive`].
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// Errors seen during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct ErrorLog {
    /// Requests that got a gRPC error.
    pub(crate) count: u64,
    /// Count per gRPC status code (e.g. `Unavailable`).
    pub(crate) by_code: BTreeMap<String, u64>,
    /// The first few errors, as `code: message`.
    pub(crate) samples: Vec<String>,
}

impl ErrorLog {
    /// Records one failed request; prints it to stderr if it is one of the
    /// first few (unless `quiet`).
    fn record(&mut self, status: &tonic::Status, quiet: bool) {
        self.count += 1;
        let code = format!("{:?}", status.code());
        *self.by_code.entry(code.clone()).or_insert(0) += 1;
        if self.samples.len() < ERROR_SAMPLES {
            let line = format!("{code}: {}", status.message());
            if !quiet {
                eprintln!("bramble-bench: error #{}: {line}", self.count);
            }
            self.samples.push(line);
        }
    }
}

/// The bounds of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Requests to send in all.
    pub(crate) total: u64,
    /// No request is started after this, and any still in flight is abandoned.
    pub(crate) deadline: Instant,
    /// Don't print errors as they happen (the report still lists them).
    pub(crate) quiet: bool,
}

/// What happened in one run.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Latency of every successful request, nanoseconds, in no order.
    pub(crate) latencies: Vec<u64>,
    /// Failed requests.
    pub(crate) errors: ErrorLog,
    /// Requests abandoned in flight at the deadline.
    pub(crate) abandoned: u64,
    /// True if the deadline stopped the run before `total` requests finished.
    pub(crate) timed_out: bool,
    /// Wall time from the first request to the last one finishing.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// Requests that succeeded.
    pub(crate) fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// Runs `plan.total` requests over `clients` (one task each), calling
/// `op(client, i)` for request number `i` (0-based, each sent once).
pub(crate) async fn drive<Client, Op, Fut>(clients: Vec<Client>, plan: Plan, op: Op) -> Outcome
where
    Client: Clone + Send + 'static,
    Op: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(ErrorLog::default()));
    let abandoned = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let (op, next, errors, abandoned) =
            (op.clone(), next.clone(), errors.clone(), abandoned.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < plan.deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.total {
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout_at(plan.deadline, op(client.clone(), i)).await {
                    Ok(Ok(())) => latencies.push(stats::nanos(t0.elapsed())),
                    Ok(Err(status)) => {
                        // A poisoned lock only means another task panicked
                        // mid-record; the counts are still usable.
                        let mut log = errors.lock().unwrap_or_else(|p| p.into_inner());
                        log.record(&status, plan.quiet);
                    }
                    Err(_deadline) => {
                        abandoned.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            latencies
        }));
    }

    let mut latencies = Vec::with_capacity(usize::try_from(plan.total).unwrap_or(0));
    for t in tasks {
        match t.await {
            Ok(l) => latencies.extend(l),
            // A task can only fail by panicking inside `op`; report it
            // rather than take the whole run down with it.
            Err(e) => eprintln!("bramble-bench: a client task failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let done = latencies.len() as u64 + errors.count;
    Outcome {
        latencies,
        errors,
        abandoned: abandoned.load(Ordering::Relaxed),
        timed_out: done < plan.total,
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Kv;
    use std::collections::HashSet;

    /// Clients whose connection is never used (the test ops ignore it).
    fn idle_clients(n: usize) -> Vec<Kv> {
        let ch = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        (0..n)
            .map(|_| crate::conn::kv(ch.clone(), Default::default()))
            .collect()
    }

    fn plan(total: u64, secs: u64) -> Plan {
        Plan {
            total,
            deadline: Instant::now() + Duration::from_secs(secs),
            quiet: true,
        }
    }

    #[tokio::test]
    async fn every_index_once_and_errors_counted() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let out = drive(idle_clients(4), plan(100, 10), move |_kv, i| {
            s.lock().expect("lock").push(i);
            async move {
                if i % 10 == 0 {
                    Err(tonic::Status::unavailable("down"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 100);
        assert_eq!(seen.iter().copied().collect::<HashSet<_>>().len(), 100);
        assert_eq!(out.ok(), 90);
        assert_eq!(out.errors.count, 10);
        assert_eq!(out.errors.by_code.get("Unavailable"), Some(&10));
        assert_eq!(out.errors.samples.len(), ERROR_SAMPLES);
        assert!(!out.timed_out);
        assert_eq!(out.abandoned, 0);
    }

    #[tokio::test]
    async fn deadline_stops_a_hung_server() {
        let out = drive(idle_clients(3), plan(1000, 0), |_kv, _i| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert!(out.timed_out);
        assert_eq!(out.ok(), 0);
    }

    #[tokio::test]
    async fn in_flight_requests_are_abandoned_at_the_deadline() {
        let p = Plan {
            total: 1000,
            // Long enough that both tasks surely start before it, even on a loaded CI machine.
            deadline: Instant::now() + Duration::from_millis(500),
            quiet: true,
        };
        let out = drive(idle_clients(2), p, |_kv, _i| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert!(out.timed_out);
        assert_eq!(out.abandoned, 2);
    }
}
