//! The multi-process cluster harness ([`bramble_tests::cluster`]) proven against real etcd.
//!
//! Each scenario is a function of the server kind, so the very same steps later run on
//! Bramble clusters: replication between members, failover after the leader is SIGKILLed, a
//! SIGSTOPped follower catching up, a full restart from the data dirs with identical command
//! lines, membership changes (voter and learner, add, promote, remove), a leader isolated in
//! a network namespace partition (the minority refuses linearizable reads but serves
//! serializable ones, and catches up after the heal), and cleanup of every process and
//! namespace when a test panics.
//!
//! Every scenario has an `etcd` test and a `bramble` test: the same steps on both.
//! Timeouts are short on purpose (heartbeat 50 ms, election 500 ms).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bramble_tests::cluster::ops::{get, put, put_eventually, value, wait_for_value, SETTLE};
use bramble_tests::cluster::{process_alive, Cluster, ClusterConfig, MemberState};
use bramble_tests::{scenarios, Kind};

scenarios!(
    replicates_between_members,
    leader_crash_elects_new_leader,
    paused_follower_catches_up,
    full_restart_keeps_data,
    member_add_promote_remove,
    wiped_member_is_replaced,
    partitioned_leader_steps_aside,
    drop_after_panic_leaves_nothing,
);

/// A running process's command line, NUL-separated as the kernel keeps it.
fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).expect("read /proc/<pid>/cmdline")
}

/// Three members start and agree on a leader; a put via one is read back linearizably via
/// the others, and the member list names all three.
fn replicates_between_members(kind: Kind) {
    let cluster = Cluster::start(kind, 3);
    put(&cluster.member(0).etcdctl(), "k", "v1");
    for i in 1..3 {
        assert_eq!(value(&cluster.member(i).etcdctl(), "k", "l"), "v1");
    }
    // All endpoints together, as an operator's etcdctl would use them.
    assert_eq!(value(&cluster.etcdctl(), "k", "l"), "v1");

    let mut names: Vec<String> = cluster.member_list().into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["n0", "n1", "n2"]);
    let leader = cluster.leader();
    let statuses = cluster.statuses();
    let leader_id = cluster.member(leader).id().expect("leader's id is known");
    for (i, st) in statuses.iter().enumerate() {
        let st = st.unwrap_or_else(|| panic!("member {i} answers Status"));
        assert_eq!(st.leader, leader_id, "member {i} follows the leader");
    }
}

/// SIGKILL the leader: the other two elect a new one and keep taking writes; the old leader
/// restarts from its data dir, rejoins as a follower and catches up.
fn leader_crash_elects_new_leader(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    let old = cluster.leader();
    put(&cluster.etcdctl(), "before", "1");

    cluster.member_mut(old).kill9();
    assert_eq!(cluster.member(old).state(), MemberState::Down);
    let new = cluster.wait_for_new_leader(old, SETTLE);
    put_eventually(&cluster.etcdctl(), "after", "2");
    for i in (0..3).filter(|&i| i != old) {
        assert_eq!(value(&cluster.member(i).etcdctl(), "after", "l"), "2");
    }

    cluster.member_mut(old).restart();
    wait_for_value(&cluster.member(old).etcdctl(), "after", "2");
    assert_eq!(value(&cluster.member(old).etcdctl(), "before", "l"), "1");
    let leader = cluster.leader();
    assert_ne!(
        cluster.member(leader).id(),
        None,
        "leader {leader} (was {new}) has a known id"
    );
}

