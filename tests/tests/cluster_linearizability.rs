//! Jepsen-style linearizability of a 3-member cluster under faults.
//!
//! Clients, spread over the members (each talks to one member only), do linearizable gets,
//! puts of unique values, compare-and-sets (`Txn(If value(k) == expected Then Put)`, or
//! `If create_revision(k) == 0` for "absent") and a few deletes on a handful of keys, every
//! operation bounded by a timeout. Meanwhile a nemesis cycles through faults, with a quiet
//! pause after each: SIGKILL the leader and restart it, SIGSTOP a random member and SIGCONT
//! it, partition the leader into a minority and heal, SIGKILL a follower and restart it.
//!
//! After the run every member is killed at once and restarted (the durability step), and
//! every key is read once more through every member; those reads join the same history, so
//! an acknowledged write that a crash lost shows up as a violation like any stale read. The
//! whole history then goes through the checker ([`bramble_tests::linearizability`]).
//!
//! A write whose answer never came (timeout, connection lost, member down) is recorded as
//! unknown: it may have happened, at any time after its call. A get that failed is recorded
//! as unknown too, which the checker drops (it told nothing). The test also demands real
//! work: enough acknowledged writes, successful operations after every fault, and every
//! final read answered, so a cluster that refuses everything fails rather than passing
//! vacuously.
//!
//! Short by default (one round of the four faults, about 25 s). `BRAMBLE_SOAK=1` runs the
//! nemesis for 5 minutes, or `BRAMBLE_SOAK_SECS` seconds. Each run prints its seed;
//! `BRAMBLE_LIN_SEED=<seed>` replays the same choices (members, op mix, values, pauses; the
//! timing of a real cluster is never the same twice). The cluster runs in network namespaces
//! (partitions need them), so this needs root like the other partition tests.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bramble_testkit::rng::Rng;
use bramble_tests::cluster::{Cluster, ClusterConfig, MemberState};
use bramble_tests::linearizability::{check, Budget, Input, Key, Outcome, Output, Recorder, Value};
use bramble_tests::Kind;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

#[test]
fn etcd() {
    linearizable_under_faults(Kind::Etcd);
}

#[test]
fn bramble() {
    linearizable_under_faults(Kind::Bramble);
}

/// Members in the cluster.
const MEMBERS: usize = 3;
/// Clients per member: enough concurrency for interesting interleavings, few enough that
/// each key's history stays within what the checker decides in seconds.
const CLIENTS_PER_MEMBER: usize = 3;
/// Keys per generation. Few keys, so clients contend on each.
const KEYS: usize = 5;
/// A fresh set of keys is used after this long: the checker's search grows with the length
/// of one key's history (and with its unknown writes), so long soaks rotate keys instead.
const KEY_GENERATION: Duration = Duration::from_secs(30);
/// Bound on every client operation; past it the outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound of a client's random pause between operations: keeps the rate (and so the
/// history) at a size the checker handles, and lets other clients interleave.
const MAX_THINK_MS: u64 = 10;
/// Pause between probes of a member that does not serve (see [`connect_serving`]).
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Bound for anything that needs an election or a member that was away to catch up.
const SETTLE: Duration = Duration::from_secs(15);
/// How long a fault lasts: long enough for an election (500 ms timeout) and for client
/// timeouts to fire, with a random extra so faults do not align with client timeouts.
const FAULT_HOLD_MS: (u64, u64) = (2000, 3000);
/// The quiet pause after a fault is repaired, longer than [`OP_TIMEOUT`] so every client
/// gets a chance to succeed again before the next fault.
const RECOVERY_PAUSE_MS: (u64, u64) = (3000, 4000);
/// Fault-free time at the start.
const WARM_UP: Duration = Duration::from_secs(1);
/// Nemesis time of a normal run: the loop always finishes at least one round of faults.
const CI_DURATION: Duration = Duration::from_secs(20);
/// Nemesis time with `BRAMBLE_SOAK=1` and no `BRAMBLE_SOAK_SECS`.
const SOAK_DURATION: Duration = Duration::from_secs(300);
/// Successful operations required in each recovery pause: the cluster must serve again
/// after every fault, not just survive it.
const MIN_OK_AFTER_FAULT: u64 = 10;
/// Acknowledged writes required per second of nemesis time (at least [`MIN_WRITES`]).
const MIN_WRITES_PER_SEC: u64 = 3;
/// Acknowledged writes required at the very least.
const MIN_WRITES: u64 = 50;
/// Checker budget (at least; long soaks get as long as they ran): far above what a healthy
/// history needs (about a second for a CI run, 10 s for 2 minutes of etcd), so a timeout
/// verdict means a pathological history, reported as a failure.
const CHECK_BUDGET: Duration = Duration::from_secs(120);

