//! Maintenance `Hash` and `HashKV`: the handlers, over the store's hashes
//! (`bramble_storage::mvcc`'s `hash` module says what is hashed and why).
//!
//! Both are served by the member asked, from its own store, without a Raft
//! round trip (as etcd): comparing members is their purpose. The hashing reads
//! the whole key table, so it runs on a blocking thread.

use bramble_api::etcdserverpb::{HashKvRequest, HashKvResponse, HashRequest, HashResponse};
use bramble_storage::mvcc::{MvccError, MvccStore};
use tonic::Status;

use crate::errors::{self, mvcc_status};
use crate::ServerContext;

/// etcd's `HashKV`: the hash of the key history up to `req.revision` (0: the
/// current revision), equal to etcd's for the same history.
pub(crate) async fn hash_kv(
    ctx: &ServerContext,
    req: HashKvRequest,
) -> Result<HashKvResponse, Status> {
    let h = on_store(ctx, move |store| store.hash_kv(req.revision)).await?;
    let mut resp = HashKvResponse {
        hash: h.hash,
        compact_revision: h.compact_revision,
        hash_revision: h.hash_revision,
        ..Default::default()
    };
    resp.header.get_or_insert_default().revision = h.current_revision;
    ctx.identity.fill(&mut resp.header, &ctx.node);
    Ok(resp)
}

/// `Hash`: a hash of Bramble's own tables (not comparable with etcd's, which
/// hashes its bbolt file), with the revision of the hashed state.
pub(crate) async fn hash(ctx: &ServerContext, _req: HashRequest) -> Result<HashResponse, Status> {
    let h = on_store(ctx, MvccStore::hash_tables).await?;
    let mut resp = HashResponse {
        hash: h.hash,
        ..Default::default()
    };
    resp.header.get_or_insert_default().revision = h.revision;
    ctx.identity.fill(&mut resp.header, &ctx.node);
    Ok(resp)
}

/// Runs `f` on the member's store on a blocking thread, unless the member
/// failed for good (its store no longer moves).
async fn on_store<T: Send + 'static>(
    ctx: &ServerContext,
    f: impl FnOnce(&MvccStore) -> Result<T, MvccError> + Send + 'static,
) -> Result<T, Status> {
    ctx.node.check_alive().map_err(crate::propose_status)?;
    let store = ctx.node.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(errors::internal)?
        .map_err(|e| mvcc_status(&e))
}
