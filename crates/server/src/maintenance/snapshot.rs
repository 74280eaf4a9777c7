//! Maintenance.Snapshot: the whole store streamed to a client as etcd streams it, so
//! that `etcdctl snapshot save` writes it to a file.
//!
//! The content is the storage layer's snapshot stream
//! ([`bramble_storage::mvcc::StoreSnapshot`]), taken from one redb read transaction:
//! a consistent point in time that never blocks the applier. As etcd, the stream comes
//! in [`CHUNK`]-byte messages whose `remaining_bytes` counts what follows, then one last
//! message with the SHA-256 of everything before it. The payload is zero padded to a
//! multiple of 512 bytes, because etcdctl saves only files whose length modulo 512 is
//! 32 (see `bramble_storage::mvcc::verify_saved_snapshot`).
//!
//! A blocking thread reads the store and hands chunks over a channel of
//! [`CHANNEL_CHUNKS`] messages: a slow client makes it wait, so the memory a snapshot
//! holds is bounded whatever the store's size. A client that goes away ends the thread.

use std::io::{self, Write};
use std::sync::Arc;

use bramble_api::etcdserverpb::SnapshotResponse;
use bramble_storage::mvcc::{saved_padding, MvccError, MvccStore, SAVED_SHA256_LEN};
use tokio::sync::mpsc;
use tonic::Status;

use crate::errors;

/// Blob bytes per message, as etcd (`snapshotSendBufferSize`).
pub(super) const CHUNK: usize = 32 * 1024;
/// Messages waiting for the client at most.
const CHANNEL_CHUNKS: usize = 4;

/// One message of the stream, or the error that ends it.
pub(super) type Item = Result<SnapshotResponse, Status>;

/// Starts streaming a snapshot of `store`; the messages arrive on the returned
/// channel, each with `version` set (etcd 3.6 sends its storage version there).
pub(super) fn start(store: Arc<MvccStore>, version: String) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = stream(&store, &tx, &version) {
            match e {
                // The client went away: nobody to tell.
                StreamError::ClientGone => {
                    tracing::info!("snapshot stream ended: the client went away")
                }
                StreamError::Store(e) => {
                    tracing::warn!(error = %e, "snapshot stream failed");
                    let _ = tx.blocking_send(Err(errors::mvcc_status(&e)));
                }
            }
        }
    });
    rx
}

/// Why a stream ended early.
#[derive(Debug)]
enum StreamError {
    ClientGone,
    Store(MvccError),
}

/// Streams the whole snapshot to `tx`: a first pass over the view learns its length
/// (for `remaining_bytes`), the second sends it as the saved file
/// ([`bramble_storage::mvcc::StoreSnapshot::write_saved`], the one writer of that format, which backups use
/// too), whose last 32 bytes, the SHA-256, go in a message of their own.
fn stream(store: &MvccStore, tx: &mpsc::Sender<Item>, version: &str) -> Result<(), StreamError> {
    let view = store.begin_snapshot().map_err(StreamError::Store)?;
    let stream_len = view
        .write_to(&mut io::sink())
        .map_err(StreamError::Store)?
        .bytes;
    let payload = stream_len + saved_padding(stream_len);
    let mut out = ChunkWriter::new(tx, payload, version);
    match view.write_saved(&mut out) {
        Ok(info) => {
            if info.file_bytes != payload + SAVED_SHA256_LEN as u64 {
                // The same read transaction twice: impossible unless the store is broken.
                return Err(StreamError::Store(MvccError::Storage(format!(
                    "snapshot stream changed length between passes ({payload} then {})",
                    info.file_bytes
                ))));
            }
        }
        // A write fails either because the client left or because the store did.
        Err(_) if out.client_gone => return Err(StreamError::ClientGone),
        Err(e) => return Err(StreamError::Store(e)),
    }
    out.finish()?;
    tracing::info!(bytes = payload, "snapshot streamed to a client");
    Ok(())
}

/// Cuts the saved file's payload (stream and padding) into [`CHUNK`]-byte messages
/// counting down `remaining_bytes`, and keeps the SHA-256 trailer after it for the last
/// message, as etcd sends it.
struct ChunkWriter<'a> {
    tx: &'a mpsc::Sender<Item>,
    buf: Vec<u8>,
    /// Bytes of payload before the trailer.
    payload: u64,
    sent: u64,
    trailer: Vec<u8>,
    version: &'a str,
    /// Set when a send failed because the receiver is gone.
    client_gone: bool,
}

