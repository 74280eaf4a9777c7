//! Options of the key-value calls, as small builders: which keys a range or
//! delete covers (one key, a prefix, from a key, or an explicit end), and the
//! rest of etcd's fields for Range, Put and DeleteRange.

use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

/// Which keys a call covers, starting at its key (etcd's `range_end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum KeySpan {
    /// The key alone.
    #[default]
    Key,
    /// Every key that starts with the key.
    Prefix,
    /// Every key from the key on (etcd's `range_end` of `"\0"`).
    FromKey,
    /// From the key up to this end, exclusive.
    End(Vec<u8>),
}

impl KeySpan {
    /// etcd's `key` and `range_end` for this span of keys starting at `key`.
    /// A prefix or from-key span of the empty key is every key, from `"\0"`,
    /// as etcd's clientv3 makes it (the server refuses an empty key).
    pub(crate) fn key_and_end(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeySpan::Key => (key, Vec::new()),
            KeySpan::Prefix | KeySpan::FromKey if key.is_empty() => (vec![0], vec![0]),
            KeySpan::Prefix => {
                let end = bramble_api::prefix_range_end(&key);
                (key, end)
            }
            KeySpan::FromKey => (key, vec![0]),
            KeySpan::End(end) => (key, end.clone()),
        }
    }
}

/// How to read: which keys, at which revision, how many, in what order.
///
/// ```
/// use bramble::RangeOptions;
///
/// // The first ten keys under `jobs/`, keys only, from this member's copy.
/// let opts = RangeOptions::new().prefix().limit(10).keys_only().serializable();
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    span: KeySpan,
    req: RangeRequest,
}

impl RangeOptions {
    /// One key, at the latest revision, linearizable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key that starts with the key given to the call.
    pub fn prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }

    /// Every key from the key given to the call on.
    pub fn from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }

    /// Keys from the key given to the call up to `end`, exclusive.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::End(end.into());
        self
    }

    /// At most `n` keys (0: no limit); `more` in the answer says whether there
    /// were more.
    pub fn limit(mut self, n: i64) -> Self {
        self.req.limit = n;
        self
    }

    /// The keys as they were at `revision` (0: the latest). An old, compacted
    /// revision fails with [`ErrorKind::Compacted`](crate::ErrorKind::Compacted).
    pub fn revision(mut self, revision: i64) -> Self {
        self.req.revision = revision;
        self
    }

    /// The keys without their values.
    pub fn keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }

    /// Only the number of keys (`count`), no keys.
    pub fn count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }

    /// Read this member's copy without asking the leader: faster, and may be
    /// a little behind the cluster (etcd's serializable read).
    pub fn serializable(mut self) -> Self {
        self.req.serializable = true;
        self
    }

    /// Sorts the keys by `target` in `order`.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.req.sort_target = target as i32;
        self.req.sort_order = order as i32;
        self
    }

    /// Only keys last modified at or after `revision`.
    pub fn min_mod_revision(mut self, revision: i64) -> Self {
        self.req.min_mod_revision = revision;
        self
    }

    /// Only keys last modified at or before `revision`.
    pub fn max_mod_revision(mut self, revision: i64) -> Self {
        self.req.max_mod_revision = revision;
        self
    }

    /// Only keys created at or after `revision`.
    pub fn min_create_revision(mut self, revision: i64) -> Self {
        self.req.min_create_revision = revision;
        self
    }

    /// Only keys created at or before `revision`.
    pub fn max_create_revision(mut self, revision: i64) -> Self {
        self.req.max_create_revision = revision;
        self
    }

    /// etcd's RangeRequest for `key` with these options.
    pub fn request(&self, key: impl Into<Vec<u8>>) -> RangeRequest {
        let (key, range_end) = self.span.key_and_end(key.into());
        RangeRequest {
            key,
            range_end,
            ..self.req.clone()
        }
    }
}

/// How to write: with a lease, returning the previous value, or keeping the
/// value or lease the key has.
///
/// ```
/// use bramble::PutOptions;
///
/// let opts = PutOptions::new().lease(0x1234).prev_kv();
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    req: PutRequest,
}

impl PutOptions {
    /// A plain put.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the key to lease `id`: it is deleted when the lease ends.
    pub fn lease(mut self, id: i64) -> Self {
        self.req.lease = id;
        self
    }

    /// Returns the key-value pair as it was before the put (`prev_kv`).
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

    /// Keeps the key's current value (the put's value must be empty): only
    /// the lease changes. Fails with [`ErrorKind::KeyNotFound`](crate::ErrorKind::KeyNotFound)
    /// if the key does not exist.
    pub fn ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }

    /// Keeps the key's current lease (no lease may be given).
    pub fn ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }

    /// etcd's PutRequest of `value` at `key` with these options.
    pub fn request(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..self.req.clone()
        }
    }
}

/// Which keys to delete, and whether to return them.
///
/// ```
/// use bramble::DeleteOptions;
///
/// let opts = DeleteOptions::new().prefix().prev_kv();
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    span: KeySpan,
    prev_kv: bool,
}

impl DeleteOptions {
    /// The key alone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key that starts with the key given to the call.
    pub fn prefix(mut self) -> Self {
        self.span = KeySpan::Prefix;
        self
    }

    /// Every key from the key given to the call on.
    pub fn from_key(mut self) -> Self {
        self.span = KeySpan::FromKey;
        self
    }

    /// Keys from the key given to the call up to `end`, exclusive.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.span = KeySpan::End(end.into());
        self
    }

    /// Returns the deleted key-value pairs (`prev_kvs`).
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// etcd's DeleteRangeRequest for `key` with these options.
    pub fn request(&self, key: impl Into<Vec<u8>>) -> DeleteRangeRequest {
        let (key, range_end) = self.span.key_and_end(key.into());
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_etcds_range_ends() {
        assert_eq!(RangeOptions::new().request("a").range_end, b"");
        assert_eq!(RangeOptions::new().prefix().request("a/").range_end, b"a0");
        assert_eq!(RangeOptions::new().from_key().request("a").range_end, b"\0");
        assert_eq!(
            RangeOptions::new().range_end("c").request("a").range_end,
            b"c"
        );
        // The prefix of everything is every key, as etcd's clientv3 makes it.
        let all = DeleteOptions::new().prefix().request("");
        assert_eq!((all.key, all.range_end), (vec![0], vec![0]));
        let all = RangeOptions::new().from_key().request("");
        assert_eq!((all.key, all.range_end), (vec![0], vec![0]));
        let put = PutOptions::new().lease(5).prev_kv().request("k", "v");
        assert_eq!((put.lease, put.prev_kv, put.key), (5, true, b"k".to_vec()));
    }
}
