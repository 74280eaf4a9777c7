//! The Raft write-ahead log (work in progress).