impl<'a> ChunkWriter<'a> {
    fn new(tx: &'a mpsc::Sender<Item>, payload: u64, version: &'a str) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            payload,
            sent: 0,
            trailer: Vec::with_capacity(SAVED_SHA256_LEN),
            version,
            client_gone: false,
        }
    }

    fn send(&mut self, remaining_bytes: u64, blob: Vec<u8>) -> Result<(), StreamError> {
        let msg = SnapshotResponse {
            header: None,
            remaining_bytes,
            blob,
            version: self.version.to_string(),
        };
        self.tx.blocking_send(Ok(msg)).map_err(|_| {
            self.client_gone = true;
            StreamError::ClientGone
        })
    }

    /// Sends the buffered payload bytes as one message.
    fn send_chunk(&mut self) -> Result<(), StreamError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.sent += blob.len() as u64;
        let remaining = self.payload.saturating_sub(self.sent);
        self.send(remaining, blob)
    }

    fn push(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        while !data.is_empty() {
            let left_in_payload = self.payload - self.sent - self.buf.len() as u64;
            if left_in_payload == 0 {
                // Everything after the payload is the trailer (32 bytes).
                if self.trailer.len() + data.len() > SAVED_SHA256_LEN {
                    return Err(StreamError::Store(MvccError::Storage(
                        "snapshot longer than its first pass".into(),
                    )));
                }
                self.trailer.extend_from_slice(data);
                return Ok(());
            }
            let room = (CHUNK - self.buf.len())
                .min(usize::try_from(left_in_payload).unwrap_or(usize::MAX));
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.send_chunk()?;
            }
        }
        Ok(())
    }

    /// Sends the last data message and then etcd's SHA-256 message.
    fn finish(mut self) -> Result<(), StreamError> {
        self.send_chunk()?;
        if self.trailer.len() != SAVED_SHA256_LEN {
            return Err(StreamError::Store(MvccError::Storage(
                "snapshot ended without its sha256".into(),
            )));
        }
        let sha = std::mem::take(&mut self.trailer);
        self.send(0, sha)
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.push(data)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "snapshot client went away"))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks go out when full; the last partial one in `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::bramblepb::command::Op;
    use bramble_api::bramblepb::Command;
    use bramble_api::etcdserverpb::PutRequest;
    use bramble_storage::mvcc::{verify_saved_snapshot, MvccOptions};
    use sha2::{Digest, Sha256};

    fn store_with(keys: u64, value_len: usize) -> (tempfile::TempDir, Arc<MvccStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(MvccStore::open(&dir.path().join("db"), MvccOptions::default()).unwrap());
        for i in 0..keys {
            let put = PutRequest {
                key: format!("k{i:06}").into_bytes(),
                value: vec![b'v'; value_len],
                ..Default::default()
            };
            let cmd = Command {
                auth: None,
                op: Some(Op::Put(put)),
            };
            store.apply(i + 1, 1, &cmd).unwrap();
        }
        (dir, store)
    }

    async fn collect(mut rx: mpsc::Receiver<Item>) -> Vec<SnapshotResponse> {
        let mut out = Vec::new();
        while let Some(item) = rx.recv().await {
            out.push(item.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn stream_is_chunked_counted_padded_and_hashed_as_etcd() {
        let (_dir, store) = store_with(300, 1000);
        let msgs = collect(start(store.clone(), "3.5.0".into())).await;
        assert!(msgs.len() > 3);
        let (last, data) = msgs.split_last().unwrap();
        assert_eq!(last.remaining_bytes, 0);
        assert_eq!(last.blob.len(), 32);
        let payload: Vec<u8> = data.iter().flat_map(|m| m.blob.clone()).collect();
        assert_eq!(payload.len() % 512, 0);
        let mut sent = 0u64;
        for (i, m) in data.iter().enumerate() {
            assert_eq!(m.version, "3.5.0");
            if i + 1 < data.len() {
                assert_eq!(m.blob.len(), CHUNK);
            }
            sent += m.blob.len() as u64;
            assert_eq!(m.remaining_bytes, payload.len() as u64 - sent);
        }
        let sha: [u8; 32] = Sha256::digest(&payload).into();
        assert_eq!(last.blob, sha.to_vec());
        let mut file = payload;
        file.extend_from_slice(&last.blob);
        let info = verify_saved_snapshot(&mut &file[..], file.len() as u64).unwrap();
        assert_eq!(info.stream.revision, store.current_revision());
    }

    #[tokio::test]
    async fn a_client_that_leaves_ends_the_thread() {
        let (_dir, store) = store_with(200, 2000);
        let mut rx = start(store, String::new());
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.blob.len(), CHUNK);
        drop(rx);
        // Nothing to observe but that the test ends: the thread's next send fails.
    }
}
