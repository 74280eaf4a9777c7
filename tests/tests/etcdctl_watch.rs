//! Differential `etcdctl watch` tests: prefix, key ranges, `--rev` replay, `--prev-kv`,
//! `-w json`, compacted revisions and interactive `watch -i`, run against a fresh etcd and a
//! fresh Bramble and compared after masking cluster id, member id and raft term.
//!
//! `etcdctl watch` runs until killed: each watcher is started in the background with an
//! explicit `--rev`, so what it prints does not depend on when its stream was set up; the
//! writes are made with other etcdctl runs, and the watcher is killed once it printed the
//! last event expected, then its output is compared.

use std::time::Duration;

use bramble_tests::background::Background;
use bramble_tests::normalize;
use bramble_tests::target::{self, Kind};
use bramble_tests::{Etcdctl, Server};

const WAIT: Duration = Duration::from_secs(15);

/// A watcher: its name, etcdctl args, and when it is done (text, occurrences).
///
/// How events are grouped into responses depends on timing while a watcher catches up (in
/// etcd as in Bramble), and `-w json` shows the grouping: JSON watchers therefore start after
/// the writes (`replay`), when the whole history comes as one response in both servers.
struct Watcher {
    name: &'static str,
    args: &'static [&'static str],
    done: (&'static str, usize),
    replay: bool,
}

/// One watcher's normalized outcome.
type Outcome = (String, String);

fn normalized(name: &str, out: &bramble_tests::Output, endpoint: &str) -> Outcome {
    (
        name.to_string(),
        format!(
            "code={}\nstdout:\n{}\nstderr:\n{}",
            out.code,
            normalize::stdout_text(&out.stdout_str()),
            normalize::stderr_text(&out.stderr, endpoint)
        ),
    )
}

fn ok(ctl: &Etcdctl, args: &[&str]) {
    ctl.run(args).assert_ok();
}

/// Writes revisions 4..=10 (the fixture wrote 2 and 3), a txn with two puts at 7 and a
/// delete of three keys at 9.
fn writes(ctl: &Etcdctl) {
    ok(ctl, &["put", "a/1", "one"]); // 4
    ok(ctl, &["put", "a/1", "uno"]); // 5
    ok(ctl, &["put", "b/1", "x"]); // 6
    ctl.run_stdin(&["txn", "-i"], Some("\nput a/2 two\nput a/3 three\n\n\n"))
        .assert_ok(); // 7
    ok(ctl, &["del", "a/1"]); // 8
    ok(ctl, &["del", "--prefix", "a/"]); // 9
    ok(ctl, &["put", "a/zz", "done"]); // 10
}

/// Runs watchers over the fixture and the writes on a fresh server of `kind`.
fn watch_scenario(kind: Kind, watchers: &[Watcher]) -> Vec<Outcome> {
    let server = Server::start(kind);
    let ctl = server.etcdctl();
    ok(&ctl, &["put", "a/0", "zero"]); // 2
    ok(&ctl, &["put", "other", "x"]); // 3
    let endpoint = server.endpoint();
    let start = |w| -> (&Watcher, Background) { (w, Background::start(&endpoint, w.args)) };
    let mut running: Vec<(&Watcher, Background)> =
        watchers.iter().filter(|w| !w.replay).map(start).collect();
    writes(&ctl);
    running.extend(watchers.iter().filter(|w| w.replay).map(start));
    running
        .into_iter()
        .map(|(w, bg)| {
            let done = bg.wait_for(w.done.0, w.done.1, WAIT);
            let out = bg.finish();
            assert!(done, "{kind}: watcher {} did not finish:\n{out}", w.name);
            normalized(w.name, &out, &server.endpoint())
        })
        .collect()
}

/// Runs `scenario` on each differential target and compares the outcomes.
fn differential(name: &str, scenario: impl Fn(Kind) -> Vec<Outcome> + Sync) {
    let kinds = target::differential_targets();
    let scenario = &scenario;
    let results: Vec<(Kind, Vec<Outcome>)> = std::thread::scope(|s| {
        let handles: Vec<_> = kinds
            .iter()
            .map(|&k| (k, s.spawn(move || scenario(k))))
            .collect();
        handles
            .into_iter()
            .map(|(k, h)| (k, h.join().expect("scenario panicked")))
            .collect()
    });
    if std::env::var_os("BRAMBLE_E2E_VERBOSE").is_some() {
        for (k, outcomes) in &results {
            for (what, text) in outcomes {
                println!("[{name}] {k} {what}:\n{text}");
            }
        }
    }
    if let [(_, etcd), (_, bramble)] = results.as_slice() {
        let mut report = String::new();
        for (e, b) in etcd.iter().zip(bramble) {
            if e != b {
                report.push_str(&format!(
                    "{}:\n--- etcd\n{}\n--- bramble\n{}\n",
                    e.0, e.1, b.1
                ));
            }
        }
        assert_eq!(etcd.len(), bramble.len());
        assert!(report.is_empty(), "{name}:\n{report}");
    }
}

