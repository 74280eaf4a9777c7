//! Which events a watcher wants: its key range (etcd's single key, `[key,
//! range_end)` and from-key forms) and its event-type filters (NOPUT,
//! NODELETE).

use bramble_api::etcdserverpb::watch_create_request::FilterType;
use bramble_api::mvccpb::event::EventType;
use bramble_api::mvccpb::Event;

/// A watcher's keys, normalized as etcd's watch server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WatchRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// Every key `>= start` (range_end `\0`).
    FromKey(Vec<u8>),
    /// Keys in `[start, end)`, with `start < end`.
    Range(Vec<u8>, Vec<u8>),
}

/// etcd's `mvcc: watcher range is empty` (range_end at or before key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EmptyRange;

impl WatchRange {
    /// The range of a create request: an empty key is `\0` (the smallest key),
    /// an empty range_end a single key, range_end `\0` every key from `key` on.
    pub(super) fn from_request(key: &[u8], range_end: &[u8]) -> Result<WatchRange, EmptyRange> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Ok(WatchRange::Single(key)),
            [0] => Ok(WatchRange::FromKey(key)),
            end if key.as_slice() < end => Ok(WatchRange::Range(key, end.to_vec())),
            _ => Err(EmptyRange),
        }
    }

    /// Whether `key` is in the range.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        match self {
            WatchRange::Single(k) => k.as_slice() == key,
            WatchRange::FromKey(start) => key >= start.as_slice(),
            WatchRange::Range(start, end) => key >= start.as_slice() && key < end.as_slice(),
        }
    }
}

/// The event types a watcher drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct EventFilters {
    /// NOPUT: drop PUT events.
    pub no_put: bool,
    /// NODELETE: drop DELETE events.
    pub no_delete: bool,
}

impl EventFilters {
    /// The filters of a create request (unknown values are ignored, as etcd does).
    pub(super) fn from_request(filters: &[i32]) -> EventFilters {
        let mut f = EventFilters::default();
        for v in filters {
            match FilterType::try_from(*v) {
                Ok(FilterType::Noput) => f.no_put = true,
                Ok(FilterType::Nodelete) => f.no_delete = true,
                Err(_) => {}
            }
        }
        f
    }

    /// Whether the event passes the filters.
    pub(super) fn keeps(&self, ev: &Event) -> bool {
        if ev.r#type == EventType::Delete as i32 {
            !self.no_delete
        } else {
            !self.no_put
        }
    }
}

/// The revision an event belongs to (a delete's kv carries the delete's revision).
pub(super) fn event_revision(ev: &Event) -> i64 {
    ev.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0)
}

/// The key an event is about.
pub(super) fn event_key(ev: &Event) -> &[u8] {
    ev.kv.as_ref().map(|kv| kv.key.as_slice()).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::mvccpb::KeyValue;

    fn ev(kind: EventType, key: &str) -> Event {
        Event {
            r#type: kind as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: 7,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn ranges_as_etcd_normalizes_them() {
        assert_eq!(
            WatchRange::from_request(b"", b""),
            Ok(WatchRange::Single(vec![0]))
        );
        assert_eq!(
            WatchRange::from_request(b"", b"\0"),
            Ok(WatchRange::FromKey(vec![0]))
        );
        assert_eq!(WatchRange::from_request(b"b", b"a"), Err(EmptyRange));
        assert_eq!(WatchRange::from_request(b"a", b"a"), Err(EmptyRange));
        let r = WatchRange::from_request(b"a/", b"a0").unwrap();
        assert!(r.contains(b"a/"));
        assert!(r.contains(b"a/x"));
        assert!(!r.contains(b"a0"));
        assert!(!r.contains(b"a"));
        let single = WatchRange::from_request(b"k", b"").unwrap();
        assert!(single.contains(b"k") && !single.contains(b"k1"));
        let from = WatchRange::from_request(b"k", b"\0").unwrap();
        assert!(from.contains(b"k") && from.contains(b"z") && !from.contains(b"j"));
    }

    #[test]
    fn filters_drop_event_types() {
        let put = ev(EventType::Put, "k");
        let del = ev(EventType::Delete, "k");
        let none = EventFilters::from_request(&[]);
        assert!(none.keeps(&put) && none.keeps(&del));
        let no_put = EventFilters::from_request(&[FilterType::Noput as i32]);
        assert!(!no_put.keeps(&put) && no_put.keeps(&del));
        let no_del = EventFilters::from_request(&[FilterType::Nodelete as i32, 99]);
        assert!(no_del.keeps(&put) && !no_del.keeps(&del));
        assert_eq!(event_revision(&put), 7);
        assert_eq!(event_key(&del), b"k");
    }
}
