//! Crash safety: no acknowledged write is ever lost.
//!
//! 16 concurrent writers put unique keys and remember every put the server acknowledged
//! (key, value, revision). After a random-ish delay the server is killed with SIGKILL in the
//! middle of that load, restarted on the same data dir, and every acknowledged write must be
//! there with its value and the revision it was acknowledged at. Five rounds in one test, each
//! also re-checking the writes of all earlier rounds (a restart must not lose older data
//! either). Writes that were in flight when the server died may or may not be present, but if
//! present they must hold the value that was sent: a torn or mixed-up record is a failure too.
//!
//! Runs on Bramble; `BRAMBLE_E2E_ONLY_ETCD=1` runs it on etcd to prove the test itself.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bramble_tests::client;
use bramble_tests::target;
use bramble_tests::Server;
use etcd_client::{Client, GetOptions};

const ROUNDS: u64 = 5;
const WRITERS: u64 = 16;
/// Per-put timeout: a put that hangs after the kill must not hang the test.
const PUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Values are padded so WAL records span more than one tiny write.
const VALUE_PADDING: usize = 200;

/// A write the server acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    value: Vec<u8>,
    revision: i64,
}

/// Everything the writers sent and what was acknowledged, by key.
#[derive(Default)]
struct Ledger {
    /// Every put that was sent (acknowledged or not), key -> value.
    sent: HashMap<Vec<u8>, Vec<u8>>,
    /// Acknowledged puts, key -> (value, revision).
    acked: HashMap<Vec<u8>, Acked>,
}

/// A delay in [200, 1200) ms that differs between runs and rounds, so the kill lands at
/// different points of the write path (mid-fsync, mid-batch, between batches) over time.
fn kill_delay(round: u64) -> Duration {
    let noise = RandomState::new().hash_one(round);
    Duration::from_millis(200 + noise % 1000)
}

fn value_for(round: u64, writer: u64, seq: u64) -> Vec<u8> {
    let mut v = format!("r{round}-w{writer}-s{seq}-").into_bytes();
    v.resize(v.len() + VALUE_PADDING, b'a' + (seq % 26) as u8);
    v
}

/// One writer: puts `crash/r<round>/w<writer>/<seq>` until a put fails (the server died) or
/// `stop_at` passes, recording what it sent and what was acknowledged.
async fn writer(
    endpoint: String,
    round: u64,
    writer: u64,
    ledger: Arc<Mutex<Ledger>>,
    stop_at: Instant,
) {
    // The kill may land before a writer even connected: then it simply has nothing to record.
    let Ok(mut c) = client::try_connect_endpoint(&endpoint).await else {
        return;
    };
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        let key = format!("crash/r{round}/w{writer:02}/{seq:06}").into_bytes();
        let value = value_for(round, writer, seq);
        ledger
            .lock()
            .expect("ledger lock")
            .sent
            .insert(key.clone(), value.clone());
        match tokio::time::timeout(PUT_TIMEOUT, c.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(resp)) => {
                let revision = resp.header().map(|h| h.revision()).unwrap_or(-1);
                ledger
                    .lock()
                    .expect("ledger lock")
                    .acked
                    .insert(key, Acked { value, revision });
            }
            // The server is gone (or hung): this write's fate is unknown, stop writing.
            Ok(Err(_)) | Err(_) => return,
        }
        seq += 1;
    }
}

/// Reads every key under `prefix`, paginating so large rounds stay under the client's 4 MiB
/// response limit.
async fn read_prefix(c: &mut Client, prefix: &str) -> HashMap<Vec<u8>, (Vec<u8>, i64)> {
    let mut out = HashMap::new();
    let end = {
        let mut e = prefix.as_bytes().to_vec();
        *e.last_mut().expect("non-empty prefix") += 1;
        e
    };
    let mut from = prefix.as_bytes().to_vec();
    loop {
        let resp = c
            .get(
                from.clone(),
                Some(GetOptions::new().with_range(end.clone()).with_limit(2000)),
            )
            .await
            .unwrap_or_else(|e| panic!("range read of {prefix} after restart: {e}"));
        for kv in resp.kvs() {
            out.insert(kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision()));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return out,
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let kind = target::system_under_test();
    let started = Instant::now();
    let mut server = Server::start(kind);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime");
    let mut all_rounds: Vec<Arc<Mutex<Ledger>>> = Vec::new();

    for round in 0..ROUNDS {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let delay = kill_delay(round);
        // Writers stop on their own a while after the kill is due, in case a put never fails.
        let stop_at = Instant::now() + delay + Duration::from_secs(10);
        let endpoint = server.endpoint();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| runtime.spawn(writer(endpoint.clone(), round, w, ledger.clone(), stop_at)))
            .collect();

        std::thread::sleep(delay);
        server.kill9();
        runtime.block_on(async {
            for t in tasks {
                t.await.expect("writer task panicked");
            }
        });

        server.restart();
        all_rounds.push(ledger);

        let endpoint = server.endpoint();
        let problems = runtime.block_on(async {
            let mut c = client::connect_endpoint(&endpoint).await;
            let mut problems = Vec::new();
            for (r, ledger) in all_rounds.iter().enumerate() {
                let found = read_prefix(&mut c, &format!("crash/r{r}/")).await;
                let ledger = ledger.lock().expect("ledger lock");
                for (key, acked) in &ledger.acked {
                    let name = String::from_utf8_lossy(key);
                    match found.get(key) {
                        None => problems.push(format!("round {r}: acknowledged {name} is missing")),
                        Some((value, _)) if *value != acked.value => {
                            problems.push(format!("round {r}: {name} has a different value"))
                        }
                        Some((_, rev)) if *rev != acked.revision => problems.push(format!(
                            "round {r}: {name} acknowledged at revision {} but has mod_revision {rev}",
                            acked.revision
                        )),
                        Some(_) => {}
                    }
                }
                for (key, (value, _)) in &found {
                    let name = String::from_utf8_lossy(key);
                    match ledger.sent.get(key) {
                        None => problems.push(format!("round {r}: {name} was never written")),
                        Some(sent) if sent != value => {
                            problems.push(format!("round {r}: unacknowledged {name} has a corrupt value"))
                        }
                        Some(_) => {}
                    }
                }
            }
            problems
        });

        let (sent, acked) = {
            let l = all_rounds
                .last()
                .expect("this round")
                .lock()
                .expect("ledger lock");
            (l.sent.len(), l.acked.len())
        };
        println!(
            "round {round}: killed {kind} after {delay:?}: {acked} acknowledged of {sent} sent, {} problems",
            problems.len()
        );
        assert!(
            acked > 0,
            "round {round}: no write was acknowledged before the kill; {kind} log:\n{}",
            bramble_tests::server::tail(&server.log(), 40)
        );
        if !problems.is_empty() {
            let shown: Vec<_> = problems.iter().take(20).cloned().collect();
            panic!(
                "round {round} on {kind}: {} problems after kill -9 and restart, first ones:\n{}",
                problems.len(),
                shown.join("\n")
            );
        }
    }
    println!("{ROUNDS} rounds in {:?}", started.elapsed());
}
