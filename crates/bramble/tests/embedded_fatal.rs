//! The embedding API after a fatal failure (issue 7, defect 3) and with a lost WAL
//! (defect 5): a library never exits the process, so the failure must be visible and typed.
//!
//! The full-disk test mounts a small tmpfs under the state machine's directory (a real
//! ENOSPC from the kernel), so it needs root, as the end-to-end netns tests do.

use std::time::Duration;

use bramble::{ErrorKind, Node, NodeOptions, RangeOptions};
use bramble_raft::FatalCause;
use bramble_testkit::disk::SmallDisk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_every_later_call_with_the_fatal_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _disk = SmallDisk::mount(&dir.path().join("member").join("snap"), "6m");
    let node = Node::open(NodeOptions::new(dir.path()))
        .await
        .expect("open");
    assert!(node.fatal_error().is_none());

    let value = vec![b'x'; 700_000];
    let mut acked = 0;
    let err = loop {
        match node.put(format!("k{acked}"), value.clone()).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 40, "the disk never filled");
    };
    assert!(acked > 0, "no put succeeded before the disk filled");
    let fatal = tokio::time::timeout(Duration::from_secs(10), node.fatal())
        .await
        .expect("Node::fatal resolves after the failure");
    assert!(
        matches!(fatal.cause, FatalCause::Apply | FatalCause::Checkpoint),
        "{fatal}"
    );
    assert!(fatal.detail.contains("No space left on device"), "{fatal}");
    // The failed put itself says so, with etcd's code and text.
    assert_eq!(err.fatal(), Some(&fatal), "{err}");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert_eq!(err.message(), "etcdserver: server stopped");

    // Nothing more is served, serializable reads included: the store no longer moves.
    let read = node
        .range("k0", RangeOptions::new().serializable())
        .await
        .expect_err("a serializable read after the failure");
    assert_eq!(read.fatal(), Some(&fatal));
    let put = node
        .put("after", "v")
        .await
        .expect_err("a put after the failure");
    assert_eq!(put.fatal(), Some(&fatal));

    // Closing does not hang on the failed disk, and keeps the first cause.
    tokio::time::timeout(Duration::from_secs(10), node.close())
        .await
        .expect("close returns");
    assert_eq!(node.fatal_error(), Some(fatal));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_data_dir_that_lost_its_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = dir.path().join("member").join("wal");
    {
        let node = Node::open(NodeOptions::new(dir.path()))
            .await
            .expect("first open of a fresh dir");
        node.put("k", "v").await.expect("put");
        node.close().await;
    }
    // The segments gone, the directory kept: still no WAL.
    for entry in std::fs::read_dir(&wal).expect("read member/wal") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove a segment");
    }
    let err = match Node::open(NodeOptions::new(dir.path())).await {
        Ok(_) => panic!("opened a data dir whose WAL was deleted"),
        Err(e) => e,
    };
    assert!(err.message().contains("no write-ahead log"), "{err}");
    assert!(err.message().contains("member/wal"), "{err}");
    // Nothing was recreated behind the refusal.
    assert_eq!(std::fs::read_dir(&wal).expect("read member/wal").count(), 0);
}
