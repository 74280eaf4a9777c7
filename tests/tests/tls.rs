//! TLS on the client and peer ports with etcd's flags, the way kubeadm sets etcd up:
//! its certificate layout (`/etc/kubernetes/pki/etcd/{ca,server,peer}.{crt,key}` and the
//! API server's `apiserver-etcd-client`) under a temp dir, and its static pod's exact
//! command line.
//!
//! - `one_member_mutual_tls_as_etcd`: the same checks against etcd and Bramble: etcdctl
//!   with the API server's certificate works; without a certificate, with another CA's
//!   or an expired one it is refused; a rotated server certificate is served without a
//!   restart; `/health` is served over TLS (curl); an http listener beside the https one
//!   serves plain text, as etcd allows.
//! - `kubeadm_three_members`: three members started with kubeadm's flags form a cluster
//!   over mutual TLS on the peer port, replicate, and let in no peer with another CA's
//!   certificate: neither a member joining with one, nor a raw peer RPC.
//! - `auto_tls_as_etcd`: `--auto-tls` and `--peer-auto-tls` generate self-signed
//!   certificates under `<data-dir>/fixtures`, as etcd does, and serve TLS only.
//! - `refused_settings`: settings that cannot be served as asked refuse to start, with
//!   etcd's message where etcd has one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bramble_tests::etcdctl::Etcdctl;
use bramble_tests::faults::Proc;
use bramble_tests::ports::free_port;
use bramble_tests::target::differential_targets;
use bramble_tests::Kind;
use bramble_tls::test_pki::{CertSpec, TestCa, Usage};

/// One node's kubeadm layout: `<root>/etc/kubernetes/pki`.
struct KubeadmPki {
    root: PathBuf,
}

impl KubeadmPki {
    /// Lays out kubeadm's etcd certificates for `node` at `ip`, signed by `ca`.
    fn new(root: &Path, ca: &TestCa, node: &str, ip: &str) -> KubeadmPki {
        let pki = KubeadmPki {
            root: root.to_path_buf(),
        };
        let etcd = pki.etcd_dir();
        ca.write_cert(&etcd.join("ca.crt"));
        // kubeadm's SANs for both: the node's name and address, and localhost.
        let sans = [node, "localhost", ip, "127.0.0.1", "::1"];
        ca.issue_files(&CertSpec::new(node, &sans, Usage::Both), &etcd, "server");
        ca.issue_files(&CertSpec::new(node, &sans, Usage::Both), &etcd, "peer");
        let client = CertSpec::new("kube-apiserver-etcd-client", &[], Usage::Client);
        ca.issue_files(&client, &pki.dir(), "apiserver-etcd-client");
        pki
    }

    /// `/etc/kubernetes/pki`.
    fn dir(&self) -> PathBuf {
        self.root.join("etc/kubernetes/pki")
    }

    /// `/etc/kubernetes/pki/etcd`.
    fn etcd_dir(&self) -> PathBuf {
        self.dir().join("etcd")
    }

    fn etcd_file(&self, name: &str) -> String {
        self.etcd_dir().join(name).display().to_string()
    }

    /// etcdctl's flags as the API server connects: its client certificate.
    fn apiserver_flags(&self) -> Vec<String> {
        let pki = self.dir();
        vec![
            format!("--cacert={}", self.etcd_file("ca.crt")),
            format!("--cert={}", pki.join("apiserver-etcd-client.crt").display()),
            format!("--key={}", pki.join("apiserver-etcd-client.key").display()),
        ]
    }
}

/// One member's addresses: kubeadm's node IP, client, peer and metrics ports.
struct Ports {
    ip: String,
    client: u16,
    peer: u16,
    metrics: u16,
}

impl Ports {
    fn new(ip: &str) -> Ports {
        Ports {
            ip: ip.into(),
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
        }
    }

    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer)
    }

    fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.client)
    }
}

