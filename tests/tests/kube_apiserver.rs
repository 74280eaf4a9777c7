//! A real kube-apiserver (k8s.io/kubernetes v1.37.2, built by `scripts/kube-apiserver-build`)
//! on a 3-member cluster, etcd 3.6 (the reference) and then Bramble, over mutual TLS with
//! kubeadm's certificates: the apiserver presents `apiserver-etcd-client.crt`, the members
//! require a client certificate signed by the etcd CA.
//!
//! For each kind, a client-go workload (tests/k8s/apiserver/cmd/workload):
//!
//! 1. `basic`: namespaces, ConfigMaps, Secrets, Deployments, a CRD and custom objects;
//!    updates with a stale resourceVersion get 409 Conflict and a retry succeeds; paged
//!    lists return every object once, at one resourceVersion; a watch from a
//!    resourceVersion with bookmarks sees the updates in order, then a bookmark.
//! 2. `churn`: 10,000 ConfigMaps created, updated and listed by 16 clients while a watch
//!    sees every event in order; latency percentiles per operation.
//! 3. `writer`, in the background, while the test kills -9 the cluster's leader (the
//!    apiserver must keep serving; writes may fail for a moment), then kills every member,
//!    keeps them down for a few seconds and starts them again under the running apiserver,
//!    which must recover on its own.
//! 4. `verify`: every write acknowledged in 1-3 is still there (a GET of each, and a paged
//!    list of each collection), deleted objects stay deleted.
//!
//! Then the numbers of both kinds side by side, and the apiserver's warnings and errors
//! (its logs are kept as `target/k8s/kube-apiserver-<kind>.log`). Ignored by default: the
//! first run builds kube-apiserver (about 5 minutes on 2 cores), then a run takes about 3
//! minutes. etcd is an optimized Go build, so compare with a release Bramble:
//!
//! ```sh
//! cargo build --release --bin bramble
//! BRAMBLE_BIN=$PWD/target/release/bramble \
//!     cargo test -p bramble-tests --test kube_apiserver -- --ignored --nocapture
//! ```
//!
//! `KUBE_APISERVER_CHURN=N` changes the churn's size (default 10000);
//! `BRAMBLE_E2E_ONLY_ETCD=1` runs the etcd half alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bramble_tests::target::differential_targets;
use bramble_tests::tools::built_by;
use bramble_tests::Kind;
use serde_json::Value;

#[path = "kube_apiserver/cluster.rs"]
mod cluster;
use cluster::{start_cluster, ApiServer, Pki};

/// The admin's bearer token (`--token-auth-file`, group `system:masters`).
const TOKEN: &str = "bramble-admin-token";
/// How long the apiserver may take to become ready, at start and after the faults.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long all members stay down in the whole-cluster restart.
const ALL_DOWN: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

/// The workload binary bound to one apiserver.
struct Workload {
    binary: PathBuf,
    base: Vec<String>,
}

impl Workload {
    fn new(binary: PathBuf, api: &ApiServer, run_id: &str) -> Workload {
        let base = vec![
            format!("-server={}", api.url),
            format!("-token={TOKEN}"),
            format!("-ca={}", api.ca.display()),
            format!("-run={run_id}"),
        ];
        Workload { binary, base }
    }

    fn command(&self, ledger: &str, phase: &str, extra: &[String]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.base)
            .arg(format!("-ledger={ledger}"))
            .args(extra)
            .arg(phase);
        cmd
    }

    /// Runs a phase to completion: asserts that it exited 0 and every check passed, and
    /// returns its result object.
    fn phase(&self, kind: Kind, ledger: &str, phase: &str, extra: &[String]) -> Value {
        let out = self
            .command(ledger, phase, extra)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result = checked(kind, phase, &stdout);
        assert!(
            out.status.success(),
            "{kind}: workload {phase} exited with {}:\n{stdout}",
            out.status
        );
        result
    }
}

/// Prints the checks of a phase's output, fails on any failed one, returns the result line.
fn checked(kind: Kind, phase: &str, stdout: &str) -> Value {
    let mut result = None;
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{kind}: workload {phase} printed {line:?}: {e}"));
        if let Some(name) = v.get("check").and_then(Value::as_str) {
            let ok = v.get("ok").and_then(Value::as_bool) == Some(true);
            let detail = v.get("detail").and_then(Value::as_str).unwrap_or_default();
            println!(
                "[{kind}] {phase} {name}: {} {detail}",
                if ok { "ok" } else { "FAILED" }
            );
            assert!(ok, "{kind}: workload {phase}: {name} failed: {detail}");
        } else if let Some(r) = v.get("result") {
            result = Some(r.clone());
        }
    }
    result.unwrap_or_else(|| panic!("{kind}: workload {phase} printed no result:\n{stdout}"))
}

