//! Small etcdctl operations the cluster tests share: puts that must succeed, reads at a
//! chosen consistency, and waiting for a member to see a value.

use std::time::{Duration, Instant};

use crate::etcdctl::{Etcdctl, Output};

/// Bound for anything that needs an election or replication to a member that was away.
pub const SETTLE: Duration = Duration::from_secs(15);

/// `put key value`, which must succeed.
#[track_caller]
pub fn put(ctl: &Etcdctl, key: &str, value: &str) {
    ctl.run(&["--command-timeout=5s", "put", key, value])
        .assert_ok();
}

/// Retries `put` until it succeeds within [`SETTLE`]: a client's retry while the cluster
/// fails over. Panics with the last failure.
#[track_caller]
pub fn put_eventually(ctl: &Etcdctl, key: &str, value: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = ctl.run(&["--command-timeout=2s", "put", key, value]);
        if out.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "put {key} via {} failed for {SETTLE:?}:\n{out}",
            ctl.endpoint()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `get key --print-value-only` with `--consistency=<consistency>` (`l` or `s`).
pub fn get(ctl: &Etcdctl, key: &str, consistency: &str) -> Output {
    ctl.run(&[
        "--command-timeout=2s",
        "get",
        key,
        "--print-value-only",
        &format!("--consistency={consistency}"),
    ])
}

/// The value of `key` (empty if absent), which must be readable.
#[track_caller]
pub fn value(ctl: &Etcdctl, key: &str, consistency: &str) -> String {
    get(ctl, key, consistency)
        .assert_ok()
        .stdout_str()
        .trim_end()
        .to_string()
}

/// Waits until a serializable read of `key` on `ctl`'s member returns `expected`.
#[track_caller]
pub fn wait_for_value(ctl: &Etcdctl, key: &str, expected: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = get(ctl, key, "s");
        if out.code == 0 && out.stdout_str().trim_end() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not see {key}={expected} within {SETTLE:?}; last read:\n{out}",
            ctl.endpoint()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
