//! The embedding API against gRPC on loopback: the latency of a put (256 B), a
//! linearizable and a serializable get, and a compare-and-swap txn, called in process
//! through `bramble::Client` and over gRPC (tonic, 127.0.0.1) on the same one-member
//! store on a tempdir. One call at a time, so each time is one call's latency. CPU per
//! call: `benches/embedded_cpu.rs`.

use std::time::{Duration, Instant};

use bramble_benches::loopback::{Call, Loopback};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_calls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = runtime.block_on(Loopback::open());
    for call in Call::ALL {
        let mut g = c.benchmark_group(format!("kv_{}", call.name()));
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(5));
        // The loop runs inside the runtime, so no block_on is timed with each call.
        g.bench_function("embedded", |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        store.embedded(call).await;
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function("grpc_loopback", |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        store.grpc(call).await;
                    }
                    start.elapsed()
                })
            })
        });
        g.finish();
    }
    runtime.block_on(store.close());
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
