//! kube-apiserver's own storage conformance tests against etcd 3.6 and Bramble.
//!
//! The Go module in `tests/k8s/storage` runs the generic tests of `k8s.io/apiserver`
//! (`pkg/storage/testing`, the `RunTest*` functions) on kube-apiserver's etcd3 store and on
//! its watch cache, talking to the endpoint in `BRAMBLE_K8S_ETCD_ENDPOINT`.
//! `scripts/k8s-storage-build` builds its test binary once (cached in `target/k8s/`). For each
//! Go test and each server (etcd 3.6.16 built by `scripts/etcd-build`, then `bramble`) this
//! starts a fresh server process, since several tests compact the store or expect it empty,
//! and runs that one test against it. Then: every test that passed on etcd must pass on
//! Bramble, except the named [`KNOWN_DIFFERENCES`] (which must still fail, so the list stays
//! exact). The table of results is printed; docs/kubernetes.md has it with the reasons.
//!
//! CI runs every test (118 Go tests, about 5 min for both servers on 2 cores);
//! `BRAMBLE_K8S_TESTS=<regexp>` runs only the Go tests whose names match (Go's `-test.list`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::server::{Server, ServerConfig};
use bramble_tests::tools;
use bramble_tests::Kind;

/// The variable the Go tests read their endpoint from.
const ENDPOINT_ENV: &str = "BRAMBLE_K8S_ETCD_ENDPOINT";

/// How long one Go test may run (the Go side panics with its goroutines at this point).
const GO_TEST_TIMEOUT: &str = "240s";

/// Go tests that need the server's watch progress notifications every second: upstream sets
/// `WatchProgressNotifyInterval = time.Second` on its embedded etcd for these two.
const PROGRESS_NOTIFY_1S: &[&str] = &[
    "TestStoreWatch_ProgressNotify",
    "TestStoreWatch_WatchDispatchBookmarkEvents",
];

/// Tests that pass on etcd 3.6 and fail on Bramble, each with the reason (docs/kubernetes.md).
/// The run fails when one of these passes on Bramble, so the list stays exact.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// How one Go test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// One Go test on one server.
struct Run {
    outcome: Outcome,
    took: Duration,
    /// The Go test's output, kept for failures.
    output: String,
}

/// A server kind to compare: its label and the binary to start.
struct Target {
    label: &'static str,
    kind: Kind,
    binary: PathBuf,
}

/// The Go tests of the binary, filtered by `BRAMBLE_K8S_TESTS` when set.
fn list_tests(go_test: &Path) -> Vec<String> {
    let filter = std::env::var("BRAMBLE_K8S_TESTS").unwrap_or_else(|_| ".*".to_string());
    let out = Command::new(go_test)
        .args(["-test.list", &filter])
        .output()
        .unwrap_or_else(|e| panic!("run {} -test.list: {e}", go_test.display()));
    assert!(
        out.status.success(),
        "{} -test.list failed",
        go_test.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Test"))
        .map(str::to_string)
        .collect()
}

/// Starts a fresh server of `target` for `test` and runs that one Go test against it.
fn run_one(go_test: &Path, target: &Target, test: &str) -> Run {
    let mut config = ServerConfig {
        binary: Some(target.binary.clone()),
        log_level: "warn".to_string(),
        ..ServerConfig::default()
    };
    if PROGRESS_NOTIFY_1S.contains(&test) {
        config
            .extra_args
            .push("--watch-progress-notify-interval=1s".to_string());
    }
    let server = Server::start_with(target.kind, config);
    let start = Instant::now();
    let out = Command::new(go_test)
        .args([
            "-test.run",
            &format!("^{test}$"),
            "-test.v",
            "-test.timeout",
            GO_TEST_TIMEOUT,
        ])
        .env(ENDPOINT_ENV, server.endpoint())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {test}: {e}", go_test.display()));
    let took = start.elapsed();
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    let outcome = if output.contains(&format!("--- SKIP: {test} ")) {
        Outcome::Skip
    } else if out.status.success() && output.contains(&format!("--- PASS: {test} ")) {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    if outcome == Outcome::Fail {
        output.push_str(&format!(
            "\n[{} log tail]\n{}",
            target.label,
            bramble_tests::server::tail(&server.log(), 30)
        ));
    }
    Run {
        outcome,
        took,
        output,
    }
}

/// The lines of a Go test's output worth showing for a failure: the assertions and results.
fn failure_excerpt(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("---") || t.contains(".go:") || t.starts_with("panic")
        })
        .take(40)
        .collect();
    lines.join("\n")
}

#[test]
fn kube_apiserver_storage_conformance() {
    let go_test = tools::built_by("scripts/k8s-storage-build", &[]);
    let targets = [
        Target {
            label: "etcd 3.6",
            kind: Kind::Etcd,
            binary: tools::etcd_bin(),
        },
        Target {
            label: "bramble",
            kind: Kind::Bramble,
            binary: tools::bramble_bin(),
        },
    ];
    let tests = list_tests(&go_test);
    assert!(!tests.is_empty(), "no Go tests listed");

    let started = Instant::now();
    let mut results: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for test in &tests {
        let runs: Vec<Run> = targets.iter().map(|t| run_one(&go_test, t, test)).collect();
        eprintln!(
            "{test}: {}",
            runs.iter()
                .zip(&targets)
                .map(|(r, t)| format!(
                    "{} {} ({:.1} s)",
                    t.label,
                    r.outcome.label(),
                    r.took.as_secs_f64()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.insert(test, runs);
    }

    // The table (docs/kubernetes.md has the same with the reasons).
    let width = tests.iter().map(String::len).max().unwrap_or(4);
    println!(
        "\n{:width$}  {:>9}  {:>9}",
        "test", targets[0].label, targets[1].label
    );
    for (test, runs) in &results {
        println!(
            "{test:width$}  {:>9}  {:>9}",
            runs[0].outcome.label(),
            runs[1].outcome.label()
        );
    }
    let passed = |i: usize| {
        results
            .values()
            .filter(|r| r[i].outcome == Outcome::Pass)
            .count()
    };
    println!(
        "\n{} tests in {:.0} s: {} passed on {}, {} passed on {}",
        tests.len(),
        started.elapsed().as_secs_f64(),
        passed(0),
        targets[0].label,
        passed(1),
        targets[1].label
    );

    // Every test that passed on etcd passed on Bramble, but for the known differences,
    // which must still differ.
    let mut problems = Vec::new();
    for (test, runs) in &results {
        let known = KNOWN_DIFFERENCES.iter().find(|(name, _)| name == test);
        let differs = runs[0].outcome == Outcome::Pass && runs[1].outcome != Outcome::Pass;
        match (differs, known) {
            (true, None) => problems.push(format!(
                "{test} passed on {} but not on {}:\n{}",
                targets[0].label,
                targets[1].label,
                failure_excerpt(&runs[1].output)
            )),
            (false, Some((_, reason))) => problems.push(format!(
                "{test} is a known difference ({reason}) but now {} on etcd and {} on bramble: \
                 update KNOWN_DIFFERENCES and docs/kubernetes.md",
                runs[0].outcome.label(),
                runs[1].outcome.label()
            )),
            _ => {}
        }
    }
    // A setup that fails everywhere would compare nothing: etcd must pass most tests.
    if passed(0) * 10 < tests.len() * 9 {
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, r)| r[0].outcome == Outcome::Fail)
            .map(|(t, r)| format!("{t}:\n{}", failure_excerpt(&r[0].output)))
            .collect();
        problems.push(format!(
            "only {} of {} tests passed on etcd 3.6:\n{}",
            passed(0),
            tests.len(),
            failed.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
