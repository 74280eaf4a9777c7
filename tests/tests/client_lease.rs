//! The Lease API through the `etcd-client` crate, on a fresh etcd and a fresh Bramble,
//! compared call by call (see `bramble_tests::client`): grant (client-chosen ids, so both
//! servers agree on them; the minimum TTL; errors), revoke (keys deleted in one revision,
//! as DELETE events in one watch response), time-to-live with keys, the lease list,
//! keep-alive streams, expiry, and leases across restarts (SIGTERM and kill -9).
//!
//! Remaining TTLs are clock readings: the transcript records whether they are "fresh"
//! (within 2 s of the granted TTL), not their value.

use std::time::{Duration, Instant};

use bramble_tests::client::{self, Transcript};
use bramble_tests::Server;
use etcd_client::{
    Client, Compare, CompareOp, EventType, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions,
    Txn, TxnOp, WatchOptions,
};

const NOT_FOUND: &str = "NotFound";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

fn with_id(id: i64) -> Option<LeaseGrantOptions> {
    Some(LeaseGrantOptions::new().with_id(id))
}

fn with_lease(id: i64) -> Option<PutOptions> {
    Some(PutOptions::new().with_lease(id))
}

fn keys() -> Option<LeaseTimeToLiveOptions> {
    Some(LeaseTimeToLiveOptions::new().with_keys())
}

