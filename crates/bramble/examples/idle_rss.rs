//! The memory of an idle embedded member: opens a one-member store on a temporary
//! directory, writes one key (so the store is really open, as a program's would be), stays
//! idle for a while and prints its resident set from /proc/self/status, for comparison with
//! an idle `bramble` process (docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p bramble --example idle_rss -- [idle seconds, default 10]
//! ```

use std::time::Duration;

use bramble::{Node, NodeOptions};

/// A line of /proc/self/status (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idle_secs: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 10,
    };
    // A multi-threaded runtime on every core, as the `bramble` binary runs its member.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        println!(
            "before open: VmRSS {} KiB",
            status_kib("VmRSS:").unwrap_or(0)
        );
        let node = Node::open(NodeOptions::new(dir.path())).await?;
        node.put("idle", "member").await?;
        // The measurement is of the member left alone: nothing to wait for but time.
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        println!(
            "after {idle_secs} s idle: VmRSS {} KiB, VmHWM {} KiB",
            status_kib("VmRSS:").unwrap_or(0),
            status_kib("VmHWM:").unwrap_or(0)
        );
        node.close().await;
        Ok(())
    })
}
