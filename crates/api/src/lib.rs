//! etcd v3 wire types and gRPC service stubs, generated from `proto/`.
//!
//! The packages keep etcd's names (`etcdserverpb`, `mvccpb`, `authpb`,
//! `v3lockpb`, `v3electionpb`) because gRPC method paths such as
//! `/etcdserverpb.KV/Range` are part of the wire protocol. `bramblepb` holds
//! Bramble's own formats (the Raft log entry payload).

#![warn(missing_docs, unreachable_pub)]

// The six modules below are prost/tonic output (build.rs). Their docs are the proto
// comments, which not every message, field and generated client/server item has, so
// missing_docs is allowed on these modules only; the rest of the crate is checked.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod bramblepb {
    tonic::include_proto!("bramblepb");
}

/// The `range_end` that covers every key starting with `prefix`, as etcd's
/// clientv3 `GetPrefixRangeEnd` computes it: the prefix with its last
/// non-0xff byte incremented and what follows dropped; `\0` (to the end of
/// the key space) when there is no such byte, e.g. for the empty prefix.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_range_end;

    #[test]
    fn prefix_range_end_like_etcd() {
        assert_eq!(prefix_range_end(b"foo"), b"fop");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }
}
