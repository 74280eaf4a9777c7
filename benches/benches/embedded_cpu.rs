//! CPU per call, embedded against gRPC on loopback: the same calls as
//! `benches/embedded_vs_grpc.rs`, a fixed number of each, with the process's CPU time
//! (user + system, getrusage) read before and after. Over gRPC that is the client's and
//! the server's work together, both in this process, as the embedded call's is.
//!
//! `cargo bench -p bramble-benches --bench embedded_cpu [-- calls]` prints a table.

use std::time::{Duration, Instant};

use bramble_benches::loopback::{Call, Loopback};

/// Calls of each kind per measurement, unless given on the command line.
const DEFAULT_CALLS: u32 = 5_000;

/// This process's CPU time so far (all threads, user and system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time per call of `n` calls made one after another.
async fn measure<F, Fut>(n: u32, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // A few calls first, so connections and caches are warm.
    for _ in 0..n / 10 {
        call().await;
    }
    let (cpu, wall) = (cpu_time(), Instant::now());
    for _ in 0..n {
        call().await;
    }
    (wall.elapsed() / n, (cpu_time() - cpu) / n)
}

fn main() {
    // `cargo bench` passes `--bench`; a number is the calls per measurement.
    let calls = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Loopback::open().await;
        println!("{calls} calls each, one at a time; per call:");
        println!(
            "{:<18} {:>14} {:>14} {:>14} {:>14}",
            "call", "embedded wall", "embedded CPU", "gRPC wall", "gRPC CPU"
        );
        for call in Call::ALL {
            let (ew, ec) = measure(calls, || store.embedded(call)).await;
            let (gw, gc) = measure(calls, || store.grpc(call)).await;
            println!(
                "{:<18} {:>11.1} µs {:>11.1} µs {:>11.1} µs {:>11.1} µs",
                call.name(),
                micros(ew),
                micros(ec),
                micros(gw),
                micros(gc)
            );
        }
        store.close().await;
    });
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