/// The faults of one nemesis round, in the order they are injected.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL the leader, restart it from its data dir.
    KillLeader,
    /// SIGSTOP a random member (maybe the leader), then SIGCONT.
    PauseMember,
    /// Cut the leader off from the other two, then heal.
    PartitionLeader,
    /// SIGKILL a follower, restart it.
    KillFollower,
}

/// One round of the nemesis: every fault once. A normal run does one round, a soak repeats.
const ROUND: [Fault; 4] = [
    Fault::KillLeader,
    Fault::PauseMember,
    Fault::PartitionLeader,
    Fault::KillFollower,
];

/// Runs the workload against a `kind` cluster under the nemesis, then the durability step,
/// then checks the history and the amount of work done.
fn linearizable_under_faults(kind: Kind) {
    let seed = seed();
    let duration = nemesis_duration();
    println!(
        "cluster_linearizability {kind}: seed {seed} (replay with BRAMBLE_LIN_SEED={seed}), \
         nemesis for {duration:?}"
    );
    let mut cluster = Cluster::start_with(
        kind,
        ClusterConfig {
            size: MEMBERS,
            netns: true,
            ..ClusterConfig::default()
        },
    );
    let workload = Arc::new(Workload::new(seed));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let clients: Vec<_> = (0..MEMBERS * CLIENTS_PER_MEMBER)
        .map(|i| {
            let endpoint = cluster.member(i % MEMBERS).endpoint();
            let rng = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
            runtime.spawn(run_client(workload.clone(), i as u64, endpoint, rng))
        })
        .collect();

    let mut nemesis = Nemesis {
        rng: Rng::new(seed),
        faults: Vec::new(),
    };
    // The workload gets going (and every client past its first probe) before any fault.
    std::thread::sleep(WARM_UP);
    let nemesis_started = Instant::now();
    for round in 0.. {
        if round > 0 && nemesis_started.elapsed() >= duration {
            break;
        }
        for fault in ROUND {
            nemesis.inject(&mut cluster, &workload, fault);
        }
    }
    let nemesis_time = nemesis_started.elapsed();

    workload.stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for c in clients {
            c.await.expect("client task");
        }
    });
    repair_all(&mut cluster);
    cluster.wait_for_leader(SETTLE);

    // Durability: every member crashes at once, so only what reached their disks survives.
    workload
        .phases
        .begin("after kill -9 of all members".to_string(), true);
    cluster.restart_all();
    cluster.wait_for_leader(SETTLE);
    let final_reads = runtime.block_on(read_all_keys(&workload, &cluster));

    let history = workload.recorder.history();
    let check_started = Instant::now();
    let verdict = check(&history, Budget::time(CHECK_BUDGET.max(nemesis_time)));
    let check_time = check_started.elapsed();
    let stats = *workload.stats.lock().expect("stats");
    let summary = format!(
        "cluster_linearizability {kind}: seed {seed}; nemesis {:.1} s, {} clients, {KEYS} keys \
         x {} generations; {stats}; faults {}: [{}]; final reads {final_reads}/{}; history {} \
         ops; checker {:.3} s: {}",
        nemesis_time.as_secs_f64(),
        MEMBERS * CLIENTS_PER_MEMBER,
        workload.generations(),
        nemesis.faults.len(),
        nemesis.faults.join(", "),
        workload.all_keys().len() * MEMBERS,
        history.len(),
        check_time.as_secs_f64(),
        if verdict.is_linearizable() {
            "linearizable"
        } else {
            "NOT LINEARIZABLE"
        },
    );
    println!("{summary}");
    let phases = workload.phases.report();
    println!("{phases}");

    assert!(
        verdict.is_linearizable(),
        "{kind}: the history is not linearizable (seed {seed}):\n{verdict}\n{summary}\n{phases}\n{}",
        cluster.describe()
    );
    let min_writes = MIN_WRITES.max(MIN_WRITES_PER_SEC * nemesis_time.as_secs());
    assert!(
        stats.writes_ok() >= min_writes,
        "{kind}: only {} acknowledged writes (want {min_writes})\n{summary}\n{phases}\n{}",
        stats.writes_ok(),
        cluster.describe()
    );
    let idle: Vec<String> = workload
        .phases
        .recoveries()
        .filter(|p| p.ok < MIN_OK_AFTER_FAULT)
        .map(|p| format!("{} ({} ok)", p.name, p.ok))
        .collect();
    assert!(
        idle.is_empty(),
        "{kind}: fewer than {MIN_OK_AFTER_FAULT} successful operations after: {idle:?}\n\
         {summary}\n{phases}\n{}",
        cluster.describe()
    );
    // `read_all_keys` panics if a key stays unreadable; this guards against reading nothing.
    assert_eq!(final_reads, workload.all_keys().len() * MEMBERS);
}