/// kubeadm's etcd static pod command line (kubeadm 1.3x, `etcd.yaml`), for `node`.
fn kubeadm_args(
    pki: &KubeadmPki,
    data_dir: &Path,
    node: &str,
    me: &Ports,
    initial_cluster: &str,
    state: &str,
) -> Vec<String> {
    vec![
        format!("--advertise-client-urls={}", me.client_url()),
        format!("--cert-file={}", pki.etcd_file("server.crt")),
        "--client-cert-auth=true".into(),
        format!("--data-dir={}", data_dir.display()),
        "--experimental-initial-corrupt-check=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        format!("--initial-advertise-peer-urls={}", me.peer_url()),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--key-file={}", pki.etcd_file("server.key")),
        format!(
            "--listen-client-urls=https://127.0.0.1:{},{}",
            me.client,
            me.client_url()
        ),
        format!("--listen-metrics-urls=http://127.0.0.1:{}", me.metrics),
        format!("--listen-peer-urls={}", me.peer_url()),
        format!("--name={node}"),
        format!("--peer-cert-file={}", pki.etcd_file("peer.crt")),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={}", pki.etcd_file("peer.key")),
        format!("--peer-trusted-ca-file={}", pki.etcd_file("ca.crt")),
        "--snapshot-count=10000".into(),
        format!("--trusted-ca-file={}", pki.etcd_file("ca.crt")),
    ]
}

/// etcdctl flags presenting a certificate `spec` signed by `ca` (files in `dir`), and
/// trusting `trusted`.
fn client_flags(ca: &TestCa, spec: &CertSpec, dir: &Path, trusted: &Path) -> Vec<String> {
    let (cert, key) = ca.issue_files(spec, dir, &spec.common_name);
    vec![
        format!("--cacert={}", trusted.display()),
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    ]
}

/// A command that must fail to reach the server at the TLS layer.
fn refused(ctl: &Etcdctl, what: &str, kind: Kind) {
    let out = ctl.run(&[
        "--dial-timeout=2s",
        "--command-timeout=3s",
        "get",
        "--consistency=s",
        "k",
    ]);
    assert_ne!(out.code, 0, "{kind}: {what} must be refused:\n{out}");
}

