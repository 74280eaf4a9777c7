//! KV API edge cases through the `etcd-client` crate (the Rust client), run on a fresh etcd
//! and a fresh Bramble and compared call by call (see `bramble_tests::client`): every
//! response field but the per-cluster header ids, and for errors the gRPC status code and the
//! exact message (Go clients such as kube-apiserver match on the text).
//!
//! Expectations written here (for example "empty key -> InvalidArgument: etcdserver: key is
//! not provided") are checked on etcd too, so they are the spec as etcd 3.4 implements it,
//! not as we remember it. After each rejected request the scenario makes an ordinary call, to
//! prove the server still serves.

use bramble_tests::client::{self, Transcript};
use bramble_tests::target::{self, Kind};
use bramble_tests::Server;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp,
};

const INVALID: &str = "InvalidArgument";
const OUT_OF_RANGE: &str = "OutOfRange";
const EMPTY_KEY: &str = "etcdserver: key is not provided";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";

/// A read of a fixed key, recorded after every rejected request: the server must still serve
/// (and the rejected request must not have changed the revision).
async fn still_serves(c: &mut Client, t: &mut Transcript) {
    t.ok("still serves: get sentinel", c.get("sentinel", None).await);
}

/// Four keys whose versions, create and mod revisions and values sort in four different
/// orders (the same fixture as the etcdctl tests), plus a sentinel; ends at revision 12.
async fn sort_fixture(c: &mut Client, t: &mut Transcript) {
    t.ok("put sentinel", c.put("sentinel", "s", None).await);
    for (k, v) in [
        ("k3", "a"),
        ("k1", "b"),
        ("k3", "c"),
        ("k4", "d"),
        ("k1", "e"),
        ("k3", "f"),
        ("k2", "g"),
        ("k1", "h"),
        ("k3", "i"),
        ("k4", "0"),
    ] {
        t.ok(&format!("put {k}={v}"), c.put(k, v, None).await);
    }
}

#[test]
fn range_options() {
    client::compare("range options", async |c, t| {
        sort_fixture(c, t).await;
        t.ok("get k1", c.get("k1", None).await);
        t.ok("get missing", c.get("missing", None).await);
        t.ok(
            "range [k1,k3)",
            c.get("k1", Some(GetOptions::new().with_range("k3"))).await,
        );
        t.ok(
            "range end < start",
            c.get("k3", Some(GetOptions::new().with_range("k1"))).await,
        );
        t.ok(
            "range end == start",
            c.get("k2", Some(GetOptions::new().with_range("k2"))).await,
        );
        t.ok(
            "prefix k",
            c.get("k", Some(GetOptions::new().with_prefix())).await,
        );
        t.ok(
            "from key k2",
            c.get("k2", Some(GetOptions::new().with_from_key())).await,
        );
        t.ok(
            "all keys",
            c.get("", Some(GetOptions::new().with_all_keys())).await,
        );
        // key "\0" with range_end "\0": every key (the encoding of "all keys" on the wire).
        t.ok(
            "key \\0 end \\0",
            c.get("\0", Some(GetOptions::new().with_range("\0"))).await,
        );
        t.ok("key \\0 alone", c.get("\0", None).await);
        // Prefix of 0xff: the range end is "\0", i.e. from the key on.
        t.ok("put \\xff", c.put(vec![0xffu8], "ff", None).await);
        t.ok(
            "prefix \\xff",
            c.get(vec![0xffu8], Some(GetOptions::new().with_prefix()))
                .await,
        );

        for limit in [0, 1, 2, 4, 5, -1] {
            t.ok(
                &format!("prefix k limit {limit}"),
                c.get("k", Some(GetOptions::new().with_prefix().with_limit(limit)))
                    .await,
            );
        }
        t.ok(
            "keys only",
            c.get("k", Some(GetOptions::new().with_prefix().with_keys_only()))
                .await,
        );
        t.ok(
            "count only",
            c.get("k", Some(GetOptions::new().with_prefix().with_count_only()))
                .await,
        );
        t.ok(
            "count only + limit",
            c.get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_count_only()
                        .with_limit(1),
                ),
            )
            .await,
        );
        t.ok(
            "keys only + limit",
            c.get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_limit(2),
                ),
            )
            .await,
        );
        t.ok(
            "serializable",
            c.get(
                "k",
                Some(GetOptions::new().with_prefix().with_serializable()),
            )
            .await,
        );

        for rev in [-5, 0, 1, 2, 5, 8, 12] {
            t.ok(
                &format!("prefix k at rev {rev}"),
                c.get(
                    "k",
                    Some(GetOptions::new().with_prefix().with_revision(rev)),
                )
                .await,
            );
        }
        t.ok(
            "limit 1 at rev 6",
            c.get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_revision(6)
                        .with_limit(1),
                ),
            )
            .await,
        );
        t.ok(
            "count only at rev 6",
            c.get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_revision(6)
                        .with_count_only(),
                ),
            )
            .await,
        );
    });
}

