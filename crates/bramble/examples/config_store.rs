//! A service's replicated configuration in an embedded Bramble: defaults
//! written once (whichever member starts first wins; later starts keep what
//! operators changed), read at start, then followed with a watch so every
//! change is applied in order, none missed between the read and the watch.
//!
//! `cargo run --example config_store [-- DATA_DIR]` (a temporary directory
//! without one). On a cluster, each service's member runs the same code.

use std::collections::BTreeMap;

use bramble::api::mvccpb::event::EventType;
use bramble::{Compare, Node, NodeOptions, RangeOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;

/// The service's settings and their defaults.
const DEFAULTS: [(&str, &str); 3] = [
    ("config/interval", "30s"),
    ("config/log-level", "info"),
    ("config/max-jobs", "4"),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let node = Node::open(NodeOptions::new(&dir)).await?;

    // Each default only where the key was never written: a restart, or a
    // second member starting later, keeps what is there.
    for (key, value) in DEFAULTS {
        let created = node
            .txn(
                Txn::new()
                    .when([Compare::create_revision(key).eq(0)])
                    .and_then([TxnOp::put(key, value)]),
            )
            .await?;
        println!(
            "{key}: default {}",
            if created.succeeded { "written" } else { "kept" }
        );
    }

    // The configuration as of one revision, then every change after it.
    let snapshot = node.range("config/", RangeOptions::new().prefix()).await?;
    let revision = snapshot.header.as_ref().map_or(0, |h| h.revision);
    let mut config: BTreeMap<String, String> = snapshot
        .kvs
        .iter()
        .map(|kv| (text(&kv.key), text(&kv.value)))
        .collect();
    println!("configuration at revision {revision}: {config:?}");
    let mut changes = node
        .watch(
            "config/",
            WatchOptions::new()
                .prefix()
                .start_revision(revision + 1)
                .prev_kv(),
        )
        .await?;

    // An operator (here a task; in life etcdctl or another member) changes it.
    let operator = node.client();
    tokio::spawn(async move {
        operator.put("config/log-level", "debug").await?;
        operator.put("config/interval", "10s").await?;
        operator.delete("config/max-jobs").await?;
        Ok::<_, bramble::Error>(())
    });

    let mut seen = 0;
    while seen < 3 {
        let Some(resp) = changes.next().await else {
            break;
        };
        for event in resp?.events {
            let Some(kv) = event.kv else { continue };
            let key = text(&kv.key);
            let before = event.prev_kv.map(|p| text(&p.value));
            if event.r#type == EventType::Delete as i32 {
                config.remove(&key);
                println!(
                    "{key}: {before:?} -> removed (revision {})",
                    kv.mod_revision
                );
            } else {
                config.insert(key.clone(), text(&kv.value));
                println!(
                    "{key}: {before:?} -> {:?} (revision {})",
                    text(&kv.value),
                    kv.mod_revision
                );
            }
            seen += 1;
        }
    }

    // What the watch built is what the store holds.
    let now = node.range("config/", RangeOptions::new().prefix()).await?;
    let stored: BTreeMap<String, String> = now
        .kvs
        .iter()
        .map(|kv| (text(&kv.key), text(&kv.value)))
        .collect();
    assert_eq!(config, stored, "the watch missed or reordered a change");
    println!("configuration now: {config:?}");
    drop(changes);
    node.close().await;
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
