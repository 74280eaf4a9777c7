//! Read-only txns served from a read snapshot, as etcd serves them: a txn
//! whose branches hold only range ops changes nothing, so it needs no Raft
//! proposal (and no WAL write on an SD card), just a consistent view.

use bramble_api::etcdserverpb::request_op::Request;
use bramble_api::etcdserverpb::response_op::Response;
use bramble_api::etcdserverpb::{ResponseOp, TxnRequest, TxnResponse};

use redb::ReadableDatabase;

use super::error::MvccError;
use super::read::{range_at, SortSpec};
use super::schema::KEYS;
use super::txn::{branch, compare_holds};
use super::write::header;
use super::MvccStore;

/// etcd's isTxnReadonly: every op of both branches is a range (a nested txn
/// counts as a write, as in etcd).
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

impl MvccStore {
    /// Evaluates a read-only txn (see [`is_read_only`]) at the current
    /// revision, with the same results and errors as applying it would give.
    /// A txn with writes is refused with `Corrupt` (a caller bug).
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        if !is_read_only(req) {
            return Err(MvccError::Corrupt(
                "txn_read_only called with a txn that writes".into(),
            ));
        }
        let mut attempts = 0;
        loop {
            match self.txn_read_only_once(req) {
                Err(MvccError::StoreReplaced) if attempts < 8 => attempts += 1,
                result => return result,
            }
        }
    }

    fn txn_read_only_once(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        // Pin the revision first, then open the snapshot: it holds that revision.
        let pin = self.pin();
        let current = pin.current;
        let rtxn = self.db().begin_read()?;
        let table = rtxn.open_table(KEYS)?;
        let compact = self.compact_revision();
        let still_readable = |at: i64| move || self.check_readable(pin, at);

        let mut succeeded = true;
        for c in &req.compare {
            if !compare_holds(&table, &self.index, current, &still_readable(current), c)? {
                succeeded = false;
                break;
            }
        }
        let ops = branch(req, succeeded);
        // etcd checks every range of the branch before running any.
        for op in ops {
            if let Some(Request::RequestRange(r)) = &op.request {
                if r.revision != 0 {
                    if r.revision > current {
                        return Err(MvccError::FutureRevision);
                    }
                    if r.revision < compact {
                        return Err(MvccError::Compacted);
                    }
                }
                SortSpec::of(r)?;
            }
        }
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let Some(Request::RequestRange(r)) = &op.request else {
                return Err(MvccError::Corrupt("read-only txn lost a range".into()));
            };
            let at = if r.revision <= 0 { current } else { r.revision };
            let resp = range_at(&table, &self.index, r, at, current, &still_readable(at))?;
            responses.push(ResponseOp {
                response: Some(Response::ResponseRange(resp)),
            });
        }
        Ok(TxnResponse {
            header: header(current),
            succeeded,
            responses,
        })
    }
}
