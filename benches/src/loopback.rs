//! One embedded member called two ways: in process through `bramble::Client`, and
//! over gRPC on loopback (`bramble_server::ClientServer` serving the same member, a
//! tonic client from `bramble_api`), for the benches that compare the two
//! (`benches/embedded_vs_grpc.rs`, `benches/embedded_cpu.rs`).

use std::sync::atomic::{AtomicI64, Ordering};

use bramble::api::etcdserverpb::kv_client::KvClient;
use bramble::api::etcdserverpb::{RangeRequest, TxnRequest, TxnResponse};
use bramble::{Compare, Node, NodeOptions, PutOptions, RangeOptions, Txn, TxnOp};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The value every put writes: 256 bytes, as the other benches'.
pub const VALUE: [u8; 256] = [0x5a; 256];
/// The key that puts and gets use.
const KEY: &str = "/registry/pods/default/bench";
/// The key the compare-and-swap txn updates (nothing else writes it).
const CAS_KEY: &str = "/registry/leases/bench";

/// The calls compared.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// A put of [`VALUE`].
    Put,
    /// A linearizable get of one key (a ReadIndex round on the leader).
    GetLinearizable,
    /// A serializable get of one key (the member's own copy).
    GetSerializable,
    /// A txn that puts only if the key's mod revision is still the last one
    /// seen (a compare-and-swap, as Kubernetes' updates are).
    TxnCas,
}

impl Call {
    /// Every call, in the order they are reported.
    pub const ALL: [Call; 4] = [
        Call::Put,
        Call::GetLinearizable,
        Call::GetSerializable,
        Call::TxnCas,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Call::Put => "put_256b",
            Call::GetLinearizable => "get_linearizable",
            Call::GetSerializable => "get_serializable",
            Call::TxnCas => "txn_cas",
        }
    }
}

/// A one-member store on a temporary directory, served on 127.0.0.1 too.
pub struct Loopback {
    node: Node,
    kv: KvClient<Channel>,
    stop: CancellationToken,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The CAS key's mod revision, as the last CAS left it.
    cas_revision: AtomicI64,
    _dir: tempfile::TempDir,
}

impl Loopback {
    /// Opens the member, serves it and connects a gRPC client; both keys exist.
    pub async fn open() -> Loopback {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node::open(NodeOptions::new(dir.path()))
            .await
            .expect("open the member");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            bramble_server::ClientServer::new(node.context().clone()).serve(
                listener,
                None,
                stop.clone().cancelled_owned(),
            ),
        );
        // The gRPC server serves once the member published itself, as `bramble` does.
        let mut published = node.published();
        published.wait_for(|p| *p).await.expect("publish");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        node.put(KEY, VALUE).await.expect("put the key");
        let cas = node.put(CAS_KEY, VALUE).await.expect("put the CAS key");
        Loopback {
            node,
            kv: KvClient::new(channel),
            stop,
            server,
            cas_revision: AtomicI64::new(revision(cas.header)),
            _dir: dir,
        }
    }

    /// Stops the server, then the member.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.server.await;
        self.node.close().await;
    }

    /// Makes `call` through the embedding API.
    pub async fn embedded(&self, call: Call) {
        match call {
            Call::Put => {
                self.node.put(KEY, VALUE).await.expect("put");
            }
            Call::GetLinearizable => {
                let kv = self.node.get(KEY).await.expect("get");
                assert!(kv.is_some(), "the key exists");
            }
            Call::GetSerializable => {
                let resp = self
                    .node
                    .range(KEY, RangeOptions::new().serializable())
                    .await
                    .expect("serializable get");
                assert_eq!(resp.kvs.len(), 1, "the key exists");
            }
            Call::TxnCas => {
                let resp = self.node.txn(self.cas()).await.expect("txn");
                self.swapped(resp);
            }
        }
    }

    /// Makes the same call over gRPC (a clone of the client per call is cheap:
    /// it shares the connection).
    pub async fn grpc(&self, call: Call) {
        let mut kv = self.kv.clone();
        match call {
            Call::Put => {
                kv.put(PutOptions::new().request(KEY, VALUE))
                    .await
                    .expect("put");
            }
            Call::GetLinearizable => {
                let resp = kv
                    .range(RangeOptions::new().request(KEY))
                    .await
                    .expect("get");
                assert_eq!(resp.into_inner().kvs.len(), 1, "the key exists");
            }
            Call::GetSerializable => {
                let req = RangeRequest {
                    serializable: true,
                    ..RangeOptions::new().request(KEY)
                };
                let resp = kv.range(req).await.expect("serializable get");
                assert_eq!(resp.into_inner().kvs.len(), 1, "the key exists");
            }
            Call::TxnCas => {
                let req: TxnRequest = self.cas().into();
                let resp = kv.txn(req).await.expect("txn");
                self.swapped(resp.into_inner());
            }
        }
    }

    /// The compare-and-swap of the CAS key from its last revision.
    fn cas(&self) -> Txn {
        let rev = self.cas_revision.load(Ordering::Relaxed);
        Txn::new()
            .when([Compare::mod_revision(CAS_KEY).eq(rev)])
            .and_then([TxnOp::put(CAS_KEY, VALUE)])
            .or_else([TxnOp::get(CAS_KEY)])
    }

    /// Records the CAS key's new revision; the bench is its only writer, so
    /// every swap succeeds.
    fn swapped(&self, resp: TxnResponse) {
        assert!(resp.succeeded, "nothing else writes the CAS key");
        self.cas_revision
            .store(revision(resp.header), Ordering::Relaxed);
    }
}

fn revision(header: Option<bramble::api::etcdserverpb::ResponseHeader>) -> i64 {
    header.expect("a response header").revision
}
