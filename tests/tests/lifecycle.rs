//! Stopping: SIGTERM (what systemd and the kubelet send) must stop the server promptly,
//! whatever its clients do, and lose nothing. Run on every differential target: etcd shows
//! what "promptly" means.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bramble_tests::ports::free_port;
use bramble_tests::server::single_member_args;
use bramble_tests::target;
use bramble_tests::{Etcdctl, Server};

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

/// Under systemd (a `Type=notify` unit, as Debian's etcd unit and Bramble's packages use),
/// the member tells its `NOTIFY_SOCKET` `READY=1` once it serves clients, as etcd does: the
/// notification comes, and a client is served right after it.
#[test]
fn systemd_readiness_as_etcd() {
    use std::os::unix::net::UnixDatagram;
    use std::process::{Command, Stdio};

    for kind in target::differential_targets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let (client_port, peer_port) = (free_port(), free_port());
        let mut child = Command::new(kind.binary())
            .args(single_member_args(
                &dir.path().join("data"),
                client_port,
                peer_port,
            ))
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut buf = [0u8; 256];
        let got = socket.recv(&mut buf);
        let message = got.map(|n| String::from_utf8_lossy(&buf[..n]).to_string());
        let served =
            Etcdctl::new(format!("http://127.0.0.1:{client_port}")).run(&["put", "ready", "yes"]);
        let _ = child.kill();
        let _ = child.wait();
        let message = message.unwrap_or_else(|e| panic!("{kind}: no notification: {e}"));
        assert_eq!(message.trim(), "READY=1", "{kind}: the notification");
        served.assert_ok();
    }
}