/// Everything the clients share: the recorder, the stop flag, key naming and counters.
struct Workload {
    recorder: Recorder,
    stop: AtomicBool,
    started: Instant,
    /// Prefix of every key of this run (the seed), so reruns never meet old keys.
    prefix: String,
    /// The highest key generation used so far.
    max_generation: AtomicUsize,
    stats: Mutex<Stats>,
    phases: Phases,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            recorder: Recorder::new(),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            prefix: format!("/lin/{seed:016x}"),
            max_generation: AtomicUsize::new(0),
            stats: Mutex::new(Stats::default()),
            phases: Phases::new(),
        }
    }

    /// The key generation clients use now (see [`KEY_GENERATION`]).
    fn generation(&self) -> usize {
        let g = (self.started.elapsed().as_secs() / KEY_GENERATION.as_secs()) as usize;
        self.max_generation.fetch_max(g, Ordering::Relaxed);
        g
    }

    fn generations(&self) -> usize {
        self.max_generation.load(Ordering::Relaxed) + 1
    }

    fn key(&self, generation: usize, index: usize) -> Key {
        format!("{}/g{generation}/k{index}", self.prefix).into_bytes()
    }

    /// The key clients read to see whether their member serves; never in the history.
    fn probe_key(&self) -> Key {
        format!("{}/probe", self.prefix).into_bytes()
    }

    /// Every key of every generation used.
    fn all_keys(&self) -> Vec<Key> {
        (0..self.generations())
            .flat_map(|g| (0..KEYS).map(move |i| (g, i)))
            .map(|(g, i)| self.key(g, i))
            .collect()
    }
}

