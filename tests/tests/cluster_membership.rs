//! etcd's Cluster service and MoveLeader through the real etcdctl, on multi-process clusters
//! (`bramble_tests::cluster`).
//!
//! - `etcdctl_transcript`: the same etcdctl session (member list in table and JSON, member
//!   add of an unstarted learner, its errors, promote, update, remove, move-leader) against a
//!   3-member etcd and a 3-member Bramble, compared after masking what differs between two
//!   clusters (ids, ports, raft term, the order of ids).
//! - `add_promote_remove`: members added with `member add` start with the printed
//!   `ETCD_INITIAL_CLUSTER` and `--initial-cluster-state existing`, serve data written
//!   before, publish their names; a learner is promoted; a removed member stops by itself
//!   and the cluster keeps serving.
//! - `reconfigure_under_load`: members are added and removed while a writer runs; every
//!   acknowledged write is there at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bramble_tests::cluster::ops::{put, put_eventually, value, wait_for_value, SETTLE};
use bramble_tests::cluster::{Cluster, MemberState};
use bramble_tests::etcdctl::{Etcdctl, Output};
use bramble_tests::normalize;
use bramble_tests::scenarios;
use bramble_tests::Kind;

scenarios!(add_promote_remove, reconfigure_under_load);

/// etcd refuses reconfiguration for now in these cases (a leader connected to its peers for
/// less than 5 s, a learner still catching up): retried.
const TRANSIENT: &[&str] = &[
    "unhealthy cluster",
    "not enough started members",
    "leader changed",
    "no leader",
    "in sync with leader",
];

