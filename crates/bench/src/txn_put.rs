//! The `txn-put` workload: each request is one Txn of `--txn-ops` puts.
//!
//! Like etcd's `benchmark txn-put`: a Txn with no compares whose success
//! branch holds N puts, so the per-request costs of a write (one raft entry,
//! one fsync, one revision) are shared by N keys. It shows how a server's
//! cost grows with the size of a txn rather than with the number of txns.
//!
//! Keys and the value are `put`'s (put.rs, same flags): request `i` puts key
//! numbers `i*N .. i*N+N`, each mapped as `put` maps a request index, so
//! `--seq-keys` gives etcd's tool's keys exactly. The keys of one txn are
//! always distinct, because etcd refuses a txn that puts a key twice.

use std::sync::Arc;

use anyhow::{bail, Result};
use bramble_api::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

use crate::conn::Kv;
use crate::put::PutShape;
use crate::run::OpFuture;

/// The shape of each txn: how many puts, of which keys and values.
#[derive(Clone, Debug)]
pub(crate) struct TxnPutShape {
    /// Key and value sizes, key space and key order, as `put`'s.
    pub(crate) keys: PutShape,
    /// Puts per txn.
    pub(crate) ops: u64,
}

impl TxnPutShape {
    /// Checks the shape is usable: `put`'s checks, and room in the key space
    /// for `ops` distinct keys per txn.
    pub(crate) fn validate(&self) -> Result<()> {
        self.keys.validate()?;
        if self.ops == 0 {
            bail!("--txn-ops must be at least 1");
        }
        if self.ops > self.keys.key_space {
            bail!(
                "--txn-ops {} needs --key-space of at least {}: a txn cannot put the same key twice",
                self.ops,
                self.ops
            );
        }
        Ok(())
    }

    /// The key numbers txn `i` puts, all different.
    pub(crate) fn key_numbers(&self, i: u64) -> Vec<u64> {
        let mut numbers: Vec<u64> = Vec::with_capacity(usize::try_from(self.ops).unwrap_or(0));
        for j in 0..self.ops {
            let mut n = self
                .keys
                .key_number(i.wrapping_mul(self.ops).wrapping_add(j));
            // Random key numbers can repeat within a txn (sequential ones
            // cannot, as ops <= key_space): take the next free number, which
            // exists for the same reason. Linear search: a txn holds at most
            // 128 ops on a default server.
            while numbers.contains(&n) {
                n = (n + 1) % self.keys.key_space;
            }
            numbers.push(n);
        }
        numbers
    }
}

/// The request for txn number `i`, sent over `kv`.
pub(crate) fn op(shape: TxnPutShape) -> impl Fn(Kv, u64) -> OpFuture + Send + Sync {
    let value = Arc::new(shape.keys.value());
    move |mut kv: Kv, i: u64| {
        let puts = shape
            .key_numbers(i)
            .into_iter()
            .map(|n| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: shape.keys.key_of_number(n),
                    value: value.as_ref().clone(),
                    ..Default::default()
                })),
            })
            .collect();
        let req = TxnRequest {
            compare: Vec::new(),
            success: puts,
            failure: Vec::new(),
        };
        Box::pin(async move { kv.txn(req).await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn shape(seq: bool, key_space: u64, ops: u64) -> TxnPutShape {
        TxnPutShape {
            keys: PutShape {
                key_size: 8,
                val_size: 16,
                key_space,
                seq_keys: seq,
                seed: 1,
            },
            ops,
        }
    }

    #[test]
    fn sequential_keys_are_etcds() {
        // etcd's tool: key number (i * ops + j) % key_space.
        let s = shape(true, 10, 3);
        assert_eq!(s.key_numbers(0), [0, 1, 2]);
        assert_eq!(s.key_numbers(1), [3, 4, 5]);
        assert_eq!(s.key_numbers(3), [9, 0, 1]);
    }

    #[test]
    fn keys_within_a_txn_are_distinct() {
        // A small random key space makes repeats within a txn certain.
        for (seq, space, ops) in [
            (false, 4, 4),
            (false, 5, 3),
            (false, 1000, 128),
            (true, 3, 3),
        ] {
            let s = shape(seq, space, ops);
            for i in 0..200 {
                let nums = s.key_numbers(i);
                assert_eq!(nums.len() as u64, ops);
                assert!(nums.iter().all(|&n| n < space));
                let keys: HashSet<Vec<u8>> =
                    nums.iter().map(|&n| s.keys.key_of_number(n)).collect();
                assert_eq!(keys.len() as u64, ops, "txn {i} of {seq} {space} {ops}");
            }
        }
    }

    #[test]
    fn one_op_txns_put_the_keys_put_would() {
        let s = shape(false, 100_000, 1);
        for i in 0..100 {
            assert_eq!(s.keys.key_of_number(s.key_numbers(i)[0]), s.keys.key(i));
        }
    }

    #[test]
    fn validate_needs_room_for_distinct_keys() {
        assert!(shape(true, 3, 3).validate().is_ok());
        assert!(shape(true, 2, 3).validate().is_err());
        assert!(shape(true, 2, 0).validate().is_err());
        assert!(shape(true, 0, 1).validate().is_err());
    }
}
