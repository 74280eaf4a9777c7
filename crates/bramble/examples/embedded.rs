//! Bramble embedded in a program: open a store in a directory, write, read,
//! run a compare-and-swap transaction, and close it.
//!
//! `cargo run --example embedded -- /tmp/embedded.bramble`

use bramble::api::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use bramble::{Node, NodeOptions};

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
        .txn(TxnRequest {
            compare: vec![Compare {
                key: b"config/greeting".to_vec(),
                target: compare::CompareTarget::Mod as i32,
                result: compare::CompareResult::Equal as i32,
                target_union: Some(compare::TargetUnion::ModRevision(rev)),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"config/greeting".to_vec(),
                    value: b"hello, bramble".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        })
        .await?;
    println!("compare-and-swap succeeded: {}", cas.succeeded);

    let listing = node
        .range(RangeRequest {
            key: b"config/".to_vec(),
            range_end: b"config0".to_vec(),
            ..Default::default()
        })
        .await?;
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
        println!("empty key refused: {:?}: {}", e.code, e.message);
    }

    node.close().await;
    Ok(())
}
