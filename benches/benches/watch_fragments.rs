//! Watch response fragmenting (etcd's `sendFragments`, used when a watcher
//! asks for `fragment` and a response reaches `--max-request-bytes`): a
//! response of 10,000 and 100,000 events of ~100 bytes split into 1.5 MiB
//! parts. The time per event must stay flat as the count grows (it grew
//! with the part size when each part was re-encoded per event).

use bramble_api::etcdserverpb::WatchResponse;
use bramble_api::mvccpb::{event::EventType, Event, KeyValue};
use bramble_server::watch::stream::fragments;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// etcd's default `--max-request-bytes`.
const MAX_REQUEST_BYTES: usize = 1536 * 1024;

fn response(events: i64) -> WatchResponse {
    WatchResponse {
        watch_id: 1,
        events: (1..=events)
            .map(|rev| Event {
                r#type: EventType::Put as i32,
                kv: Some(KeyValue {
                    key: format!("/registry/pods/default/pod-{rev:06}").into_bytes(),
                    value: vec![0x5a; 64],
                    create_revision: rev,
                    mod_revision: rev,
                    version: 1,
                    lease: 0,
                }),
                prev_kv: None,
            })
            .collect(),
        ..Default::default()
    }
}

fn bench_fragments(c: &mut Criterion) {
    let mut g = c.benchmark_group("watch_fragments");
    g.sample_size(10);
    for n in [20_000i64, 100_000] {
        let resp = response(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_events"), |b| {
            b.iter_batched(
                || resp.clone(),
                |r| fragments(r, MAX_REQUEST_BYTES),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_fragments);
criterion_main!(benches);
