//! A work queue with leases: producers add jobs under `queue/jobs/`; each
//! worker claims a job with a transaction that creates `queue/claims/<job>`
//! on the worker's lease, does it, and finishes it with a transaction that
//! only succeeds while its claim stands. A worker that dies stops renewing
//! its lease, so its claims vanish when the lease runs out and another worker
//! takes the job: every job is done once, by a worker that held it.
//!
//! `cargo run --example work_queue [-- DATA_DIR]` (a temporary directory
//! without one). Here one worker "dies" in the middle of its second job.

use std::time::Duration;

use bramble::{
    Client, Compare, Node, NodeOptions, PutOptions, RangeOptions, Txn, TxnOp, WatchOptions,
};
use futures::StreamExt;

const JOBS: usize = 10;
const WORKERS: usize = 3;
/// The workers' lease TTL, seconds: how long a dead worker's jobs stay
/// claimed.
const TTL: i64 = 2;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let mut opts = NodeOptions::new(&dir);
    // A short election timeout allows short leases (etcd's minimum TTL is
    // 1.5 election timeouts).
    opts.heartbeat_interval_ms = 50;
    opts.election_timeout_ms = 500;
    let node = Node::open(opts).await?;
    node.delete_with("queue/", bramble::DeleteOptions::new().prefix())
        .await?;

    for i in 0..JOBS {
        node.put(format!("queue/jobs/{i:03}"), format!("resize image {i}"))
            .await?;
    }
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(node.client(), w, w == 0)))
        .collect();
    for w in workers {
        w.await??;
    }

    let done = node
        .range("queue/done/", RangeOptions::new().prefix())
        .await?;
    for kv in &done.kvs {
        println!(
            "{} done by {}",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
    }
    assert_eq!(done.count as usize, JOBS, "every job is done, once");
    node.close().await;
    Ok(())
}

/// Takes and does jobs until none is left. `dies` makes this worker stop in
/// the middle of its second job, as a Pi losing power would.
async fn worker(client: Client, id: usize, dies: bool) -> Result<(), bramble::Error> {
    let me = format!("worker-{id}");
    let lease = client.lease_keeper(TTL).await?;
    let mut taken = 0;
    loop {
        let jobs = client
            .range("queue/jobs/", RangeOptions::new().prefix())
            .await?;
        if jobs.count == 0 {
            return Ok(());
        }
        let mut claimed_one = false;
        for job in &jobs.kvs {
            let name = String::from_utf8_lossy(&job.key).replace("queue/jobs/", "");
            let claim = format!("queue/claims/{name}");
            // Claim: the job still exists and nobody holds it.
            let claimed = client
                .txn(
                    Txn::new()
                        .when([
                            Compare::version(job.key.clone()).gt(0),
                            Compare::create_revision(claim.clone()).eq(0),
                        ])
                        .and_then([TxnOp::put_with(
                            claim.clone(),
                            me.clone(),
                            PutOptions::new().lease(lease.id()),
                        )]),
                )
                .await?;
            if !claimed.succeeded {
                continue;
            }
            claimed_one = true;
            taken += 1;
            println!("{me} took job {name}");
            if dies && taken == 2 {
                println!("{me} dies holding job {name}");
                // No revoke: the claim goes when the lease runs out.
                drop(lease);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Finish: only while the claim is still ours.
            let finished = client
                .txn(
                    Txn::new()
                        .when([Compare::value(claim.clone()).eq(me.clone())])
                        .and_then([
                            TxnOp::delete(job.key.clone()),
                            TxnOp::delete(claim),
                            TxnOp::put(format!("queue/done/{name}"), me.clone()),
                        ]),
                )
                .await?;
            assert!(finished.succeeded, "{me} lost its claim on {name}");
        }
        if !claimed_one {
            // Every job left is claimed: wait for a change (a job finished,
            // or a dead worker's claim expired), from the revision read.
            let from = jobs.header.as_ref().map_or(0, |h| h.revision) + 1;
            let mut changes = client
                .watch("queue/", WatchOptions::new().prefix().start_revision(from))
                .await?;
            changes.next().await.transpose()?;
        }
    }
}
