//! etcd's permission checks of a command at apply (`etcdserver/apply/auth.go`'s
//! `authApplierV3`): every member checks each entry against the auth state it has
//! applied so far, as the user and auth revision the proposer recorded in the
//! command, so the outcome is the same on every member.

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::request_op::Request as TxnOp;
use bramble_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};

use super::super::lease::LeaseTable;
use super::{is_auth_change, AuthError, AuthInfo, AuthState};

impl AuthState {
    /// etcd's `authApplierV3.Apply` and its per-request checks: whether `cmd` may
    /// apply. A command without an auth header is the member's own (lease expiry,
    /// auto compaction) and runs as root, as etcd's `WithRoot`.
    pub(in crate::mvcc) fn check_command(
        &self,
        cmd: &Command,
        leases: &LeaseTable,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let (Some(h), Some(op)) = (&cmd.auth, &cmd.op) else {
            return Ok(());
        };
        let info = AuthInfo {
            user: h.username.clone(),
            revision: h.auth_revision,
        };
        match op {
            op if is_auth_change(op) => self.is_admin(Some(&info)),
            Op::Put(p) => self.check_put(&info, p, leases),
            Op::DeleteRange(d) => self.check_delete(&info, d),
            Op::Txn(t) => self.check_txn(&info, t, leases),
            Op::LeaseRevoke(r) => self.check_lease_keys(&info, r.id, leases, PermType::Write),
            // etcd checks none of these at apply: a lease grant and a compaction
            // need only a user (checked by the server), alarms are admin's at the
            // Maintenance service, Authenticate was checked by the password.
            // (LeaseGrant, Compaction, Alarm, AuthAuthenticate.)
            _ => Ok(()),
        }
    }

    /// etcd's `checkPutAuth`: write on the key, write on every key already
    /// attached to the lease (a user who could not revoke the lease must not
    /// attach to it), read on the key with prev_kv.
    fn check_put(
        &self,
        info: &AuthInfo,
        p: &PutRequest,
        leases: &LeaseTable,
    ) -> Result<(), AuthError> {
        self.check_permitted(info, &p.key, &[], PermType::Write)?;
        self.check_lease_keys(info, p.lease, leases, PermType::Write)?;
        if p.prev_kv {
            self.check_permitted(info, &p.key, &[], PermType::Read)?;
        }
        Ok(())
    }

    /// A delete range: write on the range, read with prev_kv (etcd checks the write
    /// first at the top level and the read first inside a txn; the order only picks
    /// which of two denials is reported, both are `permission denied`).
    fn check_delete(&self, info: &AuthInfo, d: &DeleteRangeRequest) -> Result<(), AuthError> {
        self.check_permitted(info, &d.key, &d.range_end, PermType::Write)?;
        if d.prev_kv {
            self.check_permitted(info, &d.key, &d.range_end, PermType::Read)?;
        }
        Ok(())
    }

    /// etcd's `checkTxnPermission`: read on every compare's range, then each op of
    /// both branches by its kind, nested txns recursively.
    pub(in crate::mvcc) fn check_txn(
        &self,
        info: &AuthInfo,
        t: &TxnRequest,
        leases: &LeaseTable,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        for c in &t.compare {
            self.check_permitted(info, &c.key, &c.range_end, PermType::Read)?;
        }
        self.check_ops(info, &t.success, leases)?;
        self.check_ops(info, &t.failure, leases)
    }

    fn check_ops(
        &self,
        info: &AuthInfo,
        ops: &[RequestOp],
        leases: &LeaseTable,
    ) -> Result<(), AuthError> {
        for op in ops {
            match &op.request {
                None => {}
                Some(TxnOp::RequestRange(r)) => {
                    self.check_permitted(info, &r.key, &r.range_end, PermType::Read)?
                }
                Some(TxnOp::RequestPut(p)) => self.check_put(info, p, leases)?,
                Some(TxnOp::RequestDeleteRange(d)) => self.check_delete(info, d)?,
                Some(TxnOp::RequestTxn(t)) => self.check_txn(info, t, leases)?,
            }
        }
        Ok(())
    }

    /// etcd's `checkLeasePuts` (`want` WRITE: revoke, attach, keep alive) and
    /// `checkLeaseTimeToLive` (READ): nothing for an admin or a lease that does not
    /// exist, else `want` on every key attached to the lease.
    pub(in crate::mvcc) fn check_lease_keys(
        &self,
        info: &AuthInfo,
        lease: i64,
        leases: &LeaseTable,
        want: PermType,
    ) -> Result<(), AuthError> {
        let Some(entry) = leases.leases.get(&lease) else {
            return Ok(());
        };
        if self.is_admin(Some(info)).is_ok() {
            return Ok(());
        }
        for key in &entry.keys {
            self.check_permitted(info, key, &[], want)?;
        }
        Ok(())
    }
}