#[test]
fn range_sort_and_revision_filters() {
    client::compare("range sort and filters", async |c, t| {
        sort_fixture(c, t).await;
        let targets = [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ];
        let orders = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend];
        for target in targets {
            for order in orders {
                for limit in [0, 2] {
                    let opts = GetOptions::new()
                        .with_prefix()
                        .with_sort(target, order)
                        .with_limit(limit);
                    t.ok(
                        &format!("sort {target:?} {order:?} limit {limit}"),
                        c.get("k", Some(opts)).await,
                    );
                }
            }
        }
        t.ok(
            "sort Mod Descend at rev 8",
            c.get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Mod, SortOrder::Descend)
                        .with_revision(8),
                ),
            )
            .await,
        );

        // min/max mod and create revision filters (kube-apiserver does not use them, but
        // they are part of the API and etcdctl 3.4 has no flags for them).
        for (name, opts) in [
            ("min mod 9", GetOptions::new().with_min_mod_revision(9)),
            ("max mod 9", GetOptions::new().with_max_mod_revision(9)),
            (
                "min create 5",
                GetOptions::new().with_min_create_revision(5),
            ),
            (
                "max create 5",
                GetOptions::new().with_max_create_revision(5),
            ),
            (
                "mod in [9,10]",
                GetOptions::new()
                    .with_min_mod_revision(9)
                    .with_max_mod_revision(10),
            ),
            ("min mod 100", GetOptions::new().with_min_mod_revision(100)),
            (
                "min mod 9 limit 1",
                GetOptions::new().with_min_mod_revision(9).with_limit(1),
            ),
            (
                "max create 5 count only",
                GetOptions::new()
                    .with_max_create_revision(5)
                    .with_count_only(),
            ),
            (
                "max mod 9 keys only",
                GetOptions::new().with_max_mod_revision(9).with_keys_only(),
            ),
            ("min mod -1", GetOptions::new().with_min_mod_revision(-1)),
        ] {
            t.ok(name, c.get("k", Some(opts.with_prefix())).await);
        }
    });
}

