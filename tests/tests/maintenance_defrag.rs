//! Maintenance `Defragment` on etcd 3.4 and on Bramble.
//!
//! - `etcdctl_defrag_shrinks_the_file`: keys put, deleted and compacted, then
//!   `etcdctl defrag`: the same output line as etcd's, the database file shrinks, the
//!   remaining data and the revision are unchanged, writes work after it.
//! - `defrag_measure` (ignored; `-- --ignored --nocapture`): 50,000 values of 1 KiB put,
//!   deleted and compacted, then a defragmentation while a client keeps putting: prints
//!   the file size before and after, how long the defragmentation took and the longest
//!   put latency during it, and how long Status takes with every key live, for each
//!   server (numbers in docs/operations.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bramble_tests::load::{count_from_env, fill, WriteProbe};
use bramble_tests::target::differential_targets;
use bramble_tests::{client, Kind, Server};
use etcd_client::{Client, CompactionOptions, DeleteOptions, GetOptions};

fn db_file(server: &Server) -> PathBuf {
    server.data_dir().join("member").join("snap").join("db")
}

fn db_size(server: &Server) -> u64 {
    std::fs::metadata(db_file(server))
        .unwrap_or_else(|e| panic!("{}: {e}", db_file(server).display()))
        .len()
}

/// Deletes everything under `prefix` and compacts at the current revision.
async fn delete_and_compact(c: &mut Client, prefix: &str) -> i64 {
    let del = c
        .delete(prefix, Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    let rev = del.header().expect("header").revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    rev
}

#[test]
fn etcdctl_defrag_shrinks_the_file() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for kind in differential_targets() {
        let server = Server::start(kind);
        let endpoint = server.endpoint();
        let rev = runtime.block_on(async {
            fill(&endpoint, "gone/", 3000, 1024, 4).await;
            let mut c = client::connect_endpoint(&endpoint).await;
            c.put("kept", "value", None).await.expect("put kept");
            delete_and_compact(&mut c, "gone/").await
        });
        // etcd's backend grows its file with what it holds; wait for its commit
        // interval so the size before is what the pages need.
        std::thread::sleep(Duration::from_millis(200));
        let before = db_size(&server);
        let out = server.etcdctl().run(&["defrag"]);
        out.assert_ok();
        // etcdctl 3.6 adds how long it took: `... member[URL]. took 31.4ms`.
        let stdout = out.stdout_str();
        let finished = format!("Finished defragmenting etcd member[{endpoint}]. took ");
        assert!(
            stdout.starts_with(&finished) && stdout.ends_with("s\n") && stdout.lines().count() == 1,
            "{kind}: {stdout:?}"
        );
        let after = db_size(&server);
        eprintln!("{kind}: db file {before} -> {after} bytes");
        assert!(
            after * 2 < before,
            "{kind}: the file did not shrink: {before} -> {after}"
        );
        runtime.block_on(async {
            let mut c = client::connect_endpoint(&endpoint).await;
            let all = c
                .get("", Some(GetOptions::new().with_from_key()))
                .await
                .expect("get all");
            assert_eq!(all.header().expect("header").revision(), rev, "{kind}");
            let kvs: Vec<_> = all
                .kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                .collect();
            assert_eq!(kvs, vec![(b"kept".to_vec(), b"value".to_vec())], "{kind}");
            // etcd answers Defragment without a header.
            let resp = c.defragment().await.expect("defragment");
            assert!(resp.header().is_none(), "{kind}: {:?}", resp.header());
            let put = c.put("after", "defrag", None).await.expect("put after");
            assert_eq!(put.header().expect("header").revision(), rev + 1, "{kind}");
        });
    }
}

#[test]
#[ignore = "a measurement: minutes of load (run with -- --ignored --nocapture)"]
fn defrag_measure() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let keys = count_from_env("DEFRAG_KEYS", 50_000);
    for kind in [Kind::Etcd, Kind::Bramble] {
        let server = Server::start(kind);
        let endpoint = server.endpoint();
        let started = Instant::now();
        runtime.block_on(async {
            fill(&endpoint, "gone/", keys, 1024, 16).await;
            let mut c = client::connect_endpoint(&endpoint).await;
            // Status with every key live (Bramble walks redb's pages for
            // db_size_in_use).
            let t = Instant::now();
            let status = c.status().await.expect("status");
            let took = t.elapsed();
            println!(
                "{kind}: Status with {keys} keys: {} ms (db_size {}, in use {})",
                took.as_millis(),
                status.db_size(),
                status.raft_used_db_size()
            );
            delete_and_compact(&mut c, "gone/").await;
        });
        let fill_time = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        let before = db_size(&server);
        let (took, worst, puts) = runtime.block_on(async {
            let probe = WriteProbe::start(&endpoint, "during").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut m = client::connect_endpoint(&endpoint).await;
            let t = Instant::now();
            m.defragment().await.expect("defragment");
            let took = t.elapsed();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (worst, puts) = probe.stop().await;
            (took, worst, puts)
        });
        let after = db_size(&server);
        println!(
            "{kind}: {keys} x 1 KiB put+delete+compact in {:.1} s; db file {:.1} MiB -> {:.2} MiB; \
             defragment {} ms; longest put during it {} ms ({puts} puts)",
            fill_time.as_secs_f64(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            took.as_millis(),
            worst.as_millis()
        );
    }
}
