//! The processes under test: a 3-member cluster on mutual TLS with kubeadm's certificates,
//! and kube-apiserver on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bramble_tests::cluster::{Cluster, ClusterConfig};
use bramble_tests::ports::free_port;
use bramble_tests::Kind;
use bramble_tls::test_pki::{CertSpec, TestCa, Usage};

use super::{READY_TIMEOUT, TOKEN};

/// kubeadm's certificates for the etcd client port, under `<root>/pki`: the etcd CA, one
/// serving certificate for the members (they all listen on 127.0.0.1) and the API server's
/// client certificate.
pub(crate) struct Pki {
    etcd_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    pub(crate) fn new(root: &Path) -> Pki {
        let ca = TestCa::new("etcd-ca");
        let pki = root.join("pki");
        let etcd = pki.join("etcd");
        let etcd_ca = ca.write_cert(&etcd.join("ca.crt"));
        let sans = ["localhost", "127.0.0.1", "::1"];
        let (server_cert, server_key) = ca.issue_files(
            &CertSpec::new("member", &sans, Usage::Both),
            &etcd,
            "server",
        );
        let client = CertSpec::new("kube-apiserver-etcd-client", &[], Usage::Client);
        let (client_cert, client_key) = ca.issue_files(&client, &pki, "apiserver-etcd-client");
        Pki {
            etcd_ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

/// Starts a 3-member cluster of `kind`, then moves its client port to mutual TLS: each
/// member keeps the harness's plain listener (for the harness's own Status calls) and gets
/// an https listener requiring a client certificate, which the apiserver uses. Returns the
/// cluster and the https endpoints.
pub(crate) fn start_cluster(kind: Kind, pki: &Pki) -> (Cluster, Vec<String>) {
    let mut cluster = Cluster::start_with(
        kind,
        ClusterConfig {
            size: 3,
            ..ClusterConfig::default()
        },
    );
    let mut https = Vec::new();
    for i in 0..cluster.len() {
        let plain = cluster.member(i).endpoint();
        let tls = format!("https://127.0.0.1:{}", free_port());
        let m = cluster.member_mut(i);
        m.set_flag("listen-client-urls", &format!("{plain},{tls}"));
        m.set_flag("cert-file", &pki.server_cert.display().to_string());
        m.set_flag("key-file", &pki.server_key.display().to_string());
        m.set_flag("trusted-ca-file", &pki.etcd_ca.display().to_string());
        m.set_flag("client-cert-auth", "true");
        https.push(tls);
    }
    cluster.restart_all();
    (cluster, https)
}

/// The running kube-apiserver.
pub(crate) struct ApiServer {
    kind: Kind,
    child: Child,
    pub(crate) url: String,
    pub(crate) ca: PathBuf,
    log: PathBuf,
}

impl ApiServer {
    /// Starts kube-apiserver with the fewest flags that serve: its own self-signed serving
    /// certificate, a service-account key, a static admin token, RBAC, and the cluster
    /// over mutual TLS. Returns it and the time from spawn to `/readyz` answering 200.
    pub(crate) fn start(
        kind: Kind,
        binary: &Path,
        dir: &Path,
        pki: &Pki,
        etcd: &[String],
    ) -> (ApiServer, Duration) {
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048"));
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&sa_key)
            .arg("-out")
            .arg(&sa_pub));
        let tokens = dir.join("tokens.csv");
        fs::write(&tokens, format!("{TOKEN},admin,admin,\"system:masters\"\n"))
            .expect("write the token file");
        let cert_dir = dir.join("serving");
        let port = free_port();
        let log = dir.join("kube-apiserver.log");
        let args = vec![
            format!("--etcd-servers={}", etcd.join(",")),
            format!("--etcd-cafile={}", pki.etcd_ca.display()),
            format!("--etcd-certfile={}", pki.client_cert.display()),
            format!("--etcd-keyfile={}", pki.client_key.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", cert_dir.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".to_string(),
        ];
        let out = fs::File::create(&log).expect("create the apiserver log");
        let err = out.try_clone().expect("duplicate the log handle");
        let start = Instant::now();
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut api = ApiServer {
            kind,
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: cert_dir.join("apiserver.crt"),
            log,
        };
        if let Err(e) = api.wait_ready(READY_TIMEOUT) {
            panic!(
                "kube-apiserver not ready within {READY_TIMEOUT:?}: {e}\n{}",
                api.log_tail(40)
            );
        }
        (api, start.elapsed())
    }

    /// The HTTP status of `GET path` (0 if the apiserver does not answer).
    pub(crate) fn get_status(&self, path: &str) -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-k",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "3",
            ])
            .arg("-H")
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// The body of `GET path` (verbose readyz, for failure messages).
    pub(crate) fn get_body(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "-k", "-m", "3", "-H"])
            .arg(format!("Authorization: Bearer {TOKEN}"))
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `/readyz` answers 200; an error if the process exits or `timeout` passes.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if self.get_status("/readyz") == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/readyz:\n{}", self.get_body("/readyz?verbose")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on kube-apiserver") {
            panic!(
                "kube-apiserver exited with {status}:\n{}",
                self.log_tail(60)
            );
        }
    }

    pub(crate) fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ApiServer {
    /// Stops the apiserver and keeps its log as `target/k8s/kube-apiserver-<kind>.log`.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let keep = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/k8s/kube-apiserver-{}.log", self.kind));
        if let Err(e) = fs::copy(&self.log, &keep) {
            eprintln!("keep the apiserver's log as {}: {e}", keep.display());
        }
    }
}

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