/// Runs a membership command until the server stops refusing it for now.
fn reconfigure(ctl: &Etcdctl, args: &[&str]) -> Output {
    let mut full = vec!["--command-timeout=5s"];
    full.extend_from_slice(args);
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = ctl.run(&full);
        if out.code == 0
            || !TRANSIENT.iter().any(|e| out.stderr.contains(e))
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last line of etcdctl's stderr (its `Error: ...`), without the client library's log.
fn error_line(out: &Output) -> String {
    out.stderr
        .lines()
        .rfind(|l| l.starts_with("Error:"))
        .unwrap_or("")
        .to_string()
}

/// The id in `Member <hex> added to cluster <hex>`.
fn added_id(out: &Output) -> u64 {
    let text = out.stdout_str();
    let hex = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no member id in:\n{out}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{hex}: {e}\n{out}"))
}

/// Replaces per-cluster values (ids, cluster id, URLs) by stable names.
struct Masks(Vec<(String, String)>);

impl Masks {
    fn new(cluster: &Cluster) -> Masks {
        let mut masks = Masks(Vec::new());
        for (i, m) in cluster.members().iter().enumerate() {
            masks.member(m.id().expect("member id"), &format!("n{i}"));
            masks.add(&m.endpoint(), &format!("<client:n{i}>"));
            masks.add(&m.peer_url(), &format!("<peer:n{i}>"));
        }
        masks
    }

    fn add(&mut self, from: &str, to: &str) {
        self.0.retain(|(f, _)| f != from);
        self.0.push((from.to_string(), to.to_string()));
        // Longest first, so an id never matches inside a longer one.
        self.0.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    }

    fn member(&mut self, id: u64, name: &str) {
        self.add(&format!("{id:x}"), &format!("<id:{name}>"));
        self.add(&id.to_string(), &format!("<id:{name}>"));
    }

    fn apply(&self, text: &str) -> String {
        let mut s = normalize::stdout_text(text);
        for (from, to) in &self.0 {
            s = s.replace(from.as_str(), to);
        }
        // etcdctl prints ids with `%16x`: a shorter id is padded with spaces.
        s.lines()
            .map(|l| {
                if l.starts_with("Member ") {
                    l.split_whitespace().collect::<Vec<_>>().join(" ")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// etcd lists members by id, and ids differ between clusters: sorts what a listing shows.
fn sorted_listing(text: &str) -> String {
    if let (Some(start), Some(end)) = (text.find("\"members\":[{"), text.rfind("}]")) {
        // -w json: sort the member objects (they nest no objects).
        let body = &text[start + "\"members\":[{".len()..end];
        let mut members: Vec<&str> = body.split("},{").collect();
        members.sort_unstable();
        return format!(
            "{}{}{}",
            &text[..start + "\"members\":[{".len()],
            members.join("},{"),
            &text[end..]
        );
    }
    let mut lines: Vec<String> = text.lines().map(table_cells).collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// A `-w table` line without its padding: etcdctl pads each column to its widest cell,
/// and the ids (hex, no leading zeros) and ports the masks replace differ in width
/// between two clusters. Borders become `+-+`; cells are trimmed.
fn table_cells(line: &str) -> String {
    if line.starts_with('+') && line.chars().all(|c| c == '+' || c == '-') {
        return "+-+".to_string();
    }
    if line.starts_with('|') {
        return line.split('|').map(str::trim).collect::<Vec<_>>().join("|");
    }
    line.to_string()
}

/// `ETCD_INITIAL_CLUSTER="a=..,b=.."` lists members in Go map order: sorted here.
fn sorted_initial_cluster(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
            Some(rest) => {
                let mut parts: Vec<&str> = rest.trim_end_matches('"').split(',').collect();
                parts.sort_unstable();
                format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","))
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The session both kinds must answer alike; returns its masked transcript.
fn transcript(kind: Kind) -> String {
    let cluster = Cluster::start(kind, 3);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let mut masks = Masks::new(&cluster);
    let ctl = cluster.etcdctl();
    let mut log = String::new();
    let mut record = |what: &str, text: String| {
        log.push_str(&format!("$ etcdctl {what}\n{text}\n"));
    };
    let label = |masks: &Masks, args: &[&str]| masks.apply(&args.join(" "));

    for w in ["simple", "table", "json"] {
        let out = ctl.run(&["member", "list", "-w", w]);
        record(
            &format!("member list -w {w}"),
            sorted_listing(&masks.apply(&out.stdout_str())),
        );
    }

    // An unstarted learner: no name, no client URLs.
    let add = reconfigure(
        &ctl,
        &[
            "member",
            "add",
            "n9",
            "--learner",
            "--peer-urls=http://127.0.0.1:1",
        ],
    );
    add.assert_ok();
    let n9 = added_id(&add);
    masks.member(n9, "n9");
    // `Member <id> added to cluster <cluster id>`
    let cluster_hex = add
        .stdout_str()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_string();
    masks.add(&cluster_hex, "<cluster>");
    record(
        "member add n9 --learner",
        sorted_initial_cluster(&masks.apply(&add.stdout_str())),
    );
    for w in ["simple", "json"] {
        let out = ctl.run(&["member", "list", "-w", w]);
        record(
            &format!("member list -w {w}"),
            sorted_listing(&masks.apply(&out.stdout_str())),
        );
    }

    // etcd derives an added member's id from its URLs and the second it was added: wait, so
    // that a second add of the same URLs is refused for the URLs, not for the id.
    std::thread::sleep(Duration::from_millis(1100));
    let n0 = format!("{:x}", cluster.member(0).id().expect("id"));
    let n9_hex = format!("{n9:x}");
    let peer0 = cluster.member(0).peer_url();
    let failing: Vec<Vec<&str>> = vec![
        vec![
            "member",
            "add",
            "n8",
            "--learner",
            "--peer-urls=http://127.0.0.1:2",
        ],
        vec!["member", "add", "n8", "--peer-urls=http://127.0.0.1:1"],
        vec!["member", "promote", &n0],
        vec!["member", "promote", &n9_hex],
        vec!["member", "promote", "ffff"],
        vec!["member", "remove", "ffff"],
        vec!["member", "update", "ffff", "--peer-urls=http://127.0.0.1:3"],
    ];
    for args in &failing {
        let out = ctl.run(args);
        assert_ne!(out.code, 0, "{args:?} should fail:\n{out}");
        record(&label(&masks, args), masks.apply(&error_line(&out)));
    }
    let peer_taken = format!("--peer-urls={peer0}");
    let out = ctl.run(&["member", "update", &n9_hex, &peer_taken]);
    record("member update n9 <peer:n0>", masks.apply(&error_line(&out)));

    let out = reconfigure(
        &ctl,
        &[
            "member",
            "update",
            &n9_hex,
            "--peer-urls=http://127.0.0.1:3,http://127.0.0.1:4",
        ],
    );
    record("member update n9", masks.apply(&out.stdout_str()));
    // (Not listed here: etcd 3.4's MemberUpdate also turns a learner into a voter in its
    // member list, a bug 3.5 fixed; Bramble keeps it a learner.)
    let out = reconfigure(&ctl, &["member", "remove", &n9_hex]);
    record("member remove n9", masks.apply(&out.stdout_str()));
    let out = ctl.run(&["member", "list"]);
    record(
        "member list",
        sorted_listing(&masks.apply(&out.stdout_str())),
    );

    // move-leader: etcdctl finds the leader among its endpoints and asks it. Which member
    // leads differs between runs: name them by role.
    masks.member(cluster.member(leader).id().expect("id"), "leader");
    masks.member(cluster.member(follower).id().expect("id"), "follower");
    let target = format!("{:x}", cluster.member(follower).id().expect("id"));
    let out = ctl.run(&["move-leader", &target]);
    record("move-leader <follower>", masks.apply(&out.stdout_str()));
    let now = cluster.wait_for_leader(SETTLE);
    assert_eq!(now, follower, "{}", cluster.describe());
    let out = ctl.run(&["move-leader", "ffff"]);
    record("move-leader ffff", masks.apply(&error_line(&out)));
    let out = ctl.run(&["move-leader", &target]);
    record(
        "move-leader <leader itself>",
        masks.apply(&out.stdout_str()),
    );
    log
}

#[test]
fn etcdctl_transcript() {
    let etcd = transcript(Kind::Etcd);
    if std::env::var_os("BRAMBLE_E2E_ONLY_ETCD").is_some() {
        println!("{etcd}");
        return;
    }
    let bramble = transcript(Kind::Bramble);
    for (i, (b, e)) in bramble.lines().zip(etcd.lines()).enumerate() {
        assert_eq!(
            b, e,
            "line {i}: bramble (left) differs from etcd (right)\nbramble:\n{bramble}\netcd:\n{etcd}"
        );
    }
    assert_eq!(
        bramble.lines().count(),
        etcd.lines().count(),
        "bramble:\n{bramble}\netcd:\n{etcd}"
    );
}

/// Voter and learner adds with the started members joining, promote, and removals.
fn add_promote_remove(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    put(&cluster.etcdctl(), "before", "1");

    let n3 = cluster.member_add("n3");
    wait_for_value(&cluster.member(n3).etcdctl(), "before", "1");
    assert_eq!(value(&cluster.member(n3).etcdctl(), "before", "l"), "1");
    put(&cluster.member(n3).etcdctl(), "via-n3", "2");
    let list = cluster.member_list();
    assert_eq!(list.len(), 4, "{list:?}");
    for m in &list {
        assert!(
            !m.name.is_empty() && !m.client_urls.is_empty() && !m.is_learner,
            "every member started and published itself: {list:?}"
        );
    }

    let n4 = cluster.member_add_learner("n4");
    wait_for_value(&cluster.member(n4).etcdctl(), "via-n3", "2");
    assert!(cluster
        .member_list()
        .iter()
        .any(|m| m.name == "n4" && m.is_learner));
    cluster.promote(n4);
    assert!(cluster
        .member_list()
        .iter()
        .any(|m| m.name == "n4" && !m.is_learner));

    // A removed member stops by itself; the others keep serving.
    let id = cluster.member(n3).id().expect("n3's id");
    let ctl = cluster.member(0).etcdctl();
    reconfigure(&ctl, &["member", "remove", &format!("{id:x}")]).assert_ok();
    let exit = cluster.member_mut(n3).wait_exit(SETTLE);
    assert!(
        exit.is_some(),
        "a removed member stops:\n{}",
        cluster.describe()
    );
    assert_eq!(cluster.member(n3).state(), MemberState::Down);
    put_eventually(&ctl, "after", "3");
    assert_eq!(value(&cluster.member(n4).etcdctl(), "after", "l"), "3");
    let list = cluster.member_list();
    assert_eq!(list.len(), 4, "{list:?}");
    assert!(list.iter().all(|m| m.id != id), "{list:?}");
}

/// Adds and removes members while a writer runs: every acknowledged write survives.
fn reconfigure_under_load(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3);
    let endpoints: Vec<String> = (0..3).map(|i| cluster.member(i).endpoint()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let stop = stop.clone();
        let acked = acked.clone();
        // The client fails over from the member removed below, as any etcd client does.
        let ctl = Etcdctl::new(endpoints.join(","));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{i:05}");
                let out = ctl.run(&["--command-timeout=3s", "put", &key, "v"]);
                if out.code == 0 {
                    acked.lock().expect("acked").push(key);
                }
                i += 1;
            }
        })
    };

    let n3 = cluster.member_add("n3");
    let n4 = cluster.member_add_learner("n4");
    cluster.promote(n4);
    // Down to three again: remove one original member and one added. (A follower: etcd
    // answers a leader's removal of itself only after its step-down, past etcdctl's timeout.)
    let leader = cluster.leader();
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    cluster.member_remove(victim);
    let leader = cluster.leader();
    if leader == n3 {
        let target = format!("{:x}", cluster.member(n4).id().expect("id"));
        reconfigure(&cluster.etcdctl(), &["move-leader", &target]).assert_ok();
    }
    cluster.member_remove(n3);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");

    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() > 10,
        "the writer made progress: {}",
        acked.len()
    );
    let remaining: Vec<usize> = (0..3).filter(|i| *i != victim).chain([n4]).collect();
    for member in remaining {
        let ctl = cluster.member(member).etcdctl();
        // A linearizable read first, so the member has everything acknowledged.
        put_eventually(&ctl, "barrier", "x");
        let out = ctl.run(&["get", "load/", "--prefix", "--keys-only"]);
        out.assert_ok();
        let text = out.stdout_str();
        let present: std::collections::HashSet<&str> =
            text.lines().filter(|l| !l.is_empty()).collect();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|k| !present.contains(k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "member {member} lost acknowledged writes: {missing:?}"
        );
    }
    assert_eq!(cluster.member_list().len(), 3);
}
