//! Maintenance `HashKV` (and `Hash`): Bramble computes etcd's hash, so the same history
//! gives the SAME hash on etcd and on Bramble.
//!
//! - `hashkv_equals_etcds`: puts, deletes, txns, a lease put (with a chosen lease id, as the
//!   id is part of the stored value), a lease revoke and compactions, through the
//!   etcd-client crate on a fresh etcd and a fresh Bramble; `HashKV` at every revision
//!   (and 0) must answer the same hash and compact revision, errors with etcd's texts
//!   (etcd 3.6: the compaction revision itself is answered, from the hash stored while
//!   compacting; below it is compacted).
//! - `etcdctl_endpoint_hashkv`: `etcdctl endpoint hashkv` output, compared.
//! - `members_agree`: on a 3-member cluster (etcd's and Bramble's) every member answers
//!   the same hash at the same revision, before and after a member restarts.
//!
//! `Hash` hashes Bramble's own tables, so its value is not etcd's: only its header and that
//! members agree are checked (`members_agree`).

use std::time::{Duration, Instant};

use bramble_tests::client::{self, Transcript};
use bramble_tests::{scenarios, Cluster, Kind, Script, Step};
use etcd_client::{
    Client, CompactionOptions, DeleteOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp,
};

const OUT_OF_RANGE: &str = "OutOfRange";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";

/// The lease the history attaches a key to: chosen, so that both servers store the same id.
const LEASE: i64 = 0x1234;

/// HashKV at every revision from `from` to `to`, and at 0.
async fn hash_every_revision(c: &mut Client, t: &mut Transcript, from: i64, to: i64) {
    for rev in from..=to {
        t.ok(&format!("hashkv {rev}"), c.hash_kv(rev).await);
    }
    t.ok("hashkv 0", c.hash_kv(0).await);
}

/// Writes revisions 2..=11: puts, a lease put, a txn of three writes, a range delete, a
/// lease revoke (which deletes its key).
async fn history(c: &mut Client, t: &mut Transcript) {
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")] {
        t.ok(&format!("put {k} {v}"), c.put(k, v, None).await);
    }
    t.ok(
        "grant",
        c.lease_grant(600, Some(LeaseGrantOptions::new().with_id(LEASE)))
            .await,
    );
    t.ok(
        "put l with lease",
        c.put("l", "leased", Some(PutOptions::new().with_lease(LEASE)))
            .await,
    );
    let txn = Txn::new().and_then([
        TxnOp::put("d", "1", None),
        TxnOp::put("a", "3", None),
        TxnOp::delete("b", None),
    ]);
    t.ok("txn put d, put a, delete b", c.txn(txn).await);
    t.ok(
        "delete [c, e)",
        c.delete("c", Some(DeleteOptions::new().with_range("e")))
            .await,
    );
    t.ok("put b 2", c.put("b", "2", None).await);
    t.ok("put a 4", c.put("a", "4", None).await);
    t.ok("revoke", c.lease_revoke(LEASE).await);
}

async fn compact(c: &mut Client, t: &mut Transcript, rev: i64) {
    t.ok(
        &format!("compact {rev}"),
        c.compact(rev, Some(CompactionOptions::new().with_physical()))
            .await,
    );
}

#[test]
fn hashkv_equals_etcds() {
    client::compare("hashkv", async |c, t| {
        t.ok("hashkv of nothing", c.hash_kv(0).await);
        history(c, t).await;
        hash_every_revision(c, t, 1, 11).await;
        t.err(
            "hashkv future",
            c.hash_kv(12).await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );

        compact(c, t, 7).await;
        hash_every_revision(c, t, 8, 11).await;
        t.ok("hashkv 7 after compact 7", c.hash_kv(7).await);
        for rev in [6, 3] {
            t.err(
                &format!("hashkv {rev} after compact 7"),
                c.hash_kv(rev).await,
                OUT_OF_RANGE,
                COMPACTED,
            );
        }

        t.ok("put a 5", c.put("a", "5", None).await);
        t.ok("delete a", c.delete("a", None).await);
        compact(c, t, 12).await;
        // 12 from the hash stored while compacting, with the previous compaction (7).
        hash_every_revision(c, t, 12, 13).await;
        // Everything deleted: a compaction now would keep nothing, and etcd then skips no
        // row at all (b@9, kept by the compaction at 12, is hashed).
        t.ok(
            "delete all",
            c.delete("", Some(DeleteOptions::new().with_from_key()))
                .await,
        );
        hash_every_revision(c, t, 13, 14).await;
        compact(c, t, 14).await;
        t.ok("hashkv 0 after compacting everything", c.hash_kv(0).await);
    });
}