/// The acknowledged writes in a writer's ledger, as (sent, acknowledged) unix ms: lines
/// whose value is known (min == max >= 0), in file order.
fn acks(ledger: &Path) -> Vec<(i64, i64)> {
    let text = fs::read_to_string(ledger).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            let min = v.get("min").and_then(Value::as_i64).unwrap_or(0);
            let max = v.get("max").and_then(Value::as_i64).unwrap_or(0);
            min == max && min >= 0
        })
        .filter_map(|v| {
            let acked = v.get("t_ms").and_then(Value::as_i64)?;
            Some((v.get("sent_ms").and_then(Value::as_i64)?, acked))
        })
        .collect()
}

/// How the writer came through a fault at `at_ms` (unix ms).
#[derive(Default, Clone, Copy)]
struct Outage {
    /// The first write acknowledged after the fault (possibly sent before it).
    first_ack: Duration,
    /// The first write sent after the fault and acknowledged: from then on the apiserver
    /// takes writes again, whatever happened to the ones in flight.
    first_new_ack: Duration,
    /// The longest gap between acknowledged writes around the fault.
    longest_gap: Duration,
}

/// Waits until the writer has a write both sent and acknowledged after `at_ms`; panics
/// after `timeout`.
fn wait_writes_after(ledger: &Path, at_ms: i64, timeout: Duration, what: &str) -> Outage {
    let deadline = Instant::now() + timeout;
    let since = |t: i64| Duration::from_millis(u64::try_from(t - at_ms).unwrap_or(0));
    loop {
        let all = acks(ledger);
        if let Some(&(_, new)) = all.iter().find(|(sent, _)| *sent > at_ms) {
            let mut times: Vec<i64> = all.iter().map(|&(_, acked)| acked).collect();
            times.sort_unstable();
            let first = times.iter().find(|&&t| t > at_ms).copied().unwrap_or(new);
            let gap = times
                .windows(2)
                .filter(|w| w[1] > at_ms && w[0] <= new)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or(0);
            return Outage {
                first_ack: since(first),
                first_new_ack: since(new),
                longest_gap: Duration::from_millis(u64::try_from(gap).unwrap_or(0)),
            };
        }
        assert!(
            Instant::now() < deadline,
            "no write sent after {what} was acknowledged within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A member's last 15 warnings and errors (Bramble's tracing levels, etcd's JSON ones).
fn member_errors(log: &str) -> Vec<String> {
    let all: Vec<String> = log
        .lines()
        .filter(|l| {
            l.contains(" ERROR ")
                || l.contains(" WARN ")
                || l.contains("\"level\":\"error\"")
                || l.contains("\"level\":\"warn\"")
        })
        .map(|l| l.chars().take(300).collect())
        .collect();
    all[all.len().saturating_sub(15)..].to_vec()
}

/// What one kind measured.
#[derive(Default)]
struct Report {
    start_to_ready: Duration,
    churn: Value,
    kill_leader: Outage,
    restart_readyz: Duration,
    restart: Outage,
    restart_gap: Duration,
    writer: Value,
    verify: Value,
    warnings: BTreeMap<String, usize>,
    total: Duration,
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The apiserver's warnings and errors, grouped by message (klog lines:
/// `W1205 18:00:00.123456   123 file.go:12] message`, the source file kept), with the
/// numbers masked.
fn apiserver_warnings(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let level = line.chars().next();
        if !matches!(level, Some('W' | 'E')) {
            continue;
        }
        let message = line.split_once(' ').map(|(_, m)| m).unwrap_or(line);
        let message = message.split_once(' ').map(|(_, m)| m).unwrap_or(message);
        let message = message.trim_start();
        let message = message.split_once(' ').map(|(_, m)| m).unwrap_or(message);
        let mut masked = String::new();
        let mut prev_digit = false;
        for c in message.chars().take(160) {
            if c.is_ascii_digit() {
                if !prev_digit {
                    masked.push('N');
                }
                prev_digit = true;
            } else {
                masked.push(c);
                prev_digit = false;
            }
        }
        let key = format!("{} {masked}", level.unwrap_or(' '));
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn scenario(kind: Kind, kube_apiserver: &Path, workload: &Path, churn: usize) -> Report {
    let begin = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let (mut cluster, https) = start_cluster(kind, &pki);
    println!("[{kind}] cluster over mutual TLS: {}", https.join(","));

    let (mut api, start_to_ready) =
        ApiServer::start(kind, kube_apiserver, dir.path(), &pki, &https);
    println!("[{kind}] kube-apiserver ready in {}", ms(start_to_ready));
    let wl = Workload::new(workload.to_path_buf(), &api, "r1");
    let ledger = |name: &str| dir.path().join(name).display().to_string();

    wl.phase(kind, &ledger("basic.jsonl"), "basic", &[]);
    let churn_result = wl.phase(
        kind,
        &ledger("churn.jsonl"),
        "churn",
        &[format!("-n={churn}"), "-workers=16".to_string()],
    );
    println!("[{kind}] churn: {churn_result}");

    // The writer, in the background, through both faults.
    let writer_ledger = dir.path().join("writer.jsonl");
    let stop = dir.path().join("writer.stop");
    let mut writer = wl
        .command(
            &writer_ledger.display().to_string(),
            "writer",
            &[
                "-workers=4".to_string(),
                format!("-stop={}", stop.display()),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let writer_out = writer.stdout.take().expect("writer stdout");
    let writer_lines = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(writer_out).lines() {
            let line = line.expect("read the writer's output");
            println!("[{kind}] writer {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let warm = now_ms();
    wait_writes_after(
        &writer_ledger,
        warm,
        Duration::from_secs(30),
        "the writer started",
    );
    std::thread::sleep(Duration::from_secs(2));

    // kill -9 the leader; the apiserver keeps serving from the other two.
    let leader = cluster.leader();
    let killed = now_ms();
    cluster.member_mut(leader).kill9();
    println!("[{kind}] killed the leader, member {leader}");
    // Writes go on: a write sent after the kill is acknowledged (the ones in flight may
    // fail, or wait for their timeout).
    let kill_leader = wait_writes_after(
        &writer_ledger,
        killed,
        Duration::from_secs(60),
        "the leader was killed",
    );
    cluster.wait_for_new_leader(leader, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    api.assert_running();
    let status = api.get_status("/readyz");
    assert_eq!(
        status,
        200,
        "{kind}: /readyz with one member down:\n{}",
        api.get_body("/readyz?verbose")
    );
    cluster.member_mut(leader).restart();
    for i in (0..cluster.len()).filter(|&i| i != leader) {
        for line in member_errors(&cluster.member(i).log()) {
            println!("[{kind}] member {i} after the leader's kill: {line}");
        }
    }
    println!(
        "[{kind}] leader kill: first ack after {}, first ack of a write sent after it {}, longest gap {}",
        ms(kill_leader.first_ack),
        ms(kill_leader.first_new_ack),
        ms(kill_leader.longest_gap)
    );
    std::thread::sleep(Duration::from_secs(2));

    // The whole cluster down, then up again under the running apiserver.
    let down = now_ms();
    for i in 0..cluster.len() {
        cluster.member_mut(i).kill9();
    }
    std::thread::sleep(ALL_DOWN);
    api.assert_running();
    let readyz_down = api.get_status("/readyz");
    println!("[{kind}] all members down for {ALL_DOWN:?}: /readyz {readyz_down}");
    let up = now_ms();
    let up_at = Instant::now();
    for i in 0..cluster.len() {
        cluster.member_mut(i).respawn();
    }
    cluster.wait_ready();
    let restart = wait_writes_after(
        &writer_ledger,
        up,
        READY_TIMEOUT,
        "the whole cluster restarted",
    );
    if let Err(e) = api.wait_ready(READY_TIMEOUT) {
        panic!(
            "{kind}: kube-apiserver did not recover after the whole-cluster restart: {e}\n{}",
            api.log_tail(40)
        );
    }
    let restart_readyz = up_at.elapsed();
    let restart_gap =
        wait_writes_after(&writer_ledger, down, READY_TIMEOUT, "the restart").longest_gap;
    println!(
        "[{kind}] whole restart: first ack {} after the start, first ack of a write sent after it {}, /readyz 200 after {}, writer gap {}",
        ms(restart.first_ack),
        ms(restart.first_new_ack),
        ms(restart_readyz),
        ms(restart_gap)
    );

    // More writes after recovery, then stop the writer.
    let recovered = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    wait_writes_after(
        &writer_ledger,
        recovered,
        Duration::from_secs(30),
        "recovery",
    );
    fs::write(&stop, "").expect("write the stop file");
    let status = writer.wait().expect("wait for the writer");
    let writer_stdout = writer_lines.join().expect("the writer's output");
    let writer_result = checked(kind, "writer", &writer_stdout);
    assert!(status.success(), "{kind}: the writer exited with {status}");

    // Nothing acknowledged was lost.
    let ledgers = [
        ledger("basic.jsonl"),
        ledger("churn.jsonl"),
        writer_ledger.display().to_string(),
    ]
    .join(",");
    let verify = wl.phase(kind, &ledgers, "verify", &[]);
    assert_eq!(
        verify.get("lost").and_then(Value::as_i64),
        Some(0),
        "{kind}: {verify}"
    );
    api.assert_running();
    let warnings = apiserver_warnings(&api.log());
    Report {
        start_to_ready,
        churn: churn_result,
        kill_leader,
        restart_readyz,
        restart,
        restart_gap,
        writer: writer_result,
        verify,
        warnings,
        total: begin.elapsed(),
    }
}

/// The side-by-side table (Markdown) of the kinds' reports.
fn table(reports: &[(Kind, Report)]) -> String {
    let mut out = String::new();
    let header: Vec<String> = reports.iter().map(|(k, _)| k.to_string()).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(reports.len()));
    let mut row = |name: &str, f: &dyn Fn(&Report) -> String| {
        let cells: Vec<String> = reports.iter().map(|(_, r)| f(r)).collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    };
    row("apiserver start to /readyz 200", &|r| ms(r.start_to_ready));
    let num = |v: &Value, path: &[&str]| {
        let mut cur = v;
        for p in path {
            cur = cur.get(*p).unwrap_or(&Value::Null);
        }
        cur.as_f64()
            .map(|f| format!("{f:.1}"))
            .unwrap_or("-".into())
    };
    row("churn total (ms)", &|r| num(&r.churn, &["total_ms"]));
    for op in [
        "create",
        "update",
        "list_page_500",
        "list_full",
        "watch_delivery",
    ] {
        row(&format!("churn {op} p50 / p99 (ms)"), &|r| {
            format!(
                "{} / {}",
                num(&r.churn, &["ops", op, "p50_ms"]),
                num(&r.churn, &["ops", op, "p99_ms"])
            )
        });
    }
    row("kill -9 leader: first write acked after", &|r| {
        ms(r.kill_leader.first_ack)
    });
    row(
        "kill -9 leader: first write sent after it acked after",
        &|r| ms(r.kill_leader.first_new_ack),
    );
    row("kill -9 leader: longest gap between acks", &|r| {
        ms(r.kill_leader.longest_gap)
    });
    row("whole restart: first write acked after start", &|r| {
        ms(r.restart.first_ack)
    });
    row(
        "whole restart: first write sent after start acked after",
        &|r| ms(r.restart.first_new_ack),
    );
    row("whole restart: /readyz 200 after start", &|r| {
        ms(r.restart_readyz)
    });
    row(
        &format!("whole restart: writer gap (incl. {ALL_DOWN:?} down)"),
        &|r| ms(r.restart_gap),
    );
    row("writer: acked / failed attempts", &|r| {
        format!(
            "{} / {}",
            num(&r.writer, &["acked"]),
            num(&r.writer, &["failures"])
        )
    });
    row("verify: objects checked / lost", &|r| {
        format!(
            "{} / {}",
            num(&r.verify, &["objects"]),
            num(&r.verify, &["lost"])
        )
    });
    row("scenario time", &|r| ms(r.total));
    out
}

#[test]
#[ignore = "builds kube-apiserver (about 5 minutes cold), then runs about 3 minutes: see the module docs"]
fn kube_apiserver_on_a_cluster() {
    let churn: usize = std::env::var("KUBE_APISERVER_CHURN")
        .ok()
        .map(|v| v.parse().expect("KUBE_APISERVER_CHURN is a number"))
        .unwrap_or(10_000);
    let workload = built_by("scripts/kube-apiserver-build", &["workload"]);
    let kube_apiserver = built_by("scripts/kube-apiserver-build", &["kube-apiserver"]);
    let mut reports = Vec::new();
    for kind in differential_targets() {
        let report = scenario(kind, &kube_apiserver, &workload, churn);
        println!("[{kind}] kube-apiserver's warnings and errors (the log is in target/k8s):");
        for (line, count) in &report.warnings {
            println!("[{kind}]   {count:>4} x {line}");
        }
        reports.push((kind, report));
        println!("{}", table(&reports));
    }
}
