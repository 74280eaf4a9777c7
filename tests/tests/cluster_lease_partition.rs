//! A leader cut off from its peers must stop renewing leases before the majority may expire
//! them (etcd's `ensureLeadership` in LeaseRenew, and CheckQuorum: an isolated leader steps
//! down), or two clients both believe they hold the same Lock.
//!
//! Three members in network namespaces; a client of the leader grants a short lease, puts a
//! key and takes a Lock with it, and keeps the lease alive through the leader, reopening the
//! keep-alive stream after every error as etcd's clientv3 does. Then the leader is isolated.
//! What must hold, on etcd and on Bramble:
//!
//! - the majority expires the lease and deletes its keys, and a second client (on the
//!   majority) gets the Lock;
//! - no keep-alive through the old leader succeeded late: every success received at `r`
//!   (the client then believes it holds the lease until `r + TTL`) is over before the
//!   majority deleted the lease's key and before the second client got the Lock;
//! - keep-alives through the old leader end in an error (etcd 3.4: `etcdserver: no leader`
//!   once it stepped down; 3.5+ and Bramble: `not a primary lessor` while it still thinks it
//!   leads);
//! - the old leader stops reporting itself as leader in Maintenance.Status within a bound.
//!
//! The same with five members, the leader and one follower cut off from the other three,
//! and the client on that follower: its renewals are forwarded to the old leader, which must
//! refuse them (the follower then retries until the request timeout, as etcd's does).
//!
//! And across a leader change (etcd extends every lease by an election timeout when a member
//! becomes leader): the leader is SIGKILLed right after it renewed a lease; the new leader
//! must not expire the lease before that renewal's TTL has run out, and must expire it
//! once nobody renews it.
//!
//! Timeouts are the harness's: heartbeat 50 ms, election 500 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bramble_tests::client::try_connect_endpoint;
use bramble_tests::cluster::{Cluster, ClusterConfig};
use bramble_tests::{scenarios, Kind};
use etcd_client::{Client, Error, LockOptions, PutOptions};

scenarios!(
    isolated_leader_stops_renewing_leases,
    minority_follower_stops_renewing_leases,
    new_leader_honours_the_last_renewal,
);

/// The lease's TTL, seconds: short, but above the minimum TTL for a 500 ms election timeout.
const TTL: i64 = 3;
/// Pause between keep-alives (a third of the TTL, as clientv3 does, is 1 s; more often here
/// to catch a late renewal).
const KEEPALIVE_EVERY: Duration = Duration::from_millis(200);
/// Pause between the majority's reads of the lease's key.
const POLL: Duration = Duration::from_millis(100);
/// Bound on one read of the majority.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on everything after the partition: election, expiry (TTL + extension), revoke.
const SETTLE: Duration = Duration::from_secs(25);
/// The old leader must stop reporting itself as leader within this long of the partition
/// (etcd's CheckQuorum: at most two election timeouts; a generous margin for a loaded box).
const STEP_DOWN_BOUND: Duration = Duration::from_secs(4);

const HELD: &str = "partition/held";
const LOCK: &str = "partition/lock";

/// One keep-alive outcome through the old leader, with when the client saw it.
#[derive(Debug, Clone)]
enum Renewal {
    Ok(Instant),
    Err(Instant, String),
}

/// Renewals seen through the old leader, in order.
type Log = Arc<Mutex<Vec<Renewal>>>;

fn record(log: &Log, r: Renewal) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(r);
}

fn message(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// Keeps lease `id` alive through `client` until `stop`: each success and each error is
/// logged; after an error the stream is reopened, as clientv3 does.
async fn keep_alive(mut client: Client, id: i64, log: Log, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        // Opening the stream renews once (the crate waits for that first answer).
        let opened = tokio::time::timeout(SETTLE, client.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(pair)) => {
                record(&log, Renewal::Ok(Instant::now()));
                pair
            }
            Ok(Err(e)) => {
                record(&log, Renewal::Err(Instant::now(), message(&e)));
                tokio::time::sleep(KEEPALIVE_EVERY).await;
                continue;
            }
            Err(_) => {
                record(&log, Renewal::Err(Instant::now(), "no answer".into()));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(KEEPALIVE_EVERY).await;
            if let Err(e) = keeper.keep_alive().await {
                record(&log, Renewal::Err(Instant::now(), message(&e)));
                break;
            }
            match tokio::time::timeout(SETTLE, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => record(&log, Renewal::Ok(Instant::now())),
                Ok(Ok(Some(_))) => {
                    record(&log, Renewal::Err(Instant::now(), "lease not found".into()));
                    break;
                }
                Ok(Ok(None)) => {
                    record(&log, Renewal::Err(Instant::now(), "stream ended".into()));
                    break;
                }
                Ok(Err(e)) => {
                    record(&log, Renewal::Err(Instant::now(), message(&e)));
                    break;
                }
                Err(_) => {
                    record(&log, Renewal::Err(Instant::now(), "no answer".into()));
                    break;
                }
            }
        }
    }
}

