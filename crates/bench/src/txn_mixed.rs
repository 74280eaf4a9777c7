//! The `txn-mixed` workload: txns that each hold one range or one put.
//!
//! As etcd's `benchmark txn-mixed`: each request is a Txn with no compares
//! whose success branch is either a Range (of `--key` to `--end-key`, or of
//! every key with `--key` as prefix: all keys by default, at most `--limit`
//! of them) or a Put of `put`'s next key. `--rw-ratio` is reads per write, so
//! a request reads with probability r / (1 + r). Linearizable reads by
//! default, `--consistency s` for serializable ones (a read-only txn whose
//! ranges are all serializable is served from the local store). Reads and
//! writes are reported apart in the `ops` section.

use std::sync::Arc;

use anyhow::{bail, Result};
use bramble_api::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::conn::Kv;
use crate::mix::{self, Mix};
use crate::put::PutShape;
use crate::range::Consistency;
use crate::run::OpFuture;

/// `txn-mixed` flags: `put`'s for the writes, and the reads' range.
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct TxnMixedArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) keys: crate::cli::PutArgs,
    /// Reads per write: a request reads with probability r / (1 + r).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) rw_ratio: f64,
    /// Start of each read's range; without --end-key, every key with this
    /// prefix (the default, empty, is every key).
    #[arg(long, default_value = "")]
    pub(crate) key: String,
    /// End of each read's range (exclusive).
    #[arg(long)]
    pub(crate) end_key: Option<String>,
    /// At most this many keys per read (0: no limit).
    #[arg(long, default_value_t = 1000)]
    pub(crate) limit: i64,
    /// Reads: l linearizable, s serializable.
    #[arg(long, value_enum, default_value = "l")]
    pub(crate) consistency: Consistency,
}

/// A validated `txn-mixed` workload.
#[derive(Clone, Debug)]
pub(crate) struct TxnMixedShape {
    /// The writes' keys and values, as `put`'s.
    pub(crate) keys: PutShape,
    /// Fraction of reads, r / (1 + r).
    pub(crate) read_fraction: f64,
    /// The Range every read sends.
    pub(crate) read: RangeRequest,
}

impl TxnMixedShape {
    /// The workload from its flags.
    pub(crate) fn from_args(a: &TxnMixedArgs) -> Result<TxnMixedShape> {
        if !(a.rw_ratio >= 0.0 && a.rw_ratio.is_finite()) {
            bail!("--rw-ratio must be a number of reads per write, 0 or more");
        }
        if a.limit < 0 {
            bail!("--limit must not be negative");
        }
        let (key, range_end) = match &a.end_key {
            Some(end) if a.key.is_empty() => bail!("--end-key {end} needs --key"),
            Some(end) => (a.key.as_bytes().to_vec(), end.as_bytes().to_vec()),
            // etcd's "every key": from \0 to \0 (an empty key is not a valid range start).
            None if a.key.is_empty() => (vec![0], vec![0]),
            None => {
                let key = a.key.as_bytes().to_vec();
                let end = bramble_api::prefix_range_end(&key);
                (key, end)
            }
        };
        Ok(TxnMixedShape {
            keys: mix::put_shape(&a.keys)?,
            read_fraction: a.rw_ratio / (1.0 + a.rw_ratio),
            read: RangeRequest {
                key,
                range_end,
                limit: a.limit,
                serializable: a.consistency == Consistency::S,
                ..Default::default()
            },
        })
    }
}

/// The request for number `i`: a Txn of one Range or of one Put.
pub(crate) fn op(
    shape: TxnMixedShape,
    kinds: Arc<Mix>,
) -> impl Fn(Kv, u64) -> OpFuture + Send + Sync {
    let value = Arc::new(shape.keys.value());
    move |mut kv: Kv, i: u64| {
        let kinds = kinds.clone();
        let read = mix::reads(i, shape.keys.seed, shape.read_fraction);
        let request = if read {
            request_op::Request::RequestRange(shape.read.clone())
        } else {
            request_op::Request::RequestPut(PutRequest {
                key: shape.keys.key(i),
                value: value.as_ref().clone(),
                ..Default::default()
            })
        };
        let txn = TxnRequest {
            compare: Vec::new(),
            success: vec![RequestOp {
                request: Some(request),
            }],
            failure: Vec::new(),
        };
        Box::pin(async move {
            let kind = if read { &kinds.read } else { &kinds.write };
            kind.time(kv.txn(txn)).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> TxnMixedArgs {
        TxnMixedArgs {
            keys: crate::cli::PutArgs {
                key_size: 8,
                val_size: 8,
                key_space: 10,
                seq_keys: true,
                seed: 1,
            },
            rw_ratio: 3.0,
            key: String::new(),
            end_key: None,
            limit: 1000,
            consistency: Consistency::S,
        }
    }

    #[test]
    fn reads_cover_every_key_by_default_or_a_prefix_or_a_range() {
        let s = TxnMixedShape::from_args(&args()).expect("valid");
        assert_eq!(
            (s.read.key.as_slice(), s.read.range_end.as_slice()),
            (&[0u8][..], &[0u8][..])
        );
        assert!(s.read.serializable);
        assert!((s.read_fraction - 0.75).abs() < 1e-12);
        let p = TxnMixedShape::from_args(&TxnMixedArgs {
            key: "ab".into(),
            ..args()
        })
        .expect("valid");
        assert_eq!(p.read.range_end, b"ac");
        let r = TxnMixedShape::from_args(&TxnMixedArgs {
            key: "a".into(),
            end_key: Some("z".into()),
            ..args()
        })
        .expect("valid");
        assert_eq!(r.read.range_end, b"z");
        for bad in [
            TxnMixedArgs {
                rw_ratio: -1.0,
                ..args()
            },
            TxnMixedArgs {
                limit: -1,
                ..args()
            },
            TxnMixedArgs {
                end_key: Some("z".into()),
                ..args()
            },
        ] {
            assert!(TxnMixedShape::from_args(&bad).is_err(), "{bad:?}");
        }
    }
}
