//! The transaction builder: compares on a key's value, version, create or mod
//! revision or lease, then the operations to run if all hold (`and_then`) or
//! if any fails (`or_else`), nested transactions included.

use bramble_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bramble_api::etcdserverpb::{request_op, Compare as CompareRequest, RequestOp, TxnRequest};

use super::options::{DeleteOptions, PutOptions, RangeOptions};

/// A transaction: compares, then one of two lists of operations, applied
/// atomically at one revision.
///
/// ```
/// use bramble::{Compare, Txn, TxnOp};
///
/// // Create `config/leader` only if it does not exist; else read it.
/// let txn = Txn::new()
///     .when([Compare::create_revision("config/leader").eq(0)])
///     .and_then([TxnOp::put("config/leader", "pi-1")])
///     .or_else([TxnOp::get("config/leader")]);
/// # let _ = txn;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Txn {
    req: TxnRequest,
}

impl Txn {
    /// An empty transaction: no compares (which hold), no operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds compares; the transaction succeeds if every one holds.
    pub fn when(mut self, compares: impl IntoIterator<Item = CompareRequest>) -> Self {
        self.req.compare.extend(compares);
        self
    }

    /// Adds operations to run if every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.req
            .success
            .extend(ops.into_iter().map(RequestOp::from));
        self
    }

    /// Adds operations to run if a compare fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.req
            .failure
            .extend(ops.into_iter().map(RequestOp::from));
        self
    }

    /// etcd's TxnRequest.
    pub fn into_request(self) -> TxnRequest {
        self.req
    }
}

impl From<Txn> for TxnRequest {
    fn from(t: Txn) -> Self {
        t.req
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum TxnOp {
    /// A read (etcd's RequestRange).
    Range(bramble_api::etcdserverpb::RangeRequest),
    /// A write (RequestPut).
    Put(bramble_api::etcdserverpb::PutRequest),
    /// A delete (RequestDeleteRange).
    Delete(bramble_api::etcdserverpb::DeleteRangeRequest),
    /// A nested transaction (RequestTxn); its keys may not repeat a key
    /// written elsewhere in the same branch.
    Txn(TxnRequest),
}

impl TxnOp {
    /// Reads one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Range(RangeOptions::new().request(key))
    }

    /// Reads the keys `opts` names, starting at `key`.
    pub fn range(key: impl Into<Vec<u8>>, opts: RangeOptions) -> Self {
        TxnOp::Range(opts.request(key))
    }

    /// Puts `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put(PutOptions::new().request(key, value))
    }

    /// Puts `value` at `key` with `opts` (lease, prev_kv, ...).
    pub fn put_with(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, opts: PutOptions) -> Self {
        TxnOp::Put(opts.request(key, value))
    }

    /// Deletes one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete(DeleteOptions::new().request(key))
    }

    /// Deletes the keys `opts` names, starting at `key`.
    pub fn delete_with(key: impl Into<Vec<u8>>, opts: DeleteOptions) -> Self {
        TxnOp::Delete(opts.request(key))
    }

    /// A nested transaction.
    pub fn txn(txn: Txn) -> Self {
        TxnOp::Txn(txn.req)
    }
}

impl From<TxnOp> for RequestOp {
    fn from(op: TxnOp) -> Self {
        let request = match op {
            TxnOp::Range(r) => request_op::Request::RequestRange(r),
            TxnOp::Put(r) => request_op::Request::RequestPut(r),
            TxnOp::Delete(r) => request_op::Request::RequestDeleteRange(r),
            TxnOp::Txn(r) => request_op::Request::RequestTxn(r),
        };
        RequestOp {
            request: Some(request),
        }
    }
}

/// Starts a compare on a key: pick what to compare (a function here), then
/// the comparison (`eq`, `ne`, `lt`, `gt`). A compare may cover every key of
/// a range instead ([`prefix`](NumberCompare::prefix),
/// [`range_end`](NumberCompare::range_end)): then each key must hold.
///
/// ```
/// use bramble::Compare;
///
/// let unchanged = Compare::mod_revision("config/a").eq(42);
/// let absent = Compare::version("config/b").eq(0);
/// let greeting = Compare::value("config/c").ne("hello");
/// let all_young = Compare::create_revision("jobs/").prefix().gt(100);
/// # let _ = (unchanged, absent, greeting, all_young);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Compare;

