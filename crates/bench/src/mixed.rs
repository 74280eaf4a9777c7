//! The `mixed` workload: puts and single-key reads in a given proportion.
//!
//! Each request reads with probability `--read-ratio` (decided by the request
//! number and seed: mix.rs) and writes otherwise. Both touch the keys `put`
//! would (same flags, same key numbers), so reads find what the writes wrote.
//! Reads are linearizable by default, or serializable (`--consistency s`, or
//! `--serializable`). The report has the usual latency over all requests and
//! an `ops` section with reads and writes apart.

use std::sync::Arc;

use anyhow::Result;
use bramble_api::etcdserverpb::{PutRequest, RangeRequest};

use crate::conn::Kv;
use crate::mix::{self, Mix};
use crate::put::PutShape;
use crate::range::Consistency;
use crate::run::OpFuture;

/// `mixed` flags: `put`'s, and the share of reads.
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct MixedArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) keys: crate::cli::PutArgs,
    /// Fraction of requests that are reads (0.0: all puts, 1.0: all reads).
    #[arg(long, default_value_t = 0.5)]
    pub(crate) read_ratio: f64,
    /// Reads: l linearizable, s serializable.
    #[arg(long, value_enum, default_value = "l")]
    pub(crate) consistency: Consistency,
    /// Serializable reads (the same as --consistency s).
    #[arg(long, conflicts_with = "consistency")]
    pub(crate) serializable: bool,
}

/// A validated `mixed` workload.
#[derive(Clone, Debug)]
pub(crate) struct MixedShape {
    /// Keys and values, as `put`'s.
    pub(crate) keys: PutShape,
    /// Fraction of reads.
    pub(crate) read_ratio: f64,
    /// Serializable reads.
    pub(crate) serializable: bool,
}

impl MixedShape {
    /// The workload from its flags.
    pub(crate) fn from_args(a: &MixedArgs) -> Result<MixedShape> {
        mix::check_fraction("--read-ratio", a.read_ratio)?;
        Ok(MixedShape {
            keys: mix::put_shape(&a.keys)?,
            read_ratio: a.read_ratio,
            serializable: a.serializable || a.consistency == Consistency::S,
        })
    }
}

/// The request for number `i`: a Range of its key, or a Put of it.
pub(crate) fn op(shape: MixedShape, kinds: Arc<Mix>) -> impl Fn(Kv, u64) -> OpFuture + Send + Sync {
    let value = Arc::new(shape.keys.value());
    move |mut kv: Kv, i: u64| -> OpFuture {
        let key = shape.keys.key(i);
        let kinds = kinds.clone();
        if mix::reads(i, shape.keys.seed, shape.read_ratio) {
            let request = RangeRequest {
                key,
                serializable: shape.serializable,
                ..Default::default()
            };
            Box::pin(async move { kinds.read.time(kv.range(request)).await.map(|_| ()) })
        } else {
            let request = PutRequest {
                key,
                value: value.as_ref().clone(),
                ..Default::default()
            };
            Box::pin(async move { kinds.write.time(kv.put(request)).await.map(|_| ()) })
        }
    }
}
