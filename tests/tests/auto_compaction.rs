//! Automatic compaction (`--auto-compaction-mode periodic`, `--auto-compaction-retention`)
//! on etcd and Bramble: with writes going on, history older than the retention becomes
//! unreadable ("required revision has been compacted") without any client compacting,
//! while recent revisions stay readable. (The revision mode compacts every five minutes, as
//! etcd's, too slow for a test; its flags are unit tested in crates/bramble/src/config.rs.)

use std::time::{Duration, Instant};

use bramble_tests::server::ServerConfig;
use bramble_tests::{target, Server};

#[test]
fn periodic_auto_compaction_forgets_old_history_while_writes_go_on() {
    for kind in target::differential_targets() {
        let config = ServerConfig {
            extra_args: vec![
                "--auto-compaction-mode=periodic".to_string(),
                "--auto-compaction-retention=2s".to_string(),
            ],
            ..ServerConfig::default()
        };
        let server = Server::start_with(kind, config);
        let ctl = server.etcdctl();
        ctl.run(&["put", "k", "first"]).assert_ok();
        let start = Instant::now();
        let mut compacted_after = None;
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(20) {
            ctl.run(&["put", "k", &format!("v{i}")]).assert_ok();
            i += 1;
            let old = ctl.run(&["get", "k", "--rev=2"]);
            if old.code != 0 {
                let err = &old.stderr;
                assert!(
                    err.contains("required revision has been compacted"),
                    "{kind}: {err}"
                );
                compacted_after = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = compacted_after
            .unwrap_or_else(|| panic!("{kind}: nothing compacted in 20 s of writes"));
        // Not before one retention period (the first compaction waits a whole period).
        assert!(
            after >= Duration::from_millis(1500),
            "{kind}: compacted after only {after:?}"
        );
        // The latest revisions are still readable.
        let recent = ctl.run(&["get", "k", "-w", "json"]);
        recent.assert_ok();
        println!("{kind}: revision 2 compacted after {after:?} ({i} puts)");
    }
}
