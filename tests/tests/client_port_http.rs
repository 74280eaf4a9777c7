//! etcd's HTTP endpoints on the client URL, next to gRPC on the same port
//! (etcd's cmux): kubeadm's preflight for an external etcd GETs
//! `<client URL>/version`, monitoring GETs `/health` and `/metrics` there.
//! Compared with etcd 3.4 through a real HTTP client (curl), with etcdctl
//! still served on the port, and bounded against silent clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bramble_tests::target;
use bramble_tests::{Kind, Server};

/// One curl request: (status code, content type, body).
fn curl(method: &str, url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code} %{content_type}",
            url,
        ])
        .output()
        .expect("run curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("curl {method} {url}: no status in {text:?} ({out:?})"));
    (code, content_type.to_string(), body.to_string())
}

#[test]
fn http_endpoints_on_the_client_url_as_etcd() {
    for kind in target::differential_targets() {
        let server = Server::start(kind);
        let url = server.endpoint();

        let (status, content_type, body) = curl("GET", &format!("{url}/version"));
        assert_eq!(status, 200, "{kind} /version: {body}");
        assert_eq!(content_type, "application/json", "{kind} /version");
        let versions: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let fields: Vec<&str> = versions
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let server_version = versions["etcdserver"].as_str().expect("a string");
        // etcd 3.4 and 3.5 answer with two fields; 3.6 (Bramble reports 3.6.16) adds
        // "storage", equal to the cluster version.
        if server_version.starts_with("3.6.") {
            assert_eq!(
                fields,
                ["etcdcluster", "etcdserver", "storage"],
                "{kind}: {body}"
            );
            assert_eq!(
                versions["storage"], versions["etcdcluster"],
                "{kind}: {body}"
            );
        } else {
            assert_eq!(fields, ["etcdcluster", "etcdserver"], "{kind}: {body}");
        }
        if kind == Kind::Bramble {
            // kubeadm's preflight for an external etcd wants at least 3.5.24.
            assert_eq!(server_version, "3.6.16", "{body}");
        }
        let cluster_version = versions["etcdcluster"].as_str().expect("a string");
        let minor = |v: &str| v.rsplit_once('.').map(|(mm, _)| mm.to_string());
        assert_eq!(
            minor(server_version),
            minor(cluster_version),
            "{kind}: {body}"
        );
        assert!(cluster_version.ends_with(".0"), "{kind}: {body}");

        let (status, _, body) = curl("GET", &format!("{url}/health"));
        assert_eq!(status, 200, "{kind} /health: {body}");
        let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(health["health"], "true", "{kind}: {body}");
        let (status, _, body) = curl("GET", &format!("{url}/health?serializable=true"));
        assert_eq!(status, 200, "{kind} /health?serializable=true: {body}");

        let (status, content_type, metrics) = curl("GET", &format!("{url}/metrics"));
        assert_eq!(status, 200, "{kind} /metrics");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{kind}: {content_type}"
        );
        assert!(
            metrics.lines().any(|l| l == "etcd_server_has_leader 1"),
            "{kind} /metrics lacks etcd_server_has_leader 1"
        );

        assert_eq!(
            curl("POST", &format!("{url}/version")).0,
            405,
            "{kind} POST /version"
        );
        assert_eq!(curl("GET", &format!("{url}/nothing-here")).0, 404, "{kind}");
        if kind == Kind::Bramble {
            // etcd 3.5's newer probes (etcd 3.4 has neither).
            assert_eq!(curl("GET", &format!("{url}/livez")).0, 200);
            assert_eq!(curl("GET", &format!("{url}/readyz")).0, 200);
        }

        // gRPC on the very same port.
        server.etcdctl().run(&["put", "k", "v"]).assert_ok();
        let got = server.etcdctl().run(&["get", "k", "--print-value-only"]);
        assert_eq!(got.assert_ok().stdout_str().trim(), "v", "{kind}");
    }
}

/// Connections that never send a byte, or stop inside the HTTP/2 preface,
/// do not keep gRPC or HTTP clients from being served, and are closed
/// within the classification timeout (10 s).
#[test]
fn silent_connections_are_closed_and_block_nobody() {
    let server = Server::start(Kind::Bramble);
    let addr = server.endpoint().trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let mut trickle = TcpStream::connect(&addr).expect("connect");
    trickle
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("send part of the preface");
    silent.push(trickle);

    let url = server.endpoint();
    assert_eq!(
        curl("GET", &format!("{url}/health")).0,
        200,
        "served meanwhile"
    );
    server.etcdctl().run(&["put", "k", "v"]).assert_ok();

    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("set timeout");
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            read.is_ok() || rest.is_empty(),
            "a silent connection got {rest:?} ({read:?})"
        );
        assert!(rest.is_empty(), "a silent connection got {rest:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "silent connections were held for {waited:?}"
    );
    assert_eq!(curl("GET", &format!("{url}/version")).0, 200);
    server.etcdctl().run(&["get", "k"]).assert_ok();
}