/// One client: a loop of random operations against one member until told to stop.
///
/// After an unknown outcome the client reconnects and takes a new client id, as a Jepsen
/// process that crashed would: its old operation may still be pending on the server.
async fn run_client(workload: Arc<Workload>, index: u64, endpoint: String, mut rng: Rng) {
    let mut client: Option<Client> = None;
    let mut incarnation = 0u64;
    let mut seq = 0u64;
    // The last value this client saw per key: what its compare-and-sets expect, so some
    // of them succeed.
    let mut seen: HashMap<Key, Option<Value>> = HashMap::new();
    while !workload.stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) => c.clone(),
            None => match connect_serving(&endpoint, &workload.probe_key()).await {
                Some(c) => {
                    client = Some(c.clone());
                    c
                }
                None => {
                    tokio::time::sleep(PROBE_INTERVAL).await;
                    continue;
                }
            },
        };
        let key = workload.key(workload.generation(), rng.below(KEYS as u64) as usize);
        seq += 1;
        let value = format!("c{index}-{seq}").into_bytes();
        let input = match rng.below(100) {
            0..=44 => Input::Get,
            45..=69 => Input::Put(value),
            70..=94 => Input::Cas {
                expected: match rng.below(5) {
                    0 => None,
                    _ => seen.get(&key).cloned().flatten(),
                },
                new: value,
            },
            _ => Input::Delete,
        };
        let client_id = index * 1000 + incarnation;
        let op = workload
            .recorder
            .invoke(client_id, key.clone(), input.clone());
        let result = tokio::time::timeout(OP_TIMEOUT, execute(c, &key, &input)).await;
        let outcome = match result {
            Ok(Ok(output)) => Outcome::Ok(output),
            Ok(Err(_)) | Err(_) => Outcome::Unknown,
        };
        workload.recorder.complete(op, outcome.clone());
        workload
            .stats
            .lock()
            .expect("stats")
            .count(&input, &outcome);
        workload.phases.count(matches!(outcome, Outcome::Ok(_)));
        match outcome {
            Outcome::Ok(output) => {
                let now = match (&input, output) {
                    (_, Output::Get(v)) => Some(v),
                    (Input::Put(v), _) => Some(Some(v.clone())),
                    (Input::Cas { new, .. }, Output::Cas(true)) => Some(Some(new.clone())),
                    (_, Output::Delete) => Some(None),
                    _ => None,
                };
                if let Some(v) = now {
                    seen.insert(key, v);
                }
            }
            Outcome::Unknown => {
                client = None;
                incarnation += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(MAX_THINK_MS + 1))).await;
    }
}

/// A client bound to one member once that member serves a linearizable read (of a key
/// outside the history); `None` if it does not within [`OP_TIMEOUT`].
///
/// Clients probe before resuming after an unknown outcome: otherwise a client of a dead or
/// cut-off member turns out an unknown write every few milliseconds, and each unknown write
/// can take effect at any later point, which makes the checker's search exponential in
/// their number. Probing keeps it to about one per client per fault, while the operations
/// in flight when a fault strikes, the interesting ones, are all still recorded.
async fn connect_serving(endpoint: &str, probe_key: &[u8]) -> Option<Client> {
    let mut c = connect(endpoint).await?;
    match tokio::time::timeout(OP_TIMEOUT, c.get(probe_key, None)).await {
        Ok(Ok(_)) => Some(c),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// A client bound to one member; `None` if it cannot even be set up in time.
async fn connect(endpoint: &str) -> Option<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(OP_TIMEOUT)
        .with_timeout(OP_TIMEOUT);
    tokio::time::timeout(OP_TIMEOUT, Client::connect([endpoint], Some(options)))
        .await
        .ok()?
        .ok()
}

/// Sends one operation; every read is linearizable (etcd-client's default).
async fn execute(mut c: Client, key: &[u8], input: &Input) -> Result<Output, etcd_client::Error> {
    Ok(match input {
        Input::Get => {
            let resp = c.get(key, None).await?;
            Output::Get(resp.kvs().first().map(|kv| kv.value().to_vec()))
        }
        Input::Put(v) => {
            c.put(key, v.clone(), None).await?;
            Output::Put
        }
        Input::Delete => {
            c.delete(key, None).await?;
            Output::Delete
        }
        Input::Cas { expected, new } => {
            let compare = match expected {
                Some(v) => Compare::value(key, CompareOp::Equal, v.clone()),
                None => Compare::create_revision(key, CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, new.clone(), None)]);
            Output::Cas(c.txn(txn).await?.succeeded())
        }
    })
}