#[test]
fn one_member_mutual_tls_as_etcd() {
    for kind in differential_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("etcd-ca");
        let pki = KubeadmPki::new(dir.path(), &ca, "node1", "127.0.0.1");
        let me = Ports::new("127.0.0.1");
        let plain_port = free_port();
        let mut args = kubeadm_args(
            &pki,
            &dir.path().join("data"),
            "node1",
            &me,
            &format!("node1={}", me.peer_url()),
            "new",
        );
        // kubeadm listens twice on https; here one https and one plain http client URL
        // (etcd allows mixing them), and etcd 3.4 knows no `--experimental-initial-*`.
        args.retain(|a| {
            !a.starts_with("--listen-client-urls") && !a.starts_with("--experimental-initial")
        });
        args.push(format!(
            "--listen-client-urls={},http://127.0.0.1:{plain_port}",
            me.client_url()
        ));
        let mut server = Proc::spawn_kind(kind, &args, None, &dir.path().join("log"));
        let endpoint = me.client_url();
        let apiserver = Etcdctl::new(&endpoint).with_flags(&pki.apiserver_flags());
        server.wait_serving_to(&apiserver);
        apiserver.run(&["put", "k", "over-tls"]).assert_ok();
        let got = apiserver.run(&["get", "k", "--print-value-only"]);
        assert_eq!(got.assert_ok().stdout_str().trim(), "over-tls", "{kind}");

        let ca_file = pki.etcd_dir().join("ca.crt");
        let no_cert =
            Etcdctl::new(&endpoint).with_flags(&[format!("--cacert={}", ca_file.display())]);
        refused(&no_cert, "a client without a certificate", kind);
        let other = TestCa::new("another-ca");
        let foreign = client_flags(
            &other,
            &CertSpec::new("foreign", &[], Usage::Client),
            dir.path(),
            &ca_file,
        );
        refused(
            &Etcdctl::new(&endpoint).with_flags(&foreign),
            "another CA's certificate",
            kind,
        );
        let mut expired = CertSpec::new("expired", &[], Usage::Client);
        expired.valid_days = -2;
        let expired = client_flags(&ca, &expired, dir.path(), &ca_file);
        refused(
            &Etcdctl::new(&endpoint).with_flags(&expired),
            "an expired certificate",
            kind,
        );
        // The HTTP endpoints over TLS, with curl (HTTP/1.1 on Bramble, which offers it
        // first; HTTP/2 on etcd).
        let pki_dir = pki.dir();
        let health = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca_file)
            .arg("--cert")
            .arg(pki_dir.join("apiserver-etcd-client.crt"))
            .arg("--key")
            .arg(pki_dir.join("apiserver-etcd-client.key"))
            .arg(format!("{endpoint}/health"))
            .output()
            .expect("run curl (scripts/test installs it)");
        let body = String::from_utf8_lossy(&health.stdout);
        assert!(
            body.contains("\"health\":\"true\""),
            "{kind}: /health over TLS: {body} {}",
            String::from_utf8_lossy(&health.stderr)
        );
        // Plain text on the http listener, as etcd serves it.
        let plain = Etcdctl::new(format!("http://127.0.0.1:{plain_port}"));
        let got = plain.run(&["get", "k", "--print-value-only"]);
        assert_eq!(got.assert_ok().stdout_str().trim(), "over-tls", "{kind}");

        // Rotation: a server certificate from a new CA, same files, no restart.
        let new_ca = TestCa::new("rotated-ca");
        let sans = ["node1", "localhost", "127.0.0.1", "::1"];
        let etcd_dir = pki.etcd_dir();
        let rotated = dir.path().join("rotated");
        let (cert, key) =
            new_ca.issue_files(&CertSpec::new("node1", &sans, Usage::Both), &rotated, "s");
        for (from, to) in [(key, "server.key"), (cert, "server.crt")] {
            let text = std::fs::read_to_string(&from).expect("read");
            bramble_tls::test_pki::write(&etcd_dir.join(to), &text);
        }
        let new_ca_file = new_ca.write_cert(&dir.path().join("rotated-ca.crt"));
        let mut trusting_new = pki.apiserver_flags();
        trusting_new[0] = format!("--cacert={}", new_ca_file.display());
        let trusting_new = Etcdctl::new(&endpoint).with_flags(&trusting_new);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = trusting_new.run(&["--dial-timeout=2s", "get", "k", "--print-value-only"]);
            if out.code == 0 {
                assert_eq!(out.stdout_str().trim(), "over-tls", "{kind}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind}: the rotated certificate is not served:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        refused(&apiserver, "the old CA after rotation", kind);
        assert!(server.try_exit().is_none(), "{kind} still runs");
    }
}

