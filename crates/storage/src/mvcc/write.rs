//! Applying committed raft entries: puts, delete ranges, and the apply loop that runs
//! them in redb write transactions (txns are in [`super::txn`], compaction in
//! [`super::compaction`]).
//!
//! Each change takes the next main revision; each write inside it the next sub
//! revision. A change that writes nothing (a delete that matches no key, a txn whose
//! branch only reads) does not take a revision, as in etcd.
//!
//! Deterministic failures (`ignore_value` on a missing key, a range at a compacted
//! revision inside a txn, ...) are detected before the change writes anything, so such
//! an entry only advances the applied raft position. Anything else that fails aborts the
//! whole redb transaction and undoes the index changes made in it.
//!
//! # Batching
//!
//! [`MvccStore::apply_batch`] / [`MvccStore::apply_entries`] apply many entries in one
//! redb write transaction (one commit instead of one per entry: the SD card sees far
//! fewer page writes). A compaction entry ends its transaction: the entries before it
//! are committed, then the compaction is scheduled (its deletions run later, in the
//! background: [`super::compaction`]), then the rest continues in a new transaction.

use std::sync::RwLock;

use bramble_api::bramblepb::command::Op;
use bramble_api::bramblepb::Command;
use bramble_api::etcdserverpb::{
    AlarmResponse, AuthenticateResponse, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnResponse,
};
use bramble_api::mvccpb::KeyValue;
use redb::{Durability, ReadableDatabase, Table};

use super::alarm;
use super::auth::{self, AuthError, AuthState};
use super::compaction;
use super::error::MvccError;
use super::lease::{self, LeaseTable};
use super::read::{self, fetch};
use super::revision::{read_revision, Revision};
use super::schema::{self, KEYS, LEASES, META, RAFT};
use super::store::{MvccStore, WriterState};
use super::tree_index::{IndexChange, KeyRange, TreeIndex};

/// The result of applying one command: etcd's response, or the deterministic error etcd
/// would return for it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResult {
    /// Response to a put.
    Put(PutResponse),
    /// Response to a delete range.
    DeleteRange(DeleteRangeResponse),
    /// Response to a txn.
    Txn(TxnResponse),
    /// Response to a compaction.
    Compaction(CompactionResponse),
    /// Response to a lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// Response to a lease revoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Response to an alarm request.
    Alarm(AlarmResponse),
    /// An auth change was applied (etcd's auth responses are all a header only): the
    /// header carries the store's revision.
    Auth(Option<ResponseHeader>),
    /// Authenticate issued a token (the header carries the store's revision).
    Authenticated(AuthenticateResponse),
    /// The command failed deterministically; the state is unchanged (but the applied raft
    /// position advanced).
    Error(MvccError),
}

