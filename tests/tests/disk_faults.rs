//! A member whose disk fails must stop, loudly, and never lie meanwhile (issue 7, defects 3
//! and 5): real `bramble` processes, real faults.
//!
//! - fdatasync failing with EIO, injected by `strace` into the WAL's writer thread: the
//!   member exits non-zero within seconds with the cause on stderr, `/health?serializable=
//!   true` (kubeadm's liveness probe) never says true after the failure, and every write it
//!   acknowledged is there after a restart without the fault.
//! - The same fault on one follower of three: that follower exits, the cluster keeps serving.
//! - A full disk under the state machine (its directory on a small tmpfs): the redb commit of
//!   an apply fails, the member exits the same way, acknowledged writes survive.
//! - fsync of the database file failing (strace attached with `-P`): the checkpoint of a
//!   stop fails, and the member exits non-zero instead of reporting a clean stop.
//! - `member/wal` deleted: the member refuses to start instead of starting afresh at term 1
//!   with its vote forgotten (it could vote twice in one term), alone and in a cluster.
//!
//! strace counts syscalls per thread ("per syscall and per tracee"), and the WAL's writer is
//! one thread, so `when=N+` fails its N-th fdatasync and every later one, whatever the other
//! threads do. The tmpfs test needs root (mount), as the netns tests do.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bramble_tests::ports::free_port;
use bramble_tests::server::{start_timeout_from_env, tail};
use bramble_tests::{tools, Cluster, Etcdctl, Kind};

/// How long a member may take to exit after its disk failed. The member exits in
/// milliseconds; the margin is for a loaded CI box.
const EXIT_BOUND: Duration = Duration::from_secs(10);
/// The line the member logs once, naming the cause (crates/raft/src/fatal.rs).
const FATAL_LINE: &str = "fatal error, this member stops: ";
/// What a member with a database but no WAL says (crates/raft/src/node.rs).
const WAL_MISSING: &str = "no write-ahead log, but";

