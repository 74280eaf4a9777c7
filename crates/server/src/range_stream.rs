//! etcd 3.7's `KV.RangeStream`: a range answered as a stream of chunks, so a large
//! list never sits whole in a member's memory.
//!
//! As etcd 3.7.3 (`EtcdServer.rangeStream`): each chunk carries only key-values; the
//! last one also carries the header, `more` and `count`, so merging the chunks gives
//! the unary Range's response. Every chunk is read at the revision the first one read
//! (a client's past revision, else the current one), so writes during the stream are
//! not seen; a compaction past it fails the stream mid-way, as in etcd. `count_only` is
//! one chunk. Sort orders other than none or ascending keys and revision filters are
//! refused (`Unimplemented`),
//! with etcd's messages, before anything is read; so are compacted and future
//! revisions and permission errors (no chunk is sent).
//!
//! Unlike etcd, whose chunks hold a key count that doubles or halves towards
//! `--max-request-bytes` (so a chunk can reach twice that, or more), a chunk here is
//! bounded in bytes: [`RANGE_STREAM_CHUNK_BYTES`] (etcd's target), unless a
//! single key-value is bigger. Chunks are read one at a time on the blocking pool,
//! only when the transport asks for the next one (the stream is polled). hyper asks
//! for a chunk as soon as it has handed the previous one to HTTP/2, and holds it until
//! the client's flow-control window takes it, so a client that reads slowly holds the
//! server to about three chunks per stream (one being sent, one queued in HTTP/2, one
//! waiting in hyper): 4.5 MiB at most, however big the range.

use std::pin::Pin;
use std::sync::Arc;

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{RangeRequest, RangeResponse, RangeStreamResponse, ResponseHeader};
use bramble_api::mvccpb::KeyValue;
use bramble_storage::mvcc::{AuthError, AuthInfo, MvccError, MvccStore, PageRequest, RangePage};
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::auth::who::Credentials;
use crate::defaults::RANGE_STREAM_CHUNK_BYTES;
use crate::errors::{self, mvcc_status};
use crate::kv::read_access;
use crate::validate;
use crate::ServerContext;

/// The stream of chunks a RangeStream answers with.
pub(crate) type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

/// Room a chunk keeps for what is not a key-value: the header, `more` and `count` of
/// the last chunk, and the two message wrappers around them (at most 63 bytes).
const CHUNK_FRAMING_BYTES: usize = 128;

/// Checks `req`, reads its first chunk (so errors come back before any chunk, as in
/// etcd) and returns the stream of all chunks.
pub(crate) async fn serve(
    ctx: Arc<ServerContext>,
    creds: Credentials,
    req: RangeRequest,
) -> Result<ChunkStream, Status> {
    check_request(&req)?;
    let ai = read_access(&ctx, &creds, req.serializable).await?;
    let store = ctx.node.store().clone();
    let first = blocking(move || first_chunk(&store, &ai, req)).await?;
    let (chunk, state) = first;
    let chunk = finish(&ctx, chunk);
    let rest = futures::stream::unfold((ctx, state), |(ctx, state)| async move {
        let next = match state {
            State::Done => return None,
            State::AuthCheck(ai) => {
                let store = ctx.node.store().clone();
                blocking(move || check_auth_revision(&store, &ai))
                    .await
                    .map(|()| None)
            }
            State::Reading(cursor) => {
                let store = ctx.node.store().clone();
                blocking(move || cursor.next_chunk(&store)).await.map(Some)
            }
        };
        match next {
            Ok(Some((chunk, state))) => {
                let chunk = finish(&ctx, chunk);
                Some((Ok(chunk), (ctx, state)))
            }
            Ok(None) => None,
            Err(status) => Some((Err(status), (ctx, State::Done))),
        }
    });
    Ok(Box::pin(
        futures::stream::once(async { Ok(chunk) }).chain(rest),
    ))
}

/// etcd's `checkRangeStreamRequest`: the unary Range's checks, then no custom sort
/// order and no revision filter.
fn check_request(req: &RangeRequest) -> Result<(), Status> {
    validate::check_range(req)?;
    let (Ok(order), Ok(target)) = (
        SortOrder::try_from(req.sort_order),
        SortTarget::try_from(req.sort_target),
    ) else {
        return Err(mvcc_status(&MvccError::InvalidSortOption));
    };
    // etcd's IsDefaultOrdering, on the request as sent: order NONE passes whatever the
    // target (each chunk is then sorted by it: `sort_chunk`).
    if !(order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend)) {
        return Err(Status::unimplemented(
            "RangeStream does not support custom sort orders",
        ));
    }
    if req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
    {
        return Err(Status::unimplemented(
            "RangeStream does not support revision filters",
        ));
    }
    Ok(())
}

/// What the stream does after a chunk.
enum State {
    /// Reads the next chunk.
    Reading(Cursor),
    /// The last chunk was sent: etcd's `doSerialize` then fails the read if the auth
    /// store changed under it (`ErrAuthOldRevision`).
    AuthCheck(AuthInfo),
    /// Nothing more.
    Done,
}

/// Where a stream is in its range.
struct Cursor {
    req: RangeRequest,
    ai: AuthInfo,
    /// The revision every chunk reads.
    revision: i64,
    /// The last chunk's header revision: the current revision when the first chunk was
    /// read (as etcd: not the read revision).
    header_revision: i64,
    /// The last key sent.
    after: Vec<u8>,
    /// Key-values sent so far.
    sent: i64,
}

