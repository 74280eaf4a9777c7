//! Kubernetes' Go tests run one at a time against etcd 3.6 and Bramble, and compared: what
//! `tests/k8s_storage.rs` and `tests/k8s_integration.rs` share. Each suite starts a fresh
//! server per Go test and per server, runs that one test (`-test.run '^Name$' -test.v`),
//! and hands the [`Run`]s to [`compare`], which prints the table and fails unless every test
//! that passed on etcd passed on Bramble (but for the suite's known differences, which must
//! still differ, so their list stays exact).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{tools, Kind};

/// How one Go test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `--- PASS: Name (`.
    Pass,
    /// `--- FAIL`, or no verdict at all (a panic, a timeout, a failed TestMain).
    Fail,
    /// `--- SKIP: Name (`.
    Skip,
}

impl Outcome {
    /// The word in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }

    /// The verdict `go test -test.v` printed for `test` in `output`.
    pub fn of(output: &str, test: &str) -> Outcome {
        let ended = |verb: &str| {
            let line = format!("--- {verb}: {test} (");
            output.lines().any(|l| l.trim_start().starts_with(&line))
        };
        if ended("FAIL") {
            Outcome::Fail
        } else if ended("SKIP") {
            Outcome::Skip
        } else if ended("PASS") {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    }
}

/// One Go test on one server.
pub struct Run {
    /// Its verdict.
    pub outcome: Outcome,
    /// The test binary exited non-zero although the test passed (for example
    /// `framework.EtcdMain`'s goroutine leak check after the tests).
    pub exit_failed: bool,
    /// How long the Go test ran.
    pub took: Duration,
    /// The Go test's output (and, for failures, the server's log tail).
    pub output: String,
}

/// A server to compare: its label and the binary to start.
pub struct Target {
    /// Its name in the tables.
    pub label: &'static str,
    /// Which kind of server the harness starts.
    pub kind: Kind,
    /// The server binary.
    pub binary: PathBuf,
}

/// The reference (etcd 3.6, built by `scripts/etcd-build`) and Bramble, in that order.
pub fn etcd_and_bramble() -> [Target; 2] {
    [
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
    ]
}

/// The command that runs the one Go test `test` of the test binary `go_test`, verbose, with
/// Go's `-test.timeout` of `timeout` (e.g. "240s") and no stdin; the caller adds the
/// environment and runs it.
pub fn one_test(go_test: &Path, test: &str, timeout: &str) -> Command {
    let mut cmd = Command::new(go_test);
    cmd.args([
        "-test.run",
        &format!("^{test}$"),
        "-test.v",
        "-test.timeout",
        timeout,
    ])
    .stdin(Stdio::null());
    cmd
}

/// The line printed as each Go test finishes on both servers.
pub fn progress_line(test: &str, runs: &[Run], targets: &[Target; 2]) -> String {
    let parts: Vec<String> = runs
        .iter()
        .zip(targets)
        .map(|(r, t)| {
            format!(
                "{} {}{} ({:.1} s)",
                t.label,
                r.outcome.label(),
                if r.exit_failed { " (exit != 0)" } else { "" },
                r.took.as_secs_f64()
            )
        })
        .collect();
    format!("{test}: {}", parts.join(", "))
}

/// The lines of a Go test's output worth showing for a failure: verdicts, panics and the
/// file:line of assertions, without klog's structured lines (`file.go:12] "message"`).
pub fn failure_excerpt(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("---")
                || t.starts_with("panic")
                || (t.contains(".go:") && !t.contains("] \""))
        })
        .take(40)
        .collect();
    lines.join("\n")
}

/// Prints the table of `results` (test name -> one run per target) and how many passed,
/// then panics with every problem: a test that passed on etcd but not on Bramble and is not
/// in `known` (name, reason), a known difference that no longer differs, or fewer than
/// `min_etcd_pass_percent` % of the tests etcd did not skip passing on it (a broken setup
/// compares nothing).
pub fn compare(
    results: &BTreeMap<String, Vec<Run>>,
    targets: &[Target; 2],
    known: &[(&str, &str)],
    min_etcd_pass_percent: usize,
) {
    assert!(!results.is_empty(), "no Go tests selected");
    let width = results.keys().map(String::len).max().unwrap_or(4);
    println!(
        "\n{:width$}  {:>9}  {:>9}",
        "test", targets[0].label, targets[1].label
    );
    for (test, runs) in results {
        println!(
            "{test:width$}  {:>9}  {:>9}",
            runs[0].outcome.label(),
            runs[1].outcome.label()
        );
    }
    let count =
        |i: usize, outcome: Outcome| results.values().filter(|r| r[i].outcome == outcome).count();
    println!();
    for (i, target) in targets.iter().enumerate() {
        println!(
            "{}: {} passed, {} failed, {} skipped",
            target.label,
            count(i, Outcome::Pass),
            count(i, Outcome::Fail),
            count(i, Outcome::Skip)
        );
    }

    let mut problems = Vec::new();
    for (test, runs) in results {
        let known = known.iter().find(|(name, _)| name == test);
        let differs = runs[0].outcome == Outcome::Pass && runs[1].outcome != Outcome::Pass;
        match (differs, known) {
            (true, None) => problems.push(format!(
                "{test} passed on {} but not on {}:\n{}",
                targets[0].label,
                targets[1].label,
                failure_excerpt(&runs[1].output)
            )),
            (false, Some((_, reason))) => problems.push(format!(
                "{test} is a known difference ({reason}) but now {} on {} and {} on {}: \
                 update the known differences and docs/kubernetes.md",
                runs[0].outcome.label(),
                targets[0].label,
                runs[1].outcome.label(),
                targets[1].label
            )),
            _ => {}
        }
    }
    let passed_on_etcd = count(0, Outcome::Pass);
    let ran_on_etcd = results.len() - count(0, Outcome::Skip);
    if passed_on_etcd * 100 < ran_on_etcd * min_etcd_pass_percent {
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, r)| r[0].outcome == Outcome::Fail)
            .map(|(t, r)| format!("{t}:\n{}", failure_excerpt(&r[0].output)))
            .collect();
        problems.push(format!(
            "only {passed_on_etcd} of the {ran_on_etcd} tests not skipped passed on {}:\n{}",
            targets[0].label,
            failed.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_come_from_the_test_s_own_line() {
        let out = "=== RUN   TestA\n    --- PASS: TestA/sub (0.00s)\n--- PASS: TestA (0.01s)\n";
        assert_eq!(Outcome::of(out, "TestA"), Outcome::Pass);
        assert_eq!(Outcome::of(out, "TestAB"), Outcome::Fail);
        let out = "--- SKIP: TestB (0.00s)\n";
        assert_eq!(Outcome::of(out, "TestB"), Outcome::Skip);
        let out = "    --- FAIL: TestC/x (0.00s)\n--- FAIL: TestC (0.00s)\n";
        assert_eq!(Outcome::of(out, "TestC"), Outcome::Fail);
        assert_eq!(Outcome::of("panic: boom\n", "TestD"), Outcome::Fail);
    }

    #[test]
    fn failure_excerpts_keep_assertions_not_klog() {
        let out = "I1205 10:00:00 store.go:12] \"noise\"\n    store_tests.go:99: want 1, got 2\n--- FAIL: TestX (0.1s)\n";
        assert_eq!(
            failure_excerpt(out),
            "    store_tests.go:99: want 1, got 2\n--- FAIL: TestX (0.1s)"
        );
    }
}
