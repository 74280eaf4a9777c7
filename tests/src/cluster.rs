//! A multi-process cluster (Bramble or etcd) for a test: start, crash, pause, restart,
//! reconfigure and partition its members.
//!
//! Every member gets etcd's command line, identical for both kinds: its own name (`n0`,
//! `n1`, ...), temp data dir, client, peer and metrics URLs, the whole `--initial-cluster`,
//! `--initial-cluster-state new` and a token unique to the cluster. The command line is fixed
//! when a member is created and reused verbatim by every restart: a member that has data must
//! rejoin from its data dir and ignore `--initial-cluster`, as etcd does.
//!
//! Members listen on 127.0.0.1 with free ports, or, with [`ClusterConfig::netns`], each on its
//! own address in its own network namespace ([`crate::netns`]) so a test can partition them.
//! A member is addressed by its index, stable for the life of the cluster: a removed member
//! keeps its slot and a member added later gets the next one.
//!
//! Modules: [`member`] is one member's process and command line, [`status`] asks members
//! for Status and MemberList.
//!
//! The leader is found the way an operator would, by asking members for Maintenance.Status:
//! a member that reports itself as leader, backed by a majority of the voters (see
//! [`Cluster::try_leader`]). Dropping the cluster SIGKILLs and reaps every process, then
//! removes the namespaces; this also runs when a test panics.

pub mod member;
pub mod ops;
pub mod status;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::etcdctl::{Etcdctl, Output};
use crate::netns::Network;
use crate::server::tail;
use crate::target::Kind;
use member::{Addresses, Bootstrap};
use status::{query_member_list, query_status};

pub use member::{process_alive, MemberProcess, MemberState};
pub use status::{ListedMember, MemberStatus};

/// Clusters created by this process, for unique cluster tokens.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// Pause between polls while waiting for a cluster to settle.
const POLL: Duration = Duration::from_millis(50);
/// Log lines per member shown when a wait fails.
const LOG_TAIL_LINES: usize = 25;

/// etcdctl errors after which a membership change is worth retrying: the server refused it
/// only for now. etcd refuses reconfiguration until the leader has been connected to a
/// quorum for 5 s (`--strict-reconfig-check`), so right after a start this is expected.
const TRANSIENT_RECONFIG_ERRORS: &[&str] = &[
    "unhealthy cluster",
    "not enough started members",
    "leader changed",
    "no leader",
    // Promote: a learner must first catch up with the leader's log.
    "in sync with leader",
];

/// Cluster-wide settings; everything else on the command line is fixed.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Members at start (`n0` .. `n{size-1}`).
    pub size: usize,
    /// `--heartbeat-interval` in ms. The default, 50, is half of etcd's: tests fail over fast.
    pub heartbeat_ms: u64,
    /// `--election-timeout` in ms. The default, 500, is half of etcd's (and 10 heartbeats).
    pub election_ms: u64,
    /// `--snapshot-count`, if set (etcd's default otherwise).
    pub snapshot_count: Option<u64>,
    /// `--log-level` (each member logs to a file in its temp dir; failures show the tail).
    pub log_level: String,
    /// How long starts and restarts wait for members to serve and agree on a leader.
    pub start_timeout: Duration,
    /// Run each member in its own network namespace, so the cluster can be partitioned.
    /// Needs root; off by default so other tests need nothing but loopback.
    pub netns: bool,
    /// More flags, appended to every member's command line (the same for both kinds).
    pub extra_args: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let start_timeout = crate::server::start_timeout_from_env();
        ClusterConfig {
            size: 3,
            heartbeat_ms: 50,
            election_ms: 500,
            snapshot_count: None,
            log_level: "info".to_string(),
            start_timeout,
            netns: false,
            extra_args: Vec::new(),
        }
    }
}

/// Why a start attempt failed.
enum StartError {
    /// A member exited before the cluster was ready (in loopback mode possibly a port that
    /// another process took between the probe and the bind).
    Exited(String),
    /// Still running but not ready in time.
    Timeout(String),
}

