//! One server process (Bramble or etcd) for a test.
//!
//! Both kinds get exactly the same etcd command line (Bramble is a drop-in `etcd`), a fresh
//! temporary data dir, and free loopback ports for client and peer URLs. `start` returns once
//! the client port serves a linearizable Range, so a test can use the endpoint right away.
//! The process is killed (SIGKILL) when the `Server` is dropped, so a failing test never
//! leaves servers behind.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use bramble_testkit::{process, temp};

use crate::etcdctl::Etcdctl;
use crate::ports::free_port;
use crate::target::Kind;

/// Flags that tests may change; everything else on the command line is fixed.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `--max-request-bytes` (etcd's default: 1.5 MiB).
    pub max_request_bytes: u64,
    /// `--max-txn-ops` (etcd's default: 128).
    pub max_txn_ops: u64,
    /// `--log-level` (the log goes to a file in the temp dir, shown when a start fails).
    pub log_level: String,
    /// How long `start`/`restart` wait for the client port to serve.
    pub start_timeout: Duration,
    /// More flags, appended to the fixed command line (the same for both kinds).
    pub extra_args: Vec<String>,
    /// A binary of the same kind to start instead of [`Kind::binary`], e.g. an etcd built by
    /// `scripts/etcd-build` when the test compares with that release.
    pub binary: Option<PathBuf>,
}

