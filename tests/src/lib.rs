//! End-to-end test harness for Bramble.
//!
//! Bramble's spec is etcd: every test here can run the same steps against a real `etcd` and a
//! real `bramble` process and compare what a client sees. The pieces:
//!
//! - [`target`]: which servers a test runs against (`BRAMBLE_E2E_ONLY_ETCD=1` for etcd alone).
//! - [`tools`]: where the `bramble`, `etcd` and `etcdctl` binaries are.
//! - [`ports`]: free loopback ports for client and peer URLs.
//! - [`server`]: one server process in a fresh data dir, with crash, stop and restart.
//! - [`cluster`]: a multi-process cluster: crash, pause, restart, add, remove, partition.
//! - [`netns`]: a network namespace per cluster member, so tests can partition them.
//! - [`client`]: the same idea over gRPC with the etcd-client crate, compared call by call.
//! - [`load`]: fill a server, and a writer recording its longest put during maintenance.
//! - [`etcdctl`]: run `etcdctl` against an endpoint, capturing output and exit code.
//! - [`faults`]: disk faults: strace injection, a background liveness probe (the small
//!   tmpfs is `bramble_testkit::disk`).
//!
//! Seeded randomness, temp dirs and process spawning shared with unit tests and benchmarks
//! are in `bramble_testkit` (crates/testkit).
//! - [`normalize`]: mask the output fields that legitimately differ between two servers.
//! - [`protobuf`]: a tiny decoder so `-w protobuf` output can be normalized too.
//! - [`script`]: differential etcdctl scripts, run on each target and compared step by step.
//! - [`linearizability`]: record concurrent clients' operations and check the history is
//!   linearizable (Wing & Gong / Lowe search, per key).

#![warn(missing_docs, unreachable_pub)]

pub mod background;
pub mod client;
pub mod cluster;
pub mod etcdctl;
pub mod faults;
pub mod go_tests;
pub mod linearizability;
pub mod load;
pub mod netns;
pub mod normalize;
pub mod ports;
pub mod protobuf;
pub mod script;
pub mod server;
pub mod target;
pub mod tools;

pub use cluster::{Cluster, ClusterConfig, MemberState};
pub use etcdctl::{Etcdctl, Output};
pub use script::{Script, Step};
pub use server::{Server, ServerConfig};
pub use target::Kind;

/// One `#[test]` per server kind for each scenario function `fn scenario(kind: Kind)`:
/// `<scenario>::etcd` and `<scenario>::bramble`, so the very same steps run on both.
#[macro_export]
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use $crate::Kind;

            #[test]
            fn etcd() {
                super::$scenario(Kind::Etcd)
            }

            #[test]
            fn bramble() {
                super::$scenario(Kind::Bramble)
            }
        }
    )*};
}