/// A running cluster. Dropping it kills every member and removes its network.
pub struct Cluster {
    kind: Kind,
    config: ClusterConfig,
    token: String,
    members: Vec<MemberProcess>,
    /// The members' namespaces (netns mode); host `i` is member `i`. Dropped after the
    /// members (see `Drop`), since a namespace lives on while a process runs in it.
    network: Option<Network>,
}

impl Cluster {
    /// Starts `size` members of `kind` with the default settings.
    pub fn start(kind: Kind, size: usize) -> Cluster {
        Cluster::start_with(
            kind,
            ClusterConfig {
                size,
                ..ClusterConfig::default()
            },
        )
    }

    /// Starts a cluster and returns once every member serves and they agree on a leader.
    pub fn start_with(kind: Kind, config: ClusterConfig) -> Cluster {
        Cluster::start_prepared(kind, config, |_| {})
    }

    /// As [`Cluster::start_with`], but `prepare` runs for each member after its command
    /// line is fixed and before it first starts (to fill its data dir, e.g. with a
    /// restored snapshot). It may run again for a retried start, with new members.
    pub fn start_prepared(
        kind: Kind,
        config: ClusterConfig,
        mut prepare: impl FnMut(&MemberProcess),
    ) -> Cluster {
        assert!(config.size > 0, "a cluster needs at least one member");
        let mut last = String::new();
        // Loopback ports are probed, then bound by the servers later: another process can
        // win the race, so an attempt in which a member exits is retried on new ports. In
        // netns mode the ports are the member's own and an exit is a real failure.
        let attempts = if config.netns { 1 } else { 3 };
        for _ in 0..attempts {
            let mut cluster = Cluster::create(kind, config.clone(), &mut prepare);
            match cluster.wait_ready_within(config.start_timeout) {
                Ok(_) => return cluster,
                Err(StartError::Exited(report)) => last = report,
                Err(StartError::Timeout(report)) => {
                    panic!("{kind} cluster did not become ready:\n{report}")
                }
            }
        }
        panic!("{kind} cluster: a member exited during start ({attempts} attempts); last:\n{last}");
    }

    /// Creates the members (and network) and spawns them all.
    fn create(
        kind: Kind,
        config: ClusterConfig,
        prepare: &mut impl FnMut(&MemberProcess),
    ) -> Cluster {
        let network = config.netns.then(|| Network::create(config.size));
        let token = format!(
            "bramble-e2e-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let addresses: Vec<Addresses> = (0..config.size)
            .map(|i| match &network {
                Some(net) => Addresses::on_host(net.ip(i)),
                None => Addresses::loopback(),
            })
            .collect();
        let initial_cluster = addresses
            .iter()
            .enumerate()
            .map(|(i, a)| format!("n{i}={}", a.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let bootstrap = Bootstrap {
            initial_cluster,
            state: "new",
            token: token.clone(),
        };
        let members = addresses
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let ns = network.as_ref().map(|n| n.netns(i).to_string());
                MemberProcess::new(kind, &format!("n{i}"), a, ns, &bootstrap, &config)
            })
            .collect();
        let mut cluster = Cluster {
            kind,
            config,
            token,
            members,
            network,
        };
        for m in &cluster.members {
            prepare(m);
        }
        // All at once: a new member waits for the others before it can serve.
        for m in &mut cluster.members {
            m.respawn();
        }
        cluster
    }

    /// The kind of server.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The settings the cluster was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// `--initial-cluster-token`, unique to this cluster.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Member slots, removed ones included (indexes are stable).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if the cluster has no member slots (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `index`.
    pub fn member(&self, index: usize) -> &MemberProcess {
        &self.members[index]
    }

    /// Member `index`, to crash, pause or restart it.
    pub fn member_mut(&mut self, index: usize) -> &mut MemberProcess {
        &mut self.members[index]
    }

    /// Every member slot, removed ones included.
    pub fn members(&self) -> &[MemberProcess] {
        &self.members
    }

    /// The client URLs of every member not removed, comma separated (etcdctl's
    /// `--endpoints`): the client library fails over between them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.state() != MemberState::Removed)
            .map(MemberProcess::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An etcdctl bound to [`Cluster::endpoints`].
    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(self.endpoints())
    }

    /// The network, in netns mode.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// Every member's Status, asked in parallel; `None` for members not running (stopped,
    /// down, removed) and for those that did not answer within 1 s.
    pub fn statuses(&self) -> Vec<Option<MemberStatus>> {
        self.status_results()
            .into_iter()
            .map(|r| r.and_then(Result::ok))
            .collect()
    }

    /// The leader's index right now: the member that reports itself as leader (the highest
    /// term wins if an old, partitioned leader still does) and is reported as leader by a
    /// majority of the voters, itself included. `None` during an election.
    pub fn try_leader(&self) -> Option<usize> {
        leader_of(&self.members, &self.statuses())
    }

    /// The leader's index, waiting (up to the start timeout) while there is none.
    pub fn leader(&self) -> usize {
        self.wait_for_leader(self.config.start_timeout)
    }

    /// Waits up to `timeout` for a leader; panics with every member's status and log tail.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        self.wait_for_leader_where(timeout, |_| true, "leader")
    }