#[test]
fn etcdctl_endpoint_hashkv() {
    Script::new("endpoint hashkv")
        .ok("endpoint hashkv")
        .ok("endpoint hashkv -w json")
        .ok("put a 1")
        .ok("put b 1")
        .ok("put a 2")
        .ok("del b")
        .ok("endpoint hashkv -w json")
        .ok("endpoint hashkv --rev 3 -w json")
        .ok("compact 3 --physical")
        .ok("endpoint hashkv -w json")
        .ok("endpoint hashkv --rev 4")
        .ok("endpoint hashkv --rev 3")
        .step(
            Step::cmd("endpoint hashkv --rev 2")
                .fails()
                .contains(COMPACTED),
        )
        .step(
            Step::cmd("endpoint hashkv --rev 6")
                .fails()
                .contains(FUTURE_REV),
        )
        .run();
}

scenarios!(members_agree);

/// How long a member may take to apply what the leader committed (the box is loaded).
const CATCH_UP: Duration = Duration::from_secs(60);

/// Member `endpoint`'s HashKV at `rev`, once it has applied `rev`.
async fn member_hash(endpoint: &str, rev: i64) -> (u32, i64, i64) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let mut c = client::connect_endpoint(endpoint).await;
        match c.hash_kv(rev).await {
            Ok(h) => return (h.hash(), h.compact_version(), h.hash_revision()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("{endpoint} hashkv {rev}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{endpoint} hashkv {rev}: {e}"),
        }
    }
}

/// Every member's hash at each revision of `revs`; panics unless they are all equal.
async fn check_members_agree(cluster: &Cluster, revs: std::ops::RangeInclusive<i64>) {
    for rev in revs {
        let mut answers = Vec::new();
        for m in cluster.members() {
            answers.push(member_hash(&m.endpoint(), rev).await);
        }
        let (hash, compact, _) = answers[0];
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(
                (a.0, a.1),
                (hash, compact),
                "member {i} at {rev}: {answers:?}"
            );
            assert_eq!(a.2, rev, "member {i} hash_revision");
        }
    }
}

fn members_agree(kind: Kind) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    let mut cluster = Cluster::start(kind, 3);
    let leader = cluster.leader();
    let endpoint = cluster.member(leader).endpoint();
    runtime.block_on(async {
        let mut t = Transcript::default();
        let mut c = client::connect_endpoint(&endpoint).await;
        history(&mut c, &mut t).await;
        compact(&mut c, &mut t, 5).await;
        for i in 0..20 {
            c.put(format!("k{}", i % 6), format!("{i}"), None)
                .await
                .expect("put");
        }
        // Revisions 12..=31 after the compaction at 5.
        check_members_agree(&cluster, 6..=31).await;
        if kind == Kind::Bramble {
            // Bramble's own whole-store hash: equal on members at the same state.
            let mut hashes = Vec::new();
            for m in cluster.members() {
                let mut c = client::connect_endpoint(&m.endpoint()).await;
                let h = c.hash().await.expect("hash");
                let rev = h.header().map(|h| h.revision());
                hashes.push((h.hash(), rev));
            }
            assert!(
                hashes.iter().all(|h| *h == hashes[0]),
                "Hash differs between members: {hashes:?}"
            );
            assert_eq!(hashes[0].1, Some(31));
        }
    });
    // A restarted member rebuilds its index from disk: still the same hashes.
    let other = (leader + 1) % 3;
    cluster.member_mut(other).restart();
    runtime.block_on(check_members_agree(&cluster, 6..=31));
}
