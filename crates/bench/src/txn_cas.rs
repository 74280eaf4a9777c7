//! The `txn-cas` workload: compare-and-swap updates, as kube-apiserver writes.
//!
//! kube-apiserver updates an object with one Txn: if the key's mod revision
//! is still the one it last saw, put the new value, else get the key (to
//! retry on the fresh copy): `Txn(If mod_revision(key) == last_seen,
//! Then Put(key, value), Else Get(key))`. That is most of a Kubernetes
//! cluster's write load, and it costs a server more than a plain put: a
//! compare, and a read on the failure path.
//!
//! Each client owns one key, `<prefix><client number>`, created (not timed)
//! before the run, so clients never race each other: every compare should
//! hold. A failed compare is still an answered request (counted in `ok` and
//! the latencies, as the server did the work) and is also counted as a
//! conflict; the client takes the key's mod revision from the Get and goes
//! on. With one writer per key, any conflict means someone else wrote the key
//! or the server got a compare wrong.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::{
    request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::Status;

use crate::conn::Kv;
use crate::run::OpFuture;

/// Which keys and values the clients write.
#[derive(Clone, Debug)]
pub(crate) struct CasShape {
    /// Client `i` owns the key `prefix` + `i` (decimal).
    pub(crate) prefix: String,
    /// The value every write puts (random bytes, made once).
    pub(crate) value: Vec<u8>,
}

impl CasShape {
    /// Checks the shape is usable.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() {
            // An empty prefix would make the keys "0", "1", ...: easy to
            // collide with a real store's keys.
            bail!("--prefix must not be empty");
        }
        Ok(())
    }

    /// The key client number `client` owns.
    pub(crate) fn key(&self, client: usize) -> Vec<u8> {
        format!("{}{client}", self.prefix).into_bytes()
    }
}

/// A client with its own key and the key's mod revision as it last saw it.
#[derive(Clone)]
pub(crate) struct CasClient {
    /// The KV stub the client sends on.
    kv: Kv,
    /// The key only this client writes.
    key: Vec<u8>,
    /// The key's mod revision after this client's last write or read.
    /// Shared by the clones the runner makes of this client: they are only
    /// ever used one at a time, by this client's task.
    last_seen: Arc<AtomicI64>,
}

/// Creates each client's key with a plain put (before the timed run, so it
/// is not measured) and remembers its revision: client `i` gets key `i`.
pub(crate) async fn create_keys(
    clients: &[Kv],
    shape: &CasShape,
    timeout: Duration,
) -> Result<Vec<CasClient>> {
    let mut cas_clients = Vec::with_capacity(clients.len());
    for (i, kv) in clients.iter().enumerate() {
        let key = shape.key(i);
        let request = PutRequest {
            key: key.clone(),
            value: shape.value.clone(),
            ..Default::default()
        };
        let shown = String::from_utf8_lossy(&key).into_owned();
        let reply = tokio::time::timeout(timeout, kv.clone().put(request))
            .await
            .with_context(|| format!("creating txn-cas key {shown}: timed out"))?
            .with_context(|| format!("creating txn-cas key {shown}"))?
            .into_inner();
        // A put's header revision is the revision it wrote: the key's mod revision.
        let Some(header) = reply.header else {
            bail!("creating txn-cas key {shown}: the Put response has no header");
        };
        cas_clients.push(CasClient {
            kv: kv.clone(),
            key,
            last_seen: Arc::new(AtomicI64::new(header.revision)),
        });
    }
    Ok(cas_clients)
}

/// The request for one update: compare-and-swap on the client's own key;
/// a failed compare adds one to `conflicts`.
pub(crate) fn op(
    shape: &CasShape,
    conflicts: Arc<AtomicU64>,
) -> impl Fn(CasClient, u64) -> OpFuture + Send + Sync {
    let value = Arc::new(shape.value.clone());
    move |client: CasClient, _i: u64| {
        let value = value.clone();
        let conflicts = conflicts.clone();
        Box::pin(async move { client.update(&value, &conflicts).await })
    }
}

impl CasClient {
    /// One `Txn(If mod_revision == last_seen, Then Put, Else Get)`.
    async fn update(mut self, value: &[u8], conflicts: &AtomicU64) -> Result<(), Status> {
        let last_seen = self.last_seen.load(Ordering::Relaxed);
        let request = TxnRequest {
            compare: vec![Compare {
                key: self.key.clone(),
                target: CompareTarget::Mod as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::ModRevision(last_seen)),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.key.clone(),
                    value: value.to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: self.key.clone(),
                    ..Default::default()
                })),
            }],
        };
        let reply = self.kv.txn(request).await?.into_inner();
        let now = if reply.succeeded {
            // The txn's only write is the put: the header's revision is the
            // key's new mod revision (kube-apiserver's new resourceVersion).
            let Some(header) = reply.header else {
                return Err(bad_reply("a successful Txn has no header"));
            };
            header.revision
        } else {
            conflicts.fetch_add(1, Ordering::Relaxed);
            let first = reply.responses.first().and_then(|r| r.response.as_ref());
            let Some(response_op::Response::ResponseRange(range)) = first else {
                return Err(bad_reply("a failed Txn did not answer with its Get"));
            };
            // A key deleted behind our back has no kvs: mod revision 0
            // compares equal to an absent key, so the next put re-creates it.
            range.kvs.first().map_or(0, |kv| kv.mod_revision)
        };
        self.last_seen.store(now, Ordering::Relaxed);
        Ok(())
    }
}

/// An error for a reply that breaks the protocol, counted with the gRPC
/// errors (under `Internal`) so the run shows it.
fn bad_reply(what: &str) -> Status {
    Status::internal(format!("bramble-bench: txn-cas: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_key() {
        let s = CasShape {
            prefix: "bench-cas/".to_string(),
            value: Vec::new(),
        };
        assert_eq!(s.key(0), b"bench-cas/0");
        assert_eq!(s.key(12), b"bench-cas/12");
        assert!(s.validate().is_ok());
        assert!(CasShape {
            prefix: String::new(),
            ..s
        }
        .validate()
        .is_err());
    }
}
