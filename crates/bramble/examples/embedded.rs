//! Bramble embedded in a program: open a store in a directory, write, read,
//! run a compare-and-swap transaction, and close it.
//!
//! `cargo run --example embedded -- /tmp/embedded.bramble`

use bramble::{Compare, ErrorKind, Node, NodeOptions, RangeOptions, Txn, TxnOp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "embedded.bramble".to_string());
    let node = Node::open(NodeOptions::new(&dir)).await?;

    let put = node.put("config/greeting", "hello").await?;
    let rev = put.header.map(|h| h.revision).unwrap_or_default();
    println!("put config/greeting at revision {rev}");

    // Compare-and-swap: replace the value only if nobody changed it since.
    let cas = node
        .txn(
            Txn::new()
                .when([Compare::mod_revision("config/greeting").eq(rev)])
                .and_then([TxnOp::put("config/greeting", "hello, bramble")]),
        )
        .await?;
    println!("compare-and-swap succeeded: {}", cas.succeeded);

    let listing = node.range("config/", RangeOptions::new().prefix()).await?;
    for kv in listing.kvs {
        println!(
            "{} = {} (version {})",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
            kv.version
        );
    }

    // An etcd error comes back typed, with etcd's code and text.
    if let Err(e) = node.put("", "no key").await {
        assert_eq!(e.kind(), ErrorKind::EmptyKey);
        println!("empty key refused: {:?}: {}", e.code(), e.message());
    }

    node.close().await;
    Ok(())
}
