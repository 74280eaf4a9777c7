//! Stopping: SIGTERM (what systemd and the kubelet send) must stop the server promptly,
//! whatever its clients do, and lose nothing. Run on every differential target: etcd shows
//! what "promptly" means.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bramble_tests::target;
use bramble_tests::Server;

/// etcd stops within a few seconds even with clients connected; kubelet's default grace
/// period is 30 s, systemd's 90 s, so 10 s is a generous bound.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// A graceful stop (SIGTERM, as systemd and the kubelet send) ends the process promptly and a
/// restart serves everything written before it, revisions included.
#[test]
fn sigterm_then_restart_keeps_data() {
    for kind in target::differential_targets() {
        let mut server = Server::start(kind);
        let ctl = server.etcdctl();
        for i in 0..20 {
            ctl.run(&["put", &format!("g/{i:02}"), &format!("v{i}")])
                .assert_ok();
        }
        let before = ctl.run(&["get", "--prefix", "g/", "-w", "json"]);
        before.assert_ok();
        let status = server.sigterm();
        println!("{kind} exited with {status} after SIGTERM");
        server.restart();
        let after = server
            .etcdctl()
            .run(&["get", "--prefix", "g/", "-w", "json"]);
        after.assert_ok();
        assert_eq!(
            bramble_tests::normalize::stdout_text(&after.stdout_str()),
            bramble_tests::normalize::stdout_text(&before.stdout_str()),
            "{kind}: data after SIGTERM and restart differs"
        );
    }
}

/// A client that opened an HTTP/2 connection and then went silent (a hung or partitioned
/// kube-apiserver) must not keep the server from stopping: graceful shutdown may wait for
/// it, but not forever.
#[test]
fn sigterm_with_a_silent_client_connection() {
    for kind in target::differential_targets() {
        let mut server = Server::start(kind);
        let addr = server.endpoint().trim_start_matches("http://").to_string();
        let mut conn = TcpStream::connect(&addr).expect("connect to client port");
        // HTTP/2 connection preface and an empty SETTINGS frame; then nothing, ever: the
        // server's SETTINGS, pings and GOAWAY go unanswered.
        conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .expect("write HTTP/2 preface");
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let status = server.sigterm_within(STOP_BOUND);
        println!(
            "{kind} exited with {status} {:?} after SIGTERM",
            started.elapsed()
        );
        drop(conn);
    }
}
