//! The load driver: `clients` concurrent tasks draining one bounded request
//! count (or running for a duration), optionally at a fixed rate, before one
//! deadline, timing every request.
//!
//! Workloads (put, range, txn-put, txn-cas) only say how to send request
//! number `i` on a client; the driver owns concurrency, bounds and
//! bookkeeping so every workload counts and stops the same way. Work is
//! handed out from a shared counter rather than split up front, so a slow
//! connection does not leave its clients with a long tail while the others
//! sit idle (etcd's benchmark does the same with a shared request channel).
//! The same counter paces `--rate`: request `i` is due `i / rate` seconds
//! after the start, whichever client takes it.
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

use crate::progress::{Counters, Goal, Progress};
use crate::series::{self, Interval, Sample};
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
    pub(crate) fn record(&mut self, status: &tonic::Status, quiet: bool) {
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
    /// Requests to send in all (`u64::MAX` when `duration` is the bound).
    pub(crate) total: u64,
    /// Start no request after this long (`--duration`); requests in flight
    /// then still finish, unless `deadline` comes first.
    pub(crate) duration: Option<Duration>,
    /// Requests started per second across all clients (`--rate`); 0 for
    /// as fast as the clients go.
    pub(crate) rate: u64,
    /// No request is started after this, and any still in flight is abandoned.
    pub(crate) deadline: Instant,
    /// Don't print errors as they happen (the report still lists them).
    pub(crate) quiet: bool,
    /// Width of the time series' intervals.
    pub(crate) interval: Duration,
    /// Draw the live progress line on stderr.
    pub(crate) progress: bool,
}

/// What happened in one run.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Latency of every successful request, nanoseconds, in no order.
    pub(crate) latencies: Vec<u64>,
    /// Failed requests.
    pub(crate) errors: ErrorLog,
    /// Requests abandoned in flight at the deadline.
    pub(crate) abandoned: u64,
    /// True if the deadline stopped the run before its bound (`total`
    /// requests, or `duration`) was reached.
    pub(crate) timed_out: bool,
    /// Wall time from the first request to the last one finishing.
    pub(crate) elapsed: Duration,
    /// Successes and failures per interval of `Plan::interval`; they add up
    /// to `latencies.len()` and `errors.count`.
    pub(crate) series: Vec<Interval>,
}

