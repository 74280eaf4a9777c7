//! One cluster member: its process, data dir and fixed command line.
//!
//! The command line is built once, when the member is created, and reused verbatim by every
//! start, so a restart tests what a real restart does: the server finds its data dir and must
//! rejoin from it, ignoring `--initial-cluster`. The process runs on loopback or, in netns
//! mode, under `ip netns exec` (which execs in place, so `pid()` is the server's own).

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use bramble_testkit::{process, temp};

use super::status::{query_status, MemberStatus};
use super::{ClusterConfig, LOG_TAIL_LINES, POLL};
use crate::etcdctl::Etcdctl;
use crate::netns;
use crate::ports::free_port;
use crate::server::tail;
use crate::target::Kind;

/// Ports of every member in netns mode: each has its own address, so etcd's defaults fit.
const NETNS_PORTS: (u16, u16, u16) = (2379, 2380, 2381);

/// What the harness knows about a member's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Started and not stopped or killed since (it may still be coming up).
    Running,
    /// Paused with SIGSTOP: its sockets stay open but it answers nothing.
    Stopped,
    /// Not running: killed, terminated, or exited by itself.
    Down,
    /// Removed from the cluster with `member remove`; its process is gone.
    Removed,
}

/// Where a member listens.
#[derive(Clone, Debug)]
pub(super) struct Addresses {
    host: Ipv4Addr,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
}

impl Addresses {
    /// Loopback with free ports.
    pub(super) fn loopback() -> Addresses {
        Addresses {
            host: Ipv4Addr::LOCALHOST,
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
        }
    }

    /// A namespace's own address with fixed ports.
    pub(super) fn on_host(host: Ipv4Addr) -> Addresses {
        let (client_port, peer_port, metrics_port) = NETNS_PORTS;
        Addresses {
            host,
            client_port,
            peer_port,
            metrics_port,
        }
    }

    fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    pub(super) fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }

    fn metrics_url(&self) -> String {
        format!("http://{}:{}", self.host, self.metrics_port)
    }
}

/// How a member joins: the `--initial-cluster*` flags.
pub(super) struct Bootstrap {
    pub(super) initial_cluster: String,
    pub(super) state: &'static str,
    pub(super) token: String,
}

/// One member of a test cluster as a process: its data dir, fixed command
/// line and (while running) child process.
pub struct MemberProcess {
    kind: Kind,
    name: String,
    /// Holds the data dir and the logs; removed when the member is dropped.
    dir: tempfile::TempDir,
    addresses: Addresses,
    /// The command line, fixed at creation and reused by every restart.
    args: Vec<String>,
    /// The namespace the member runs in (netns mode).
    netns: Option<String>,
    child: Option<Child>,
    state: MemberState,
    /// Starts so far, to name log files (`member.<n>.log`).
    starts: u32,
    /// Raft member id, once known (from a Status answer or `member add`).
    id: Cell<Option<u64>>,
    learner: bool,
    start_timeout: Duration,
}

