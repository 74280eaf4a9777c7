//! The `range` workload: the same Range request, over and over.
//!
//! Like etcd's `benchmark range`: one key (or `[key, end)`, or a prefix),
//! linearizable (`l`, the default: a read-index round through raft) or
//! serializable (`s`: the local store only), optionally only counting the
//! keys or only returning the keys, not the values. The keys are not created here;
//! fill them first, e.g. with `bramble-bench put --seq-keys`.

use crate::conn::Kv;
use anyhow::{bail, Result};
use bramble_api::etcdserverpb::RangeRequest;

use crate::run::OpFuture;

/// Read consistency of each Range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Consistency {
    /// Linearizable: the server confirms it is the leader before reading.
    L,
    /// Serializable: read the local store, possibly stale.
    S,
}

/// Which keys each Range reads.
#[derive(Clone, Debug)]
pub(crate) struct RangeShape {
    /// Start key.
    pub(crate) key: Vec<u8>,
    /// End key (exclusive); empty for the single key `key`.
    pub(crate) range_end: Vec<u8>,
    /// At most this many keys per response (0: no limit).
    pub(crate) limit: i64,
    /// Linearizable or serializable.
    pub(crate) consistency: Consistency,
    /// Only count the keys (etcd's `--count-only`).
    pub(crate) count_only: bool,
    /// Only return the keys (etcd's `--keys-only`).
    pub(crate) keys_only: bool,
}

impl RangeShape {
    /// Builds the shape from the command line's `--key`, `--end` and `--prefix`.
    pub(crate) fn new(
        key: &str,
        end: Option<&str>,
        prefix: bool,
        limit: i64,
        consistency: Consistency,
    ) -> Result<RangeShape> {
        let key = key.as_bytes().to_vec();
        let range_end = match (end, prefix) {
            (Some(_), true) => bail!("--end and --prefix cannot be used together"),
            (Some(e), false) => e.as_bytes().to_vec(),
            (None, true) => bramble_api::prefix_range_end(&key),
            (None, false) => Vec::new(),
        };
        if limit < 0 {
            bail!("--limit must not be negative");
        }
        Ok(RangeShape {
            key,
            range_end,
            limit,
            consistency,
            count_only: false,
            keys_only: false,
        })
    }
}

/// The request for range number `i` (all the same), sent over `kv`.
pub(crate) fn op(shape: RangeShape) -> impl Fn(Kv, u64) -> OpFuture + Send + Sync {
    let req = RangeRequest {
        key: shape.key,
        range_end: shape.range_end,
        limit: shape.limit,
        serializable: shape.consistency == Consistency::S,
        count_only: shape.count_only,
        keys_only: shape.keys_only,
        ..Default::default()
    };
    move |mut kv: Kv, _i: u64| {
        let req = req.clone();
        Box::pin(async move { kv.range(req).await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_from_flags() {
        let one = RangeShape::new("k", None, false, 0, Consistency::L).expect("ok");
        assert!(one.range_end.is_empty());
        let p = RangeShape::new("k", None, true, 10, Consistency::S).expect("ok");
        assert_eq!(p.range_end, b"l");
        let e = RangeShape::new("a", Some("z"), false, 0, Consistency::L).expect("ok");
        assert_eq!(e.range_end, b"z");
        assert!(RangeShape::new("a", Some("z"), true, 0, Consistency::L).is_err());
        assert!(RangeShape::new("a", None, false, -1, Consistency::L).is_err());
    }
}
