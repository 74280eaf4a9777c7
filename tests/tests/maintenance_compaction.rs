//! How a compaction of a long history affects writes, on etcd 3.4 and on Bramble.
//!
//! - `compaction_measure` (ignored; `-- --ignored --nocapture`): 50,000 keys of 1 KiB put
//!   twice (50,000 superseded revisions), then a physical Compact while a client keeps
//!   putting: prints how long the Compact took (the reply waits for the deletion) and the
//!   longest put during it, for each server (numbers in docs/operations.md). Both servers
//!   delete in the background in batches of 1,000 revisions (etcd's
//!   `--compaction-batch-limit`), so a put waits for one batch at most.
//!
//! The deletion's correctness (batches between applies, hashes unchanged during it,
//! snapshots taken half way) is unit tested in the storage crate
//! (crates/storage/src/mvcc/tests/compaction.rs); compacted reads and hashes after a
//! physical Compact are compared with etcd in maintenance_hash.rs and etcdctl_kv.rs.

use std::time::{Duration, Instant};

use bramble_tests::load::{count_from_env, fill, WriteProbe};
use bramble_tests::{client, Kind, Server};
use etcd_client::CompactionOptions;

#[test]
#[ignore = "a measurement: minutes of load (run with -- --ignored --nocapture)"]
fn compaction_measure() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let keys = count_from_env("COMPACTION_KEYS", 50_000);
    for kind in [Kind::Etcd, Kind::Bramble] {
        let server = Server::start(kind);
        let endpoint = server.endpoint();
        runtime.block_on(async {
            fill(&endpoint, "k/", keys, 1024, 16).await;
            fill(&endpoint, "k/", keys, 1024, 16).await;
            let mut c = client::connect_endpoint(&endpoint).await;
            let rev = c
                .get("k/", None)
                .await
                .expect("get")
                .header()
                .expect("header")
                .revision();
            let probe = WriteProbe::start(&endpoint, "during").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = Instant::now();
            c.compact(rev, Some(CompactionOptions::new().with_physical()))
                .await
                .expect("compact");
            let took = t.elapsed();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (worst, puts) = probe.stop().await;
            println!(
                "{kind}: physical compact of {keys} superseded revisions of 1 KiB: {} ms; \
                 longest put during it {} ms ({puts} puts)",
                took.as_millis(),
                worst.as_millis()
            );
        });
    }
}
