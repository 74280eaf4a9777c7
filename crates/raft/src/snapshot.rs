//! State machine snapshots: the data type openraft moves between the state
//! machine and the peer transport.
//!
//! A one-member cluster never sends or installs a snapshot, and Bramble does
//! not yet purge its WAL (snapshot policy `Never`), so building one is not
//! implemented: the replication issue adds streamed snapshots of the MVCC
//! database together with log compaction.

use std::io;
use std::path::PathBuf;

/// A point-in-time copy of the state machine, stored in a file.
#[derive(Debug)]
pub struct SnapshotData {
    /// Where the snapshot's bytes are.
    pub path: PathBuf,
}

/// The error for every snapshot operation until snapshots exist.
pub(crate) fn not_supported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "state machine snapshots are not implemented yet (single-node server)",
    )
}
