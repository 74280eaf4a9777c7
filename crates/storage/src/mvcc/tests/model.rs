//! Randomized check against a model: a naive, obviously-etcd implementation (a full copy
//! of the key space per revision) and the store get the same random puts, deletes,
//! compactions and reopens, then must answer the same random range requests.

use std::collections::BTreeMap;

use bramble_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use bramble_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use bramble_testkit::rng::Rng;

use super::super::tree_index::KeyRange;
use super::*;

const KEYS: &[&str] = &[
    "a", "a0", "a1", "ab", "b", "b\u{7f}", "c", "k0", "k1", "k2", "k3", "z",
];
const ENDS: &[&str] = &["", "", "\0", "a1", "b", "c", "k", "k2", "l", "zz", "a"];

struct Model {
    /// `snaps[r]` is the key space at revision r (`snaps[0]` unused, `snaps[1]` empty).
    snaps: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compact: i64,
}

impl Model {
    fn cur(&self) -> i64 {
        self.snaps.len() as i64 - 1
    }

    fn put(&mut self, key: &str, value: &str, lease: i64) {
        let rev = self.cur() + 1;
        let mut m = self.snaps[self.cur() as usize].clone();
        let (create_revision, version) = match m.get(key.as_bytes()) {
            Some(old) => (old.create_revision, old.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision,
            mod_revision: rev,
            version,
            value: value.as_bytes().to_vec(),
            lease,
        };
        m.insert(kv.key.clone(), kv);
        self.snaps.push(m);
    }

    fn del(&mut self, key: &str, end: &str) -> i64 {
        let range = KeyRange::new(key.as_bytes(), end.as_bytes());
        let mut m = self.snaps[self.cur() as usize].clone();
        let before = m.len();
        m.retain(|k, _| !range.contains(k));
        let n = (before - m.len()) as i64;
        if n > 0 {
            self.snaps.push(m);
        }
        n
    }

    fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.cur() {
            return Err(MvccError::FutureRevision);
        }
        self.compact = rev;
        Ok(())
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        if req.revision > self.cur() {
            return Err(MvccError::FutureRevision);
        }
        let at = if req.revision <= 0 {
            self.cur()
        } else {
            req.revision
        };
        if at < self.compact {
            return Err(MvccError::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut kvs: Vec<KeyValue> = self.snaps[at as usize]
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect();
        let count = kvs.len() as i64;
        let header = Some(ResponseHeader {
            revision: self.cur(),
            ..Default::default()
        });
        if req.count_only {
            return Ok(RangeResponse {
                header,
                kvs: vec![],
                more: false,
                count,
            });
        }
        kvs.retain(|kv| {
            !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
                || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
                || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
                || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
        });
        let target = SortTarget::try_from(req.sort_target).unwrap();
        let mut order = SortOrder::try_from(req.sort_order).unwrap();
        // etcd's applier lifts the limit only for an explicit order or a
        // revision filter; otherwise it reads limit + 1 keys in key order.
        let filtered = req.max_mod_revision != 0
            || req.min_mod_revision != 0
            || req.max_create_revision != 0
            || req.min_create_revision != 0;
        if req.limit > 0 && order == SortOrder::None && !filtered {
            kvs.truncate(req.limit as usize + 1);
        }
        if target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        let by = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // Stable sorts of key-ordered input: ties stay in key order.
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by(|a, b| by(a, b)),
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header,
            kvs,
            more,
            count,
        })
    }
}

fn random_range(rng: &mut Rng, cur: i64) -> RangeRequest {
    let mut req = range(rng.pick(KEYS), rng.pick(ENDS));
    if rng.below(8) == 0 {
        req.key = b"\0".to_vec();
        req.range_end = b"\0".to_vec();
    }
    if rng.below(2) == 0 {
        req.limit = rng.below(4) as i64;
    }
    match rng.below(12) {
        0..=3 => req.revision = rng.below(cur as u64 + 1) as i64,
        4 => req.revision = cur + 1 + rng.below(2) as i64,
        5 => req.revision = -1,
        _ => {}
    }
    if rng.below(2) == 0 {
        req.sort_order = rng.below(3) as i32;
        req.sort_target = rng.below(5) as i32;
    }
    req.keys_only = rng.below(6) == 0;
    req.count_only = rng.below(8) == 0;
    let mut rev = || rng.below(cur as u64 + 1) as i64;
    match rev() % 6 {
        0 => req.min_mod_revision = rev(),
        1 => req.max_mod_revision = rev(),
        2 => req.min_create_revision = rev(),
        3 => req.max_create_revision = rev(),
        _ => {}
    }
    req
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng::from_state(seed);
    let mut s = TestStore::new();
    // Puts use leases 0, 1 and 2; grants take no revision.
    s.grant(1, 60).unwrap();
    s.grant(2, 60).unwrap();
    let mut m = Model {
        snaps: vec![BTreeMap::new(), BTreeMap::new()],
        compact: -1,
    };
    // (ranges with values, with more, compacted errors, future errors)
    let mut seen = (0, 0, 0, 0);
    for step in 0..steps {
        match rng.below(100) {
            0..=44 => {
                let key = rng.pick(KEYS);
                let value = rng.below(4).to_string();
                let lease = rng.below(3) as i64;
                let mut p = put(key, &value);
                p.lease = lease;
                assert!(matches!(s.apply(put_cmd(p)), ApplyResult::Put(_)));
                m.put(key, &value, lease);
            }
            45..=59 => {
                let (key, end) = (rng.pick(KEYS), rng.pick(ENDS));
                assert_eq!(
                    s.del(key, end),
                    m.del(key, end),
                    "step {step}: del {key:?} {end:?}"
                );
            }
            60..=64 => {
                let rev = m.compact - 1 + rng.below((m.cur() - m.compact + 3) as u64) as i64;
                assert_eq!(
                    s.compact(rev).map(|_| ()),
                    m.compact(rev),
                    "step {step}: compact {rev}"
                );
            }
            65..=67 => s = s.reopen(),
            _ => {
                let req = random_range(&mut rng, m.cur());
                let want = m.range(&req);
                assert_eq!(s.range(req.clone()), want, "step {step}: {req:?}");
                match want {
                    Ok(r) if r.more => seen.1 += 1,
                    Ok(r) if !r.kvs.is_empty() => seen.0 += 1,
                    Err(MvccError::Compacted) => seen.2 += 1,
                    Err(MvccError::FutureRevision) => seen.3 += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(s.store.current_revision(), m.cur());
    }
    assert!(
        seen.0 > 20 && seen.1 > 5 && seen.2 > 0 && seen.3 > 0,
        "seed {seed} exercised too little: {seen:?}"
    );
}

#[test]
fn random_histories_match_the_model() {
    for seed in 1..=6u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 700);
    }
}
