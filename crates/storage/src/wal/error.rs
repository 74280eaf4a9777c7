//! The WAL's error type.
//!
//! Every error is `Clone` because one failed group commit has to be reported
//! to every batch that was part of it (and a poisoned WAL keeps reporting
//! the original cause), so I/O errors are shared behind an `Arc`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// An operating-system I/O call failed.
    #[error("wal i/o error: {context}: {source}")]
    Io {
        /// What the WAL was doing, including the file involved.
        context: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The files on disk do not hold what the WAL wrote: refused rather than
    /// guessed at. `offset` is the byte offset inside `path`.
    #[error("wal corrupted: {path}: offset {offset}: {reason}", path = .path.display())]
    Corruption {
        /// The segment file (or directory) at fault.
        path: PathBuf,
        /// Byte offset of the bad record inside `path`.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// An entry was appended whose index is not the last index + 1.
    #[error("non-contiguous append: expected index {expected}, got {got}")]
    NonContiguous {
        /// The only index the next entry may carry.
        expected: u64,
        /// The index it carried.
        got: u64,
    },
    /// `truncate_after` asked to drop entries that were already purged.
    #[error("cannot truncate after index {index}: entries up to {purged} are purged")]
    TruncatePurged {
        /// The requested truncation point.
        index: u64,
        /// The highest purged index.
        purged: u64,
    },
    /// A record larger than any segment may be (`MAX_RECORD_LEN`, just under 4 GiB).
    #[error("wal record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the record.
        len: u64,
        /// Largest encoded record.
        max: u64,
    },
    /// A record that can never be valid (e.g. index `u64::MAX`).
    #[error("invalid wal record: {0}")]
    InvalidRecord(String),
    /// Bad [`WalOptions`](super::WalOptions).
    #[error("invalid wal options: {0}")]
    InvalidOptions(String),
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("wal directory {path} is locked by another process", path = .path.display())]
    Locked {
        /// The WAL directory.
        path: PathBuf,
    },
    /// An earlier write or fdatasync failed. After a failed fsync the kernel
    /// may have dropped dirty pages, so the only safe state is to stop.
    #[error("wal is unusable after an earlier failure: {0}")]
    Poisoned(Box<WalError>),
    /// The writer thread is gone.
    #[error("wal is closed")]
    Closed,
    /// A blocking call was made from a completion callback, which runs on
    /// the writer thread and would wait for itself forever.
    #[error("blocking wal call from a completion callback would deadlock")]
    CalledFromWriter,
    /// A broken internal invariant (a bug), reported instead of panicking.
    #[error("wal internal error: {0}")]
    Internal(String),
}

impl WalError {
    /// Wraps an I/O error with what the WAL was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        WalError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// A corruption error at `offset` of `path`.
    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Result alias for WAL operations.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