/// A header carrying only a revision (the server fills in the rest).
pub(super) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// One committed raft entry, as [`MvccStore::apply_entries`] takes it.
#[derive(Debug, Clone, Copy)]
pub enum RaftEntry<'a> {
    /// An entry without payload (a new leader's blank entry).
    Blank,
    /// A membership change: the raft layer's encoding of the membership, stored with the
    /// applied position (read back with [`MvccStore::raft_membership`]).
    Membership(&'a [u8]),
    /// A state machine command.
    Command(&'a Command),
}

impl MvccStore {
    /// Applies one committed raft entry atomically; `index`/`term` is its log position,
    /// stored in the same redb transaction. Deterministic etcd errors come back as
    /// `Ok(ApplyResult::Error(..))` with the state unchanged except the applied position,
    /// which always advances. `Err(..)` only for storage failures, corruption, or an
    /// entry not after the applied one (the store is then unchanged).
    pub fn apply(&self, index: u64, term: u64, cmd: &Command) -> Result<ApplyResult, MvccError> {
        let mut results = self.apply_entries(&[(index, term, RaftEntry::Command(cmd))])?;
        match results.pop() {
            Some(Some(r)) => Ok(r),
            _ => Err(MvccError::Corrupt("apply produced no result".into())),
        }
    }

    /// Records an entry that carries no command: a raft blank entry (`membership` None)
    /// or a membership change (`membership` = the raft layer's encoding of it, stored
    /// atomically with the applied position). Advances the applied position only.
    /// Tests only: the raft layer hands such entries to [`MvccStore::apply_entries`].
    #[cfg(test)]
    pub(crate) fn apply_noop(
        &self,
        index: u64,
        term: u64,
        membership: Option<&[u8]>,
    ) -> Result<(), MvccError> {
        let entry = match membership {
            Some(m) => RaftEntry::Membership(m),
            None => RaftEntry::Blank,
        };
        self.apply_entries(&[(index, term, entry)]).map(|_| ())
    }

    /// The membership stored by the last applied membership entry, if any.
    pub fn raft_membership(&self) -> Result<Option<Vec<u8>>, MvccError> {
        let rtxn = self.db().begin_read()?;
        let table = match rtxn.open_table(RAFT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let blob = table
            .get(schema::RAFT_MEMBERSHIP)?
            .map(|v| v.value().to_vec());
        Ok(blob)
    }

    /// Applies several consecutive committed entries in one redb write transaction (see
    /// [`MvccStore::apply`] for the semantics of each). Returns one result per entry. On
    /// `Err` nothing of the batch is applied, except the entries before a compaction in
    /// it, which are committed before the compaction runs (`applied()` tells).
    pub fn apply_batch(
        &self,
        entries: &[(u64, u64, &Command)],
    ) -> Result<Vec<ApplyResult>, MvccError> {
        let entries: Vec<(u64, u64, RaftEntry<'_>)> = entries
            .iter()
            .map(|&(i, t, c)| (i, t, RaftEntry::Command(c)))
            .collect();
        Ok(self
            .apply_entries(&entries)?
            .into_iter()
            .flatten()
            .collect())
    }

    /// As [`MvccStore::apply_batch`], with entries that carry no command (blank and
    /// membership entries, see [`RaftEntry`]) mixed in; their result is `None`.
    pub fn apply_entries(
        &self,
        entries: &[(u64, u64, RaftEntry<'_>)],
    ) -> Result<Vec<Option<ApplyResult>>, MvccError> {
        let mut w = self.lock_writer()?;
        let mut prev = w.applied;
        for &(index, term, _) in entries {
            if index <= prev.0 || term < prev.1 {
                return Err(MvccError::OutOfOrder {
                    index,
                    term,
                    applied_index: prev.0,
                    applied_term: prev.1,
                });
            }
            prev = (index, term);
        }
        let mut results = Vec::with_capacity(entries.len());
        let mut next = 0;
        while next < entries.len() {
            let compact_at = self.apply_in_one_txn(&mut w, entries, &mut next, &mut results)?;
            if let Some(rev) = compact_at {
                self.run_compaction(&mut w, rev)?;
            }
        }
        Ok(results)
    }

    /// Applies entries from `*next` on in one redb transaction, until the end or until a
    /// compaction (returned: it is scheduled after this commit).
    fn apply_in_one_txn(
        &self,
        w: &mut WriterState,
        entries: &[(u64, u64, RaftEntry<'_>)],
        next: &mut usize,
        results: &mut Vec<Option<ApplyResult>>,
    ) -> Result<Option<i64>, MvccError> {
        let mut st = w.clone();
        let mut undo: Vec<IndexChange> = Vec::new();
        let mut compact_at = None;
        let first_result = results.len();
        // Alarm entries change this copy; it replaces the published set after the commit.
        let mut alarms = alarm::lock_read(&self.alarms).clone();
        let mut alarms_changed = false;
        // Auth changes apply to a copy made at the first one; it replaces the published
        // state after the commit.
        let mut auth_changed: Option<AuthState> = None;
        // What the entries do to the simple tokens, done after the commit.
        let mut token_changes: Vec<auth::token::TokenChange> = Vec::new();
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::None)?;
        let outcome = (|| {
            let mut keys = txn.open_table(KEYS)?;
            let mut meta = txn.open_table(META)?;
            let mut lease_rows = txn.open_table(LEASES)?;
            while *next < entries.len() {
                let (index, term, entry) = entries[*next];
                *next += 1;
                st.applied = (index, term);
                let cmd = match entry {
                    RaftEntry::Command(cmd) => cmd,
                    RaftEntry::Blank => {
                        results.push(None);
                        continue;
                    }
                    RaftEntry::Membership(m) => {
                        txn.open_table(RAFT)?.insert(schema::RAFT_MEMBERSHIP, m)?;
                        results.push(None);
                        continue;
                    }
                };
                if let Some(refused) = cmd.op.as_ref().and_then(|op| alarm::refusal(&alarms, op)) {
                    results.push(Some(ApplyResult::Error(refused)));
                    continue;
                }
                if let Some(Op::Alarm(req)) = &cmd.op {
                    let (resp, changed) = alarm::apply(&mut alarms, req);
                    if changed {
                        alarm::write(&mut txn.open_table(RAFT)?, &alarms)?;
                        alarms_changed = true;
                    }
                    results.push(Some(ApplyResult::Alarm(AlarmResponse {
                        header: header(st.rev),
                        ..resp
                    })));
                    continue;
                }
                let denied = {
                    let leases = lease::lock_read(&self.leases)?;
                    match &auth_changed {
                        Some(state) => state.check_command(cmd, &leases),
                        None => auth::lock_read(&self.auth).check_command(cmd, &leases),
                    }
                };
                if let Err(e) = denied {
                    results.push(Some(ApplyResult::Error(e.into())));
                    continue;
                }
                if let Some(Op::AuthAuthenticate(a)) = &cmd.op {
                    let allowed = match &auth_changed {
                        Some(state) => state.authenticate(&a.name),
                        None => auth::lock_read(&self.auth).authenticate(&a.name),
                    };
                    results.push(Some(match allowed {
                        Ok(()) => {
                            let token = format!("{}.{index}", a.simple_token);
                            token_changes.push(auth::token::TokenChange::Assign(
                                token.clone(),
                                a.name.clone(),
                            ));
                            ApplyResult::Authenticated(AuthenticateResponse {
                                header: header(st.rev),
                                token,
                            })
                        }
                        Err(e) => ApplyResult::Error(e.into()),
                    }));
                    continue;
                }
                if let Some(op) = cmd.op.as_ref().filter(|op| auth::is_auth_change(op)) {
                    let state =
                        auth_changed.get_or_insert_with(|| auth::lock_read(&self.auth).clone());
                    let outcome = state.apply(op).unwrap_or(Err(AuthError::InvalidAuthMgmt));
                    if let Ok(true) = outcome {
                        auth::write(&mut txn.open_table(RAFT)?, state)?;
                    }
                    if outcome.is_ok() {
                        token_changes.extend(auth::token_change(op));
                    }
                    results.push(Some(match outcome {
                        Ok(_) => ApplyResult::Auth(header(st.rev)),
                        Err(e) => ApplyResult::Error(e.into()),
                    }));
                    continue;
                }
                if let Some(Op::Compaction(c)) = &cmd.op {
                    match compaction::check(c.revision, st.rev, st.compact_rev) {
                        Err(e) => results.push(Some(ApplyResult::Error(e))),
                        Ok(()) => {
                            schema::write_compact(
                                &mut meta,
                                schema::META_SCHEDULED_COMPACT,
                                c.revision,
                            )?;
                            st.compact_rev = c.revision;
                            compact_at = Some(c.revision);
                            results.push(Some(ApplyResult::Compaction(CompactionResponse {
                                header: header(st.rev),
                            })));
                            break;
                        }
                    }
                    continue;
                }
                let mut ctx = WriteCtx {
                    keys: &mut keys,
                    lease_rows: &mut lease_rows,
                    leases: &self.leases,
                    index: &self.index,
                    undo: &mut undo,
                    begin_rev: st.rev,
                    compact_rev: st.compact_rev,
                    sub: 0,
                };
                let result = ctx.apply_command(cmd);
                let wrote = ctx.sub > 0;
                let result = match result {
                    Ok(r) => r,
                    Err(e) if e.is_deterministic() && !wrote => ApplyResult::Error(e),
                    Err(e) if e.is_deterministic() => {
                        return Err(MvccError::Corrupt(format!(
                            "deterministic error after writes at raft index {index}: {e}"
                        )))
                    }
                    Err(e) => return Err(e),
                };
                if wrote {
                    st.rev += 1;
                }
                results.push(Some(result));
            }
            schema::write_progress(&mut meta, st.applied, st.rev)?;
            Ok::<(), MvccError>(())
        })();
        let committed = outcome.and_then(|()| Ok(txn.commit()?));
        if let Err(e) = committed {
            results.truncate(first_result);
            {
                let mut idx = self.write_index()?;
                for change in undo.iter().rev() {
                    idx.undo(change);
                }
            }
            if let Err(reload) = self.reload_leases() {
                tracing::error!(error = %reload, "lease table reload after a failed apply");
            }
            return Err(e);
        }
        st.dirty = true;
        if alarms_changed {
            *alarm::lock_write(&self.alarms) = alarms;
        }
        if let Some(state) = auth_changed {
            *auth::lock_write(&self.auth) = state;
        }
        for change in token_changes {
            self.tokens.change(change);
        }
        *w = st;
        self.publish(w.rev, w.applied);
        Ok(compact_at)
    }
}

/// The state of one change being applied: its revision, the redb table it writes, and
/// the undo log of its index changes.
pub(super) struct WriteCtx<'a, 't> {
    pub keys: &'a mut Table<'t, &'static [u8], &'static [u8]>,
    /// The lease table's rows.
    pub lease_rows: &'a mut Table<'t, i64, &'static [u8]>,
    /// The leases in memory, changed as the entry applies.
    pub leases: &'a RwLock<LeaseTable>,
    pub index: &'a RwLock<TreeIndex>,
    pub undo: &'a mut Vec<IndexChange>,
    /// The store's revision before this change; the change writes at `begin_rev + 1`.
    pub begin_rev: i64,
    /// Compaction revision (reads below it fail).
    pub compact_rev: i64,
    /// Writes made so far in this change (the next write's sub revision).
    pub sub: i64,
}

impl WriteCtx<'_, '_> {
    /// Applies a put, delete range or txn command.
    fn apply_command(&mut self, cmd: &Command) -> Result<ApplyResult, MvccError> {
        match &cmd.op {
            Some(Op::Put(p)) => {
                self.check_lease(p.lease)?;
                self.put_request(p).map(ApplyResult::Put)
            }
            Some(Op::DeleteRange(d)) => self.delete_range(d).map(ApplyResult::DeleteRange),
            Some(Op::Txn(t)) => self.txn(t).map(ApplyResult::Txn),
            Some(Op::LeaseGrant(g)) => self.lease_grant(g).map(ApplyResult::LeaseGrant),
            Some(Op::LeaseRevoke(r)) => self.lease_revoke(r).map(ApplyResult::LeaseRevoke),
            Some(Op::Compaction(_) | Op::Alarm(_)) => Err(MvccError::Corrupt(
                "compaction or alarm reached the write path".into(),
            )),
            Some(
                Op::AuthEnable(_)
                | Op::AuthDisable(_)
                | Op::AuthUserAdd(_)
                | Op::AuthUserDelete(_)
                | Op::AuthUserChangePassword(_)
                | Op::AuthUserGrantRole(_)
                | Op::AuthUserRevokeRole(_)
                | Op::AuthRoleAdd(_)
                | Op::AuthRoleDelete(_)
                | Op::AuthRoleGrantPermission(_)
                | Op::AuthRoleRevokePermission(_)
                | Op::AuthAuthenticate(_),
            ) => Err(MvccError::Corrupt(
                "auth change reached the write path".into(),
            )),
            None => Err(MvccError::EmptyCommand),
        }
    }

    /// The revision reads inside this change see: the change's own revision once it has
    /// written, else the previous one.
    pub(super) fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    /// Fails with `LeaseNotFound` if `lease` (non-zero) is not in the lease table.
    pub(super) fn check_lease(&self, lease: i64) -> Result<(), MvccError> {
        if lease == 0 {
            return Ok(());
        }
        if lease::lock_read(self.leases)?.contains(lease) {
            Ok(())
        } else {
            Err(MvccError::LeaseNotFound)
        }
    }

    /// The current version of `key` as this change sees it.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        let found = read::lock(self.index)?.get(key, self.read_rev());
        match found {
            Some(found) => Ok(Some(fetch(&*self.keys, found.modified)?)),
            None => Ok(None),
        }
    }

    /// A range read inside this change (a txn's range op). The revision must already be
    /// checked (txn pre-checks do it).
    pub(super) fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let current = self.read_rev();
        let at = read_revision(req.revision, current)?;
        if at < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        read::range_at(&*self.keys, self.index, req, at, current, &|| Ok(()))
    }

    /// A put request (etcd's applier `Put`): `ignore_value` / `ignore_lease` take the
    /// current value / lease and need the key to exist; `prev_kv` returns the version
    /// replaced. Leases are checked by the caller.
    pub(super) fn put_request(&mut self, p: &PutRequest) -> Result<PutResponse, MvccError> {
        let prev = if p.ignore_value || p.ignore_lease || p.prev_kv {
            self.get(&p.key)?
        } else {
            None
        };
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let value = match (&prev, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        self.put(&p.key, value, lease)?;
        Ok(PutResponse {
            header: header(self.begin_rev + 1),
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    /// A delete range request: tombstones every key of the range that exists now.
    pub(super) fn delete_range(
        &mut self,
        d: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let range = KeyRange::new(&d.key, &d.range_end);
        let found = read::lock(self.index)?.range(&range, self.read_rev());
        let mut prev_kvs = Vec::new();
        if d.prev_kv {
            prev_kvs.reserve(found.len());
            for (_, rev) in &found {
                prev_kvs.push(fetch(&*self.keys, *rev)?);
            }
        }
        for (key, _) in &found {
            self.delete(key)?;
        }
        let revision = if !found.is_empty() || self.sub > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        };
        Ok(DeleteRangeResponse {
            header: header(revision),
            deleted: found.len() as i64,
            prev_kvs,
        })
    }

    /// Writes a new version of `key` at the next sub revision.
    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<(), MvccError> {
        let main = self.begin_rev + 1;
        let rev = Revision::new(main, self.sub);
        let (create_revision, version) = match read::lock(self.index)?.get(key, main) {
            Some(found) => (found.created.main, found.version + 1),
            None => (main, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: main,
            version,
            value,
            lease,
        };
        self.keys.insert(
            rev.to_key(false).as_slice(),
            schema::encode_kv(&kv).as_slice(),
        )?;
        self.index_write()?.put(key, rev);
        lease::lock_write(self.leases)?.attach(key, lease);
        self.undo.push(IndexChange::Put(kv.key, rev));
        self.sub += 1;
        Ok(())
    }

    /// Writes a tombstone for `key` (which must exist) at the next sub revision.
    pub(super) fn delete(&mut self, key: &[u8]) -> Result<(), MvccError> {
        let rev = Revision::new(self.begin_rev + 1, self.sub);
        let kv = KeyValue {
            key: key.to_vec(),
            ..Default::default()
        };
        self.keys.insert(
            rev.to_key(true).as_slice(),
            schema::encode_kv(&kv).as_slice(),
        )?;
        if !self.index_write()?.tombstone(key, rev) {
            return Err(MvccError::Corrupt(format!(
                "delete of {key:?} at {rev}: key not live in the index"
            )));
        }
        lease::lock_write(self.leases)?.detach(key);
        self.undo.push(IndexChange::Tombstone(kv.key, rev));
        self.sub += 1;
        Ok(())
    }

    fn index_write(&self) -> Result<std::sync::RwLockWriteGuard<'_, TreeIndex>, MvccError> {
        self.index
            .write()
            .map_err(|_| MvccError::Corrupt("key index poisoned by a panic".into()))
    }
}