/// Whether `key` exists, polled until `want` or `within` passes.
async fn wait_for_key(c: &mut Client, key: &str, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let exists = match c.get(key, None).await {
            Ok(r) => !r.kvs().is_empty(),
            Err(_) => !want,
        };
        if exists == want || Instant::now() > deadline {
            return exists == want;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn grant_revoke_ttl_list_and_errors() {
    client::compare("lease basics", async |c, t| {
        t.ok("put sentinel", c.put("sentinel", "s", None).await);
        t.ok("grant 60 id 1000", c.lease_grant(60, with_id(1000)).await);
        // Below the minimum TTL (2 s with the default heartbeat and election timeout).
        t.ok("grant 1 id 1001", c.lease_grant(1, with_id(1001)).await);
        t.ok("grant 0 id 1002", c.lease_grant(0, with_id(1002)).await);
        t.ok("grant -5 id 1003", c.lease_grant(-5, with_id(1003)).await);
        t.err(
            "grant existing id",
            c.lease_grant(60, with_id(1000)).await,
            "FailedPrecondition",
            "etcdserver: lease already exists",
        );
        t.err(
            "grant too large TTL",
            c.lease_grant(9_000_000_001, with_id(1004)).await,
            "OutOfRange",
            "etcdserver: too large lease TTL",
        );
        t.ok(
            "grant max TTL",
            c.lease_grant(9_000_000_000, with_id(1005)).await,
        );
        t.ok("grant negative id", c.lease_grant(60, with_id(-7)).await);
        // A server-chosen id: positive (its value differs between servers).
        match c.lease_grant(60, None).await {
            Ok(r) => {
                t.check("assigned id is positive", r.id() > 0, format!("{}", r.id()));
                t.note("assigned ttl", format!("{}", r.ttl()));
                t.ok("revoke assigned", c.lease_revoke(r.id()).await);
            }
            Err(e) => t.note("grant assigned id", client::render_error(&e)),
        }

        t.ok("put a lease 1000", c.put("a", "1", with_lease(1000)).await);
        t.ok("put b lease 1000", c.put("b", "1", with_lease(1000)).await);
        t.ok("put c lease 1005", c.put("c", "1", with_lease(1005)).await);
        t.err(
            "put with unknown lease",
            c.put("x", "1", with_lease(999)).await,
            NOT_FOUND,
            LEASE_NOT_FOUND,
        );
        t.ok("get a", c.get("a", None).await);
        // Puts with a lease in a txn, and a lease compare.
        let txn = Txn::new()
            .when([Compare::lease("a", CompareOp::Equal, 1000)])
            .and_then([TxnOp::put("t", "1", with_lease(1005))]);
        t.ok("txn lease(a) == 1000, put t lease 1005", c.txn(txn).await);
        let txn = Txn::new().and_then([TxnOp::put("t2", "1", with_lease(999))]);
        t.err(
            "txn put with unknown lease",
            c.txn(txn).await,
            NOT_FOUND,
            LEASE_NOT_FOUND,
        );
        t.ok("ttl 1000 keys", c.lease_time_to_live(1000, keys()).await);
        t.ok("ttl 1000", c.lease_time_to_live(1000, None).await);
        t.ok(
            "ttl 1001 (raised)",
            c.lease_time_to_live(1001, keys()).await,
        );
        t.ok("ttl unknown", c.lease_time_to_live(4242, keys()).await);
        t.ok("leases", c.leases().await);

        // A put moves a key to its new lease; without a lease it is detached.
        t.ok("put b lease 1005", c.put("b", "2", with_lease(1005)).await);
        t.ok("put c no lease", c.put("c", "2", None).await);
        t.ok(
            "ttl 1000 keys after moves",
            c.lease_time_to_live(1000, keys()).await,
        );
        t.ok(
            "ttl 1005 keys after moves",
            c.lease_time_to_live(1005, keys()).await,
        );
        t.ok("delete b", c.delete("b", None).await);
        t.ok(
            "ttl 1005 keys after delete",
            c.lease_time_to_live(1005, keys()).await,
        );

        t.ok("revoke 1000", c.lease_revoke(1000).await);
        t.ok("get a after revoke", c.get("a", None).await);
        t.err(
            "revoke again",
            c.lease_revoke(1000).await,
            NOT_FOUND,
            LEASE_NOT_FOUND,
        );
        t.err(
            "revoke unknown",
            c.lease_revoke(4242).await,
            NOT_FOUND,
            LEASE_NOT_FOUND,
        );
        t.ok("ttl revoked", c.lease_time_to_live(1000, None).await);
        // A lease without keys is revoked without a new revision.
        t.ok("revoke 1002 (no keys)", c.lease_revoke(1002).await);
        t.ok("leases after revokes", c.leases().await);
        t.ok(
            "get all",
            c.get("", Some(etcd_client::GetOptions::new().with_from_key()))
                .await,
        );
    });
}

#[test]
fn revoke_deletes_keys_in_one_revision() {
    client::compare("revoke is one revision", async |c, t| {
        t.ok("grant", c.lease_grant(60, with_id(7)).await);
        for k in ["k/c", "k/a", "k/b"] {
            t.ok(&format!("put {k}"), c.put(k, "v", with_lease(7)).await);
        }
        t.ok("put k/plain", c.put("k/plain", "v", None).await);
        let mut w = c.watch_client();
        let mut stream = match w.watch("k/", Some(WatchOptions::new().with_prefix())).await {
            Ok(x) => x,
            Err(e) => {
                t.note("watch", client::render_error(&e));
                return;
            }
        };
        // The created response.
        let _ = stream.message().await;
        t.ok("revoke", c.lease_revoke(7).await);
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(resp))) => {
                let events: Vec<String> = resp
                    .events()
                    .iter()
                    .map(|e| {
                        let kv = e.kv().expect("event kv");
                        format!(
                            "{:?} {} m={}",
                            e.event_type(),
                            client::bytes(kv.key()),
                            kv.mod_revision()
                        )
                    })
                    .collect();
                t.check(
                    "all deletes",
                    resp.events()
                        .iter()
                        .all(|e| e.event_type() == EventType::Delete),
                    format!("{events:?}"),
                );
                t.note("events of the revoke", events.join(", "));
            }
            other => t.note("events of the revoke", format!("{other:?}")),
        }
        t.ok(
            "get k/",
            c.get("k/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await,
        );
    });
}

