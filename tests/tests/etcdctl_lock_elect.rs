//! `etcdctl lock` and `etcdctl elect` (etcdctl's client-side recipes: lease + txn + watch)
//! on a fresh etcd and a fresh Bramble, outputs compared after normalization.
//!
//! Each etcdctl process grants its own lease, so the `<name>/<lease hex>` keys differ between
//! servers: every 16-hex-digit lease id is replaced by `<L1>`, `<L2>`, ... in order of first
//! appearance. Revisions are the same on both servers and are kept.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_testkit::{process, temp};
use bramble_tests::background::Background;
use bramble_tests::target::{self, Kind};
use bramble_tests::{tools, Server};

/// Replaces lease ids (16 lowercase hex digits after a `/`) by `<Ln>` in order of appearance.
fn mask_leases(text: &str, seen: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        if n >= 12 {
            let id = rest[..n].to_string();
            let pos = match seen.iter().position(|s| *s == id) {
                Some(p) => p,
                None => {
                    seen.push(id);
                    seen.len() - 1
                }
            };
            out.push_str(&format!("<L{}>", pos + 1));
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

/// An etcdctl started directly (so the test can interrupt it as a user would with ^C).
struct Interruptible {
    child: Child,
    dir: tempfile::TempDir,
}

impl Interruptible {
    fn start(endpoint: &str, args: &[&str]) -> Interruptible {
        let dir = temp::dir("bramble-etcdctl-");
        let out = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let mut cmd = Command::new(tools::etcdctl_bin());
        let child = process::remove_env_prefixed(&mut cmd, process::ETCDCTL_ENV_PREFIX)
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl");
        Interruptible { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stdout().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGINT (etcdctl resigns / unlocks on it), then waits for the exit.
    fn interrupt(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout()
    }
}

/// Two `lock` contenders: the second runs its command only after the first's command ended.
fn lock_transcript(kind: Kind) -> Vec<String> {
    let server = Server::start(kind);
    let endpoint = server.endpoint();
    let ctl = server.etcdctl();
    let mut lines = Vec::new();
    let first = Background::start(
        &endpoint,
        &[
            "lock",
            "job",
            "--",
            "sh",
            "-c",
            "echo first $ETCD_LOCK_KEY $ETCD_LOCK_REV; sleep 1; echo first done",
        ],
    );
    assert!(
        first.wait_for("first ", 1, Duration::from_secs(10)),
        "{kind:?}: first locker never got the lock"
    );
    let second = ctl.run(&[
        "lock",
        "job",
        "--",
        "sh",
        "-c",
        "echo second $ETCD_LOCK_KEY $ETCD_LOCK_REV",
    ]);
    let first_out = first.stdout();
    assert!(
        first_out.contains("first done"),
        "{kind:?}: the second locker ran while the first held the lock: {first_out:?}"
    );
    lines.push(format!(
        "first finished before second got the lock: {}",
        first_out.contains("first done")
    ));
    lines.push(format!("first: {first_out}"));
    lines.push(format!(
        "second: {} (exit {})",
        second.stdout_str(),
        second.code
    ));
    let _ = first.finish();
    let left = ctl.run(&["get", "--prefix", "job/", "--keys-only"]);
    lines.push(format!("keys left: {:?}", left.stdout_str()));
    lines
}

/// A candidate, an observer (`elect -l`), a second candidate that waits, then the first
/// resigns (^C) and the second leads.
fn elect_transcript(kind: Kind) -> Vec<String> {
    let server = Server::start(kind);
    let endpoint = server.endpoint();
    let mut lines = Vec::new();
    let observer = Background::start(&endpoint, &["elect", "-l", "pool"]);
    let first = Interruptible::start(&endpoint, &["elect", "pool", "alpha"]);
    assert!(
        first.wait_for("alpha", Duration::from_secs(10)),
        "{kind:?}: first candidate never led"
    );
    assert!(
        observer.wait_for("alpha", 1, Duration::from_secs(10)),
        "{kind:?}: observer never saw alpha"
    );
    let second = Interruptible::start(&endpoint, &["elect", "pool", "beta"]);
    std::thread::sleep(Duration::from_millis(500));
    lines.push(format!("second while first leads: {:?}", second.stdout()));
    lines.push(format!("first: {:?}", first.interrupt()));
    assert!(
        second.wait_for("beta", Duration::from_secs(10)),
        "{kind:?}: second candidate never led"
    );
    assert!(
        observer.wait_for("beta", 1, Duration::from_secs(10)),
        "{kind:?}: observer never saw beta"
    );
    lines.push(format!("second: {:?}", second.interrupt()));
    std::thread::sleep(Duration::from_millis(300));
    lines.push(format!("observer: {:?}", observer.finish().stdout_str()));
    let left = server
        .etcdctl()
        .run(&["get", "--prefix", "pool/", "--keys-only"]);
    lines.push(format!("keys left: {:?}", left.stdout_str()));
    lines
}

fn compare(name: &str, transcript: fn(Kind) -> Vec<String>) {
    let mut results: Vec<(Kind, Vec<String>)> = Vec::new();
    for kind in target::differential_targets() {
        let mut seen = Vec::new();
        let lines = transcript(kind)
            .iter()
            .map(|l| mask_leases(l, &mut seen))
            .collect();
        results.push((kind, lines));
    }
    if std::env::var_os("BRAMBLE_E2E_VERBOSE").is_some() {
        for (kind, lines) in &results {
            eprintln!("{name} on {kind:?}:\n  {}", lines.join("\n  "));
        }
    }
    if let [(k0, a), rest @ ..] = results.as_slice() {
        for (k, b) in rest {
            assert_eq!(a, b, "{name}: {k0:?} and {k:?} differ");
        }
    }
}

#[test]
fn lock_second_contender_waits() {
    compare("etcdctl lock", lock_transcript);
}

#[test]
fn elect_with_observer() {
    compare("etcdctl elect", elect_transcript);
}