/// SIGSTOP a follower: writes go on without it (two of three are a quorum); after SIGCONT
/// it catches up and serves the latest value from its own state.
fn paused_follower_catches_up(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.member_mut(follower).sigstop();
    assert_eq!(cluster.member(follower).state(), MemberState::Stopped);

    let started = Instant::now();
    for i in 0..20 {
        put(&cluster.etcdctl(), "paused", &format!("{i}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "20 puts took {:?} with one follower paused",
        started.elapsed()
    );
    // It really is away: the process lives but answers nothing.
    assert!(cluster.member(follower).status().is_err());
    assert_eq!(cluster.try_leader(), Some(leader));

    cluster.member_mut(follower).sigcont();
    wait_for_value(&cluster.member(follower).etcdctl(), "paused", "19");
}

/// Kill all members and start them again with exactly the same command lines: they rejoin
/// from their data dirs (ignoring `--initial-cluster`) and every acknowledged write is there.
fn full_restart_keeps_data(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    for i in 0..10 {
        put(
            &cluster.etcdctl(),
            &format!("restart/{i}"),
            &format!("v{i}"),
        );
    }
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| cmdline(cluster.member(i).pid().expect("running")))
        .collect();

    // One clean stop (it must exit within 10 s of SIGTERM), the others crash.
    cluster.member_mut(0).sigterm();
    assert_eq!(cluster.member(0).state(), MemberState::Down);
    cluster.restart_all();

    for (i, old) in before.iter().enumerate() {
        let pid = cluster.member(i).pid().expect("running after restart");
        assert_eq!(
            &cmdline(pid),
            old,
            "member {i} restarted with another command line"
        );
    }
    let out = cluster
        .etcdctl()
        .run(&["get", "restart/", "--prefix", "--consistency=l"]);
    let expected: String = (0..10).map(|i| format!("restart/{i}\nv{i}\n")).collect();
    assert_eq!(out.assert_ok().stdout_str(), expected);
    put(&cluster.etcdctl(), "restart/after", "ok");
}

/// `member add` + start with `--initial-cluster-state existing`, then remove; a learner is
/// added, promoted and removed too. Writes work throughout.
fn member_add_promote_remove(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    put(&cluster.etcdctl(), "a", "1");

    let n3 = cluster.member_add("n3");
    assert_eq!(n3, 3);
    wait_for_value(&cluster.member(n3).etcdctl(), "a", "1");
    put(&cluster.member(n3).etcdctl(), "b", "2");
    assert_eq!(value(&cluster.member(0).etcdctl(), "b", "l"), "2");
    let list = cluster.member_list();
    assert_eq!(list.len(), 4, "{list:?}");
    assert!(
        list.iter().any(|m| m.name == "n3" && !m.is_learner),
        "{list:?}"
    );

    let n3_id = cluster.member(n3).id().expect("added member's id");
    cluster.member_remove(n3);
    assert_eq!(cluster.member(n3).state(), MemberState::Removed);
    let list = cluster.member_list();
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|m| m.id != n3_id), "{list:?}");
    put_eventually(&cluster.etcdctl(), "c", "3");

    let n4 = cluster.member_add_learner("n4");
    assert!(cluster.member(n4).is_learner());
    let list = cluster.member_list();
    assert!(
        list.iter().any(|m| m.name == "n4" && m.is_learner),
        "{list:?}"
    );
    wait_for_value(&cluster.member(n4).etcdctl(), "c", "3");

    cluster.promote(n4);
    let list = cluster.member_list();
    assert!(
        list.iter().any(|m| m.name == "n4" && !m.is_learner),
        "{list:?}"
    );
    assert_eq!(value(&cluster.member(n4).etcdctl(), "c", "l"), "3");

    cluster.member_remove(n4);
    assert_eq!(cluster.member_list().len(), 3);
    put_eventually(&cluster.etcdctl(), "d", "4");
    assert_eq!(cluster.endpoints().split(',').count(), 3);
}

