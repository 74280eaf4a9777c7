//! etcd MVCC state machine on redb (work in progress).