impl Outcome {
    /// Requests that succeeded.
    pub(crate) fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// When request `i` may start at `rate` requests per second from `started`.
///
/// A fixed schedule rather than a token bucket: request `i` is due at
/// `i / rate` seconds, so a run at `--rate 200 --duration 1` starts exactly
/// 200 requests, and clients that fell behind (a slow response) catch up
/// instead of silently lowering the rate.
fn due(started: Instant, rate: u64, i: u64) -> Instant {
    let nanos = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
    started + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// What one client task recorded.
#[derive(Default)]
struct TaskLog {
    /// Its successes.
    samples: Vec<Sample>,
    /// When its failures finished, nanoseconds since the start.
    error_ends: Vec<u64>,
}

/// Runs `plan.total` requests (or for `plan.duration`) over `clients` (one
/// task each), calling `op(client, i)` for request number `i` (0-based, each
/// sent once).
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
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    // No request starts at or after `stop`; the deadline also abandons
    // those in flight.
    let stop = match plan.duration {
        Some(d) => (started + d).min(plan.deadline),
        None => plan.deadline,
    };
    let progress = plan.progress.then(|| {
        let goal = match plan.duration {
            Some(d) => Goal::Time(d),
            None => Goal::Requests(plan.total),
        };
        Progress::start(goal, counters.clone(), started)
    });

    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let (op, next, errors, abandoned, counters) = (
            op.clone(),
            next.clone(),
            errors.clone(),
            abandoned.clone(),
            counters.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut log = TaskLog::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.total {
                    break;
                }
                if plan.rate > 0 {
                    let at = due(started, plan.rate, i);
                    if at >= stop {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                }
                let t0 = Instant::now();
                // Also for a paced request whose timer fired late: a
                // client that cannot keep up with the rate must not stretch
                // the run past its duration.
                if t0 >= stop {
                    break;
                }
                let result = tokio::time::timeout_at(plan.deadline, op(client.clone(), i)).await;
                let end = Instant::now();
                let end_ns = stats::nanos(end.duration_since(started));
                match result {
                    Ok(Ok(())) => {
                        log.samples.push(Sample {
                            end_ns,
                            latency_ns: stats::nanos(end.duration_since(t0)),
                        });
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(status)) => {
                        // A poisoned lock only means another task panicked
                        // mid-record; the counts are still usable.
                        let mut errors = errors.lock().unwrap_or_else(|p| p.into_inner());
                        errors.record(&status, plan.quiet || plan.progress);
                        log.error_ends.push(end_ns);
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_deadline) => {
                        abandoned.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            log
        }));
    }

    let mut samples = Vec::new();
    let mut error_ends = Vec::new();
    for t in tasks {
        match t.await {
            Ok(log) => {
                samples.extend(log.samples);
                error_ends.extend(log.error_ends);
            }
            // A task can only fail by panicking inside `op`; report it
            // rather than take the whole run down with it.
            Err(e) => eprintln!("bramble-bench: a client task failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.finish();
    }
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let abandoned = abandoned.load(Ordering::Relaxed);
    let done = samples.len() as u64 + errors.count;
    let timed_out = match plan.duration {
        // Cut short if the deadline came before the duration's end, or
        // caught requests still in flight after it.
        Some(d) => plan.deadline < started + d || abandoned > 0,
        None => done < plan.total,
    };
    let series = series::build(&mut samples, &error_ends, plan.interval, elapsed);
    Outcome {
        latencies: samples.iter().map(|s| s.latency_ns).collect(),
        errors,
        abandoned,
        timed_out,
        elapsed,
        series,
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
            duration: None,
            rate: 0,
            deadline: Instant::now() + Duration::from_secs(secs),
            quiet: true,
            interval: Duration::from_secs(1),
            progress: false,
        }
    }

    /// A plan bounded by `duration` instead of a request count.
    fn timed(duration: Duration, rate: u64) -> Plan {
        Plan {
            total: u64::MAX,
            duration: Some(duration),
            rate,
            ..plan(0, 20)
        }
    }

    /// Totals of a series.
    fn series_sums(out: &Outcome) -> (u64, u64) {
        out.series
            .iter()
            .fold((0, 0), |(ok, err), i| (ok + i.ok, err + i.errors))
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
        assert_eq!(series_sums(&out), (90, 10));
    }

    #[tokio::test]
    async fn rate_paces_requests_and_duration_bounds_them() {
        // 200/s for 1 s: request i is due at i * 5 ms, so i = 0..199 are
        // due before the end (the 200th is due at 1.000 s, the end): never
        // more than 200. A request never starts before it is due. 4 clients
        // of instant requests keep up, but a request whose timer fires after
        // the end is not sent: allowing a loaded machine 50 ms of timer
        // lateness, that is at most the last 10 (50 ms * 200/s), so 190..=200.
        let started = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let s = starts.clone();
        let mut p = timed(Duration::from_secs(1), 200);
        p.interval = Duration::from_millis(250);
        let out = drive(idle_clients(4), p, move |_kv, i| {
            s.lock().expect("lock").push((i, Instant::now()));
            async { Ok(()) }
        })
        .await;
        assert!((190..=200).contains(&out.ok()), "{}", out.ok());
        assert!(!out.timed_out);
        let starts = starts.lock().expect("lock");
        for &(i, at) in starts.iter() {
            let due_after = Duration::from_millis(5 * i);
            assert!(
                at.duration_since(started) >= due_after,
                "request {i} started before {due_after:?}"
            );
        }
        // The last request sent was due at 5 ms * (ok - 1) after the
        // driver's start (a little after `started`); the run ends then, plus
        // the 50 ms lateness allowed above.
        let last_due = Duration::from_millis(5 * (out.ok() - 1));
        assert!(out.elapsed >= last_due, "{:?}", out.elapsed);
        assert!(
            out.elapsed < Duration::from_millis(1050),
            "{:?}",
            out.elapsed
        );
        assert_eq!(series_sums(&out), (out.ok(), 0));
        // Four 250 ms intervals, a fifth if the last request ended past 1 s.
        assert!((4..=5).contains(&out.series.len()), "{:?}", out.series);
    }

    #[tokio::test]
    async fn rate_with_a_total() {
        // 50 requests at 100/s: the last is due at 490 ms.
        let p = Plan {
            rate: 100,
            ..plan(50, 20)
        };
        let out = drive(idle_clients(8), p, |_kv, _i| async { Ok(()) }).await;
        assert_eq!(out.ok(), 50);
        assert!(
            out.elapsed >= Duration::from_millis(485),
            "{:?}",
            out.elapsed
        );
        assert!(!out.timed_out);
    }

    #[tokio::test]
    async fn requests_in_flight_at_the_duration_end_finish() {
        // Each client starts one 300 ms request at once; the 100 ms duration
        // then lets no more start, but those two finish and count.
        let out = drive(
            idle_clients(2),
            timed(Duration::from_millis(100), 0),
            |_kv, _i| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            },
        )
        .await;
        assert_eq!(out.ok(), 2);
        assert_eq!(out.abandoned, 0);
        assert!(!out.timed_out);
        assert!(out.elapsed >= Duration::from_millis(300));
        assert_eq!(series_sums(&out), (2, 0));
    }

    #[tokio::test]
    async fn duration_bounds_an_unpaced_run() {
        // 2 clients of 10 ms requests for 300 ms: at most 2 * (300 / 10 + 1)
        // requests start (sleeps only ever run long), and the run ends by
        // the last one's end.
        let out = drive(
            idle_clients(2),
            timed(Duration::from_millis(300), 0),
            |_kv, i| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if i == 3 {
                    Err(tonic::Status::internal("boom"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        let done = out.ok() + out.errors.count;
        assert!((2..=62).contains(&done), "{done}");
        assert_eq!(out.errors.count, 1);
        assert!(!out.timed_out);
        assert!(
            out.elapsed >= Duration::from_millis(300),
            "{:?}",
            out.elapsed
        );
        assert_eq!(series_sums(&out), (out.ok(), 1));
    }

    #[tokio::test]
    async fn a_deadline_before_the_duration_end_is_a_timeout() {
        let p = Plan {
            deadline: Instant::now() + Duration::from_millis(200),
            ..timed(Duration::from_secs(5), 0)
        };
        let out = drive(idle_clients(1), p, |_kv, _i| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .await;
        assert!(out.timed_out);
        assert!(out.ok() > 0);
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
            // Long enough that both tasks surely start before it, even on a loaded CI machine.
            deadline: Instant::now() + Duration::from_millis(500),
            ..plan(1000, 0)
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