/// Permission check, then the first chunk (the only one for `count_only`).
fn first_chunk(
    store: &MvccStore,
    ai: &AuthInfo,
    req: RangeRequest,
) -> Result<(RangeResponse, State), MvccError> {
    store.auth_check_permitted(ai, &req.key, &req.range_end, PermType::Read)?;
    if req.count_only {
        let resp = store.range(&req)?;
        let last = RangeResponse {
            header: Some(header(resp.header.map_or(0, |h| h.revision))),
            count: resp.count,
            ..Default::default()
        };
        return Ok((last, State::AuthCheck(ai.clone())));
    }
    let page = store.range_page(&page_request(&req, req.revision, None, 0))?;
    let cursor = Cursor {
        revision: page.revision,
        header_revision: page.current,
        after: Vec::new(),
        sent: 0,
        ai: ai.clone(),
        req,
    };
    cursor.chunk(store, page)
}

impl Cursor {
    fn next_chunk(self, store: &MvccStore) -> Result<(RangeResponse, State), MvccError> {
        let page = store.range_page(&page_request(
            &self.req,
            self.revision,
            Some(&self.after),
            self.sent,
        ))?;
        self.chunk(store, page)
    }

    /// The chunk of `page`: the last one when the range or the limit is exhausted.
    fn chunk(
        mut self,
        store: &MvccStore,
        page: RangePage,
    ) -> Result<(RangeResponse, State), MvccError> {
        self.sent += page.kvs.len() as i64;
        let limited = self.req.limit > 0 && self.sent >= self.req.limit;
        if let Some(last) = page.kvs.last() {
            self.after.clone_from(&last.key);
        }
        let kvs = sort_chunk(&self.req, page.kvs);
        if page.more && !limited {
            let chunk = RangeResponse {
                kvs,
                ..Default::default()
            };
            return Ok((chunk, State::Reading(self)));
        }
        // etcd counts what was sent plus what the limit left out.
        let count = if page.more {
            store
                .range(&RangeRequest {
                    key: self.req.key.clone(),
                    range_end: self.req.range_end.clone(),
                    revision: self.revision,
                    count_only: true,
                    ..Default::default()
                })?
                .count
        } else {
            self.sent
        };
        let last = RangeResponse {
            header: Some(header(self.header_revision)),
            kvs,
            more: page.more,
            count,
        };
        Ok((last, State::AuthCheck(self.ai)))
    }
}

/// A page of `req` at `revision` after `after`, within the limit left after `sent`.
fn page_request<'a>(
    req: &'a RangeRequest,
    revision: i64,
    after: Option<&'a [u8]>,
    sent: i64,
) -> PageRequest<'a> {
    let max_keys = if req.limit > 0 {
        usize::try_from(req.limit - sent).unwrap_or(1).max(1)
    } else {
        usize::MAX
    };
    PageRequest {
        key: &req.key,
        range_end: &req.range_end,
        revision,
        after,
        // Values to sort by are read, and dropped after sorting (`sort_chunk`).
        keys_only: req.keys_only && req.sort_target != SortTarget::Value as i32,
        max_keys,
        max_bytes: RANGE_STREAM_CHUNK_BYTES - CHUNK_FRAMING_BYTES,
    }
}

/// etcd's quirk: `sort_order` NONE with a `sort_target` other than KEY sorts ASCEND by
/// that target, which etcd 3.7 does chunk by chunk. So does Bramble (ties in key
/// order), resuming after the chunk's last key in key order, so every key comes once;
/// a range that fits one chunk comes sorted as the unary Range sorts it. Without that
/// quirk the chunk stays in key order. `keys_only` drops the values after sorting.
fn sort_chunk(req: &RangeRequest, mut kvs: Vec<KeyValue>) -> Vec<KeyValue> {
    let by: fn(&KeyValue) -> i64 = match SortTarget::try_from(req.sort_target) {
        Ok(SortTarget::Key) | Err(_) => return kvs,
        Ok(SortTarget::Version) => |kv| kv.version,
        Ok(SortTarget::Create) => |kv| kv.create_revision,
        Ok(SortTarget::Mod) => |kv| kv.mod_revision,
        Ok(SortTarget::Value) => {
            kvs.sort_by(|a, b| a.value.cmp(&b.value).then_with(|| a.key.cmp(&b.key)));
            if req.keys_only {
                for kv in &mut kvs {
                    kv.value = Vec::new();
                }
            }
            return kvs;
        }
    };
    kvs.sort_by(|a, b| by(a).cmp(&by(b)).then_with(|| a.key.cmp(&b.key)));
    kvs
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

fn check_auth_revision(store: &MvccStore, ai: &AuthInfo) -> Result<(), MvccError> {
    if ai.revision != 0 && ai.revision != store.auth_revision() {
        return Err(AuthError::AuthOldRevision.into());
    }
    Ok(())
}

/// Wraps a chunk, filling the last one's header with who answers (its revision is
/// the stream's).
fn finish(ctx: &ServerContext, mut chunk: RangeResponse) -> RangeStreamResponse {
    if chunk.header.is_some() {
        ctx.identity.fill(&mut chunk.header, &ctx.node);
    }
    RangeStreamResponse {
        range_response: Some(chunk),
    }
}

/// Runs a store read on the blocking pool.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, MvccError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(errors::internal)?
        .map_err(|e| mvcc_status(&e))
}
