//! The crate's example programs run to the end and do what they say: each is
//! started as the process `cargo test` built it (examples are built with the
//! tests), and its output is checked.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The example `name`, as cargo built it next to this test
/// (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p bramble` builds the examples (or `cargo build -p bramble \
         --examples`)",
        path.display()
    );
    path
}

/// Runs example `name` (killing it after a minute) and returns its output.
fn run(name: &str) -> String {
    let mut child = Command::new(example(name))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the example");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn embedded_writes_swaps_and_lists() {
    let out = run("embedded");
    assert!(out.contains("compare-and-swap succeeded: true"), "{out}");
    assert!(
        out.contains("config/greeting = hello, bramble (version 2)"),
        "{out}"
    );
    assert!(out.contains("empty key refused: InvalidArgument"), "{out}");
}

#[test]
fn config_store_follows_every_change() {
    let out = run("config_store");
    for line in [
        "config/log-level: Some(\"info\") -> \"debug\"",
        "config/interval: Some(\"30s\") -> \"10s\"",
        "config/max-jobs: Some(\"4\") -> removed",
        "configuration now: {\"config/interval\": \"10s\", \"config/log-level\": \"debug\"}",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn work_queue_does_every_job_once_despite_a_dead_worker() {
    let out = run("work_queue");
    let died = out
        .lines()
        .find_map(|l| l.strip_prefix("worker-0 dies holding job "))
        .unwrap_or_else(|| panic!("worker-0 did not die:\n{out}"));
    // The dead worker's job was taken again and done by another worker.
    let done = format!("queue/done/{died} done by worker-");
    let line = out
        .lines()
        .find(|l| l.starts_with(&done))
        .unwrap_or_else(|| panic!("job {died} was not done:\n{out}"));
    assert!(!line.ends_with("worker-0"), "{line}");
    for i in 0..10 {
        let prefix = format!("queue/done/{i:03} done by ");
        assert_eq!(
            out.lines().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "job {i}:\n{out}"
        );
    }
}

#[test]
fn leader_election_hands_over_on_power_loss_and_on_resign() {
    let out = run("leader_election");
    let turn = out
        .lines()
        .find_map(|l| l.strip_prefix("leaders in turn: "))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    let mut leaders: Vec<&str> = turn.split(", ").collect();
    assert_eq!(leaders.len(), 3, "{out}");
    assert!(
        out.contains(&format!("{}: power lost", leaders[0])),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}: done, resigning", leaders[1])),
        "{out}"
    );
    leaders.sort();
    assert_eq!(leaders, ["pi-1", "pi-2", "pi-3"], "{out}");
}
