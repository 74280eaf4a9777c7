//! MVCC state machine: applying puts of 256-byte values (redb `Durability::None`, a
//! checkpoint every 1000 entries as the raft layer does), one at a time and in batches
//! of 100; reading one key; reading a 1000-key prefix with limit 100; compacting a history
//! of 20,000 revisions: the apply (what stalls every write behind it), one background
//! batch, and the whole deletion (what the apply cost when it deleted inline).
//!
//! Runs against a tempdir on whatever disk holds $TMPDIR.

use std::cell::Cell;
use std::time::Duration;

use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::RangeRequest;
use bramble_storage::mvcc::{CompactionStep, DEFAULT_COMPACTION_BATCH_LIMIT};
use bramble_testkit::store::{self, TempStore};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const VALUE: [u8; 256] = [0x5a; 256];
/// Puts cycle over this many keys, so the store holds history, as it does between
/// compactions.
const KEYS: u64 = 10_000;

fn put(i: u64) -> Command {
    store::put(format!("/registry/pods/default/pod-{:05}", i % KEYS), VALUE)
}

fn bench_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("mvcc_put_256b");
    g.throughput(Throughput::Elements(1));
    let TempStore { store, .. } = &TempStore::open();
    let next = Cell::new(1u64);
    g.bench_function("apply", |b| {
        b.iter_batched(
            || put(next.get()),
            |cmd| {
                let i = next.get();
                next.set(i + 1);
                store.apply(i, 1, &cmd).expect("apply");
                if i.is_multiple_of(1000) {
                    store.checkpoint().expect("checkpoint");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("apply_batch_100", |b| {
        b.iter_batched(
            || {
                let first = next.get();
                next.set(first + 100);
                (first, (first..first + 100).map(put).collect::<Vec<_>>())
            },
            |(first, cmds)| {
                let entries: Vec<(u64, u64, &Command)> = cmds
                    .iter()
                    .enumerate()
                    .map(|(k, c)| (first + k as u64, 1, c))
                    .collect();
                store.apply_batch(&entries).expect("apply_batch");
                if (first / 100) % 10 == 0 {
                    store.checkpoint().expect("checkpoint");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_range(c: &mut Criterion) {
    let fixture = TempStore::open();
    // 1000 keys under the prefix, 4000 around it.
    let cmds: Vec<Command> = (0..5000u64)
        .map(|i| {
            let dir = ["a", "pods", "z", "x", "y"][(i % 5) as usize];
            store::put(format!("/registry/{dir}/item-{:04}", i / 5), VALUE)
        })
        .collect();
    fixture.load(&cmds);
    let store = &fixture.store;

    let mut g = c.benchmark_group("mvcc_range");
    let one = RangeRequest {
        key: b"/registry/pods/item-0500".to_vec(),
        ..Default::default()
    };
    g.bench_function("one_key", |b| {
        b.iter(|| {
            let r = store.range(&one).expect("range");
            assert_eq!(r.kvs.len(), 1);
        })
    });
    let prefix = RangeRequest {
        key: b"/registry/pods/".to_vec(),
        range_end: b"/registry/pods0".to_vec(),
        limit: 100,
        ..Default::default()
    };
    g.throughput(Throughput::Elements(100));
    g.bench_function("prefix_1000_limit_100", |b| {
        b.iter(|| {
            let r = store.range(&prefix).expect("range");
            assert_eq!((r.kvs.len(), r.count, r.more), (100, 1000, true));
        })
    });
    g.finish();
}

/// Revisions of history the compaction benchmarks delete: 2,000 keys, 10 versions each.
const COMPACTED_REVISIONS: u64 = 20_000;

/// A store holding [`COMPACTED_REVISIONS`] puts, and the command that compacts all but
/// each key's last version.
fn compactable_store() -> (TempStore, Command) {
    let fixture = TempStore::open();
    let cmds: Vec<Command> = (0..COMPACTED_REVISIONS)
        .map(|i| {
            store::put(
                format!("/registry/pods/default/pod-{:04}", i % 2_000),
                VALUE,
            )
        })
        .collect();
    fixture.load(&cmds);
    (fixture, store::compact(COMPACTED_REVISIONS as i64))
}

/// [`compactable_store`] with its Compact applied: the deletion is pending.
fn scheduled_compaction() -> TempStore {
    let (fixture, cmd) = compactable_store();
    let next_index = COMPACTED_REVISIONS + 1;
    fixture.store.apply(next_index, 1, &cmd).expect("apply");
    fixture
}

fn bench_compaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("mvcc_compact_20k_revisions");
    g.sample_size(10);
    let next_index = COMPACTED_REVISIONS + 1;
    g.bench_function("apply", |b| {
        b.iter_batched(
            compactable_store,
            |(fixture, cmd)| {
                fixture.store.apply(next_index, 1, &cmd).expect("apply");
                fixture
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("one_batch", |b| {
        b.iter_batched(
            scheduled_compaction,
            |fixture| {
                let step = fixture
                    .store
                    .compaction_step(DEFAULT_COMPACTION_BATCH_LIMIT)
                    .expect("step");
                assert_eq!(step, CompactionStep::More);
                fixture
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("whole_deletion", |b| {
        b.iter_batched(
            scheduled_compaction,
            |fixture| {
                fixture.store.finish_compaction().expect("finish");
                fixture
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench_put, bench_range, bench_compaction
}
criterion_main!(benches);