    /// Waits up to `timeout` for a leader other than member `old` (after crashing, pausing
    /// or isolating it).
    pub fn wait_for_new_leader(&self, old: usize, timeout: Duration) -> usize {
        self.wait_for_leader_where(
            timeout,
            |l| l != old,
            &format!("leader other than member {old}"),
        )
    }

    /// Waits until every running member answers Status and all follow the same leader;
    /// returns its index. Panics (with logs) if a member exits or the start timeout passes.
    pub fn wait_ready(&mut self) -> usize {
        match self.wait_ready_within(self.config.start_timeout) {
            Ok(leader) => leader,
            Err(StartError::Exited(report) | StartError::Timeout(report)) => {
                panic!("{} cluster not ready:\n{report}", self.kind)
            }
        }
    }

    /// SIGKILLs every member, starts them all again with their command lines, and waits
    /// until the cluster is ready. Returns the leader's index.
    pub fn restart_all(&mut self) -> usize {
        for m in self.live_members_mut() {
            m.kill9();
        }
        for m in self.live_members_mut() {
            m.respawn();
        }
        self.wait_ready()
    }

    /// Adds a voting member named `name` (`etcdctl member add`), starts it with the
    /// `--initial-cluster` that printed and `--initial-cluster-state existing`, and waits
    /// until it serves. Returns its index.
    pub fn member_add(&mut self, name: &str) -> usize {
        self.add(name, false)
    }

    /// Like [`Cluster::member_add`], as a learner (`member add --learner`).
    pub fn member_add_learner(&mut self, name: &str) -> usize {
        self.add(name, true)
    }

    /// Promotes learner `index` to a voter (`etcdctl member promote`), retrying while the
    /// learner is still catching up.
    pub fn promote(&mut self, index: usize) {
        let id = self.known_id(index);
        self.reconfigure(&["member", "promote", &format!("{id:x}")]);
        self.members[index].set_learner(false);
    }

    /// Removes member `index` (`etcdctl member remove`) and kills its process (etcd exits by
    /// itself once it learns it was removed). Its slot stays, in state `Removed`.
    pub fn member_remove(&mut self, index: usize) {
        let id = self.known_id(index);
        // Not through the member being removed: etcd's member stops as soon as it applies
        // its own removal and answers its client `etcdserver: server stopped`.
        let others: Vec<String> = self
            .voter_endpoints()
            .into_iter()
            .filter(|e| *e != self.members[index].endpoint())
            .collect();
        self.reconfigure_via(&others, &["member", "remove", &format!("{id:x}")]);
        let m = &mut self.members[index];
        m.mark_removed();
    }

    /// The cluster's member list as a running voter reports it (each is asked in turn until
    /// one answers).
    pub fn member_list(&self) -> Vec<ListedMember> {
        let mut errors = Vec::new();
        for endpoint in self.voter_endpoints() {
            let result = std::thread::scope(|s| {
                s.spawn(|| query_member_list(&endpoint))
                    .join()
                    .expect("member list thread")
            });
            match result {
                Ok(list) => return list,
                Err(e) => errors.push(format!("{endpoint}: {e}")),
            }
        }
        panic!(
            "no member answered MemberList: {errors:?}\n{}",
            self.describe()
        );
    }