/// Reads `HELD` linearizably through `endpoint` (a majority member) until it is gone:
/// returns the last time it was seen present and the first time it was seen absent.
async fn wait_key_deleted(
    endpoint: String,
    deadline: Instant,
) -> (Option<Instant>, Option<Instant>) {
    let mut last_present = None;
    while Instant::now() < deadline {
        if let Ok(mut c) = try_connect_endpoint(&endpoint).await {
            while Instant::now() < deadline {
                // Bounded, so that a read stuck on the old leader does not hide the moment
                // the key goes.
                match tokio::time::timeout(READ_TIMEOUT, c.get(HELD, None)).await {
                    Ok(Ok(r)) if r.kvs().is_empty() => return (last_present, Some(Instant::now())),
                    Ok(Ok(_)) => last_present = Some(Instant::now()),
                    // During the election on the majority: no answer either way.
                    Ok(Err(_)) | Err(_) => {}
                }
                tokio::time::sleep(POLL).await;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    (last_present, None)
}

/// A second client takes the Lock through `endpoint` (a majority member) with a lease of its
/// own; returns when it got it, or `None` by the deadline.
async fn second_locker(endpoint: String, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        let Ok(mut c) = try_connect_endpoint(&endpoint).await else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let Ok(lease) = c.lease_grant(30, None).await else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let opts = LockOptions::new().with_lease(lease.id());
        match tokio::time::timeout(left, c.lock(LOCK, Some(opts))).await {
            Ok(Ok(_)) => return Some(Instant::now()),
            // The member lost its leader meanwhile: try again.
            Ok(Err(_)) => tokio::time::sleep(POLL).await,
            Err(_) => return None,
        }
    }
    None
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Three members; the client talks to the leader itself.
fn isolated_leader_stops_renewing_leases(kind: Kind) {
    lease_across_partition(kind, 3, false);
}

/// Five members; the leader and one follower are cut off from the other three, and the
/// client talks to that follower, which forwards its renewals to the old leader (etcd's
/// followers forward them over the peer port too).
fn minority_follower_stops_renewing_leases(kind: Kind) {
    lease_across_partition(kind, 5, true);
}

/// The partition scenario: `size` members, the leader in a minority (alone, or with one
/// follower when `via_follower`, which is then the member the client talks to).
fn lease_across_partition(kind: Kind, size: usize, via_follower: bool) {
    let mut cluster = Cluster::start_with(
        kind,
        ClusterConfig {
            size,
            netns: true,
            ..ClusterConfig::default()
        },
    );
    let old = cluster.leader();
    let old_id = cluster.member(old).id().expect("leader's id");
    let mut minority = vec![old];
    if via_follower {
        minority.push((old + 1) % size);
    }
    let majority: Vec<usize> = (0..size).filter(|i| !minority.contains(i)).collect();
    let client_at = *minority.last().expect("the minority has the old leader");
    let old_ep = cluster.member(client_at).endpoint();
    let majority_ep = cluster.member(majority[0]).endpoint();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // On the old leader's side: a lease, a key on it, and the Lock held with it.
    let (client, lease) = rt.block_on(async {
        let mut c = try_connect_endpoint(&old_ep)
            .await
            .expect("connect to the old leader's side");
        let lease = c.lease_grant(TTL, None).await.expect("grant").id();
        c.put(HELD, "yes", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put with the lease");
        let lock = c
            .lock(LOCK, Some(LockOptions::new().with_lease(lease)))
            .await
            .expect("lock through the leader");
        assert!(!lock.key().is_empty());
        (c, lease)
    });

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = rt.spawn(keep_alive(client, lease, log.clone(), stop.clone()));
    std::thread::sleep(Duration::from_millis(1500));
    let before = log.lock().unwrap().clone();
    assert!(
        before
            .iter()
            .filter(|r| matches!(r, Renewal::Ok(_)))
            .count()
            >= 3,
        "keep-alives before the partition: {before:?}"
    );
    assert!(
        before.iter().all(|r| matches!(r, Renewal::Ok(_))),
        "a keep-alive before the partition failed: {before:?}"
    );

    let partitioned = Instant::now();
    cluster.partition(&[&minority, &majority]);
    let deadline = partitioned + SETTLE;
    let deleted = rt.spawn(wait_key_deleted(majority_ep.clone(), deadline));
    let locked = rt.spawn(second_locker(majority_ep, deadline));

    // The old leader stops claiming to lead.
    let mut stepped_down = None;
    while Instant::now() < partitioned + STEP_DOWN_BOUND + Duration::from_secs(2) {
        match cluster.member(old).status() {
            Ok(st) if st.leader != old_id => {
                stepped_down = Some(Instant::now());
                break;
            }
            _ => std::thread::sleep(POLL),
        }
    }

    let (last_present, first_absent) = rt.block_on(deleted).expect("poll task");
    let second_lock = rt.block_on(locked).expect("lock task");
    // Keep renewing until the old leader has answered with an error (etcd 3.4 answers a
    // renewal only when its request timeout ends), and a little longer: a success now
    // would be a lie.
    let failed = || {
        log.lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, Renewal::Err(t, _) if *t >= partitioned))
    };
    while !failed() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    // The keeper may be waiting on an unanswered keep-alive; the log has what it saw.
    keeper.abort();
    let renewals = log.lock().unwrap().clone();
    let since = |t: Instant| ms(t.duration_since(partitioned));
    let mut described: Vec<String> = renewals
        .iter()
        .filter_map(|r| match r {
            Renewal::Ok(t) if *t >= partitioned => Some(format!("+{}ms ok", since(*t))),
            Renewal::Err(t, m) => Some(format!("+{}ms error: {m}", since(*t))),
            Renewal::Ok(_) => None,
        })
        .collect();
    if described.len() > 12 {
        let skipped = described.len() - 12;
        described.splice(6..6 + skipped, [format!("({skipped} more)")]);
    }
    let report = format!(
        "{kind}: partition at 0; old leader stepped down at {:?} ms; key last seen at {:?} ms, \
         gone at {:?} ms; second Lock at {:?} ms; keep-alives through the old leader after \
         the partition: {described:?}",
        stepped_down.map(since),
        last_present.map(since),
        first_absent.map(since),
        second_lock.map(since),
    );
    eprintln!("{report}");

    let gone =
        first_absent.unwrap_or_else(|| panic!("the majority never deleted the key: {report}"));
    let second_lock =
        second_lock.unwrap_or_else(|| panic!("the second client never got the Lock: {report}"));
    let ttl = Duration::from_secs(TTL as u64);
    let last_ok = renewals
        .iter()
        .filter_map(|r| match r {
            Renewal::Ok(t) => Some(*t),
            Renewal::Err(..) => None,
        })
        .max()
        .expect("renewals before the partition");
    assert!(
        last_ok + ttl <= gone,
        "a keep-alive through the old leader succeeded at +{} ms, so its client holds the \
         lease until +{} ms, but the majority deleted its key by +{} ms: {report}",
        since(last_ok),
        since(last_ok + ttl),
        since(gone)
    );
    assert!(
        last_ok + ttl <= second_lock,
        "two clients held the Lock: the first until +{} ms, the second from +{} ms: {report}",
        since(last_ok + ttl),
        since(second_lock)
    );
    let first_error = renewals.iter().find_map(|r| match r {
        Renewal::Err(t, m) if *t >= partitioned => Some((*t, m.clone())),
        _ => None,
    });
    let (error_at, error) = first_error
        .unwrap_or_else(|| panic!("no keep-alive through the old leader failed: {report}"));
    assert!(
        [
            "not a primary lessor",
            "etcdserver: no leader",
            "etcdserver: request timed out"
        ]
        .contains(&error.as_str()),
        "keep-alive error at +{} ms is not one of etcd's: {error:?}: {report}",
        since(error_at)
    );
    let stepped_down =
        stepped_down.unwrap_or_else(|| panic!("the old leader still claims to lead: {report}"));
    assert!(
        stepped_down <= partitioned + STEP_DOWN_BOUND,
        "the old leader stepped down only after {} ms: {report}",
        since(stepped_down)
    );
}

/// Renew a lease through the leader, SIGKILL the leader at once: the key on the lease stays
/// until the renewal's TTL has run out (the new leader's lease clock starts over with a whole
/// TTL plus an election timeout), then goes (nobody renews it).
fn new_leader_honours_the_last_renewal(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    let leader = cluster.leader();
    let follower_ep = cluster.member((leader + 1) % 3).endpoint();
    let leader_ep = cluster.member(leader).endpoint();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let renewed = rt.block_on(async {
        let mut c = try_connect_endpoint(&leader_ep)
            .await
            .expect("connect to the leader");
        let lease = c.lease_grant(TTL, None).await.expect("grant").id();
        c.put(HELD, "yes", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put with the lease");
        // Let the lease age, then renew it: the renewal, not the grant, must count.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.expect("keep-alive");
        keeper.keep_alive().await.expect("send keep-alive");
        let resp = stream
            .message()
            .await
            .expect("keep-alive answer")
            .expect("a keep-alive response");
        assert_eq!(resp.ttl(), TTL, "renewed through the leader");
        Instant::now()
    });
    cluster.member_mut(leader).kill9();
    let killed = Instant::now();

    let (last_present, first_absent) = rt.block_on(wait_key_deleted(follower_ep, renewed + SETTLE));
    let since = |t: Option<Instant>| t.map(|t| ms(t.duration_since(renewed)));
    let report = format!(
        "{kind}: renewed at 0, leader killed at +{} ms; key last seen at {:?} ms, gone at \
         {:?} ms",
        ms(killed.duration_since(renewed)),
        since(last_present),
        since(first_absent)
    );
    eprintln!("{report}");
    let gone = first_absent
        .unwrap_or_else(|| panic!("the lease never expired after the failover: {report}"));
    assert!(
        gone >= renewed + Duration::from_secs(TTL as u64),
        "the new leader expired the lease before the last renewal's TTL ran out: {report}"
    );
}