#[test]
fn kubeadm_three_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("etcd-ca");
    let nodes = ["node1", "node2", "node3"];
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let ports: Vec<Ports> = ips.iter().map(|ip| Ports::new(ip)).collect();
    let initial_cluster = nodes
        .iter()
        .zip(&ports)
        .map(|(n, p)| format!("{n}={}", p.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let mut started = Vec::new();
    let mut pkis = Vec::new();
    for i in 0..3 {
        let root = dir.path().join(nodes[i]);
        let pki = KubeadmPki::new(&root, &ca, nodes[i], ips[i]);
        let args = kubeadm_args(
            &pki,
            &root.join("var/lib/etcd"),
            nodes[i],
            &ports[i],
            &initial_cluster,
            "new",
        );
        started.push(Proc::spawn(&args, None, &root.join("log")));
        pkis.push(pki);
    }
    let ctl = |i: usize| {
        Etcdctl::new(format!("https://127.0.0.1:{}", ports[i].client))
            .with_flags(&pkis[i].apiserver_flags())
    };
    for (i, m) in started.iter_mut().enumerate() {
        m.wait_serving_to(&ctl(i));
    }
    ctl(0).run(&["put", "replicated", "over-mtls"]).assert_ok();
    for i in [1, 2] {
        let got = ctl(i).run(&["get", "replicated", "--print-value-only"]);
        assert_eq!(got.assert_ok().stdout_str().trim(), "over-mtls");
    }
    let list = ctl(2).run(&["member", "list"]);
    for p in &ports {
        assert!(
            list.stdout_str().contains(&p.peer_url()),
            "{}",
            list.stdout_str()
        );
    }

    // A raw peer RPC: answered with a member's own peer certificate, refused with
    // another CA's.
    let other = TestCa::new("intruder-ca");
    let intruder_root = dir.path().join("intruder");
    let intruder_pki = KubeadmPki::new(&intruder_root, &other, "node4", "127.0.0.14");
    let cluster_ca = pkis[0].etcd_dir().join("ca.crt");
    let own = peer_rpc(&pkis[1].etcd_dir(), &cluster_ca, &ports[0].peer_url());
    let members = own.expect("a member's own certificate is let in");
    assert_eq!(members.membership.map(|m| m.members.len()), Some(3));
    let status = peer_rpc(&intruder_pki.etcd_dir(), &cluster_ca, &ports[0].peer_url())
        .expect_err("a peer RPC with a foreign certificate");
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        ),
        "refused at the connection, not by the service: {status:?}"
    );

    // A member joining with another CA's certificate: listed by `member add`, it
    // cannot fetch the cluster from its peers and never serves.
    let me = Ports::new("127.0.0.14");
    let add = ctl(0).run(&[
        "member",
        "add",
        "node4",
        &format!("--peer-urls={}", me.peer_url()),
    ]);
    add.assert_ok();
    let joining = format!("{initial_cluster},node4={}", me.peer_url());
    let args = kubeadm_args(
        &intruder_pki,
        &intruder_root.join("var/lib/etcd"),
        "node4",
        &me,
        &joining,
        "existing",
    );
    let mut intruder = Proc::spawn(&args, None, &intruder_root.join("log"));
    let exit = intruder.wait_exit(Duration::from_secs(30));
    let log = intruder.log();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the intruder must fail to join:\n{log}"
    );
    assert!(
        log.contains("cannot fetch cluster info from peer urls"),
        "refused at the handshake:\n{log}"
    );
    // The cluster still serves.
    ctl(1).run(&["put", "after", "intruder"]).assert_ok();
    for m in &mut started {
        assert!(m.try_exit().is_none(), "a member died:\n{}", m.log());
    }
}

#[test]
fn auto_tls_as_etcd() {
    for kind in differential_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        let args = vec![
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--auto-tls".into(),
            "--peer-auto-tls".into(),
        ];
        let mut server = Proc::spawn_kind(kind, &args, None, &dir.path().join("log"));
        // Self-signed: trusted as its own CA (Go accepts a certificate found in the root
        // pool). etcdctl 3.4's --insecure-skip-tls-verify fails against etcd 3.4 and 3.6
        // alike, so it is not used.
        let cert = data.join("fixtures/client/cert.pem");
        let ctl = Etcdctl::new(&client_url).with_flags(&[format!("--cacert={}", cert.display())]);
        server.wait_serving_to(&ctl);
        ctl.run(&["put", "k", "auto"]).assert_ok();
        for port in ["client", "peer"] {
            let fixtures = data.join("fixtures").join(port);
            for file in ["cert.pem", "key.pem"] {
                assert!(fixtures.join(file).exists(), "{kind}: {port}/{file}");
            }
        }
        // Plain text is not served on an https URL.
        let plain = Etcdctl::new(format!("http://127.0.0.1:{client}"));
        refused(&plain, "plain text on an https URL", kind);
    }
}

