//! Disk faults for end-to-end tests: a `bramble` process under strace fault injection,
//! strace attached to a running one, a small tmpfs for a full disk, and a background
//! liveness probe.
//!
//! strace counts syscalls per thread ("per syscall and per tracee"), and the WAL's writer is
//! one thread, so `inject=fdatasync:error=EIO:when=N+` fails its N-th fdatasync and every
//! later one, whatever the other threads do. Attaching (`strace -p`) starts failing at once;
//! `-P <file>` limits it to one file. Mounting a tmpfs needs root, as [`crate::netns`] does.

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

use crate::etcdctl::Etcdctl;
use crate::ports::free_port;
use crate::server::{start_timeout_from_env, tail};
use crate::tools;

/// One `bramble` process, optionally under strace, in its own process group so that the
/// tracer and the traced server are killed together.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bramble args`, under `strace -e inject=<inject>` if given, logging to `log`.
    pub fn spawn(args: &[String], inject: Option<&str>, log: &Path) -> Proc {
        let out = File::create(log).expect("create log file");
        let bin = tools::bramble_bin();
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
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log file"))
            .stderr(out)
            .process_group(0);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(name);
            }
        }
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
        let deadline = Instant::now() + start_timeout_from_env();
        let ctl = Etcdctl::new(endpoint);
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
            dir: tempfile::Builder::new()
                .prefix("bramble-disk-faults-")
                .tempdir()
                .expect("temp dir"),
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
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        vec![
            "--name=default".into(),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            "--initial-cluster-state=new".into(),
            format!("--listen-metrics-urls=http://127.0.0.1:{}", self.metrics),
        ]
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
pub fn serializable_health(port: u16) -> Option<bool> {
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

/// A tmpfs mounted over a directory for the life of the value.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. `6m`) on `path`; panics without root.
    pub fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("create mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed: this test needs root (as the netns tests)",
            path.display()
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Moves the contents to the disk underneath, as an operator freeing space would.
    pub fn unmount_keeping_files(self, scratch: &Path) {
        copy_dir(&self.path, scratch);
        let path = self.path.clone();
        drop(self);
        copy_dir(scratch, &path);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Copies the files of `from` (not recursive) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
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