/// The durability step's reads: every key through every member, retried until answered
/// (failed attempts are recorded as unknown gets, which the checker drops). Returns the
/// number of answered reads; panics if a key stays unreadable on a member.
async fn read_all_keys(workload: &Workload, cluster: &Cluster) -> usize {
    let mut answered = 0;
    for member in 0..MEMBERS {
        let endpoint = cluster.member(member).endpoint();
        let client_id = 1_000_000 + member as u64;
        for key in workload.all_keys() {
            let deadline = Instant::now() + SETTLE;
            loop {
                let Some(c) = connect(&endpoint).await else {
                    assert!(Instant::now() < deadline, "cannot connect to {endpoint}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let op = workload.recorder.invoke(client_id, key.clone(), Input::Get);
                let result = tokio::time::timeout(OP_TIMEOUT, execute(c, &key, &Input::Get)).await;
                let outcome = match result {
                    Ok(Ok(output)) => Outcome::Ok(output),
                    Ok(Err(_)) | Err(_) => Outcome::Unknown,
                };
                let ok = matches!(outcome, Outcome::Ok(_));
                workload.recorder.complete(op, outcome.clone());
                workload
                    .stats
                    .lock()
                    .expect("stats")
                    .count(&Input::Get, &outcome);
                workload.phases.count(ok);
                if ok {
                    answered += 1;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "member {member} ({endpoint}) answered no linearizable read of {} within \
                     {SETTLE:?} after the full restart",
                    String::from_utf8_lossy(&key)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    answered
}

/// Injects faults into the cluster and repairs them.
struct Nemesis {
    rng: Rng,
    /// What was injected, for the summary.
    faults: Vec<String>,
}

impl Nemesis {
    /// Injects `fault`, holds it, repairs it, waits for a leader, then pauses quietly; each
    /// part is a phase so the test can demand successful operations after every repair.
    fn inject(&mut self, cluster: &mut Cluster, workload: &Workload, fault: Fault) {
        let leader = cluster.wait_for_leader(SETTLE);
        let hold = Duration::from_millis(self.rng.between(FAULT_HOLD_MS));
        // The target is chosen first, so the phase begins before the fault strikes and the
        // operations it breaks count in it.
        let target = match fault {
            Fault::KillLeader | Fault::PartitionLeader => leader,
            Fault::PauseMember => self.rng.below(MEMBERS as u64) as usize,
            Fault::KillFollower => {
                (leader + 1 + self.rng.below(MEMBERS as u64 - 1) as usize) % MEMBERS
            }
        };
        let role = if target == leader {
            "leader"
        } else {
            "follower"
        };
        let majority: Vec<usize> = (0..MEMBERS).filter(|&i| i != target).collect();
        let name = match fault {
            Fault::KillLeader | Fault::KillFollower => format!("kill -9 {role} n{target}"),
            Fault::PauseMember => format!("SIGSTOP {role} n{target}"),
            Fault::PartitionLeader => format!("partition {role} n{target} from {majority:?}"),
        };
        workload.phases.begin(name.clone(), false);
        match fault {
            Fault::KillLeader | Fault::KillFollower => cluster.member_mut(target).kill9(),
            Fault::PauseMember => cluster.member_mut(target).sigstop(),
            Fault::PartitionLeader => cluster.partition(&[&[target], &majority]),
        }
        std::thread::sleep(hold);
        repair_all(cluster);
        cluster.wait_for_leader(SETTLE);
        workload.phases.begin(format!("after {name}"), true);
        std::thread::sleep(Duration::from_millis(self.rng.between(RECOVERY_PAUSE_MS)));
        self.faults.push(name);
    }
}

/// Undoes every fault: heals partitions, resumes paused members, restarts crashed ones.
fn repair_all(cluster: &mut Cluster) {
    cluster.heal();
    for i in 0..cluster.len() {
        match cluster.member(i).state() {
            MemberState::Stopped => cluster.member_mut(i).sigcont(),
            MemberState::Down => cluster.member_mut(i).restart(),
            MemberState::Running | MemberState::Removed => {}
        }
    }
}

/// Successes and unknowns of one operation type.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    ok: u64,
    unknown: u64,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {} unknown {}", self.ok, self.unknown)
    }
}

/// Operation counts for the summary and the "real work" assertions.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    get: Tally,
    put: Tally,
    cas: Tally,
    /// Compare-and-sets answered with `succeeded: true`.
    cas_succeeded: u64,
    delete: Tally,
}

impl Stats {
    fn count(&mut self, input: &Input, outcome: &Outcome) {
        let tally = match input {
            Input::Get => &mut self.get,
            Input::Put(_) => &mut self.put,
            Input::Cas { .. } => &mut self.cas,
            Input::Delete => &mut self.delete,
        };
        match outcome {
            Outcome::Ok(output) => {
                tally.ok += 1;
                if *output == Output::Cas(true) {
                    self.cas_succeeded += 1;
                }
            }
            Outcome::Unknown => tally.unknown += 1,
        }
    }

    /// Writes the cluster acknowledged as applied (a failed compare-and-set changed nothing
    /// and does not count).
    fn writes_ok(&self) -> u64 {
        self.put.ok + self.cas_succeeded + self.delete.ok
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "get {} (unknown = failed, dropped); put {}; cas {} ({} succeeded); delete {}",
            self.get, self.put, self.cas, self.cas_succeeded, self.delete
        )
    }
}

/// One stretch of the run: a fault in force, or the recovery after it.
#[derive(Clone, Debug)]
struct Phase {
    name: String,
    /// A recovery pause (the cluster must serve) rather than a fault.
    recovery: bool,
    ok: u64,
    unknown: u64,
}

/// The phases so far; operations count in the phase current when they complete.
struct Phases {
    current: AtomicUsize,
    list: Mutex<Vec<Phase>>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            current: AtomicUsize::new(0),
            list: Mutex::new(vec![Phase {
                name: "warm-up".to_string(),
                recovery: false,
                ok: 0,
                unknown: 0,
            }]),
        }
    }

    fn begin(&self, name: String, recovery: bool) {
        let mut list = self.list.lock().expect("phases");
        list.push(Phase {
            name,
            recovery,
            ok: 0,
            unknown: 0,
        });
        self.current.store(list.len() - 1, Ordering::Relaxed);
    }

    fn count(&self, ok: bool) {
        let mut list = self.list.lock().expect("phases");
        let phase = &mut list[self.current.load(Ordering::Relaxed)];
        if ok {
            phase.ok += 1;
        } else {
            phase.unknown += 1;
        }
    }

    fn recoveries(&self) -> impl Iterator<Item = Phase> {
        let list = self.list.lock().expect("phases").clone();
        list.into_iter().filter(|p| p.recovery)
    }

    /// One line per phase: name, successes, unknowns/failures.
    fn report(&self) -> String {
        let list = self.list.lock().expect("phases");
        list.iter()
            .map(|p| format!("  phase {}: ok {} unknown {}", p.name, p.ok, p.unknown))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The run's seed: `BRAMBLE_LIN_SEED`, else derived from the clock (printed either way).
fn seed() -> u64 {
    match std::env::var("BRAMBLE_LIN_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("BRAMBLE_LIN_SEED={s:?} is not a u64: {e}")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

/// How long the nemesis runs: [`CI_DURATION`], or a soak with `BRAMBLE_SOAK=1`.
fn nemesis_duration() -> Duration {
    let soak = std::env::var("BRAMBLE_SOAK").is_ok_and(|v| !v.is_empty() && v != "0");
    if !soak {
        return CI_DURATION;
    }
    match std::env::var("BRAMBLE_SOAK_SECS") {
        Ok(s) => Duration::from_secs(
            s.parse()
                .unwrap_or_else(|e| panic!("BRAMBLE_SOAK_SECS={s:?} is not a number: {e}")),
        ),
        Err(_) => SOAK_DURATION,
    }
}
