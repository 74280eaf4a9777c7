//! Free loopback ports for servers started by tests.
//!
//! The OS picks a free port (bind to port 0), and a process-wide set makes sure two servers in
//! the same test binary never get the same one even after the probe socket is closed. Another
//! process can still take the port between the probe and the server's bind; the server
//! harness retries with new ports when a start fails that way.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out by this process, never reused.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a port on 127.0.0.1 that was free a moment ago and not handed out before.
pub fn free_port() -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("local_addr of probe socket")
            .port();
        if taken.insert(port) {
            return port;
        }
    }
    panic!("could not find a free port on 127.0.0.1 after 1000 tries");
}
