//! etcd v3 wire types and gRPC service stubs, generated from `proto/`.
//!
//! The packages keep etcd's names (`etcdserverpb`, `mvccpb`, `authpb`,
//! `v3lockpb`, `v3electionpb`) because gRPC method paths such as
//! `/etcdserverpb.KV/Range` are part of the wire protocol. `bramblepb` holds
//! Bramble's own formats (the Raft log entry payload).

#![allow(clippy::all, clippy::pedantic)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

pub mod bramblepb {
    tonic::include_proto!("bramblepb");
}
