//! `--config-file`: etcd's YAML file configures the server, and every other flag and
//! `ETCD_*` variable is then ignored, on etcd 3.4 and Bramble alike. A safety setting
//! Bramble does not implement refuses to start from a file as it does from a flag, and a
//! misspelt key is an error (etcd skips unknown keys).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::etcdctl::Etcdctl;
use bramble_tests::ports::free_port;
use bramble_tests::target::differential_targets;
use bramble_tests::tools::{bramble_bin, etcd_bin};
use bramble_tests::Kind;

fn binary(kind: Kind) -> std::path::PathBuf {
    match kind {
        Kind::Etcd => etcd_bin(),
        Kind::Bramble => bramble_bin(),
    }
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A single-member configuration in etcd's YAML, with a few non-default settings.
fn config_yaml(data_dir: &Path, client: &str, peer: &str) -> String {
    format!(
        "# etcd.conf.yml
name: 'from-file'
data-dir: {data}
listen-client-urls: {client}
advertise-client-urls: {client}
listen-peer-urls: {peer}
initial-advertise-peer-urls: {peer}
initial-cluster: from-file={peer}
initial-cluster-token: 'file-token'
initial-cluster-state: 'new'
snapshot-count: 5000
max-txn-ops: 4
heartbeat-interval: 100
election-timeout: 1000
enable-v2: false
discovery:
client-transport-security:
  client-cert-auth: false
  auto-tls: false
peer-transport-security:
  client-cert-auth: false
",
        data = data_dir.display()
    )
}

#[test]
fn the_file_alone_configures_the_server() {
    for kind in differential_targets() {
        let dir = bramble_testkit::temp::dir("bramble-config-file-");
        let data = dir.path().join("data");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let file = dir.path().join("etcd.yaml");
        std::fs::write(&file, config_yaml(&data, &client, &peer)).expect("write the file");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        // Flags and a variable that contradict the file: both are ignored.
        let child = Command::new(binary(kind))
            .arg("--config-file")
            .arg(&file)
            .args(["--name", "from-flag", "--max-txn-ops", "1000"])
            .env("ETCD_NAME", "from-env")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the server");
        let _running = Running(child);
        let etcdctl = Etcdctl::new(client.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        while etcdctl.run(&["endpoint", "health"]).code != 0 {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "{kind} did not serve on {client}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let members = etcdctl.run(&["member", "list"]);
        members.assert_ok();
        let listed = members.stdout_str();
        assert!(listed.contains("from-file"), "{kind}: {listed}");
        assert!(listed.contains(&peer), "{kind}: {listed}");
        assert!(
            data.join("member").is_dir(),
            "{kind}: no member dir in the file's data-dir"
        );
        // max-txn-ops: 4 from the file, not the flag's 1000.
        let txn = etcdctl.run_stdin(
            &["txn"],
            Some("\n\nput a 1\nput b 1\nput c 1\nput d 1\nput e 1\n\n"),
        );
        assert_ne!(txn.code, 0, "{kind}: a txn of 5 ops passed:\n{txn}");
        assert!(
            txn.stderr.contains("too many operations in txn request"),
            "{kind}: {txn}"
        );
        let txn = etcdctl.run_stdin(&["txn"], Some("\n\nput a 1\nput b 1\n\n"));
        txn.assert_ok();
    }
}

/// Runs bramble with only `--config-file` holding `yaml`: its exit code (None: still
/// running after 5 s) and stderr, and whether the file's data dir was created.
fn run_bramble_with(yaml_after_data_dir: &str) -> (Option<i32>, String, bool) {
    let dir = bramble_testkit::temp::dir("bramble-config-file-");
    let data = dir.path().join("data");
    let file = dir.path().join("etcd.yaml");
    let yaml = format!("data-dir: {}\n{yaml_after_data_dir}", data.display());
    std::fs::write(&file, yaml).expect("write the file");
    let mut child = Command::new(bramble_bin())
        .arg(format!("--config-file={}", file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bramble");
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break status.code(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr, data.exists())
}

#[test]
fn safety_settings_in_the_file_refuse_to_start() {
    let (code, stderr, created) =
        run_bramble_with("peer-transport-security:\n  skip-client-san-verification: true\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Refusing to start"), "{stderr}");
    assert!(!created, "the data dir was created: {stderr}");
}

#[test]
fn a_misspelt_key_is_an_error() {
    let (code, stderr, created) = run_bramble_with("snapshot-cuont: 5\n");
    assert!(matches!(code, Some(c) if c != 0), "{code:?} {stderr}");
    assert!(stderr.contains("snapshot-cuont"), "{stderr}");
    assert!(!created, "the data dir was created: {stderr}");
}