impl MemberProcess {
    /// Creates a member (not started) with its command line.
    pub(super) fn new(
        kind: Kind,
        name: &str,
        addresses: Addresses,
        netns: Option<String>,
        bootstrap: &Bootstrap,
        config: &ClusterConfig,
    ) -> MemberProcess {
        let dir = temp::dir(&format!("bramble-e2e-cluster-{kind}-{name}-"));
        let client = addresses.client_url();
        let peer = addresses.peer_url();
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--listen-metrics-urls={}", addresses.metrics_url()),
            format!("--initial-cluster={}", bootstrap.initial_cluster),
            format!("--initial-cluster-state={}", bootstrap.state),
            format!("--initial-cluster-token={}", bootstrap.token),
            format!("--heartbeat-interval={}", config.heartbeat_ms),
            format!("--election-timeout={}", config.election_ms),
            format!("--log-level={}", config.log_level),
        ];
        if let Some(count) = config.snapshot_count {
            args.push(format!("--snapshot-count={count}"));
        }
        args.extend(config.extra_args.iter().cloned());
        MemberProcess {
            kind,
            name: name.to_string(),
            dir,
            addresses,
            args,
            netns,
            child: None,
            state: MemberState::Down,
            starts: 0,
            id: Cell::new(None),
            learner: false,
            start_timeout: config.start_timeout,
        }
    }

    /// `--name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        self.addresses.client_url()
    }

    /// The peer URL other members replicate to.
    pub fn peer_url(&self) -> String {
        self.addresses.peer_url()
    }

    /// The process id, if started and not killed (also while SIGSTOPped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The raft member id, once known.
    pub fn id(&self) -> Option<u64> {
        self.id.get()
    }

    /// What the harness knows about the process.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// Whether the member was added as a learner and not promoted since.
    pub fn is_learner(&self) -> bool {
        self.learner
    }

    /// The namespace the member runs in, in netns mode.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The command line (without the program), the same on every start.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The value of `--name=value` on the command line, if it is there.
    pub fn flag(&self, name: &str) -> Option<&str> {
        let prefix = format!("--{name}=");
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(prefix.as_str()))
    }

    /// Adds `--name=value` to the command line for the next starts, replacing an earlier
    /// `--name=...` (a member started with its own limits, say).
    pub fn set_flag(&mut self, name: &str, value: &str) {
        let prefix = format!("--{name}=");
        self.args.retain(|a| !a.starts_with(&prefix));
        self.args.push(format!("{prefix}{value}"));
    }

    /// `snapshot restore FILE` with this member's name, data dir and cluster flags: the
    /// arguments of `etcdctl`'s (3.4) and `bramble`'s restore, which take the same ones.
    pub fn restore_args(&self, file: &Path) -> Vec<String> {
        let flag = |name: &str| {
            self.flag(name)
                .unwrap_or_else(|| panic!("member has no --{name}"))
                .to_string()
        };
        vec![
            "snapshot".to_string(),
            "restore".to_string(),
            file.display().to_string(),
            format!("--name={}", self.name()),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--initial-cluster={}", flag("initial-cluster")),
            format!("--initial-cluster-token={}", flag("initial-cluster-token")),
            format!(
                "--initial-advertise-peer-urls={}",
                flag("initial-advertise-peer-urls")
            ),
        ]
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the current (or last) process wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("[no log at {}: {e}]", self.log_path().display()))
    }

    /// An etcdctl bound to this member alone.
    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(self.endpoint())
    }

    /// Asks the member for its Status (one attempt, bounded by a 1 s timeout).
    pub fn status(&self) -> Result<MemberStatus, String> {
        let endpoint = self.endpoint();
        let status = std::thread::scope(|s| {
            s.spawn(|| query_status(&endpoint))
                .join()
                .expect("status thread")
        });
        if let Ok(st) = &status {
            self.id.set(Some(st.member_id));
        }
        status
    }

    /// Crashes the member: SIGKILL (also if SIGSTOPped), then reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if already reaped; wait() then reports it. Never panics: this also
            // runs from Drop while a test unwinds.
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.state != MemberState::Removed {
            self.state = MemberState::Down;
        }
    }

    /// Pauses the member (SIGSTOP): it keeps its sockets but stops answering anyone.
    pub fn sigstop(&mut self) {
        assert_eq!(
            self.state,
            MemberState::Running,
            "sigstop() on {}",
            self.name
        );
        signal(self.running_pid(), "STOP");
        self.state = MemberState::Stopped;
    }

    /// Resumes a member paused by [`MemberProcess::sigstop`].
    pub fn sigcont(&mut self) {
        assert_eq!(
            self.state,
            MemberState::Stopped,
            "sigcont() on {}",
            self.name
        );
        signal(self.running_pid(), "CONT");
        self.state = MemberState::Running;
    }

    /// Asks the member to stop (SIGTERM) and waits up to 10 s for it to exit; a member that
    /// does not stop when asked is SIGKILLed and the test fails.
    pub fn sigterm(&mut self) -> ExitStatus {
        let pid = self.running_pid();
        signal(pid, "TERM");
        if self.state == MemberState::Stopped {
            // A stopped process only acts on SIGTERM once continued.
            signal(pid, "CONT");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = self.child.as_mut().expect("running member has a child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait on member") {
                self.child = None;
                self.state = MemberState::Down;
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{} {} did not exit within 10 s of SIGTERM; log:\n{}",
                    self.kind,
                    self.name,
                    tail(&self.log(), LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again with the same command line (SIGKILLing a running one first)
    /// and returns without waiting: for when the member cannot serve until others are up too.
    pub fn respawn(&mut self) {
        assert_ne!(
            self.state,
            MemberState::Removed,
            "{} was removed from the cluster",
            self.name
        );
        self.kill9();
        self.starts += 1;
        let binary = self.kind.binary();
        let mut cmd = match &self.netns {
            Some(ns) => netns::exec(ns, &binary),
            None => Command::new(&binary),
        };
        process::server_command(cmd.args(&self.args), &self.log_path());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        self.child = Some(child);
        self.state = MemberState::Running;
    }

    /// Restarts the member (same command line) and waits until it serves and follows a
    /// leader, i.e. it rejoined. Needs a quorum to be up; see [`MemberProcess::respawn`] otherwise.
    pub fn restart(&mut self) {
        self.respawn();
        if let Err(e) = self.wait_serving(self.start_timeout) {
            panic!(
                "{} {} did not rejoin after restart: {e}",
                self.kind, self.name
            );
        }
    }

    /// Waits until the member answers Status with a leader; an error (with the log tail) if
    /// the process exits or `timeout` passes.
    pub fn wait_serving(&mut self, timeout: Duration) -> Result<MemberStatus, String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.reap() {
                return Err(format!(
                    "exited with {status}; log:\n{}",
                    tail(&self.log(), LOG_TAIL_LINES)
                ));
            }
            match self.status() {
                Ok(st) if st.leader != 0 => return Ok(st),
                Ok(st) => last = format!("answers without a leader: {st:?}"),
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not serving after {timeout:?} ({last}); log:\n{}",
                    tail(&self.log(), LOG_TAIL_LINES)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (a member that must refuse to
    /// start, or one that was removed); reaps it and returns how it exited, or `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.reap() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Deletes the data dir, as after a lost disk. The member must not be running.
    pub fn wipe_data(&mut self) {
        assert!(
            matches!(self.state, MemberState::Down | MemberState::Removed),
            "wipe_data() on {} while its process runs: kill9() or sigterm() it first",
            self.name
        );
        match std::fs::remove_dir_all(self.data_dir()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", self.data_dir().display()),
        }
    }

    /// Records the raft member id (learned from Status or `member add`).
    pub(super) fn set_id(&self, id: u64) {
        self.id.set(Some(id));
    }

    /// Records whether the member is a learner (after `member add --learner` or promote).
    pub(super) fn set_learner(&mut self, learner: bool) {
        self.learner = learner;
    }

    /// Kills the process for good after `member remove`.
    pub(super) fn mark_removed(&mut self) {
        self.kill9();
        self.state = MemberState::Removed;
    }

    /// If the process exited by itself, reaps it, marks the member down and returns how.
    pub(super) fn reap(&mut self) -> Option<ExitStatus> {
        let status = self
            .child
            .as_mut()?
            .try_wait()
            .expect("try_wait on member")?;
        self.child = None;
        self.state = MemberState::Down;
        Some(status)
    }

    fn running_pid(&self) -> u32 {
        self.pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("member.{}.log", self.starts))
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `SIG<name>` to `pid` (std can only SIGKILL; the shell's `kill` is everywhere).
fn signal(pid: u32, name: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{name} \"$0\""), &pid.to_string()])
        .status()
        .expect("run sh -c kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// True if a process with this pid exists and runs a command line mentioning `needle`:
/// how a test checks that a member's process is really gone (the pid alone may be reused).
pub fn process_alive(pid: u32, needle: &Path) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(&*needle.to_string_lossy())
        }
        Err(_) => false,
    }
}