/// The Peer service's `Members` RPC to `peer_url`, dialled with the peer certificate in
/// `etcd_dir` (kubeadm's `peer.crt`, `peer.key`), trusting `ca`.
fn peer_rpc(
    etcd_dir: &Path,
    ca: &Path,
    peer_url: &str,
) -> Result<bramble_api::bramblepb::MembersReply, tonic::Status> {
    let settings = bramble_tls::TlsSettings {
        cert_file: etcd_dir.join("peer.crt"),
        key_file: etcd_dir.join("peer.key"),
        trusted_ca_file: Some(ca.to_path_buf()),
        client_cert_auth: false,
        client_cert: None,
        allowed: bramble_tls::Allowed::Any,
        self_signed: false,
        protocol: Default::default(),
    };
    let tls = bramble_tls::ClientTls::new(settings).expect("client TLS");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(peer_url.to_string())
            .expect("URL")
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(3))
            .connect_with_connector_lazy(bramble_tls::Connector::new(Some(tls)));
        bramble_api::bramblepb::peer_client::PeerClient::new(channel)
            .members(bramble_api::bramblepb::MembersRequest {})
            .await
            .map(|r| r.into_inner())
    })
}

/// Runs bramble with `args` and returns its exit code and output; it must exit at once.
fn start_refused(args: &[String]) -> String {
    let out = Command::new(bramble_tests::tools::bramble_bin())
        .args(args)
        .output()
        .expect("run bramble");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "must refuse to start: {args:?}\n{text}"
    );
    text
}

#[test]
fn refused_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("ca");
    let pki = KubeadmPki::new(dir.path(), &ca, "node1", "127.0.0.1");
    let data = dir.path().join("data");
    let (client, peer) = (free_port(), free_port());
    let https_client = format!("https://127.0.0.1:{client}");
    let cert = format!("--cert-file={}", pki.etcd_file("server.crt"));
    let key = format!("--key-file={}", pki.etcd_file("server.key"));
    let peer_certs = [
        format!("--peer-cert-file={}", pki.etcd_file("peer.crt")),
        format!("--peer-key-file={}", pki.etcd_file("peer.key")),
        format!("--peer-trusted-ca-file={}", pki.etcd_file("ca.crt")),
    ];
    let missing_cert = format!(
        "TLS key/cert (--cert-file, --key-file) must be provided for client url {https_client} \
         with HTTPS scheme"
    );
    // (client scheme, peer scheme, extra flags, what the refusal says)
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        ("https", "http", vec![], &missing_cert),
        ("http", "https", vec![], "--peer-cert-file, --peer-key-file"),
        (
            "https",
            "http",
            vec![
                cert.clone(),
                key.clone(),
                "--client-crl-file=/etc/crl.pem".into(),
            ],
            "certificate revocation lists",
        ),
        (
            "http",
            "http",
            [&peer_certs[..], &["--peer-client-cert-auth".into()]].concat(),
            "is http: anyone",
        ),
        (
            "https",
            "http",
            vec![
                cert.clone(),
                key.clone(),
                "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into(),
            ],
            "not supported by bramble",
        ),
        (
            "https",
            "http",
            vec![cert.clone(), key.clone(), "--tls-min-version=TLS1.1".into()],
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)",
        ),
        // Client certificates without a CA to check them against.
        (
            "https",
            "http",
            vec![cert.clone(), key.clone(), "--client-cert-auth".into()],
            "needs a trusted CA file",
        ),
    ];
    for (client_scheme, peer_scheme, extra, says) in cases {
        let client_url = format!("{client_scheme}://127.0.0.1:{client}");
        let peer_url = format!("{peer_scheme}://127.0.0.1:{peer}");
        let mut args = vec![
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ];
        args.extend(extra);
        let text = start_refused(&args);
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(
            !data.exists(),
            "{args:?}: a refused start created the data dir"
        );
    }
}