/// One `bramble` process, optionally under strace, in its own process group so that the
/// tracer and the traced server are killed together.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bramble args`, under `strace -e inject=<inject>` if given, logging to `log`.
    fn spawn(args: &[String], inject: Option<&str>, log: &Path) -> Proc {
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

    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status, if the process ended within `bound`.
    fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
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
    fn wait_serving(&mut self, endpoint: &str) {
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
struct Single {
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
    metrics: u16,
}

impl Single {
    fn new() -> Single {
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

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self) -> Vec<String> {
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

/// Puts `key` (the value through stdin, as big values do not fit on a command line).
fn put(ctl: &Etcdctl, key: &str, value: &str) -> bool {
    ctl.run_stdin(&["--command-timeout=5s", "put", key], Some(value))
        .code
        == 0
}

/// Asserts every key in `keys` reads back (linearizably) with `value`.
fn assert_all_present(ctl: &Etcdctl, keys: &[String], value: &str) {
    for key in keys {
        let out = ctl.run(&["get", "--print-value-only", key]);
        out.assert_ok();
        assert_eq!(
            out.stdout_str().trim_end(),
            value,
            "acknowledged key {key} is missing or wrong after the restart"
        );
    }
}

/// One answer of the liveness probe: when it was asked, and whether it said healthy
/// (`None`: no answer, e.g. the process is gone).
type ProbeRecord = (Instant, Option<bool>);

/// Polls `/health?serializable=true` (kubeadm's liveness probe) in the background.
struct HealthProbe {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<ProbeRecord>>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthProbe {
    fn start(port: u16) -> HealthProbe {
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

    fn finish(mut self) -> Vec<ProbeRecord> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("probe thread");
        }
        std::mem::take(&mut *self.records.lock().expect("records"))
    }
}

/// `GET /health?serializable=true`: `Some(healthy)`, or `None` without an answer.
fn serializable_health(port: u16) -> Option<bool> {
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

/// Writes `k0, k1, ...` until a put fails; returns the acknowledged keys and when the
/// failure was seen.
fn write_until_failure(
    ctl: &Etcdctl,
    prefix: &str,
    value: &str,
    max: usize,
) -> (Vec<String>, Instant) {
    let mut acked = Vec::new();
    for i in 0..max {
        let key = format!("{prefix}{i:04}");
        if !put(ctl, &key, value) {
            return (acked, Instant::now());
        }
        acked.push(key);
    }
    panic!("all {max} puts succeeded: the injected fault never hit");
}

/// Asserts the process exits non-zero within [`EXIT_BOUND`] of `since`, with the fatal line
/// naming one of `causes` and `detail` in its log; returns how long it took.
fn assert_fatal_exit(p: &mut Proc, since: Instant, causes: &[&str], detail: &str) -> Duration {
    let status = p.wait_exit(EXIT_BOUND.saturating_sub(since.elapsed()));
    let log = p.log();
    let Some(status) = status else {
        panic!(
            "the member is still running {EXIT_BOUND:?} after its disk failed; log:\n{}",
            tail(&log, 30)
        );
    };
    let took = since.elapsed();
    assert!(
        !status.success() && status.signal().is_none(),
        "expected a non-zero exit, got {status}; log:\n{}",
        tail(&log, 30)
    );
    let line = log
        .lines()
        .find(|l| l.contains(FATAL_LINE))
        .unwrap_or_else(|| panic!("no fatal line in the log ({status}):\n{log}"));
    assert!(
        causes.iter().any(|c| line.contains(c)) && line.contains(detail),
        "the fatal line should name one of {causes:?} and {detail:?}: {line}"
    );
    assert_eq!(
        log.matches(FATAL_LINE).count(),
        1,
        "one fatal line, not several:\n{log}"
    );
    took
}

#[test]
fn fdatasync_failure_ends_the_member_and_loses_no_acknowledged_write() {
    let s = Single::new();
    // A fresh member's WAL writer syncs 5 times while it starts (segment, vote, membership,
    // blank entry, publish); then once per write here. The 16th sync and all later fail.
    let mut p = Proc::spawn(
        &s.args(),
        Some("fdatasync:error=EIO:when=16+"),
        &s.log("faulty.log"),
    );
    p.wait_serving(&s.endpoint());
    let probe = HealthProbe::start(s.metrics);
    let ctl = Etcdctl::new(s.endpoint());
    let (acked, failed_at) = write_until_failure(&ctl, "k", "v", 100);
    assert!(!acked.is_empty(), "no write succeeded before the fault");
    let took = assert_fatal_exit(&mut p, failed_at, &["write-ahead log failed"], "fdatasync");
    let records = probe.finish();
    assert!(
        records.iter().any(|(_, a)| *a == Some(true)),
        "the probe never saw the member healthy before the fault: it proves nothing"
    );
    let lies: Vec<_> = records
        .iter()
        .filter(|(asked, a)| *asked >= failed_at && *a == Some(true))
        .collect();
    assert!(
        lies.is_empty(),
        "/health?serializable=true said true {} times after a write failed",
        lies.len()
    );
    eprintln!(
        "{} writes acknowledged; exited {took:?} after the failed write",
        acked.len()
    );
    drop(p);

    // Without the fault: everything acknowledged is there.
    let mut p = Proc::spawn(&s.args(), None, &s.log("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &acked, "v");
}

#[test]
fn a_follower_whose_disk_fails_exits_and_the_cluster_keeps_serving() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "before", "v"), "first put");

    // Restart the follower with a disk whose fdatasync fails from the WAL writer's 10th call
    // on (its restart needs a few: the vote, the entries it missed).
    let args = cluster.member(f).args().to_vec();
    let endpoint = cluster.member(f).endpoint();
    cluster.member_mut(f).kill9();
    let log = cluster.member(f).data_dir().with_file_name("faulty.log");
    let mut p = Proc::spawn(&args, Some("fdatasync:error=EIO:when=10+"), &log);
    p.wait_serving(&endpoint);

    // Every write goes on succeeding on the majority, while the follower fails and exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let since = loop {
        let key = format!("during{i:04}");
        assert!(
            put(&ctl, &key, "v"),
            "write {key} failed with one follower down"
        );
        i += 1;
        if p.child.try_wait().expect("try_wait").is_some() {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the follower is still running after {i} writes with its fdatasync failing; log:\n{}",
            tail(&p.log(), 30)
        );
    };
    assert_fatal_exit(&mut p, since, &["write-ahead log failed"], "fdatasync");
    for j in 0..5 {
        assert!(
            put(&ctl, &format!("after{j}"), "v"),
            "write after the follower exited"
        );
    }
    let out = ctl.run(&["get", "--print-value-only", "after4"]);
    out.assert_ok();
    assert_eq!(out.stdout_str().trim_end(), "v");
}

/// A tmpfs mounted over a directory for the life of the value.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
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
    fn unmount_keeping_files(self, scratch: &Path) {
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

#[test]
fn a_full_disk_under_the_state_machine_ends_the_member() {
    let s = Single::new();
    // The WAL stays on the real disk; the state machine (member/snap) gets 6 MiB.
    let disk = SmallDisk::mount(&s.data_dir().join("member").join("snap"), "6m");
    let mut p = Proc::spawn(&s.args(), None, &s.log("full.log"));
    p.wait_serving(&s.endpoint());
    let probe = HealthProbe::start(s.metrics);
    let ctl = Etcdctl::new(s.endpoint());
    let value = "x".repeat(700_000);
    let (acked, failed_at) = write_until_failure(&ctl, "big", &value, 40);
    assert!(
        !acked.is_empty(),
        "no write succeeded before the disk filled"
    );
    // Usually an apply's commit fails; a periodic checkpoint may get there first.
    let took = assert_fatal_exit(
        &mut p,
        failed_at,
        &[
            "applying to the state machine failed",
            "state machine checkpoint failed",
        ],
        "No space left on device",
    );
    let records = probe.finish();
    assert!(
        records.iter().any(|(_, a)| *a == Some(true)),
        "the probe never saw the member healthy"
    );
    assert!(
        !records
            .iter()
            .any(|(asked, a)| *asked >= failed_at && *a == Some(true)),
        "/health?serializable=true said true after a write failed"
    );
    eprintln!(
        "{} writes acknowledged; exited {took:?} after the failed write",
        acked.len()
    );
    drop(p);

    // Space freed: the acknowledged writes are all there (replayed from the WAL).
    disk.unmount_keeping_files(&s.dir.path().join("snap-copy"));
    let mut p = Proc::spawn(&s.args(), None, &s.log("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &acked, &value);
}

/// strace attached to a running process (all its threads), failing every fdatasync and
/// fsync of one file from now on.
struct Tracer {
    child: Child,
}

impl Tracer {
    fn attach(pid: u32, file: &Path, log: &Path) -> Tracer {
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

#[test]
fn a_failing_checkpoint_commit_exits_non_zero() {
    let s = Single::new();
    let mut p = Proc::spawn(&s.args(), None, &s.log("server.log"));
    p.wait_serving(&s.endpoint());
    let ctl = Etcdctl::new(s.endpoint());
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert!(put(&ctl, k, "v"), "put {k}");
    }
    // Every sync of the database file fails from now on. The stop's last checkpoint (a
    // durable redb commit) hits it: a member must not report a clean stop then.
    let db = s.data_dir().join("member").join("snap").join("db");
    let tracer = Tracer::attach(p.child.id(), &db, &s.log("strace.log"));
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert_fatal_exit(
        &mut p,
        Instant::now(),
        &["state machine checkpoint failed"],
        "Input/output error",
    );
    drop(tracer);
    drop(p);

    // The WAL has every acknowledged write: a restart replays them.
    let mut p = Proc::spawn(&s.args(), None, &s.log("restart.log"));
    p.wait_serving(&s.endpoint());
    assert_all_present(&ctl, &keys, "v");
}

/// Deletes a member's `member/wal`.
fn delete_wal(data_dir: &Path) {
    let wal = data_dir.join("member").join("wal");
    assert!(wal.is_dir(), "{} should exist", wal.display());
    std::fs::remove_dir_all(&wal).expect("delete member/wal");
}

#[test]
fn a_member_without_its_wal_refuses_to_start() {
    let s = Single::new();
    let mut p = Proc::spawn(&s.args(), None, &s.log("first.log"));
    p.wait_serving(&s.endpoint());
    assert!(put(&Etcdctl::new(s.endpoint()), "k", "v"));
    drop(p);
    delete_wal(&s.data_dir());

    let mut p = Proc::spawn(&s.args(), None, &s.log("no-wal.log"));
    let status = p
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("started without its WAL:\n{}", tail(&p.log(), 20)));
    assert!(!status.success(), "exit status {status}");
    let log = p.log();
    assert!(
        log.contains(WAL_MISSING) && log.contains("member/wal"),
        "the refusal should say the WAL is missing:\n{log}"
    );
    // It did not recreate an empty WAL on the way out.
    assert!(!s.data_dir().join("member").join("wal").exists());
}

#[test]
fn a_cluster_member_without_its_wal_refuses_to_start_and_the_cluster_goes_on() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "k", "v"));
    cluster.member_mut(f).sigterm();
    delete_wal(&cluster.member(f).data_dir());
    cluster.member_mut(f).respawn();
    let status = cluster
        .member_mut(f)
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "started without its WAL:\n{}",
                tail(&cluster.member(f).log(), 20)
            )
        });
    assert!(!status.success(), "exit status {status}");
    let log = cluster.member(f).log();
    assert!(
        log.contains(WAL_MISSING),
        "the refusal should say the WAL is missing:\n{log}"
    );
    assert!(put(&ctl, "k2", "v2"), "the other two go on serving");
}

#[test]
fn a_cluster_member_that_lost_its_wal_and_database_refuses_to_bootstrap_again() {
    let mut cluster = Cluster::start(Kind::Bramble, 3);
    let leader = cluster.leader();
    let f = (leader + 1) % 3;
    let ctl = cluster.member(leader).etcdctl();
    assert!(put(&ctl, "k", "v"));
    cluster.member_mut(f).sigterm();
    // Its identity file survives, its raft state does not: as etcd, it asks its peers and
    // learns it was bootstrapped before.
    let data = cluster.member(f).data_dir();
    delete_wal(&data);
    std::fs::remove_dir_all(data.join("member").join("snap")).expect("delete member/snap");
    cluster.member_mut(f).respawn();
    let status = cluster
        .member_mut(f)
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "bootstrapped again without its WAL:\n{}",
                tail(&cluster.member(f).log(), 20)
            )
        });
    assert!(!status.success(), "exit status {status}");
    let log = cluster.member(f).log();
    assert!(
        log.contains("has already been bootstrapped"),
        "the refusal should be etcd's:\n{log}"
    );
    assert!(put(&ctl, "k2", "v2"), "the other two go on serving");
}