#[test]
fn put_and_delete_options() {
    client::compare("put and delete", async |c, t| {
        t.ok("put a", c.put("a", "1", None).await);
        t.ok(
            "put a prev",
            c.put("a", "2", Some(PutOptions::new().with_prev_key()))
                .await,
        );
        t.ok(
            "put new prev",
            c.put("b", "1", Some(PutOptions::new().with_prev_key()))
                .await,
        );
        t.ok("put empty value", c.put("e", "", None).await);
        t.ok(
            "put binary",
            c.put(vec![0u8, 1, 2, 255], vec![0u8, 255], None).await,
        );
        t.ok(
            "ignore value",
            c.put(
                "a",
                "",
                Some(PutOptions::new().with_ignore_value().with_prev_key()),
            )
            .await,
        );
        t.ok("get a", c.get("a", None).await);
        t.ok(
            "ignore lease",
            c.put("a", "3", Some(PutOptions::new().with_ignore_lease()))
                .await,
        );
        t.err(
            "ignore value on missing key",
            c.put("nope", "", Some(PutOptions::new().with_ignore_value()))
                .await,
            INVALID,
            "etcdserver: key not found",
        );
        still_serves(c, t).await;
        t.err(
            "ignore value with a value",
            c.put("a", "x", Some(PutOptions::new().with_ignore_value()))
                .await,
            INVALID,
            "etcdserver: value is provided",
        );
        still_serves(c, t).await;
        t.err(
            "ignore lease with a lease",
            c.put(
                "a",
                "x",
                Some(PutOptions::new().with_ignore_lease().with_lease(5)),
            )
            .await,
            INVALID,
            "etcdserver: lease is provided",
        );
        still_serves(c, t).await;

        for k in ["d/1", "d/2", "d/3", "e/1", "f"] {
            t.ok(&format!("put {k}"), c.put(k, k, None).await);
        }
        t.ok("delete missing", c.delete("missing", None).await);
        t.ok(
            "delete b prev",
            c.delete("b", Some(DeleteOptions::new().with_prev_key()))
                .await,
        );
        t.ok(
            "delete range end < start",
            c.delete("f", Some(DeleteOptions::new().with_range("a")))
                .await,
        );
        t.ok(
            "delete [d/2, e/2) prev",
            c.delete(
                "d/2",
                Some(DeleteOptions::new().with_range("e/2").with_prev_key()),
            )
            .await,
        );
        t.ok(
            "delete prefix d/",
            c.delete("d/", Some(DeleteOptions::new().with_prefix()))
                .await,
        );
        t.ok(
            "delete from e",
            c.delete(
                "e",
                Some(DeleteOptions::new().with_from_key().with_prev_key()),
            )
            .await,
        );
        t.ok(
            "all after deletes",
            c.get("", Some(GetOptions::new().with_all_keys())).await,
        );
        t.ok(
            "history of b",
            c.get("b", Some(GetOptions::new().with_revision(3))).await,
        );
        t.ok("recreate b", c.put("b", "again", None).await);
        t.ok("b has version 1", c.get("b", None).await);
        t.ok(
            "delete all",
            c.delete(
                "",
                Some(DeleteOptions::new().with_all_keys().with_prev_key()),
            )
            .await,
        );
        t.ok(
            "empty store",
            c.get("", Some(GetOptions::new().with_all_keys())).await,
        );
        t.ok("delete nothing bumps nothing", c.delete("zzz", None).await);

        // Big keys: etcd limits only the request size, not the key length.
        let big_key = |fill: u8| {
            let mut k = b"bigkey/".to_vec();
            k.resize(512 * 1024, fill);
            k
        };
        t.ok("put 512 KiB key", c.put(big_key(b'a'), "v1", None).await);
        t.ok(
            "put another 512 KiB key",
            c.put(big_key(b'b'), "v2", None).await,
        );
        t.ok(
            "count big keys",
            c.get(
                "bigkey/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await,
        );
        let found = c.get(big_key(b'a'), None).await;
        t.check(
            "512 KiB key reads back",
            matches!(&found, Ok(r) if r.kvs().len() == 1 && r.kvs()[0].key() == big_key(b'a').as_slice()),
            format!("{:?}", found.as_ref().map(|r| r.kvs().len())),
        );
        t.ok(
            "delete big keys",
            c.delete("bigkey/", Some(DeleteOptions::new().with_prefix()))
                .await,
        );
    });
}

#[test]
fn txn_semantics() {
    client::compare("txn", async |c, t| {
        sort_fixture(c, t).await;
        let ops = [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Greater,
            CompareOp::Less,
        ];
        // Each compare target against a key's actual value, and against a missing key.
        for op in ops {
            for (name, cmp) in [
                ("value k1 h", Compare::value("k1", op, "h")),
                ("value k1 a", Compare::value("k1", op, "a")),
                ("version k3 4", Compare::version("k3", op, 4)),
                ("create k2 8", Compare::create_revision("k2", op, 8)),
                ("mod k4 5", Compare::mod_revision("k4", op, 5)),
                ("version missing 0", Compare::version("missing", op, 0)),
                (
                    "create missing 0",
                    Compare::create_revision("missing", op, 0),
                ),
                ("mod missing 0", Compare::mod_revision("missing", op, 0)),
                ("value missing empty", Compare::value("missing", op, "")),
                // Compares over a range: every key in it must satisfy the compare.
                (
                    "version [k1,k5) vs 1",
                    Compare::version("k1", op, 1).with_range("k5"),
                ),
                ("value prefix k", Compare::value("k", op, "g").with_prefix()),
                (
                    "mod from k2 (end \\0)",
                    Compare::mod_revision("k2", op, 9).with_range("\0"),
                ),
                ("lease k1 0", Compare::lease("k1", op, 0)),
                ("lease missing 0", Compare::lease("missing", op, 0)),
            ] {
                let txn = Txn::new()
                    .when([cmp])
                    .and_then([TxnOp::get("k1", None)])
                    .or_else([TxnOp::get("k2", None)]);
                t.ok(&format!("txn {name} {op:?}"), c.txn(txn).await);
            }
        }

        // Multiple compares: all must hold.
        let txn = Txn::new()
            .when([
                Compare::value("k1", CompareOp::Equal, "h"),
                Compare::version("k2", CompareOp::Equal, 2),
            ])
            .and_then([TxnOp::put("yes", "1", None)])
            .or_else([TxnOp::put("no", "1", None)]);
        t.ok("two compares, one false", c.txn(txn).await);

        // Every op type in one txn, with options; writes see earlier writes of the same txn.
        let txn = Txn::new().and_then([
            TxnOp::put("t1", "v", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("t1", None),
            TxnOp::put("k1", "new", Some(PutOptions::new().with_prev_key())),
            TxnOp::get(
                "k",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Value, SortOrder::Descend),
                ),
            ),
            TxnOp::get("k", Some(GetOptions::new().with_prefix().with_count_only())),
            TxnOp::get("k", Some(GetOptions::new().with_prefix().with_revision(4))),
            TxnOp::delete("k4", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::get("k4", None),
        ]);
        t.ok("all op types", c.txn(txn).await);
        t.ok(
            "after all op types",
            c.get("", Some(GetOptions::new().with_all_keys())).await,
        );

        // A read-only txn does not bump the revision; an empty one neither.
        t.ok(
            "read-only txn",
            c.txn(Txn::new().and_then([TxnOp::get("k1", None)])).await,
        );
        t.ok("empty txn", c.txn(Txn::new()).await);
        t.ok(
            "delete of nothing in txn",
            c.txn(Txn::new().and_then([TxnOp::delete("none", None)]))
                .await,
        );

        // Nested txn.
        let inner = Txn::new()
            .when([Compare::version("t1", CompareOp::Equal, 1)])
            .and_then([TxnOp::put("inner", "then", None)])
            .or_else([TxnOp::put("inner", "else", None)]);
        let outer = Txn::new()
            .when([Compare::value("k1", CompareOp::Equal, "new")])
            .and_then([TxnOp::txn(inner), TxnOp::put("outer", "1", None)])
            .or_else([TxnOp::put("outer", "0", None)]);
        t.ok("nested txn", c.txn(outer).await);
        t.ok("inner written", c.get("inner", None).await);

        // kube-apiserver's shapes: create if absent, update if unchanged, delete if
        // unchanged, and the compaction bookkeeping txn.
        let create = |v: &str| {
            Txn::new()
                .when([Compare::mod_revision(
                    "/registry/pods/p",
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put("/registry/pods/p", v, None)])
                .or_else([TxnOp::get("/registry/pods/p", None)])
        };
        let created = t.ok("kube create", c.txn(create("v1")).await);
        t.ok("kube create again fails", c.txn(create("v2")).await);
        let rev = created
            .and_then(|r| r.header().map(|h| h.revision()))
            .unwrap_or(0);
        let update = |from: i64, v: &str| {
            Txn::new()
                .when([Compare::mod_revision(
                    "/registry/pods/p",
                    CompareOp::Equal,
                    from,
                )])
                .and_then([TxnOp::put("/registry/pods/p", v, None)])
                .or_else([TxnOp::get("/registry/pods/p", None)])
        };
        t.ok("kube update", c.txn(update(rev, "v2")).await);
        t.ok("kube stale update", c.txn(update(rev, "v3")).await);
        let delete = Txn::new()
            .when([Compare::mod_revision(
                "/registry/pods/p",
                CompareOp::Equal,
                rev + 1,
            )])
            .and_then([TxnOp::delete("/registry/pods/p", None)])
            .or_else([TxnOp::get("/registry/pods/p", None)]);
        t.ok("kube delete", c.txn(delete).await);
        let compact_txn = |v: i64| {
            Txn::new()
                .when([Compare::version("compact_rev_key", CompareOp::Equal, v)])
                .and_then([TxnOp::put("compact_rev_key", "5", None)])
                .or_else([TxnOp::get("compact_rev_key", None)])
        };
        t.ok("kube compact txn", c.txn(compact_txn(0)).await);
        t.ok("kube compact txn stale", c.txn(compact_txn(0)).await);
        t.ok("kube compact", c.compact(5, None).await);
        t.ok(
            "kube list with limit",
            c.get(
                "/registry/",
                Some(
                    GetOptions::new()
                        .with_range("/registry0")
                        .with_limit(1)
                        .with_revision(rev),
                ),
            )
            .await,
        );
    });
}

#[test]
fn txn_validation() {
    client::compare("txn validation", async |c, t| {
        t.ok("put sentinel", c.put("sentinel", "s", None).await);
        let puts = |n: usize, prefix: &str| -> Vec<TxnOp> {
            (0..n)
                .map(|i| TxnOp::put(format!("{prefix}{i}"), "v", None))
                .collect()
        };
        t.err(
            "129 success ops",
            c.txn(Txn::new().and_then(puts(129, "s"))).await,
            INVALID,
            TOO_MANY_OPS,
        );
        still_serves(c, t).await;
        t.err(
            "129 failure ops",
            c.txn(Txn::new().and_then(puts(1, "s")).or_else(puts(129, "f")))
                .await,
            INVALID,
            TOO_MANY_OPS,
        );
        still_serves(c, t).await;
        let compares: Vec<Compare> = (0..129)
            .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
            .collect();
        t.err(
            "129 compares",
            c.txn(Txn::new().when(compares)).await,
            INVALID,
            TOO_MANY_OPS,
        );
        still_serves(c, t).await;
        t.ok(
            "128 ops in each branch",
            c.txn(Txn::new().and_then(puts(128, "s")).or_else(puts(128, "f")))
                .await,
        );
        // Nested txns share the budget with their parent.
        let nested = Txn::new().and_then([TxnOp::txn(Txn::new().and_then(puts(100, "n")))]);
        t.any("nested ops within budget", c.txn(nested).await);
        let nested = Txn::new().and_then(
            std::iter::once(TxnOp::txn(Txn::new().and_then(puts(128, "m"))))
                .chain(puts(100, "o"))
                .collect::<Vec<_>>(),
        );
        t.any("nested ops over budget", c.txn(nested).await);
        still_serves(c, t).await;

        t.err(
            "duplicate put",
            c.txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)]))
                .await,
            INVALID,
            DUPLICATE_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "put inside a delete range",
            c.txn(Txn::new().and_then([
                TxnOp::delete("a", Some(DeleteOptions::new().with_prefix())),
                TxnOp::put("ab", "2", None),
            ]))
            .await,
            INVALID,
            DUPLICATE_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "put in nested txn duplicates outer put",
            c.txn(Txn::new().and_then([
                TxnOp::put("a", "1", None),
                TxnOp::txn(Txn::new().and_then([TxnOp::put("a", "2", None)])),
            ]))
            .await,
            INVALID,
            DUPLICATE_KEY,
        );
        still_serves(c, t).await;
        t.ok(
            "same key in then and else of a nested txn",
            c.txn(
                Txn::new().and_then([TxnOp::txn(
                    Txn::new()
                        .when([Compare::version("a", CompareOp::Equal, 0)])
                        .and_then([TxnOp::put("a", "then", None)])
                        .or_else([TxnOp::put("a", "else", None)]),
                )]),
            )
            .await,
        );
        t.ok(
            "two deletes of the same key",
            c.txn(Txn::new().and_then([TxnOp::delete("a", None), TxnOp::delete("a", None)]))
                .await,
        );
        t.ok(
            "put and get of the same key",
            c.txn(Txn::new().and_then([TxnOp::put("g", "1", None), TxnOp::get("g", None)]))
                .await,
        );

        t.err(
            "empty key in compare",
            c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)]))
                .await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "empty key in put op",
            c.txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
                .await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "empty key in get op (failure branch)",
            c.txn(Txn::new().or_else([TxnOp::get("", None)])).await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "future revision in txn get",
            c.txn(
                Txn::new().and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(1000)))]),
            )
            .await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );
        still_serves(c, t).await;
        // The failing get must not leave the txn's earlier put applied.
        t.err(
            "put then future get in one txn",
            c.txn(Txn::new().and_then([
                TxnOp::put("atomic", "1", None),
                TxnOp::get("a", Some(GetOptions::new().with_revision(1000))),
            ]))
            .await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );
        t.ok("atomic not written", c.get("atomic", None).await);
        t.err(
            "ignore value on a missing key in txn",
            c.txn(Txn::new().and_then([TxnOp::put(
                "nope",
                "",
                Some(PutOptions::new().with_ignore_value()),
            )]))
            .await,
            INVALID,
            "etcdserver: key not found",
        );
        still_serves(c, t).await;
    });
}