    /// Cuts traffic between members in different groups (replacing any earlier partition);
    /// members in no group keep their links. Clients still reach every member. Needs
    /// `ClusterConfig { netns: true, .. }`.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.network_mut().partition(groups);
    }

    /// Restores every link between members.
    pub fn heal(&mut self) {
        self.network_mut().heal();
    }

    /// Every member's state, last status and log tail: the report a failed wait shows.
    pub fn describe(&self) -> String {
        let statuses = self.status_results();
        let mut out = String::new();
        for (i, (m, st)) in self.members.iter().zip(statuses).enumerate() {
            let st = match st {
                None => "not asked".to_string(),
                Some(Ok(st)) => format!("{st:?}"),
                Some(Err(e)) => format!("no answer: {e}"),
            };
            out.push_str(&format!(
                "--- member {i} ({}, {:?}, pid {:?}, id {:?}, {}): {st}\n{}\n",
                m.name(),
                m.state(),
                m.pid(),
                m.id().map(|id| format!("{id:x}")),
                m.endpoint(),
                tail(&m.log(), LOG_TAIL_LINES)
            ));
        }
        out
    }

    fn add(&mut self, name: &str, learner: bool) -> usize {
        let index = self.members.len();
        let (addresses, ns) = match self.network.as_mut() {
            Some(net) => {
                let host = net.add_host();
                assert_eq!(host, index, "network hosts and members are created in step");
                (
                    Addresses::on_host(net.ip(host)),
                    Some(net.netns(host).to_string()),
                )
            }
            None => (Addresses::loopback(), None),
        };
        let peer = format!("--peer-urls={}", addresses.peer_url());
        let mut args = vec!["member", "add", name, &peer];
        if learner {
            args.push("--learner");
        }
        let out = self.reconfigure(&args);
        let stdout = out.stdout_str();
        // "Member 8211f1d0f64f3269 added to cluster ..." then ETCD_INITIAL_CLUSTER="...".
        let id = stdout
            .split_whitespace()
            .nth(1)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("no member id in `member add` output:\n{out}"));
        let initial_cluster = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in `member add` output:\n{out}"));
        let bootstrap = Bootstrap {
            initial_cluster,
            state: "existing",
            token: self.token.clone(),
        };
        let mut member =
            MemberProcess::new(self.kind, name, addresses, ns, &bootstrap, &self.config);
        member.set_id(id);
        member.set_learner(learner);
        self.members.push(member);
        let timeout = self.config.start_timeout;
        let m = &mut self.members[index];
        m.respawn();
        if let Err(e) = m.wait_serving(timeout) {
            panic!(
                "{} {name} did not join after `member add`: {e}\n{}",
                self.kind,
                self.describe()
            );
        }
        index
    }

    /// Runs a membership etcdctl command against the running members, retrying while the
    /// cluster refuses it only for now; panics if it fails otherwise or keeps failing.
    fn reconfigure(&self, args: &[&str]) -> Output {
        self.reconfigure_via(&self.voter_endpoints(), args)
    }

    /// [`Cluster::reconfigure`] through `endpoints` only.
    fn reconfigure_via(&self, endpoints: &[String], args: &[&str]) -> Output {
        let ctl = Etcdctl::new(endpoints.join(","));
        let mut full = vec!["--command-timeout=5s"];
        full.extend_from_slice(args);
        let deadline = Instant::now() + self.config.start_timeout;
        loop {
            let out = ctl.run(&full);
            if out.code == 0 {
                return out;
            }
            let transient = TRANSIENT_RECONFIG_ERRORS
                .iter()
                .any(|e| out.stderr.contains(e));
            if !transient || Instant::now() > deadline {
                panic!(
                    "etcdctl {} failed:\n{out}\n{}",
                    args.join(" "),
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn known_id(&self, index: usize) -> u64 {
        let m = &self.members[index];
        assert_ne!(m.state(), MemberState::Removed, "{} was removed", m.name());
        match m.id() {
            Some(id) => id,
            None => {
                m.status()
                    .unwrap_or_else(|e| panic!("id of {}: {e}", m.name()))
                    .member_id
            }
        }
    }

    /// Endpoints of the running voters: the members that serve cluster-wide requests
    /// (etcd refuses everything but Status and serializable reads on a learner).
    fn voter_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.state() == MemberState::Running && !m.is_learner())
            .map(MemberProcess::endpoint)
            .collect()
    }

    fn live_members_mut(&mut self) -> impl Iterator<Item = &mut MemberProcess> {
        self.members
            .iter_mut()
            .filter(|m| m.state() != MemberState::Removed)
    }

    fn network_mut(&mut self) -> &mut Network {
        self.network
            .as_mut()
            .expect("partitions need a cluster started with ClusterConfig { netns: true, .. }")
    }

    /// Status of each running member (in parallel); `None` for the others.
    fn status_results(&self) -> Vec<Option<Result<MemberStatus, String>>> {
        let endpoints: Vec<Option<String>> = self
            .members
            .iter()
            .map(|m| (m.state() == MemberState::Running).then(|| m.endpoint()))
            .collect();
        let results: Vec<Option<Result<MemberStatus, String>>> = std::thread::scope(|s| {
            let handles: Vec<_> = endpoints
                .iter()
                .map(|e| e.as_ref().map(|e| s.spawn(move || query_status(e))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.map(|h| h.join().expect("status thread")))
                .collect()
        });
        for (m, r) in self.members.iter().zip(&results) {
            if let Some(Ok(st)) = r {
                m.set_id(st.member_id);
            }
        }
        results
    }

    fn wait_for_leader_where(
        &self,
        timeout: Duration,
        accept: impl Fn(usize) -> bool,
        what: &str,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.try_leader().filter(|&l| accept(l)) {
                return leader;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} cluster: no {what} within {timeout:?}\n{}",
                    self.kind,
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_ready_within(&mut self, timeout: Duration) -> Result<usize, StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .members
                .iter_mut()
                .enumerate()
                .find_map(|(i, m)| m.reap().map(|status| (i, status)));
            if let Some((i, status)) = exited {
                return Err(StartError::Exited(format!(
                    "member {i} exited with {status}\n{}",
                    self.describe()
                )));
            }
            let statuses = self.status_results();
            // Answers of the running members (the others were not asked).
            let answers: Vec<&Result<MemberStatus, String>> = statuses.iter().flatten().collect();
            let ok: Vec<&MemberStatus> = answers.iter().filter_map(|r| r.as_ref().ok()).collect();
            if !ok.is_empty() && ok.len() == answers.len() {
                let leader = ok[0].leader;
                let agreed = leader != 0 && ok.iter().all(|s| s.leader == leader);
                let index = statuses
                    .iter()
                    .position(|s| matches!(s, Some(Ok(st)) if st.member_id == leader));
                if let (true, Some(index)) = (agreed, index) {
                    return Ok(index);
                }
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout(self.describe()));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first: a namespace outlives its `ip netns del` while a process runs in it.
        for m in &mut self.members {
            m.kill9();
        }
        self.network = None;
    }
}

/// The leader rule of [`Cluster::try_leader`], over statuses gathered in member order.
fn leader_of(members: &[MemberProcess], statuses: &[Option<MemberStatus>]) -> Option<usize> {
    let voters = members
        .iter()
        .filter(|m| m.state() != MemberState::Removed && !m.is_learner())
        .count();
    let (index, claimant) = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .filter(|(_, s)| s.member_id != 0 && s.leader == s.member_id)
        .max_by_key(|(_, s)| s.raft_term)?;
    let support = members
        .iter()
        .zip(statuses)
        .filter(|(m, s)| !m.is_learner() && s.is_some_and(|s| s.leader == claimant.member_id))
        .count();
    (support > voters / 2).then_some(index)
}