/// A follower whose data dir is lost must not rejoin with its original command line: with
/// an empty log it could vote for a second leader in a term it already voted in. It refuses
/// to start; the operator's way back is `member remove` and `member add` of a fresh member.
fn wiped_member_is_replaced(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    put(&cluster.etcdctl(), "kept", "yes");
    let lost = (cluster.leader() + 1) % 3;
    cluster.member_mut(lost).kill9();
    cluster.member_mut(lost).wipe_data();
    assert!(!cluster.member(lost).data_dir().exists());

    cluster.member_mut(lost).respawn();
    let exit = cluster.member_mut(lost).wait_exit(SETTLE);
    let log = cluster.member(lost).log();
    match exit {
        Some(status) => assert!(!status.success(), "exited with {status}; log:\n{log}"),
        None => panic!("a member with a wiped data dir rejoined with `new` state; log:\n{log}"),
    }

    cluster.member_remove(lost);
    put_eventually(&cluster.etcdctl(), "after", "remove");
    let fresh = cluster.member_add("n3");
    wait_for_value(&cluster.member(fresh).etcdctl(), "kept", "yes");
    assert_eq!(
        value(&cluster.member(fresh).etcdctl(), "after", "l"),
        "remove"
    );
    assert_eq!(cluster.member_list().len(), 3);
}

/// Isolate the leader in its own partition: the majority elects a new leader and serves
/// writes; the old leader refuses linearizable reads but serves (stale) serializable ones;
/// after the heal it catches up.
fn partitioned_leader_steps_aside(kind: Kind) {
    let mut cluster = Cluster::start_with(
        kind,
        ClusterConfig {
            netns: true,
            ..ClusterConfig::default()
        },
    );
    let old = cluster.leader();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    put(&cluster.etcdctl(), "before", "1");
    wait_for_value(&cluster.member(old).etcdctl(), "before", "1");

    cluster.partition(&[&[old], &majority]);
    let new = cluster.wait_for_new_leader(old, SETTLE);
    assert!(majority.contains(&new));
    put_eventually(&cluster.member(new).etcdctl(), "during", "2");
    for &i in &majority {
        assert_eq!(value(&cluster.member(i).etcdctl(), "during", "l"), "2");
    }

    let minority = cluster.member(old).etcdctl();
    let linearizable = get(&minority, "during", "l");
    assert_ne!(
        linearizable.code, 0,
        "the isolated old leader served a linearizable read:\n{linearizable}"
    );
    assert_eq!(value(&minority, "before", "s"), "1");
    assert_eq!(
        value(&minority, "during", "s"),
        "",
        "the isolated member saw a write made after the partition"
    );

    cluster.heal();
    wait_for_value(&minority, "during", "2");
    cluster.wait_for_leader(SETTLE);
    let deadline = Instant::now() + SETTLE;
    while get(&minority, "during", "l").code != 0 {
        assert!(
            Instant::now() < deadline,
            "no linearizable read on the old leader after the heal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test that panics while holding a cluster (in namespaces) leaves no process, data dir,
/// namespace or bridge behind.
fn drop_after_panic_leaves_nothing(kind: Kind) {
    let mut pids: Vec<(u32, PathBuf)> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut namespaces: Vec<String> = Vec::new();
    let mut bridge = String::new();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut cluster = Cluster::start_with(
            kind,
            ClusterConfig {
                netns: true,
                ..ClusterConfig::default()
            },
        );
        // One paused member: SIGKILL must still take it down.
        cluster.member_mut(1).sigstop();
        for m in cluster.members() {
            pids.push((m.pid().expect("running"), m.data_dir()));
            dirs.push(m.data_dir());
        }
        let network = cluster.network().expect("netns mode");
        namespaces = network.netns_names();
        bridge = network.bridge().to_string();
        panic!("deliberate panic with a live cluster (this test checks the cleanup)");
    }));
    assert!(result.is_err(), "the closure panics by design");
    assert_eq!(pids.len(), 3);

    for (pid, data_dir) in &pids {
        assert!(!process_alive(*pid, data_dir), "member pid {pid} survived");
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} survived", dir.display());
    }
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for ns in &namespaces {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "namespace {ns} survived"
        );
    }
    let link = std::process::Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .expect("ip link show");
    assert!(!link.status.success(), "bridge {bridge} survived");
}