/// How long a server (or cluster member) may take to start serving:
/// `BRAMBLE_E2E_START_TIMEOUT_SECS`, 30 s by default.
pub(crate) fn start_timeout_from_env() -> Duration {
    std::env::var("BRAMBLE_E2E_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

impl Default for ServerConfig {
    fn default() -> Self {
        let start_timeout = start_timeout_from_env();
        ServerConfig {
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            log_level: "info".to_string(),
            start_timeout,
            extra_args: Vec::new(),
            binary: None,
        }
    }
}

/// A running (or deliberately stopped) server process and its data dir.
pub struct Server {
    kind: Kind,
    config: ServerConfig,
    /// Owns the temp dir holding the data dir and the log; removed on drop.
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// How many times the process was started, to name log files (`server.<n>.log`).
    starts: u32,
}

/// Why one attempt to bring a process up failed.
enum StartError {
    /// The process exited before serving: possibly a port taken by someone else.
    Exited(String),
    /// Still running but not serving before the timeout.
    Timeout(String),
}

/// The flags that make a new one-member cluster named `default` in `data_dir`, serving
/// clients on 127.0.0.1:`client_port` and peers on 127.0.0.1:`peer_port`: the core of every
/// single-server command line in the tests (the same for etcd and bramble).
pub fn single_member_args(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=default".to_string(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--initial-cluster-state=new".to_string(),
    ]
}

impl Server {
    /// Starts a server of `kind` with the default flags; panics with its log if it does not
    /// come up.
    pub fn start(kind: Kind) -> Server {
        Server::start_with(kind, ServerConfig::default())
    }

    /// Starts a server of `kind` with `config`.
    pub fn start_with(kind: Kind, config: ServerConfig) -> Server {
        let dir = temp::dir(&format!("bramble-e2e-{kind}-"));
        let mut server = Server {
            kind,
            config,
            dir,
            client_port: 0,
            peer_port: 0,
            child: None,
            starts: 0,
        };
        // Ports are probed, then bound by the server later: another process can win the race,
        // so a first start that dies is retried on new ports with a new data dir.
        let mut last = String::new();
        for _attempt in 0..3 {
            server.client_port = free_port();
            server.peer_port = free_port();
            let _ = std::fs::remove_dir_all(server.data_dir());
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::Exited(log)) => last = log,
                Err(StartError::Timeout(log)) => {
                    panic!(
                        "{kind} did not serve on {} in time; its log:\n{log}",
                        server.endpoint()
                    )
                }
            }
        }
        panic!("{kind} exited before serving (3 attempts); last log:\n{last}");
    }

    /// The kind of server.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`, for etcdctl and etcd-client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// An `etcdctl` runner for this server's endpoint.
    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(self.endpoint())
    }

    /// The data dir (`--data-dir`), kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the current (or last) process wrote to stdout and stderr.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Crashes the server: SIGKILL, no chance to flush anything, then reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // kill() fails only if the process was already reaped; wait() then reports it.
            let _ = child.kill();
            child.wait().expect("wait for killed server process");
        }
    }

    /// Asks the server to stop (SIGTERM) and waits up to 10 s for it to exit.
    pub fn sigterm(&mut self) -> ExitStatus {
        self.sigterm_within(Duration::from_secs(10))
    }

    /// Sends SIGTERM and waits up to `bound` for the process to exit; then SIGKILLs it and
    /// panics, since a server that does not stop when asked is a bug worth a failing test.
    pub fn sigterm_within(&mut self, bound: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("sigterm() on a server that is not running");
        // std has no way to send SIGTERM; the shell's builtin `kill` is everywhere.
        let status = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &child.id().to_string()])
            .status()
            .expect("run sh -c kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait on server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {bound:?} of SIGTERM; log:\n{}",
                    self.kind,
                    tail(&self.log(), LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data dir and ports (after `kill9` or `sigterm`; a
    /// still running process is SIGKILLed first) and waits until it serves.
    pub fn restart(&mut self) {
        self.kill9();
        match self.spawn_and_wait() {
            Ok(()) => {}
            Err(StartError::Exited(log)) => {
                panic!(
                    "{} exited during restart on {}; log:\n{log}",
                    self.kind,
                    self.data_dir().display()
                )
            }
            Err(StartError::Timeout(log)) => {
                panic!(
                    "{} did not serve in time after restart; log:\n{log}",
                    self.kind
                )
            }
        }
    }

    /// The etcd command line, identical for both kinds.
    fn args(&self) -> Vec<String> {
        let mut args = single_member_args(&self.data_dir(), self.client_port, self.peer_port);
        args.extend([
            "--initial-cluster-token=bramble-e2e".to_string(),
            format!("--max-request-bytes={}", self.config.max_request_bytes),
            format!("--max-txn-ops={}", self.config.max_txn_ops),
            format!("--log-level={}", self.config.log_level),
        ]);
        args.extend(self.config.extra_args.iter().cloned());
        args
    }

    fn binary(&self) -> PathBuf {
        match &self.config.binary {
            Some(path) => path.clone(),
            None => self.kind.binary(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server.{}.log", self.starts))
    }

    /// Spawns the process and polls until it serves, it exits, or the timeout passes.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        self.starts += 1;
        let mut cmd = Command::new(self.binary());
        process::server_command(cmd.args(self.args()), &self.log_path());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary().display()));
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready means a linearizable Range succeeds: the server has a leader and serves KV.
    /// (A Range rather than `endpoint health`, which may also call other services.)
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + self.config.start_timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], self.client_port).into();
        let ctl = self.etcdctl();
        loop {
            let child = self.child.as_mut().expect("wait_ready with a child");
            if let Some(status) = child.try_wait().expect("try_wait on server") {
                self.child = None;
                return Err(StartError::Exited(format!(
                    "[{} exited with {status}]\n{}",
                    self.kind,
                    tail(&self.log(), LOG_TAIL_LINES)
                )));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(StartError::Timeout(tail(&self.log(), LOG_TAIL_LINES)));
            }
            // A TCP connect first, so polling a closed port costs no etcdctl dial timeout.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let probe = ctl.run(&[
                    "--dial-timeout=1s",
                    "--command-timeout=2s",
                    "get",
                    "bramble-e2e-readiness-probe",
                ]);
                if probe.code == 0 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How much of a server log a panic message shows: enough for the error, not a wall of text.
const LOG_TAIL_LINES: usize = 60;

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Reads a file as text, replacing invalid UTF-8; an unreadable file reads as a note.
fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("[cannot read {}: {e}]", path.display()),
    }
}
