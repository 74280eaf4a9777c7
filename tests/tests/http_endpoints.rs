//! The plain-HTTP endpoints on `--listen-metrics-urls`, which kubeadm's
//! static-pod manifest probes (`/health?exclude=NOSPACE&serializable=true`)
//! and Prometheus scrapes (`/metrics`), against etcd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bramble_tests::ports::free_port;
use bramble_tests::target;
use bramble_tests::{Kind, Server, ServerConfig};

/// Sends one request and returns (status code, body).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Starts a server of `kind` serving the HTTP endpoints on a free port; returns the port too.
fn start_with_metrics_port(kind: Kind) -> (Server, u16) {
    let port = free_port();
    let config = ServerConfig {
        extra_args: vec![format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
        ..ServerConfig::default()
    };
    (Server::start_with(kind, config), port)
}

#[test]
fn health_and_metrics_as_etcd() {
    for kind in target::differential_targets() {
        let (server, port) = start_with_metrics_port(kind);
        for path in ["/health", "/health?exclude=NOSPACE&serializable=true"] {
            let (status, body) = request(port, "GET", path);
            assert_eq!(status, 200, "{kind} GET {path}: {body}");
            // etcd 3.5 and later (3.4 answered without "reason").
            let expected = "{\"health\":\"true\",\"reason\":\"\"}";
            assert_eq!(body.trim(), expected, "{kind} GET {path}");
        }
        let (status, _) = request(port, "POST", "/health");
        assert_eq!(status, 405, "{kind} POST /health");
        let (status, _) = request(port, "GET", "/nothing-here");
        assert_eq!(status, 404, "{kind} GET /nothing-here");
        let (status, metrics) = request(port, "GET", "/metrics");
        assert_eq!(status, 200, "{kind} GET /metrics");
        for line in ["etcd_server_has_leader 1", "etcd_server_is_leader 1"] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{kind} /metrics lacks {line:?}"
            );
        }
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("etcd_mvcc_db_total_size_in_bytes ")),
            "{kind} /metrics lacks the db size"
        );
        // etcd 3.5's newer probes.
        assert_eq!(request(port, "GET", "/livez").0, 200, "{kind} /livez");
        assert_eq!(request(port, "GET", "/readyz").0, 200, "{kind} /readyz");
        drop(server);
    }
}

/// Garbage on the metrics port gets a 400 and the server keeps serving.
#[test]
fn bad_http_requests_do_not_hurt() {
    let kind = target::differential_targets()
        .into_iter()
        .next()
        .expect("a target");
    let (server, port) = start_with_metrics_port(kind);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"\x00\x01garbage\r\n\r\n").expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 400"), "{kind}: {raw:?}");
    assert_eq!(request(port, "GET", "/health").0, 200);
    server.etcdctl().run(&["put", "k", "v"]).assert_ok();
}

/// A request head larger than the metrics port accepts (8 KiB) gets `431
/// Request Header Fields Too Large` rather than growing the member's buffers,
/// and a client that never finishes its request head is disconnected within
/// the read timeout (5 s) while other clients are served meanwhile.
#[test]
fn oversized_and_slow_http_clients_are_bounded() {
    let (server, port) = start_with_metrics_port(Kind::Bramble);

    let mut oversized = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let padding = "a".repeat(64 * 1024);
    // The server may answer and close before it read everything: a failed
    // write is then expected, the answer is what counts.
    let _ = write!(
        oversized,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {padding}\r\n\r\n"
    );
    oversized
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let mut raw = Vec::new();
    let _ = oversized.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 431"), "oversized head: {raw:?}");

    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("send part of a request");
    let started = Instant::now();
    assert_eq!(request(port, "GET", "/health").0, 200, "served meanwhile");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set timeout");
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "a slow client kept its connection for {waited:?} ({read:?})"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "an unfinished request was answered: {rest:?}"
    );

    assert_eq!(request(port, "GET", "/health").0, 200);
    server.etcdctl().run(&["put", "k", "v"]).assert_ok();
}
