//! Key permissions (etcd's `range_perm_cache.go`): which keys a user's roles let it
//! read or write.
//!
//! A permission is a key, or a range `[key, range_end)`, with etcd's range_end rules:
//! empty = the key alone, `"\0"` = from the key to the end of the key space. A request
//! over one key is allowed when some permission contains the key; a request over a
//! range when the union of the user's permissions of that type covers the whole range
//! (etcd merges the intervals of all the user's roles the same way).

use bramble_api::authpb::permission::Type as PermType;
use bramble_api::authpb::Permission;

/// An interval of keys: `[begin, end)`, `end` None = to the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval<'a> {
    begin: &'a [u8],
    end: Option<&'a [u8]>,
}

/// Whether `range_end` means "to the end of the key space" (etcd's `isOpenEnded`).
pub(crate) fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// Whether `[key, range_end)` is a permission etcd accepts (its
/// `isValidPermissionRange`): a non-empty key, and a range_end that is empty (one
/// key), above the key, or `"\0"` (open ended).
pub(crate) fn is_valid_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || is_open_ended(range_end))
}

/// The keys a permission covers.
fn interval(perm: &Permission) -> Interval<'_> {
    if perm.range_end.is_empty() {
        // One key: [key, key + "\0"), represented by its end being the successor.
        return Interval {
            begin: &perm.key,
            end: Some(&perm.key),
        };
    }
    Interval {
        begin: &perm.key,
        end: (!is_open_ended(&perm.range_end)).then_some(perm.range_end.as_slice()),
    }
}

/// Whether a permission of type `have` allows an operation needing `want` (READ or
/// WRITE).
fn grants(have: i32, want: PermType) -> bool {
    have == PermType::Readwrite as i32 || have == want as i32
}

/// Whether interval `i` (a point interval stored with `end == begin` stands for the
/// single key) contains `key`.
fn contains_key(i: &Interval<'_>, key: &[u8]) -> bool {
    match i.end {
        Some(end) if end == i.begin => key == i.begin,
        Some(end) => i.begin <= key && key < end,
        None => i.begin <= key,
    }
}

/// The end of interval `i` as an exclusive bound: a single key `k` ends at `k\0`.
fn exclusive_end(i: &Interval<'_>) -> Option<Vec<u8>> {
    match i.end {
        Some(end) if end == i.begin => {
            let mut e = end.to_vec();
            e.push(0);
            Some(e)
        }
        Some(end) => Some(end.to_vec()),
        None => None,
    }
}

/// Whether the permissions `perms` allow `want` over `key` (range_end empty) or
/// `[key, range_end)` (`"\0"`: to the end), as etcd's `isRangeOpPermitted`.
pub(crate) fn is_range_permitted<'a>(
    perms: impl Iterator<Item = &'a Permission>,
    key: &[u8],
    range_end: &[u8],
    want: PermType,
) -> bool {
    let mut ivls: Vec<Interval<'_>> = perms
        .filter(|p| grants(p.perm_type, want))
        .map(interval)
        .collect();
    if range_end.is_empty() {
        return ivls.iter().any(|i| contains_key(i, key));
    }
    let want_end = (!is_open_ended(range_end)).then_some(range_end);
    if let Some(end) = want_end {
        if end <= key {
            // An empty or inverted range: etcd's interval tree finds nothing for it.
            return false;
        }
    }
    // Sweep the intervals in begin order: the covered prefix of the request grows
    // while each next interval starts inside it (adjacent intervals join, as etcd's
    // `Contains`).
    ivls.sort_by(|a, b| a.begin.cmp(b.begin));
    let mut covered: Vec<u8> = key.to_vec();
    for i in &ivls {
        if i.begin > covered.as_slice() {
            break;
        }
        match exclusive_end(i) {
            None => return true,
            Some(end) => {
                if end > covered {
                    covered = end;
                }
            }
        }
        if want_end.is_some_and(|w| covered.as_slice() >= w) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn valid_ranges_are_etcds() {
        assert!(is_valid_range(b"a", b""));
        assert!(is_valid_range(b"a", b"b"));
        assert!(is_valid_range(b"a", b"\0"));
        assert!(is_valid_range(b"\0", b"\0"));
        assert!(!is_valid_range(b"", b""));
        assert!(!is_valid_range(b"b", b"a"));
        assert!(!is_valid_range(b"a", b"a"));
    }

    #[test]
    fn single_keys_and_ranges() {
        let perms = [
            perm(PermType::Read, "k", b""),
            perm(PermType::Write, "a", b"c"),
            perm(PermType::Readwrite, "x", b"\0"),
        ];
        let ok = |k: &str, e: &[u8], t| is_range_permitted(perms.iter(), k.as_bytes(), e, t);
        assert!(ok("k", b"", PermType::Read));
        assert!(!ok("k", b"", PermType::Write));
        assert!(!ok("k0", b"", PermType::Read));
        // The single key k as a range [k, k\0).
        assert!(ok("k", b"k\0", PermType::Read));
        assert!(!ok("k", b"k\0\0", PermType::Read));
        assert!(ok("a", b"", PermType::Write));
        assert!(ok("b", b"c", PermType::Write));
        assert!(!ok("b", b"d", PermType::Write));
        assert!(!ok("a", b"", PermType::Read));
        // Open ended: from x to the end.
        assert!(ok("x", b"\0", PermType::Read));
        assert!(ok("zzz", b"\0", PermType::Write));
        assert!(ok("y", b"", PermType::Write));
        assert!(!ok("w", b"\0", PermType::Read));
        // Empty and inverted ranges are refused.
        assert!(!ok("b", b"b", PermType::Write));
        assert!(!ok("c", b"b", PermType::Write));
    }

    #[test]
    fn intervals_of_several_roles_merge() {
        // [a, c) + [c, e) + [d, f): covers [a, f) as a whole, as etcd's interval tree.
        let perms = [
            perm(PermType::Read, "a", b"c"),
            perm(PermType::Readwrite, "c", b"e"),
            perm(PermType::Read, "d", b"f"),
        ];
        let ok =
            |k: &str, e: &[u8]| is_range_permitted(perms.iter(), k.as_bytes(), e, PermType::Read);
        assert!(ok("a", b"f"));
        assert!(ok("b", b"e"));
        assert!(!ok("a", b"g"));
        assert!(!ok("0", b"b"));
        // A gap breaks the cover.
        let gap = [
            perm(PermType::Read, "a", b"b"),
            perm(PermType::Read, "c", b"d"),
        ];
        assert!(!is_range_permitted(gap.iter(), b"a", b"d", PermType::Read));
        assert!(is_range_permitted(gap.iter(), b"c", b"d", PermType::Read));
        // A single key joins a range ending at it: [a, b) + b = [a, b\0).
        let joined = [
            perm(PermType::Read, "a", b"b"),
            perm(PermType::Read, "b", b""),
        ];
        assert!(is_range_permitted(
            joined.iter(),
            b"a",
            b"b\0",
            PermType::Read
        ));
        assert!(!is_range_permitted(
            joined.iter(),
            b"a",
            b"c",
            PermType::Read
        ));
    }

    #[test]
    fn whole_key_space() {
        let all = [perm(PermType::Readwrite, "\0", b"\0")];
        assert!(is_range_permitted(all.iter(), b"\0", b"\0", PermType::Read));
        assert!(is_range_permitted(
            all.iter(),
            b"anything",
            b"",
            PermType::Write
        ));
        assert!(!is_range_permitted([].iter(), b"a", b"", PermType::Read));
    }
}