#[test]
fn request_errors() {
    client::compare("request errors", async |c, t| {
        t.ok("put sentinel", c.put("sentinel", "s", None).await);
        t.err(
            "put empty key",
            c.put("", "v", None).await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err("get empty key", c.get("", None).await, INVALID, EMPTY_KEY);
        still_serves(c, t).await;
        t.err(
            "range empty key with an end",
            c.get("", Some(GetOptions::new().with_range("z"))).await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "delete empty key",
            c.delete("", None).await,
            INVALID,
            EMPTY_KEY,
        );
        still_serves(c, t).await;
        t.err(
            "get at future revision",
            c.get("sentinel", Some(GetOptions::new().with_revision(3)))
                .await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );
        still_serves(c, t).await;
        t.err(
            "get at max revision",
            c.get("sentinel", Some(GetOptions::new().with_revision(i64::MAX)))
                .await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );
        still_serves(c, t).await;
        t.ok(
            "negative revision means latest",
            c.get("sentinel", Some(GetOptions::new().with_revision(-1)))
                .await,
        );
        t.ok(
            "min revision i64",
            c.get("sentinel", Some(GetOptions::new().with_revision(i64::MIN)))
                .await,
        );
        t.ok(
            "negative limit",
            c.get("sentinel", Some(GetOptions::new().with_limit(-5)))
                .await,
        );

        // Request size: --max-request-bytes is 1.5 MiB; etcd's gRPC limit is that plus 512 KiB.
        let limit = 1_572_864;
        t.ok(
            "put just under the limit",
            c.put("big", vec![b'x'; limit - 1024], None).await,
        );
        t.err(
            "put just over the limit",
            c.put("big", vec![b'x'; limit + 1], None).await,
            INVALID,
            "etcdserver: request is too large",
        );
        still_serves(c, t).await;
        // Over the gRPC message limit: rejected by the transport before etcd sees it.
        t.any(
            "put over the gRPC limit",
            c.put("big", vec![b'x'; 3 * 1024 * 1024], None).await,
        );
        still_serves(c, t).await;
        let big_txn = Txn::new().and_then(
            (0..4)
                .map(|i| TxnOp::put(format!("t{i}"), vec![b'x'; 500_000], None))
                .collect::<Vec<_>>(),
        );
        t.err(
            "txn over the limit",
            c.txn(big_txn).await,
            INVALID,
            "etcdserver: request is too large",
        );
        still_serves(c, t).await;
        t.ok(
            "big value reads back",
            c.get("big", Some(GetOptions::new().with_keys_only())).await,
        );
    });
}

#[test]
fn compaction() {
    client::compare("compaction", async |c, t| {
        sort_fixture(c, t).await;
        t.err(
            "compact future",
            c.compact(100, None).await,
            OUT_OF_RANGE,
            FUTURE_REV,
        );
        still_serves(c, t).await;
        t.ok("compact 5", c.compact(5, None).await);
        t.err(
            "get below compaction",
            c.get("k1", Some(GetOptions::new().with_revision(4))).await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        still_serves(c, t).await;
        t.ok(
            "get at compaction",
            c.get("k", Some(GetOptions::new().with_prefix().with_revision(5)))
                .await,
        );
        t.err(
            "compact again at 5",
            c.compact(5, None).await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        still_serves(c, t).await;
        t.err(
            "compact below",
            c.compact(2, None).await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        t.err(
            "compact 0",
            c.compact(0, None).await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        t.err(
            "compact negative",
            c.compact(-3, None).await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        still_serves(c, t).await;
        t.ok(
            "compact 9 physical",
            c.compact(9, Some(CompactionOptions::new().with_physical()))
                .await,
        );
        t.err(
            "txn get below compaction",
            c.txn(
                Txn::new().and_then([TxnOp::get("k1", Some(GetOptions::new().with_revision(8)))]),
            )
            .await,
            OUT_OF_RANGE,
            COMPACTED,
        );
        still_serves(c, t).await;
        t.ok(
            "latest after compaction",
            c.get("k", Some(GetOptions::new().with_prefix())).await,
        );
        // Deleted keys' history before the compaction is gone; after it, still there.
        t.ok("delete k2", c.delete("k2", None).await);
        t.ok("put k2", c.put("k2", "back", None).await);
        t.ok("compact to head", c.compact(14, None).await);
        t.ok("k2 after compact to head", c.get("k2", None).await);
        t.ok(
            "count after compaction",
            c.get("k", Some(GetOptions::new().with_prefix().with_count_only()))
                .await,
        );
        t.ok("writes go on", c.put("after", "1", None).await);
    });
}

/// Maintenance.Status: not compared (ids, sizes and versions differ by design), but checked.
#[test]
fn maintenance_status() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    for kind in target::differential_targets() {
        let server = Server::start(kind);
        runtime.block_on(async {
            let mut c = client::connect(&server).await;
            c.put("a", "1", None).await.expect("put a");
            let status = c.status().await.expect("Maintenance.Status");
            let header = status.header().expect("status has a header");
            assert_eq!(header.revision(), 2, "{kind}: revision after one put");
            assert!(status.db_size() > 0, "{kind}: db_size {}", status.db_size());
            assert_ne!(status.leader(), 0, "{kind}: no leader reported");
            assert_eq!(
                status.leader(),
                header.member_id(),
                "{kind}: a single node leads itself"
            );
            assert!(status.raft_index() > 0, "{kind}: raft_index");
            let version = status.version();
            let parts: Vec<u64> = version
                .split(['.', '-'])
                .take(3)
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            assert_eq!(parts.len(), 3, "{kind}: version {version:?} is not x.y.z");
            if kind == Kind::Bramble {
                // Kubernetes turns watch progress requests off below 3.5.13.
                assert!(
                    (parts[0], parts[1], parts[2]) >= (3, 5, 13),
                    "bramble reports version {version}, need >= 3.5.13"
                );
            }
        });
    }
}

/// kube-apiserver's paginated list: a fixed revision, `limit`, and a continue key (the last
/// key plus `\0`) until `more` is false; plus the same list after the data changed.
#[test]
fn paginated_list_at_a_revision() {
    client::compare("paginated list", async |c, t| {
        // 250 keys in batches of 50 puts per txn: 5 revisions.
        for batch in 0..5 {
            let ops: Vec<TxnOp> = (0..50)
                .map(|i| {
                    TxnOp::put(
                        format!("/registry/items/{:04}", batch * 50 + i),
                        format!("v{i}"),
                        None,
                    )
                })
                .collect();
            t.ok(
                &format!("batch {batch}"),
                c.txn(Txn::new().and_then(ops)).await,
            );
        }
        let rev = 6;
        // Changes after the list revision must not show up in the pages.
        t.ok("delete one", c.delete("/registry/items/0007", None).await);
        t.ok(
            "update one",
            c.put("/registry/items/0100", "changed", None).await,
        );
        t.ok("add one", c.put("/registry/items/0050a", "new", None).await);
        for (label, revision) in [("at rev 6", rev), ("latest", 0)] {
            let mut key = b"/registry/items/".to_vec();
            let mut page = 0;
            loop {
                let opts = GetOptions::new()
                    .with_range("/registry/items0")
                    .with_limit(64)
                    .with_revision(revision);
                let Some(resp) = t.ok(
                    &format!("{label} page {page}"),
                    c.get(key.clone(), Some(opts)).await,
                ) else {
                    break;
                };
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        key = last.key().to_vec();
                        key.push(0);
                    }
                    _ => break,
                }
                page += 1;
                if page > 10 {
                    t.check(
                        "pagination ends",
                        false,
                        "more than 10 pages of 64 for 251 keys".into(),
                    );
                    break;
                }
            }
        }
        t.ok(
            "count only at rev 6",
            c.get(
                "/registry/items/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_count_only()
                        .with_revision(rev),
                ),
            )
            .await,
        );
    });
}

/// State that must survive a restart: revisions, versions, tombstones, the compacted
/// revision; and the revision keeps counting from where it was. Graceful (SIGTERM) and crash
/// (SIGKILL) restarts both.
#[test]
fn restart_keeps_revisions_and_compaction() {
    client::compare_with_server(
        "restart",
        async |server: &mut Server, t: &mut Transcript| {
            {
                let mut c = client::connect(server).await;
                sort_fixture(&mut c, t).await;
                t.ok("delete k2", c.delete("k2", None).await);
                t.ok("compact 8", c.compact(8, None).await);
            }
            // Let the dropped client's connection task close its connection: a live client
            // answers the server's GOAWAY (a stuck client is another test's business).
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            server.sigterm();
            server.restart();
            {
                let mut c = client::connect(server).await;
                t.ok(
                    "all after sigterm restart",
                    c.get("", Some(GetOptions::new().with_all_keys())).await,
                );
                t.ok(
                    "k at rev 8",
                    c.get("k", Some(GetOptions::new().with_prefix().with_revision(8)))
                        .await,
                );
                t.err(
                    "below compaction after restart",
                    c.get("k1", Some(GetOptions::new().with_revision(7))).await,
                    OUT_OF_RANGE,
                    COMPACTED,
                );
                t.err(
                    "compact 8 again after restart",
                    c.compact(8, None).await,
                    OUT_OF_RANGE,
                    COMPACTED,
                );
                t.ok("put after restart", c.put("k2", "back", None).await);
                t.ok("k2 recreated", c.get("k2", None).await);
                t.ok(
                    "k2 tombstone visible in history",
                    c.get("k2", Some(GetOptions::new().with_revision(13))).await,
                );
            }
            server.kill9();
            server.restart();
            {
                let mut c = client::connect(server).await;
                t.ok(
                    "all after kill -9 restart",
                    c.get("", Some(GetOptions::new().with_all_keys())).await,
                );
                t.err(
                    "below compaction after crash",
                    c.get("k1", Some(GetOptions::new().with_revision(7))).await,
                    OUT_OF_RANGE,
                    COMPACTED,
                );
                t.ok("compact 14 after crash", c.compact(14, None).await);
                t.ok("put after crash", c.put("k5", "5", None).await);
            }
        },
    );
}
