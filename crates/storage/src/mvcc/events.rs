//! History as watch events, as etcd's watchable store reads it to catch up a watcher.
//!
//! [`MvccStore::events`] reads the key table by revision (not through the index): every
//! put and delete from a start revision on, in revision order, as `mvccpb.Event`s. A
//! delete event carries the key and, as in etcd's `kvsToEvents`, `mod_revision` = the
//! revision of the delete. A watch hub keeps each watcher's next revision, calls this
//! after applies (or on a timer) and filters by the watcher's key range; `prev_kv` comes
//! from a range read at `mod_revision - 1` (etcd omits it when that is compacted).

use bramble_api::mvccpb::event::EventType;
use bramble_api::mvccpb::Event;
use redb::ReadableDatabase;

use super::error::MvccError;
use super::read;
use super::revision::Revision;
use super::schema::{self, KEYS};
use super::store::MvccStore;

impl MvccStore {
    /// Events of revisions `start_rev..=current`, oldest first, stopping after the
    /// revision during which `max_events` is reached (a revision is never split, so a
    /// txn's events stay together). Returns them and the revision to continue from
    /// (`current + 1` when everything was read). `start_rev` below the compaction
    /// revision fails with `Compacted` (etcd cancels such a watch with the compact
    /// revision); at or below 0 means the current revision + 1 (nothing yet).
    pub fn events(
        &self,
        start_rev: i64,
        max_events: usize,
    ) -> Result<(Vec<Event>, i64), MvccError> {
        let mut attempts = 0;
        loop {
            match self.events_once(start_rev, max_events) {
                Err(MvccError::StoreReplaced) if attempts < 8 => attempts += 1,
                result => return result,
            }
        }
    }

    fn events_once(
        &self,
        start_rev: i64,
        max_events: usize,
    ) -> Result<(Vec<Event>, i64), MvccError> {
        let pin = self.pin();
        let current = pin.current;
        let rtxn = self.db().begin_read()?;
        let table = rtxn.open_table(KEYS)?;
        let start_rev = if start_rev <= 0 {
            current + 1
        } else {
            start_rev
        };
        // Checked after the snapshot is taken and under the index lock (which a snapshot
        // install holds across its commit): see the module doc of `store`. The rest
        // reads the redb snapshot only.
        {
            let _index = read::lock(&self.index)?;
            self.check_readable(pin, start_rev)?;
        }
        if start_rev > current {
            return Ok((Vec::new(), start_rev));
        }
        let from = Revision::new(start_rev, 0).to_key(false);
        let to = Revision::new(current + 1, 0).to_key(false);
        let mut events = Vec::new();
        for entry in table.range(from.as_slice()..to.as_slice())? {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_key(k.value())?;
            if events.len() >= max_events.max(1) {
                if let Some(Event { kv: Some(last), .. }) = events.last() {
                    if last.mod_revision != rev.main {
                        return Ok((events, rev.main));
                    }
                }
            }
            let mut kv = schema::decode_kv(v.value())?;
            let kind = if tombstone {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok((events, current + 1))
    }
}

#[cfg(test)]
mod tests {
    use bramble_api::bramblepb::command::Op;
    use bramble_api::bramblepb::Command;
    use bramble_api::etcdserverpb::{request_op::Request, PutRequest, RequestOp, TxnRequest};

    use super::super::tests::{compact_cmd, del_cmd, put, put_cmd, TestStore};
    use super::*;

    fn summary(events: &[Event]) -> Vec<(i32, String, i64, i64)> {
        events
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    e.r#type,
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect()
    }

    #[test]
    fn history_as_events() {
        let s = TestStore::new();
        s.put("a", "1"); // 2
        s.put("b", "1"); // 3
        s.apply(del_cmd("a", "c")); // 4: two deletes
        let txn = Command {
            auth: None,
            op: Some(Op::Txn(TxnRequest {
                success: vec![
                    RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: b"x".to_vec(),
                            value: b"1".to_vec(),
                            ..Default::default()
                        })),
                    },
                    RequestOp {
                        request: Some(Request::RequestPut(put("y", "1"))),
                    },
                ],
                ..Default::default()
            })),
        };
        s.apply(txn); // 5: two puts
        let (put_t, del_t) = (EventType::Put as i32, EventType::Delete as i32);
        let (all, next) = s.store.events(1, 100).unwrap();
        assert_eq!(next, 6);
        assert_eq!(
            summary(&all),
            vec![
                (put_t, "a".into(), 2, 1),
                (put_t, "b".into(), 3, 1),
                (del_t, "a".into(), 4, 0),
                (del_t, "b".into(), 4, 0),
                (put_t, "x".into(), 5, 1),
                (put_t, "y".into(), 5, 1),
            ]
        );
        // Limits never split a revision.
        let (some, next) = s.store.events(2, 3).unwrap();
        assert_eq!((some.len(), next), (4, 5));
        let (some, next) = s.store.events(4, 1).unwrap();
        assert_eq!((some.len(), next), (2, 5));
        let (rest, next) = s.store.events(5, 1).unwrap();
        assert_eq!((rest.len(), next), (2, 6));
        assert_eq!(s.store.events(6, 10).unwrap(), (vec![], 6));
        assert_eq!(s.store.events(0, 10).unwrap(), (vec![], 6));

        s.apply(put_cmd(put("a", "2"))); // 6
        s.apply(compact_cmd(4));
        assert_eq!(s.store.events(3, 10), Err(MvccError::Compacted));
        let (after, _) = s.store.events(5, 10).unwrap();
        assert_eq!(after.len(), 3);
    }
}