impl Compare {
    /// Compares the key's value (bytes, in order).
    pub fn value(key: impl Into<Vec<u8>>) -> ValueCompare {
        ValueCompare(Subject::new(key, CompareTarget::Value))
    }

    /// Compares the key's version: 0 for a key that does not exist, 1 after
    /// its creation, +1 per put.
    pub fn version(key: impl Into<Vec<u8>>) -> NumberCompare {
        NumberCompare(Subject::new(key, CompareTarget::Version))
    }

    /// Compares the revision the key was created at (0: it does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>) -> NumberCompare {
        NumberCompare(Subject::new(key, CompareTarget::Create))
    }

    /// Compares the revision the key was last modified at (0: it does not
    /// exist).
    pub fn mod_revision(key: impl Into<Vec<u8>>) -> NumberCompare {
        NumberCompare(Subject::new(key, CompareTarget::Mod))
    }

    /// Compares the key's lease id (0: no lease).
    pub fn lease(key: impl Into<Vec<u8>>) -> NumberCompare {
        NumberCompare(Subject::new(key, CompareTarget::Lease))
    }
}

/// The key (or range of keys) and the field a compare looks at.
#[derive(Debug, Clone)]
struct Subject {
    key: Vec<u8>,
    range_end: Vec<u8>,
    target: CompareTarget,
}

impl Subject {
    fn new(key: impl Into<Vec<u8>>, target: CompareTarget) -> Self {
        Subject {
            key: key.into(),
            range_end: Vec::new(),
            target,
        }
    }

    fn compare(self, result: CompareResult, target_union: TargetUnion) -> CompareRequest {
        CompareRequest {
            result: result as i32,
            target: self.target as i32,
            key: self.key,
            range_end: self.range_end,
            target_union: Some(target_union),
        }
    }
}

/// A compare on a value (from [`Compare::value`]).
#[derive(Debug, Clone)]
pub struct ValueCompare(Subject);

/// A compare on a version, revision or lease (from [`Compare`]'s other
/// functions).
#[derive(Debug, Clone)]
pub struct NumberCompare(Subject);

/// The comparisons, written once for both kinds of compare.
macro_rules! comparisons {
    ($ty:ident, $operand:ty, $into:expr) => {
        impl $ty {
            /// Covers every key that starts with the key instead.
            pub fn prefix(mut self) -> Self {
                self.0.range_end = bramble_api::prefix_range_end(&self.0.key);
                self
            }

            /// Covers every key from the key up to `end`, exclusive.
            pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
                self.0.range_end = end.into();
                self
            }

            /// Holds if equal to `x`.
            pub fn eq(self, x: $operand) -> CompareRequest {
                let target = ($into)(self.0.target, x);
                self.0.compare(CompareResult::Equal, target)
            }

            /// Holds if not equal to `x`.
            pub fn ne(self, x: $operand) -> CompareRequest {
                let target = ($into)(self.0.target, x);
                self.0.compare(CompareResult::NotEqual, target)
            }

            /// Holds if less than `x`.
            pub fn lt(self, x: $operand) -> CompareRequest {
                let target = ($into)(self.0.target, x);
                self.0.compare(CompareResult::Less, target)
            }

            /// Holds if greater than `x`.
            pub fn gt(self, x: $operand) -> CompareRequest {
                let target = ($into)(self.0.target, x);
                self.0.compare(CompareResult::Greater, target)
            }
        }
    };
}

comparisons!(ValueCompare, impl Into<Vec<u8>>, value_target);
comparisons!(NumberCompare, i64, number_target);

/// The field of etcd's Compare that holds a value.
fn value_target(_: CompareTarget, value: impl Into<Vec<u8>>) -> TargetUnion {
    TargetUnion::Value(value.into())
}

/// The field of etcd's Compare that holds a number for `target`.
fn number_target(target: CompareTarget, n: i64) -> TargetUnion {
    match target {
        CompareTarget::Version => TargetUnion::Version(n),
        CompareTarget::Create => TargetUnion::CreateRevision(n),
        CompareTarget::Mod => TargetUnion::ModRevision(n),
        CompareTarget::Lease => TargetUnion::Lease(n),
        // Only `Compare::value` makes a value compare, and it is a ValueCompare.
        CompareTarget::Value => unreachable!("a NumberCompare never targets the value"),
    }
}
