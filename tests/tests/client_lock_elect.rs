//! The Lock and Election gRPC services (etcd's `v3lock` and `v3election`) through the
//! `etcd-client` crate, on a fresh etcd and a fresh Bramble, compared call by call: lock
//! keys and revisions, a second locker blocking until the first unlocks, unknown leases,
//! campaign/proclaim/leader/observe/resign with etcd's `election: ...` errors.
//!
//! Leases are granted with client-chosen ids, so keys (`name/<lease hex>`) agree.

use std::time::Duration;

use bramble_tests::client::{self, bytes, render_error, Transcript};
use etcd_client::{
    Error, KeyValue, LeaderKey, LeaseGrantOptions, LockOptions, ProclaimOptions, ResignOptions,
    ResponseHeader,
};

fn rev(h: Option<&ResponseHeader>) -> String {
    h.map_or("no-header".into(), |h| format!("rev={}", h.revision()))
}

fn kv(kv: Option<&KeyValue>) -> String {
    kv.map_or("no-kv".into(), |kv| {
        format!(
            "{}={} c={} m={} lease={:x}",
            bytes(kv.key()),
            bytes(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            kv.lease()
        )
    })
}

fn leader_key(l: Option<&LeaderKey>) -> String {
    l.map_or("no-leader".into(), |l| {
        format!(
            "name={} key={} rev={} lease={:x}",
            bytes(l.name()),
            bytes(l.key()),
            l.rev(),
            l.lease()
        )
    })
}

fn outcome<T>(r: &Result<T, Error>, ok: impl Fn(&T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => render_error(e),
    }
}

#[test]
fn lock_and_unlock() {
    client::compare("lock", async |c, t: &mut Transcript| {
        for id in [0x1001, 0x1002] {
            let r = c
                .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
                .await;
            t.note("grant", outcome(&r, |g| format!("id={:x}", g.id())));
        }
        let first = c
            .lock("L", Some(LockOptions::new().with_lease(0x1001)))
            .await;
        t.note(
            "lock L (first)",
            outcome(&first, |l| {
                format!("{} key={}", rev(l.header()), bytes(l.key()))
            }),
        );
        let mut c2 = c.clone();
        let second = tokio::spawn(async move {
            c2.lock("L", Some(LockOptions::new().with_lease(0x1002)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        t.check(
            "second locker waits",
            !second.is_finished(),
            "the second lock returned while the first was held".into(),
        );
        let key = first.map(|l| l.key().to_vec()).unwrap_or_default();
        let r = c.unlock(key).await;
        t.note("unlock first", outcome(&r, |u| rev(u.header())));
        let second = tokio::time::timeout(Duration::from_secs(5), second).await;
        let line = match second {
            Ok(Ok(r)) => outcome(&r, |l| {
                format!("{} key={}", rev(l.header()), bytes(l.key()))
            }),
            Ok(Err(e)) => format!("task failed: {e}"),
            Err(_) => "still waiting after 5 s".into(),
        };
        t.note("lock L (second)", line);
        // Re-locking with the lease that holds it answers at once with the same key.
        let again = c
            .lock("L", Some(LockOptions::new().with_lease(0x1002)))
            .await;
        t.note(
            "lock L again (same lease)",
            outcome(&again, |l| {
                format!("{} key={}", rev(l.header()), bytes(l.key()))
            }),
        );
        let r = c
            .lock("L", Some(LockOptions::new().with_lease(0x9999)))
            .await;
        t.note("lock with unknown lease", outcome(&r, |l| bytes(l.key())));
        let r = c.unlock("L/1002").await;
        t.note("unlock second", outcome(&r, |u| rev(u.header())));
        let r = c.unlock("L/nothing").await;
        t.note("unlock a missing key", outcome(&r, |u| rev(u.header())));
        let r = c
            .get("L/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await;
        t.note("keys left", outcome(&r, |g| format!("{}", g.kvs().len())));
        // A waiting locker that goes away takes its key with it (etcd's Mutex.Lock unlocks
        // when its wait fails).
        let held = c
            .lock("A", Some(LockOptions::new().with_lease(0x1001)))
            .await;
        t.note("lock A", outcome(&held, |l| bytes(l.key())));
        let mut c3 = c.clone();
        let waiter = tokio::spawn(async move {
            c3.lock("A", Some(LockOptions::new().with_lease(0x1002)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        waiter.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = c
            .get("A/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await;
        t.note(
            "keys under A after the waiter left",
            outcome(&r, |g| {
                g.kvs()
                    .iter()
                    .map(|k| bytes(k.key()))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );
        // Lease 0: the server grants a session lease of its own (ids differ: not shown).
        let r = c.lock("B", None).await;
        t.note(
            "lock B without a lease",
            outcome(&r, |l| format!("prefix ok={}", l.key().starts_with(b"B/"))),
        );
        let r = c.leases().await;
        t.note(
            "leases now",
            outcome(&r, |l| format!("{}", l.leases().len())),
        );
    });
}

#[test]
fn campaign_proclaim_observe_resign() {
    client::compare("election", async |c, t: &mut Transcript| {
        for id in [0x2001, 0x2002] {
            let r = c
                .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
                .await;
            t.note("grant", outcome(&r, |g| format!("id={:x}", g.id())));
        }
        let r = c.leader("E").await;
        t.note("leader before any campaign", outcome(&r, |l| kv(l.kv())));
        let first = c.campaign("E", "v1", 0x2001).await;
        t.note(
            "campaign v1",
            outcome(&first, |r| {
                format!("{} {}", rev(r.header()), leader_key(r.leader()))
            }),
        );
        let leader = first
            .ok()
            .and_then(|r| r.leader().cloned())
            .unwrap_or_default();
        let mut observe = match c.observe("E").await {
            Ok(s) => Some(s),
            Err(e) => {
                t.note("observe", render_error(&e));
                None
            }
        };
        let mut next_observed = async |t: &mut Transcript, what: &str| {
            let Some(s) = observe.as_mut() else { return };
            let m = tokio::time::timeout(Duration::from_secs(5), s.message()).await;
            let line = match m {
                Ok(Ok(Some(r))) => format!("{} {}", rev(r.header()), kv(r.kv())),
                Ok(Ok(None)) => "stream ended".into(),
                Ok(Err(e)) => render_error(&e),
                Err(_) => "nothing within 5 s".into(),
            };
            t.note(what, line);
        };
        next_observed(t, "observe: first leader").await;
        let r = c
            .proclaim(
                "v2",
                Some(ProclaimOptions::new().with_leader(leader.clone())),
            )
            .await;
        t.note("proclaim v2", outcome(&r, |p| rev(p.header())));
        next_observed(t, "observe: proclaimed value").await;
        let r = c.leader("E").await;
        t.note(
            "leader",
            outcome(&r, |l| format!("{} {}", rev(l.header()), kv(l.kv()))),
        );
        let stale = leader.clone().with_rev(leader.rev() + 100);
        let r = c
            .proclaim("v3", Some(ProclaimOptions::new().with_leader(stale)))
            .await;
        t.note(
            "proclaim with a wrong rev",
            outcome(&r, |p| rev(p.header())),
        );
        let mut c2 = c.clone();
        let second = tokio::spawn(async move { c2.campaign("E", "w1", 0x2002).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        t.check(
            "second candidate waits",
            !second.is_finished(),
            "the second campaign returned while the first led".into(),
        );
        let r = c
            .resign(Some(ResignOptions::new().with_leader(leader.clone())))
            .await;
        t.note("resign", outcome(&r, |p| rev(p.header())));
        let second = tokio::time::timeout(Duration::from_secs(5), second).await;
        let line = match second {
            Ok(Ok(r)) => outcome(&r, |r| {
                format!("{} {}", rev(r.header()), leader_key(r.leader()))
            }),
            Ok(Err(e)) => format!("task failed: {e}"),
            Err(_) => "still waiting after 5 s".into(),
        };
        t.note("campaign w1 (second)", line);
        next_observed(t, "observe: new leader").await;
        let r = c
            .resign(Some(ResignOptions::new().with_leader(leader)))
            .await;
        t.note(
            "resign again (no longer leader)",
            outcome(&r, |p| rev(p.header())),
        );
        let r = c.resign(None).await;
        t.note(
            "resign without a leader key",
            outcome(&r, |p| rev(p.header())),
        );
        let r = c.proclaim("x", None).await;
        t.note(
            "proclaim without a leader key",
            outcome(&r, |p| rev(p.header())),
        );
    });
}
