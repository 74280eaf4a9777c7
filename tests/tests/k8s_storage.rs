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
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bramble_tests::go_tests::{self, Outcome, Run, Target};
use bramble_tests::server::{Server, ServerConfig};
use bramble_tests::tools;

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
    let out = go_tests::one_test(go_test, test, GO_TEST_TIMEOUT)
        .env(ENDPOINT_ENV, server.endpoint())
        .output()
        .unwrap_or_else(|e| panic!("run {} {test}: {e}", go_test.display()));
    let took = start.elapsed();
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    // These Go tests have no check after the tests: a non-zero exit fails the test.
    let outcome = match Outcome::of(&output, test) {
        Outcome::Pass if !out.status.success() => Outcome::Fail,
        outcome => outcome,
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
        exit_failed: false,
        took,
        output,
    }
}

#[test]
fn kube_apiserver_storage_conformance() {
    let go_test = tools::built_by("scripts/k8s-storage-build", &[]);
    let targets = go_tests::etcd_and_bramble();
    let tests = list_tests(&go_test);
    assert!(!tests.is_empty(), "no Go tests listed");

    let started = Instant::now();
    let mut results: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for test in &tests {
        let runs: Vec<Run> = targets.iter().map(|t| run_one(&go_test, t, test)).collect();
        eprintln!("{}", go_tests::progress_line(test, &runs, &targets));
        results.insert(test.clone(), runs);
    }
    println!(
        "{} tests in {:.0} s",
        tests.len(),
        started.elapsed().as_secs_f64()
    );
    // The table is in docs/kubernetes.md with the reasons; etcd must pass nine tests in ten.
    go_tests::compare(&results, &targets, KNOWN_DIFFERENCES, 90);
}
