//! The `put` workload: fixed-size keys and values, random or sequential keys.
//!
//! Keys are built like etcd's `benchmark put`: a zero-filled `key_size`
//! buffer holding the key number as a Go `binary.PutVarint`, so both tools
//! write the same key and value bytes and their bytes-written numbers compare.
//! Random key numbers are a pure function of the request index and the seed,
//! so a run against etcd and a run against Bramble put the same keys in the
//! same order whatever the scheduling.

use std::sync::Arc;

use crate::conn::Kv;
use anyhow::{bail, Result};
use bramble_api::etcdserverpb::PutRequest;

use crate::run::OpFuture;

/// The shape of the keys and values to put.
#[derive(Clone, Debug)]
pub(crate) struct PutShape {
    /// Bytes per key.
    pub(crate) key_size: usize,
    /// Bytes per value.
    pub(crate) val_size: usize,
    /// Number of distinct keys (key numbers are `0..key_space`).
    pub(crate) key_space: u64,
    /// Key number `i % key_space` for request `i` instead of a random one.
    pub(crate) seq_keys: bool,
    /// Seed for key numbers and the value bytes.
    pub(crate) seed: u64,
}

impl PutShape {
    /// Checks the shape is usable: every key number must fit in `key_size`
    /// bytes (etcd's tool panics there instead).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.key_space == 0 {
            bail!("--key-space must be at least 1");
        }
        let widest = zigzag_varint_len(self.key_space - 1);
        if self.key_size < widest {
            bail!(
                "--key-size {} is too small for --key-space {}: key numbers need {widest} bytes",
                self.key_size,
                self.key_space
            );
        }
        Ok(())
    }

    /// Key number for request `i`.
    pub(crate) fn key_number(&self, i: u64) -> u64 {
        if self.seq_keys {
            i % self.key_space
        } else {
            splitmix64(self.seed ^ splitmix64(i)) % self.key_space
        }
    }

    /// Key bytes for request `i`.
    pub(crate) fn key(&self, i: u64) -> Vec<u8> {
        self.key_of_number(self.key_number(i))
    }

    /// Key bytes for key number `n` (txn-put picks its own numbers).
    pub(crate) fn key_of_number(&self, n: u64) -> Vec<u8> {
        let mut k = vec![0u8; self.key_size];
        // key_number < key_space <= i64::MAX in practice; clamp rather than
        // wrap for absurd key spaces (validate() has already bounded width).
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        put_varint(&mut k, n);
        k
    }

    /// The value every put writes: see [`random_value`].
    pub(crate) fn value(&self) -> Vec<u8> {
        random_value(self.val_size, self.seed)
    }
}

/// `len` pseudo-random bytes from `seed`: random, so a server that
/// compresses gets no unfair help; workloads make it once and send it with
/// every write, as etcd's tool does.
pub(crate) fn random_value(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x5eed_0fba_1e00;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        state = splitmix64(state);
        v.extend_from_slice(&state.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The request for put number `i`, sent over `kv`.
pub(crate) fn op(shape: PutShape) -> impl Fn(Kv, u64) -> OpFuture + Send + Sync {
    let value = Arc::new(shape.value());
    move |mut kv: Kv, i: u64| {
        let req = PutRequest {
            key: shape.key(i),
            value: value.as_ref().clone(),
            ..Default::default()
        };
        Box::pin(async move { kv.put(req).await.map(|_| ()) })
    }
}

/// SplitMix64: a tiny, good-enough mixer for key numbers (no `rand` needed).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Go's `binary.PutVarint`: zigzag, then base-128 little-endian groups.
/// Writes as many bytes as fit in `buf` (callers size it with
/// [`zigzag_varint_len`]); returns the number written.
fn put_varint(buf: &mut [u8], x: i64) -> usize {
    let mut ux = zigzag(x);
    let mut i = 0;
    while ux >= 0x80 && i < buf.len() {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    if i < buf.len() {
        buf[i] = ux as u8;
        i += 1;
    }
    i
}

/// Zigzag encoding of a signed number, as Go's varint uses.
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Bytes `binary.PutVarint` needs for key number `n`.
fn zigzag_varint_len(n: u64) -> usize {
    let mut ux = zigzag(i64::try_from(n).unwrap_or(i64::MAX));
    let mut len = 1;
    while ux >= 0x80 {
        ux >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(seq: bool) -> PutShape {
        PutShape {
            key_size: 8,
            val_size: 256,
            key_space: 100_000,
            seq_keys: seq,
            seed: 1,
        }
    }

    #[test]
    fn varint_matches_go() {
        // Values from Go: binary.PutVarint(buf, n).
        let cases: [(i64, &[u8]); 5] = [
            (0, &[0x00]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (64, &[0x80, 0x01]),
            (99_999, &[0xbe, 0x9a, 0x0c]),
        ];
        for (n, want) in cases {
            let mut buf = [0u8; 10];
            let len = put_varint(&mut buf, n);
            assert_eq!(&buf[..len], want, "n = {n}");
            assert_eq!(zigzag_varint_len(n as u64), want.len(), "n = {n}");
        }
    }

    #[test]
    fn sequential_keys_wrap_at_key_space() {
        let s = PutShape {
            key_space: 3,
            ..shape(true)
        };
        let nums: Vec<u64> = (0..7).map(|i| s.key_number(i)).collect();
        assert_eq!(nums, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(s.key(1), [2, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn random_keys_are_deterministic_in_range_and_spread() {
        let s = shape(false);
        let a: Vec<u64> = (0..1000).map(|i| s.key_number(i)).collect();
        let b: Vec<u64> = (0..1000).map(|i| s.key_number(i)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&n| n < 100_000));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 990, "only {} distinct", distinct.len());
        let other_seed = PutShape { seed: 2, ..s };
        assert_ne!(
            a[..10],
            (0..10)
                .map(|i| other_seed.key_number(i))
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn keys_and_values_have_the_asked_sizes() {
        let s = shape(false);
        assert!((0..100).all(|i| s.key(i).len() == 8));
        assert_eq!(s.value().len(), 256);
        assert_eq!(
            PutShape {
                val_size: 0,
                ..shape(true)
            }
            .value()
            .len(),
            0
        );
        assert_eq!(
            PutShape {
                val_size: 3,
                ..shape(true)
            }
            .value()
            .len(),
            3
        );
    }

    #[test]
    fn validate_rejects_keys_too_small_for_the_space() {
        assert!(shape(false).validate().is_ok());
        let small = PutShape {
            key_size: 2,
            ..shape(false)
        };
        assert!(small.validate().is_err());
        assert!(PutShape {
            key_space: 0,
            ..shape(true)
        }
        .validate()
        .is_err());
        // One key fits in one byte.
        assert!(PutShape {
            key_size: 1,
            key_space: 1,
            ..shape(true)
        }
        .validate()
        .is_ok());
    }
}
