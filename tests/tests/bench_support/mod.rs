//! Helpers for the `bramble-bench` end-to-end tests (bench_workloads.rs, bench_watch.rs):
//! building the binary, running it with `--json` against a real server, and checking its
//! report and the store.
//!
//! `cargo test` does not build the binaries of other packages, and a stale
//! `target/debug/bramble-bench` would lack the workloads under test, so [`bench_bin`] builds
//! it (a no-op when it is up to date) unless `BRAMBLE_BENCH_BIN` names one.

#![allow(dead_code)] // Each test file that uses this module uses a different part of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bramble_tests::{client, Kind, Server, ServerConfig};
use etcd_client::{Client, GetOptions};
use serde_json::Value;

/// A real Bramble member to load, the `bramble-bench` binary to load it with, and an
/// etcd-client (with the runtime that drives it) to look at what the load did to the store.
pub struct Bench {
    /// The `bramble-bench` binary ([`bench_bin`]).
    pub bin: PathBuf,
    /// The member; it stops when this is dropped.
    pub server: Server,
    /// Its client endpoint.
    pub endpoint: String,
    /// Its process, which `bramble-bench --pid` measures.
    pub pid: u32,
    /// Drives `client`.
    pub runtime: tokio::runtime::Runtime,
    /// A client of the member.
    pub client: Client,
}

impl Bench {
    /// Builds `bramble-bench` if needed and starts one Bramble member with the default config.
    pub fn start() -> Bench {
        let bin = bench_bin();
        let server = Server::start_with(Kind::Bramble, ServerConfig::default());
        let endpoint = server.endpoint();
        let pid = server.pid().expect("the server is running");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let client = runtime.block_on(client::connect_endpoint(&endpoint));
        Bench {
            bin,
            server,
            endpoint,
            pid,
            runtime,
            client,
        }
    }

    /// [`run_bench`] against this member: the report of a run that must succeed.
    pub fn run(&self, args: &[&str]) -> Value {
        run_bench(&self.bin, &self.endpoint, self.pid, args)
    }

    /// [`bench_command`] against this member, to start it in the background.
    pub fn command(&self, args: &[&str]) -> Command {
        bench_command(&self.bin, &self.endpoint, self.pid, args)
    }

    /// [`revision_and_key_count`] of this member's store.
    pub fn revision_and_key_count(&mut self) -> (i64, i64) {
        self.runtime
            .block_on(revision_and_key_count(&mut self.client))
    }
}

/// The `bramble-bench` binary: `$BRAMBLE_BENCH_BIN`, else built by cargo next to this
/// test's own binary (`target/<profile>/deps/<test>`, so two directories up).
pub fn bench_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BRAMBLE_BENCH_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BRAMBLE_BENCH_BIN={}: no such file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build.args([
        "build",
        "--quiet",
        "--bin",
        "bramble-bench",
        "--manifest-path",
    ]);
    build.arg(&manifest);
    // cargo runs this test with the package's own variables set (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, ...). Build scripts that watch them (ring's does) would see them
    // change, rebuild, and make the next ordinary build rebuild everything above them again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if set_by_cargo_for_this_test(&name) {
            build.env_remove(&*name);
        }
    }
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --bin bramble-bench: {status}"
    );
    let path = profile_dir.join("bramble-bench");
    assert!(path.is_file(), "cargo built no {}", path.display());
    path
}

/// True for the variables cargo sets for the package whose test runs (not the ones that
/// configure cargo itself, such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn set_by_cargo_for_this_test(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || [
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// `bramble-bench <args>` against `endpoint` with `--json`, measuring `pid`.
pub fn bench_command(bench: &Path, endpoint: &str, pid: u32, args: &[&str]) -> Command {
    let mut command = Command::new(bench);
    command
        .args(["--endpoints", endpoint, "--json", "--timeout", "20"])
        .args(["--pid", &pid.to_string(), "--settle-ms", "100"])
        .args(args);
    command
}

/// Runs `bramble-bench <args>` against `endpoint` with `--json`, measuring `pid`; returns its
/// report after checking it exited 0 (every request succeeded).
pub fn run_bench(bench: &Path, endpoint: &str, pid: u32, args: &[&str]) -> Value {
    let out = bench_command(bench, endpoint, pid, args)
        .output()
        .expect("run bramble-bench");
    report_of(&out, pid, args)
}

/// The report a finished `bramble-bench <args>` printed, after checking it exited 0 and
/// measured `pid`.
pub fn report_of(out: &Output, pid: u32, args: &[&str]) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bramble-bench {args:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bramble-bench {args:?} printed no JSON ({e}): {stdout}"));
    println!(
        "{}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        report["workload"].as_str().unwrap_or("?"),
        report["throughput"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
    );
    assert_eq!(report["processes"][0]["pid"], pid, "{report}");
    report
}

/// Checks a report of `workload` says all `total` requests succeeded, with no errors and
/// ordered latency percentiles.
pub fn assert_clean(report: &Value, workload: &str, total: u64) {
    assert_eq!(report["workload"], workload, "{report}");
    assert_eq!(report["ok"], total, "{report}");
    assert_eq!(report["errors"]["count"], 0, "{report}");
    assert_eq!(
        report["errors"]["by_code"],
        serde_json::json!({}),
        "{report}"
    );
    assert_eq!(report["timed_out"], false, "{report}");
    let latency = |name: &str| {
        report["latency_ms"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("no latency_ms.{name}: {report}"))
    };
    let (min, p50, p99, max) = (
        latency("min"),
        latency("p50"),
        latency("p99"),
        latency("max"),
    );
    assert!(
        0.0 < min && min <= p50 && p50 <= p99 && p99 <= max,
        "{workload}: min {min} p50 {p50} p99 {p99} max {max}"
    );
}

/// How far the server's revision moved between the Status calls before and after the run.
pub fn status_revision_delta(report: &Value) -> i64 {
    let server = &report["servers"][0];
    let revision = |when: &str| {
        server[when]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no servers[0].{when}.revision: {report}"))
    };
    revision("after") - revision("before")
}

/// The store's revision and number of keys.
pub async fn revision_and_key_count(c: &mut Client) -> (i64, i64) {
    let options = GetOptions::new().with_all_keys().with_count_only();
    let resp = c
        .get(vec![0u8], Some(options))
        .await
        .expect("count all keys");
    let header = resp.header().expect("a response header");
    (header.revision(), resp.count())
}