#[test]
fn keep_alive_renews_and_answers_unknown_with_ttl_0() {
    client::compare("keep-alive", async |c, t| {
        t.ok("grant 2", c.lease_grant(2, with_id(11)).await);
        t.ok("put k", c.put("k", "v", with_lease(11)).await);
        let (mut keeper, mut stream) = match c.lease_keep_alive(11).await {
            Ok(x) => x,
            Err(e) => {
                t.note("keep-alive", client::render_error(&e));
                return;
            }
        };
        // Renew for 5 s, more than twice the TTL: the key must stay.
        let until = Instant::now() + Duration::from_secs(5);
        let mut answers = 0;
        let mut all_ttl_2 = true;
        while Instant::now() < until {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match stream.message().await {
                Ok(Some(r)) => {
                    answers += 1;
                    all_ttl_2 &= r.ttl() == 2 && r.id() == 11;
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        t.check("renewals answered", answers >= 8, format!("{answers}"));
        t.check("each renewal gives TTL 2", all_ttl_2, String::new());
        t.ok("key kept alive", c.get("k", None).await);
        t.ok("ttl while renewed", c.lease_time_to_live(11, keys()).await);
        // Renewing an unknown lease answers TTL 0 on the same stream.
        let (mut keeper, mut stream) = match c.lease_keep_alive(9999).await {
            Ok(x) => x,
            Err(e) => {
                t.note("keep-alive unknown", client::render_error(&e));
                return;
            }
        };
        let _ = keeper.keep_alive().await;
        t.ok(
            "keep-alive unknown",
            stream.message().await.map(|m| m.expect("a response")),
        );
        // Once renewals stop, the lease expires and takes its key.
        drop((keeper, stream));
        let gone = wait_for_key(c, "k", false, Duration::from_secs(8)).await;
        t.check("key deleted by expiry", gone, String::new());
        t.ok("ttl after expiry", c.lease_time_to_live(11, None).await);
    });
}

#[test]
fn expiry_deletes_keys_and_revokes() {
    client::compare("expiry", async |c, t| {
        t.ok("put before", c.put("before", "v", None).await);
        t.ok("grant 2", c.lease_grant(2, with_id(21)).await);
        t.ok("grant 600", c.lease_grant(600, with_id(22)).await);
        t.ok("put e1", c.put("e1", "v", with_lease(21)).await);
        t.ok("put e2", c.put("e2", "v", with_lease(21)).await);
        t.ok("put long", c.put("long", "v", with_lease(22)).await);
        let start = Instant::now();
        let gone = wait_for_key(c, "e1", false, Duration::from_secs(8)).await;
        let took = start.elapsed();
        t.check("expired keys deleted", gone, format!("{took:?}"));
        // Not before the TTL (less a little for the clock reading).
        t.check(
            "not before the TTL",
            took >= Duration::from_millis(1500),
            format!("{took:?}"),
        );
        t.ok("get e2", c.get("e2", None).await);
        t.ok("get long", c.get("long", None).await);
        t.ok("ttl expired", c.lease_time_to_live(21, None).await);
        t.ok("leases", c.leases().await);
        // Both expired keys went in one revision: the next put is at +1.
        t.ok("put after", c.put("after", "v", None).await);
        t.err(
            "put with the expired lease",
            c.put("x", "v", with_lease(21)).await,
            NOT_FOUND,
            LEASE_NOT_FOUND,
        );
    });
}

/// Leases are state: after a restart they are still there with their keys, and they are
/// given their full TTL again (etcd's "extend on promote"), then expire.
#[test]
fn leases_survive_restart() {
    for crash in [false, true] {
        let name = if crash {
            "kill -9 restart"
        } else {
            "sigterm restart"
        };
        client::compare_with_server(name, async |server: &mut Server, t: &mut Transcript| {
            let mut c = client::connect(server).await;
            t.ok("grant 600", c.lease_grant(600, with_id(31)).await);
            // Longer than etcd 3.6 may take to stop (up to its 7 s request timeout while a
            // client connection is still open), so the lease outlives the shutdown.
            t.ok("grant 12", c.lease_grant(12, with_id(32)).await);
            t.ok("grant unused", c.lease_grant(60, with_id(33)).await);
            t.ok("put long", c.put("long", "v", with_lease(31)).await);
            t.ok("put short", c.put("short", "v", with_lease(32)).await);
            t.ok("revoke unused", c.lease_revoke(33).await);
            drop(c);
            if crash {
                server.kill9();
            } else {
                server.sigterm();
            }
            server.restart();
            let mut c = client::connect(server).await;
            t.ok("leases after restart", c.leases().await);
            t.ok("ttl long", c.lease_time_to_live(31, keys()).await);
            t.ok(
                "ttl short (extended)",
                c.lease_time_to_live(32, keys()).await,
            );
            t.ok("ttl revoked", c.lease_time_to_live(33, keys()).await);
            t.ok("get short", c.get("short", None).await);
            t.err(
                "put with the revoked lease",
                c.put("x", "v", with_lease(33)).await,
                NOT_FOUND,
                LEASE_NOT_FOUND,
            );
            let gone = wait_for_key(&mut c, "short", false, Duration::from_secs(25)).await;
            t.check("short lease expires after restart", gone, String::new());
            t.ok("get long", c.get("long", None).await);
            t.ok("leases at the end", c.leases().await);
            t.ok(
                "put lease 31 after restart",
                c.put("long2", "v", with_lease(31)).await,
            );
            t.ok("revoke long", c.lease_revoke(31).await);
            t.ok(
                "get all",
                c.get("", Some(etcd_client::GetOptions::new().with_from_key()))
                    .await,
            );
        });
    }
}

/// SIGTERM with an open keep-alive stream: the server ends it and exits promptly (instead
/// of waiting out its connection drain timeout), and the client's stream ends.
#[test]
fn shutdown_ends_open_keep_alives() {
    for kind in bramble_tests::target::differential_targets() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let mut server = Server::start(kind);
            let mut c = client::connect(&server).await;
            c.lease_grant(60, with_id(5)).await.expect("grant");
            let (mut keeper, mut stream) = c.lease_keep_alive(5).await.expect("keep-alive");
            keeper.keep_alive().await.expect("send");
            stream.message().await.expect("renewed");
            // Panics if the process is still there after the bound. etcd exits by the
            // signal itself, Bramble with 0: not compared.
            let bound = server.stop_bound_with_open_streams();
            tokio::task::block_in_place(|| server.sigterm_within(bound));
            let ended = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
            assert!(
                matches!(ended, Ok(Err(_)) | Ok(Ok(None))),
                "{kind}: keep-alive stream did not end: {ended:?}"
            );
        });
    }
}

/// Many leases expiring together: every one is revoked (each in its own revision, as etcd),
/// and none is lost or revoked twice.
#[test]
fn many_leases_expire() {
    const LEASES: i64 = 600;
    client::compare("many leases expire", async |c, t| {
        let mut granted = 0;
        for i in 0..LEASES {
            let id = 10_000 + i;
            if c.lease_grant(3, with_id(id)).await.is_ok()
                && c.put(format!("storm/{i:04}"), "v", with_lease(id))
                    .await
                    .is_ok()
            {
                granted += 1;
            }
        }
        t.note("granted with a key", format!("{granted}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let prefix = Some(
            etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only(),
        );
        let left = loop {
            let left = match c.get("storm/", prefix.clone()).await {
                Ok(r) => r.count(),
                Err(_) => -1,
            };
            if left == 0 || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        t.note("keys left", format!("{left}"));
        // 1 + a put per lease + a revoke per lease.
        t.ok(
            "revision after the storm",
            c.get("storm/", prefix.clone()).await,
        );
        t.ok("leases left", c.leases().await);
    });
}
