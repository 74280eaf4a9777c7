//! The k8s workload's timed calls outside the cluster's actors: kube-apiserver's paged
//! LISTs, its count-only ranges (storage stats) and its compactor's rounds, and the
//! ticker that repeats them.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::Cluster;
use super::ops::OpKind;
use super::store;

/// Calls `f` every `period` from `start + period` until `end`, one call at a time.
pub(crate) async fn every<F, Fut>(period: Duration, start: Instant, end: Instant, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut next = start + period;
    while next < end {
        tokio::time::sleep_until(next).await;
        f().await;
        next += period;
    }
}

/// A paged GetList of `prefix` at `revision` (0: the current one), each page timed as a
/// `list`; the revision it read at (0 if a page failed).
pub(crate) async fn list(cluster: &Cluster, prefix: &[u8], revision: i64) -> i64 {
    let mut kv = cluster.kv();
    let mut from = prefix.to_vec();
    let mut rev = revision;
    loop {
        let t0 = Instant::now();
        let page = store::list_page(&mut kv, prefix, &from, cluster.shape.list_limit, rev);
        match tokio::time::timeout(cluster.shape.request_timeout, page).await {
            Ok(Ok(page)) => {
                cluster.recorder.ok(OpKind::List, t0);
                rev = page.revision;
                match page.next {
                    Some(next) => from = next,
                    None => return rev,
                }
            }
            Ok(Err(status)) => {
                cluster.recorder.error(OpKind::List, &status);
                return 0;
            }
            Err(_) => {
                let status = tonic::Status::deadline_exceeded("bramble-bench: list timed out");
                cluster.recorder.error(OpKind::List, &status);
                return 0;
            }
        }
    }
}

/// One count-only range of `prefix`, timed as a `count`.
pub(crate) async fn count(cluster: &Cluster, prefix: &[u8]) {
    let mut kv = cluster.kv();
    let t0 = Instant::now();
    let call = store::count(&mut kv, prefix);
    match tokio::time::timeout(cluster.shape.request_timeout, call).await {
        Ok(Ok(_)) => cluster.recorder.ok(OpKind::Count, t0),
        Ok(Err(status)) => cluster.recorder.error(OpKind::Count, &status),
        Err(_) => cluster.recorder.error(
            OpKind::Count,
            &tonic::Status::deadline_exceeded("bramble-bench: count timed out"),
        ),
    }
}

/// One compactor round: the Txn (a lost race is a conflict), then the Compact if it won
/// and there is a revision to compact to; that revision if it compacted.
pub(crate) async fn compact(cluster: &Cluster, compactor: &mut store::Compactor) -> Option<i64> {
    let mut kv = cluster.kv();
    let t0 = Instant::now();
    let round =
        match tokio::time::timeout(cluster.shape.request_timeout, compactor.txn(&mut kv)).await {
            Ok(Ok(round)) => round,
            Ok(Err(status)) => {
                cluster.recorder.error(OpKind::CompactTxn, &status);
                return None;
            }
            Err(_) => {
                let status = tonic::Status::deadline_exceeded("bramble-bench: compactor timed out");
                cluster.recorder.error(OpKind::CompactTxn, &status);
                return None;
            }
        };
    let rev = match round {
        store::Round::Lost => {
            cluster.recorder.conflict(OpKind::CompactTxn, t0);
            return None;
        }
        store::Round::Bootstrapped => {
            cluster.recorder.ok(OpKind::CompactTxn, t0);
            return None;
        }
        store::Round::Compact(rev) => {
            cluster.recorder.ok(OpKind::CompactTxn, t0);
            rev
        }
    };
    let t0 = Instant::now();
    match tokio::time::timeout(cluster.shape.request_timeout, store::compact(&mut kv, rev)).await {
        Ok(Ok(())) => {
            cluster.recorder.ok(OpKind::Compact, t0);
            Some(rev)
        }
        Ok(Err(status)) => {
            cluster.recorder.error(OpKind::Compact, &status);
            None
        }
        Err(_) => {
            let status = tonic::Status::deadline_exceeded("bramble-bench: compact timed out");
            cluster.recorder.error(OpKind::Compact, &status);
            None
        }
    }
}