#[test]
fn prefix_range_rev_and_prev_kv() {
    differential("watch", |kind| {
        watch_scenario(
            kind,
            &[
                Watcher {
                    name: "prefix from rev 2",
                    args: &["watch", "--prefix", "a/", "--rev", "2"],
                    done: ("done", 1),
                    replay: false,
                },
                Watcher {
                    name: "prefix --prev-kv from rev 4",
                    args: &["watch", "--prefix", "a/", "--prev-kv", "--rev", "4"],
                    done: ("done", 1),
                    replay: false,
                },
                Watcher {
                    name: "json prefix from rev 1",
                    args: &["watch", "-w", "json", "--prefix", "a/", "--rev", "1"],
                    done: ("ZG9uZQ==", 1),
                    replay: true,
                },
                Watcher {
                    name: "single key",
                    args: &["watch", "a/1", "--rev", "4"],
                    done: ("DELETE", 1),
                    replay: false,
                },
                Watcher {
                    name: "range [a/1, a/3) with prev-kv",
                    args: &["watch", "a/1", "a/3", "--prev-kv", "--rev", "3"],
                    done: ("DELETE", 2),
                    replay: false,
                },
                Watcher {
                    name: "everything, json",
                    args: &["watch", "-w", "json", "--prefix", "", "--rev", "2"],
                    done: ("ZG9uZQ==", 1),
                    replay: true,
                },
            ],
        )
    });
}

#[test]
fn compacted_revision_cancels_the_watch() {
    differential("compacted", |kind| {
        let server = Server::start(kind);
        let ctl = server.etcdctl();
        ok(&ctl, &["put", "a/0", "zero"]);
        ok(&ctl, &["put", "other", "x"]);
        writes(&ctl);
        ok(&ctl, &["compact", "6"]);
        let runs: [(&str, &[&str]); 3] = [
            ("below compaction", &["watch", "--rev", "2", "a/1"]),
            (
                "below compaction, json",
                &["watch", "-w", "json", "--rev", "5", "--prefix", "a/"],
            ),
            (
                "at compaction",
                &["watch", "-w", "json", "--rev", "6", "--prefix", "a/"],
            ),
        ];
        runs.iter()
            .map(|(name, args)| {
                if name.starts_with("below") {
                    // The server cancels the watch: etcdctl exits by itself.
                    let out = ctl.run(args);
                    normalized(name, &out, &server.endpoint())
                } else {
                    let bg = Background::start(&server.endpoint(), args);
                    let done = bg.wait_for("ZG9uZQ==", 1, WAIT);
                    let out = bg.finish();
                    assert!(done, "{kind}: {name}:\n{out}");
                    normalized(name, &out, &server.endpoint())
                }
            })
            .collect()
    });
}

#[test]
fn interactive() {
    differential("watch -i", |kind| {
        let server = Server::start(kind);
        let ctl = server.etcdctl();
        ok(&ctl, &["put", "a/0", "zero"]); // 2
        ok(&ctl, &["put", "other", "x"]); // 3
                                          // One watch per session: how two watchers' events interleave on one stream depends
                                          // on timing.
        let mut live = Background::start(&server.endpoint(), &["watch", "-i"]);
        live.line("watch --prev-kv --prefix a/ --rev 2");
        writes(&ctl);
        let mut replay = Background::start(&server.endpoint(), &["watch", "-w", "json", "-i"]);
        replay.line("watch --rev 3 other");
        let live_done = live.wait_for("done", 1, WAIT);
        let replay_done = replay.wait_for("eA==", 1, WAIT);
        let (live, replay) = (live.finish(), replay.finish());
        assert!(live_done, "{kind}: watch -i did not finish:\n{live}");
        assert!(
            replay_done,
            "{kind}: watch -i (json) did not finish:\n{replay}"
        );
        vec![
            normalized("watch -i", &live, &server.endpoint()),
            normalized("watch -i, json", &replay, &server.endpoint()),
        ]
    });
}
