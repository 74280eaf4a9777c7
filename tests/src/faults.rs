//! Disk faults for end-to-end tests: a `bramble` process under strace fault injection,
//! strace attached to a running one, and a background liveness probe. (A small tmpfs for a
//! full disk is `bramble_testkit::disk::SmallDisk`.)
//!
//! strace counts syscalls per thread ("per syscall and per tracee"), and the WAL's writer is
//! one thread, so `inject=fdatasync:error=EIO:when=N+` fails its N-th fdatasync and every
//! later one, whatever the other threads do. Attaching (`strace -p`) starts failing at once;
//! `-P <file>` limits it to one file.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bramble_testkit::{process, temp};

use crate::etcdctl::Etcdctl;
use crate::ports::free_port;
use crate::server::{single_member_args, start_timeout_from_env, tail};
use crate::target::Kind;

/// One `bramble` process, optionally under strace, in its own process group so that the
/// tracer and the traced server are killed together.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bramble args`, under `strace -e inject=<inject>` if given, logging to `log`.
    pub fn spawn(args: &[String], inject: Option<&str>, log: &Path) -> Proc {
        Proc::spawn_kind(Kind::Bramble, args, inject, log)
    }

    /// [`Proc::spawn`] for a server of `kind` (etcd: the reference).
    pub fn spawn_kind(kind: Kind, args: &[String], inject: Option<&str>, log: &Path) -> Proc {
        let bin = kind.binary();
        let mut cmd = match inject {
            Some(inject) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync"])
                    .args(["-e", &format!("inject={inject}")])
                    .arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        process::server_command(cmd.args(args), log).process_group(0);
        let child = cmd.spawn().expect("spawn bramble (and strace)");
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Everything the process (and strace) wrote.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The process id (strace's, when traced).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// The exit status, if the process ended within `bound`.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `endpoint` serves a read (serializable: a follower needs no quorum).
    pub fn wait_serving(&mut self, endpoint: &str) {
        self.wait_serving_to(&Etcdctl::new(endpoint))
    }

    /// Waits until `ctl`'s endpoint serves `ctl` a read.
    pub fn wait_serving_to(&mut self, ctl: &Etcdctl) {
        let deadline = Instant::now() + start_timeout_from_env();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "bramble exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bramble did not serve in time:\n{}",
                tail(&self.log(), 40)
            );
            let probe = ctl.run(&[
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "get",
                "--consistency=s",
                "probe",
            ]);
            if probe.code == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The whole group: strace and the server it traces.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The ports and data dir of a one-member cluster, and its etcd command line.
pub struct Single {
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
    metrics: u16,
}

impl Single {
    /// Free ports and a fresh temp dir (the data dir is not created).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Single {
        Single {
            dir: temp::dir("bramble-disk-faults-"),
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
        }
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// A path in the temp dir, beside the data dir (logs, copies).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `--listen-metrics-urls` port (`/health`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics
    }

    /// etcd's command line for this member.
    pub fn args(&self) -> Vec<String> {
        let mut args = single_member_args(&self.data_dir(), self.client, self.peer);
        args.push(format!(
            "--listen-metrics-urls=http://127.0.0.1:{}",
            self.metrics
        ));
        args
    }
}

/// One answer of the liveness probe: when it was asked, and whether it said healthy
/// (`None`: no answer, e.g. the process is gone).
pub type ProbeRecord = (Instant, Option<bool>);

/// Polls `/health?serializable=true` (kubeadm's liveness probe) in the background.
pub struct HealthProbe {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<ProbeRecord>>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthProbe {
    /// Starts polling the metrics port `port`.
    pub fn start(port: u16) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let answer = serializable_health(port);
                    records.lock().expect("records").push((asked, answer));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        HealthProbe {
            stop,
            records,
            thread: Some(thread),
        }
    }

    /// Stops polling; every answer, oldest first.
    pub fn finish(mut self) -> Vec<ProbeRecord> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("probe thread");
        }
        std::mem::take(&mut *self.records.lock().expect("records"))
    }
}

/// `GET /health?serializable=true`: `Some(healthy)`, or `None` without an answer.
pub(crate) fn serializable_health(port: u16) -> Option<bool> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET /health?serializable=true HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    Some(body.contains("\"health\":\"true\""))
}

/// strace attached to a running process (all its threads), failing every fdatasync and
/// fsync of one file from now on.
pub struct Tracer {
    child: Child,
}

impl Tracer {
    /// Attaches to `pid`; returns once strace traces it. strace's messages go to `log`.
    pub fn attach(pid: u32, file: &Path, log: &Path) -> Tracer {
        let out = File::create(log).expect("create strace log");
        let child = Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-p", &pid.to_string(), "-P"])
            .arg(file)
            .args(["-e", "trace=fdatasync,fsync"])
            .args(["-e", "inject=fdatasync,fsync:error=EIO"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn strace");
        // strace says "Process N attached" once it traces the process.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("attached")
        {
            assert!(Instant::now() < deadline, "strace did not attach to {pid}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tracer { child }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
