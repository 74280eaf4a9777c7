//! MVCC snapshots: writing a consistent stream of a store with 20,000 revisions of
//! 256-byte values (10,000 live keys), and installing it over another store (one
//! durable redb commit each). Throughput is snapshot bytes per second.
//!
//! Runs against a tempdir on whatever disk holds $TMPDIR.

use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_testkit::store::{self, TempStore};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const VALUE: [u8; 256] = [0x5a; 256];
const KEYS: u64 = 10_000;
const REVISIONS: u64 = 20_000;

/// A store holding `REVISIONS` puts over `KEYS` keys.
fn filled() -> TempStore {
    let fixture = TempStore::open();
    let cmds: Vec<Command> = (1..=REVISIONS)
        .map(|i| store::put(format!("/registry/pods/default/pod-{:05}", i % KEYS), VALUE))
        .collect();
    fixture.load(&cmds);
    fixture
}

fn bench_snapshot(c: &mut Criterion) {
    let TempStore { store: src, .. } = &filled();
    let mut bytes = Vec::new();
    let info = src.write_snapshot(&mut bytes).expect("snapshot");
    let mut g = c.benchmark_group("mvcc_snapshot_20k_revs_256b");
    g.throughput(Throughput::Bytes(info.bytes));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("write", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            src.write_snapshot(&mut out).expect("snapshot")
        })
    });
    let TempStore { store: dst, .. } = &TempStore::open();
    g.bench_function("install", |b| {
        b.iter(|| {
            dst.install_snapshot(&mut bytes.as_slice())
                .expect("install")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_snapshot);
criterion_main!(benches);
