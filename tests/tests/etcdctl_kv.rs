//! Differential etcdctl tests: every KV command and flag of etcdctl (3.6.16, the reference
//! built by `scripts/etcd-build`), run as the same script against a fresh etcd 3.6 and a fresh
//! Bramble, compared byte for byte after masking cluster id, member id and raft term (see
//! `bramble_tests::normalize`). One script runs with Debian's etcdctl 3.4 (`etcd-client`),
//! the client many Pi clusters still have.
//!
//! `BRAMBLE_E2E_ONLY_ETCD=1` runs the scripts on etcd alone (checking only each step's own
//! expectation), which proves the scripts themselves against the spec.
//!
//! Not here, because etcdctl 3.4 had no flag for them and the scripts predate 3.6:
//! `--count-only` and the min/max mod/create revision filters (`client_kv.rs` covers them with the etcd-client crate), and
//! leases (`put --lease` and the lease commands are in `etcdctl_lease.rs`).

use bramble_tests::target::{self, Kind};
use bramble_tests::{Script, Server, Step};

/// Puts that give four keys distinct versions, create and mod revisions and values, in four
/// different orders, so each `--sort-by` target is actually told apart. (Sort keys are kept
/// unique on purpose: etcd does not promise an order among ties.)
///
/// Final state, at revision 11:
/// | key | version | create | mod | value |
/// | k1  | 3       | 3      | 9   | h     |
/// | k2  | 1       | 8      | 8   | g     |
/// | k3  | 4       | 2      | 10  | i     |
/// | k4  | 2       | 5      | 11  | 0     |
fn sort_fixture(script: Script) -> Script {
    [
        "k3 a", "k1 b", "k3 c", "k4 d", "k1 e", "k3 f", "k2 g", "k1 h", "k3 i", "k4 0",
    ]
    .iter()
    .fold(script, |s, kv| s.ok(&format!("put {kv}")))
}

/// A small tree of keys for range, prefix and from-key reads (revisions 2..=8).
fn range_fixture(script: Script) -> Script {
    ["a 1", "a/x 2", "a/y 3", "ab 4", "b 5", "c 6", "d 7"]
        .iter()
        .fold(script, |s, kv| s.ok(&format!("put {kv}")))
}

#[test]
fn put_and_its_flags() {
    Script::new("put")
        .step(Step::cmd("put a 1").contains("OK"))
        .step(Step::cmd("put a 2 --prev-kv").contains("1"))
        .ok("put a 3 --prev-kv -w json")
        .ok("put a 4 --prev-kv -w fields")
        .ok("put a 5 -w protobuf")
        // --ignore-value keeps the current value (and bumps version and mod revision).
        .ok("put a --ignore-value")
        .ok("get a -w json")
        .ok("put a --ignore-value --prev-kv -w json")
        // ...but on a missing key it is an error.
        .step(
            Step::cmd("put missing --ignore-value")
                .fails()
                .contains("etcdserver: key not found"),
        )
        // --ignore-lease on a key without a lease: allowed, the key keeps lease 0.
        .ok("put a 6 --ignore-lease")
        .step(
            Step::cmd("put missing2 7 --ignore-lease")
                .fails()
                .contains("etcdserver: key not found"),
        )
        // Values: empty, with spaces, unicode, from stdin (keeps the trailing newline), a key
        // that starts with a dash.
        .step(Step::args(&["put", "empty", ""]))
        .step(Step::args(&["put", "spaced", "a value with  spaces"]))
        .step(Step::args(&["put", "unicode/ключ", "värde ✓"]))
        .step(Step::args(&["put", "stdin"]).stdin("from stdin\n"))
        .step(Step::args(&["put", "--", "-dash", "v"]))
        .step(Step::args(&["get", "", "--prefix", "-w", "json"]))
        .step(Step::args(&["get", "", "--from-key"]))
        .run();
}

#[test]
fn get_single_ranges_prefix_from_key() {
    range_fixture(Script::new("get ranges"))
        .step(Step::cmd("get a").contains("1"))
        .ok("get missing")
        .ok("get missing -w json")
        // [a, c): a, a/x, a/y, ab, b
        .ok("get a c")
        .ok("get a c -w json")
        // An end before the start is an empty range, not an error.
        .ok("get c a")
        .ok("get a a")
        .ok("get --prefix a")
        .ok("get --prefix a/")
        .ok("get --prefix a/ -w json")
        .ok("get --prefix zz")
        .ok("get --from-key b")
        .ok("get --from-key ab -w json")
        .ok("get --from-key zz")
        .step(Step::args(&["get", "", "--prefix"]))
        .step(Step::args(&["get", "", "--from-key", "--keys-only"]))
        .ok("get --prefix a --keys-only")
        .ok("get --prefix a --keys-only -w json")
        .ok("get --prefix a --print-value-only")
        .ok("get a c --print-value-only --keys-only")
        .ok("get --prefix a --hex")
        .ok("get --prefix a --hex -w json")
        .ok("get a --consistency=s")
        .ok("get --prefix a --consistency=s -w json")
        .ok("get --prefix a --consistency=l -w json")
        .step(Step::cmd("get a --consistency=x").fails())
        .run();
}

#[test]
fn get_limit_and_more() {
    range_fixture(Script::new("get limit"))
        .ok("get --prefix a --limit=2")
        .ok("get --prefix a --limit=2 -w json")
        .ok("get --prefix a --limit=4 -w json")
        .ok("get --prefix a --limit=5 -w json")
        .ok("get --prefix a --limit=0 -w json")
        .ok("get --from-key a --limit=3 -w fields")
        .ok("get a c --limit=1 -w json")
        .ok("get --prefix a --limit=2 --keys-only -w json")
        .ok("get --prefix a --limit=1 --rev=3 -w json")
        // A negative limit is treated as no limit by etcd.
        .ok("get --prefix a --limit=-1 -w json")
        .run();
}

#[test]
fn get_sort_by_every_target_and_order() {
    let mut script = sort_fixture(Script::new("get sort"));
    for target in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        script = script.ok(&format!("get --prefix k --sort-by={target}"));
        for order in ["ASCEND", "DESCEND"] {
            script = script
                .ok(&format!(
                    "get --prefix k --sort-by={target} --order={order}"
                ))
                .ok(&format!(
                    "get --prefix k --sort-by={target} --order={order} --limit=2 -w json"
                ))
                .ok(&format!(
                    "get --from-key k2 --sort-by={target} --order={order} --keys-only"
                ));
        }
    }
    script
        // --order alone sorts by key.
        .ok("get --prefix k --order=DESCEND")
        .ok("get --prefix k --order=ASCEND -w json")
        .ok("get --prefix k --order=DESCEND --limit=1 -w json")
        .ok("get --prefix k --sort-by=MODIFY --order=DESCEND --rev=8")
        .step(Step::cmd("get --prefix k --sort-by=BOGUS").fails())
        .step(Step::cmd("get --prefix k --order=SIDEWAYS").fails())
        .run();
}

#[test]
fn get_at_revisions() {
    sort_fixture(Script::new("get rev"))
        .ok("get k1 --rev=2")
        .ok("get k1 --rev=3 -w json")
        .ok("get k1 --rev=6 -w json")
        .ok("get --prefix k --rev=5")
        .ok("get --prefix k --rev=5 -w json")
        .ok("get --prefix k --rev=11 -w json")
        .ok("get k3 --rev=1 -w json")
        // rev <= 0 means the current revision.
        .ok("get --prefix k --rev=0 -w json")
        .ok("get --prefix k --rev=-1 -w json")
        .step(
            Step::cmd("get k1 --rev=12")
                .fails()
                .contains("etcdserver: mvcc: required revision is a future revision"),
        )
        .step(Step::cmd("get k1 --rev=1000 -w json").fails())
        // A deleted key disappears at the delete's revision and stays visible before it.
        .ok("del k2")
        .ok("get k2 --rev=11 -w json")
        .ok("get k2 --rev=12 -w json")
        .ok("put k2 again")
        .ok("get k2 -w json")
        .ok("get k2 --rev=12")
        .run();
}

#[test]
fn get_output_formats() {
    range_fixture(Script::new("get formats"))
        .ok("put a 1b")
        .ok("get a -w simple")
        .ok("get a -w json")
        .ok("get a -w fields")
        .ok("get a -w protobuf")
        .ok("get --prefix a -w protobuf")
        .ok("get missing -w protobuf")
        .ok("get missing -w fields")
        .ok("get --prefix a -w fields")
        .ok("get --prefix a --keys-only -w fields")
        .ok("get --prefix a --keys-only -w protobuf")
        .ok("get a --hex -w fields")
        .step(
            Step::cmd("get a -w table")
                .fails()
                .contains("table not supported"),
        )
        .run();
}

#[test]
fn del_and_its_flags() {
    range_fixture(Script::new("del"))
        .step(Step::cmd("del a").contains("1"))
        .step(Step::cmd("del a").contains("0"))
        .ok("del missing -w json")
        .ok("del a/x --prev-kv")
        .ok("put a/x 2")
        .ok("del a/x --prev-kv -w json")
        .ok("del a/x --prev-kv -w fields")
        .ok("put a/x 3")
        // [a, b): a/x, a/y, ab
        .ok("del a b --prev-kv")
        .step(Step::args(&["get", "", "--from-key", "-w", "json"]))
        .ok("put a/1 1")
        .ok("put a/2 2")
        .ok("del --prefix a/ -w json")
        .ok("del --prefix a/ -w json")
        .ok("put x 1")
        .ok("put y 2")
        .ok("del --from-key c --prev-kv -w json")
        .step(Step::args(&["get", "", "--from-key", "-w", "json"]))
        .ok("put p 1")
        .ok("del p -w protobuf")
        // Range end before start deletes nothing.
        .ok("del b a -w json")
        .step(
            Step::args(&["del", ""])
                .fails()
                .contains("etcdserver: key is not provided"),
        )
        // Empty prefix = every key.
        .step(Step::args(&["del", "", "--prefix", "--prev-kv"]))
        .step(Step::args(&["get", "", "--from-key", "-w", "json"]))
        .run();
}

#[test]
fn txn_compares_in_simple_output() {
    Script::new("txn simple")
        .ok("put a 1")
        .ok("put b 2")
        // value compares: =, !=, <, > (byte order), success branch with every op kind.
        .step(
            Step::cmd("txn -i")
                .stdin("value(\"a\") = \"1\"\n\nput a 10\nget a\ndel b\n\nput z fail\n\n")
                .contains("SUCCESS"),
        )
        .step(
            Step::cmd("txn -i")
                .stdin("value(\"a\") != \"10\"\n\nput z ok\n\nget a\nget b\n\n")
                .contains("FAILURE"),
        )
        .step(Step::cmd("txn -i").stdin("value(\"a\") < \"2\"\n\nput lt yes\n\nput lt no\n\n"))
        .step(Step::cmd("txn -i").stdin("value(\"a\") > \"2\"\n\nput gt yes\n\nput gt no\n\n"))
        // version / create / mod compares, several at once (all must hold).
        .step(Step::cmd("txn -i").stdin(
            "version(\"a\") = \"2\"\ncreate(\"a\") = \"2\"\nmod(\"a\") = \"4\"\n\nget a\n\nget z\n\n",
        ))
        .step(Step::cmd("txn -i").stdin(
            "ver(\"a\") > \"1\"\nc(\"a\") < \"3\"\nm(\"a\") != \"4\"\n\nput all true\n\nput all false\n\n",
        ))
        // A missing key has version, create and mod revision 0 (the kube-apiserver create).
        .step(Step::cmd("txn -i").stdin(
            "mod(\"new\") = \"0\"\n\nput new created --prev-kv\n\nget new\n\n",
        ))
        .step(Step::cmd("txn -i").stdin(
            "mod(\"new\") = \"0\"\n\nput new created-again\n\nget new\n\n",
        ))
        .step(Step::cmd("txn -i").stdin("version(\"nokey\") = \"0\"\n\nput v0 yes\n\n\n"))
        // A value compare on a missing key fails (there is no value to compare).
        .step(Step::cmd("txn -i").stdin("value(\"nokey\") = \"\"\n\nput vv yes\n\nput vv no\n\n"))
        // Ops with flags inside a txn: ranges, limits, sorts, prev-kv, ranges for delete.
        .step(Step::cmd("txn -i").stdin(
            "\nget a z --limit=2\nget --prefix \"\" --sort-by=VALUE --order=DESCEND --keys-only\nput a 11 --prev-kv\ndel --prefix g --prev-kv\n\n\n",
        ))
        .step(Step::cmd("txn -i").stdin("\nget a --rev=2\nget --from-key l\n\n\n"))
        // Empty txn: no compares, no ops.
        .step(Step::cmd("txn -i").stdin("\n\n\n"))
        // Only a failure branch.
        .step(Step::cmd("txn -i").stdin("value(\"a\") = \"nope\"\n\n\nput onlyfail 1\n\n"))
        .step(Step::args(&["get", "", "--from-key", "-w", "json"]))
        .run();
}

#[test]
fn txn_in_json_fields_and_protobuf_output() {
    let txn = "mod(\"a\") = \"2\"\n\nput a 2 --prev-kv\nget a\ndel b --prev-kv\n\nget a\n\n";
    let fail =
        "mod(\"a\") = \"2\"\n\nput a 3\n\nget --prefix \"\" --limit=1\nput c 3 --prev-kv\n\n";
    Script::new("txn json")
        .ok("put a 1")
        .ok("put b 1")
        .step(Step::cmd("txn -i -w json").stdin(txn))
        .step(Step::cmd("txn -i -w json").stdin(fail))
        .ok("put b 2")
        .step(
            Step::cmd("txn -i -w fields")
                .stdin("version(\"b\") = \"1\"\n\nget b\n\nget b\ndel b --prev-kv\n\n"),
        )
        .step(Step::cmd("txn -i -w protobuf").stdin("value(\"a\") = \"2\"\n\nget a\nput d 4\n\n\n"))
        .step(Step::cmd("txn -i -w json").stdin("\n\n\n"))
        .run();
}

#[test]
fn txn_errors() {
    // 129 puts of distinct keys: one more than --max-txn-ops.
    let too_many: String = (0..129).map(|i| format!("put k{i} v\n")).collect();
    let max_ops: String = (0..128).map(|i| format!("put k{i} v\n")).collect();
    Script::new("txn errors")
        .ok("put a 1")
        .step(
            Step::cmd("txn -i")
                .stdin("\nput a 1\nput a 2\n\n\n")
                .fails()
                .contains("etcdserver: duplicate key given in txn request"),
        )
        // The same key in the success and failure branch is fine: only one branch runs.
        .step(Step::cmd("txn -i").stdin("\nput a 1\n\nput a 2\n\n"))
        // A put and a delete covering it in the same branch is a duplicate too.
        .step(
            Step::cmd("txn -i")
                .stdin("\nput a/x 1\ndel --prefix a/\n\n\n")
                .fails(),
        )
        // ...but a get of the same key next to a put is fine.
        .step(Step::cmd("txn -i").stdin("\nput a 3\nget a\n\n\n"))
        .step(
            Step::cmd("txn -i")
                .stdin(&format!("\n{too_many}\n\n"))
                .fails()
                .contains("etcdserver: too many operations in txn request"),
        )
        .step(Step::cmd("txn -i").stdin(&format!("\n{max_ops}\n\n")))
        .step(
            Step::cmd("txn -i")
                .stdin("\nput \"\" 1\n\n\n")
                .fails()
                .contains("etcdserver: key is not provided"),
        )
        .step(
            Step::cmd("txn -i")
                .stdin("\nget a --rev=100000\n\n\n")
                .fails()
                .contains("etcdserver: mvcc: required revision is a future revision"),
        )
        .step(
            Step::cmd("txn -i")
                .stdin("\nput missing --ignore-value\n\n\n")
                .fails(),
        )
        // Malformed input is rejected by etcdctl itself; still the same output for both.
        .step(
            Step::cmd("txn -i")
                .stdin("bogus(\"a\") = \"1\"\n\n\n\n")
                .fails(),
        )
        .ok("get a -w json")
        .run();
}

#[test]
fn compaction_then_reads_below_it() {
    sort_fixture(Script::new("compaction"))
        .ok("get k1 --rev=4")
        .step(Step::cmd("compaction 5").contains("compacted revision 5"))
        .step(
            Step::cmd("get k1 --rev=4")
                .fails()
                .contains("etcdserver: mvcc: required revision has been compacted"),
        )
        .step(Step::cmd("get --prefix k --rev=1 -w json").fails())
        // The compacted revision itself is still readable.
        .ok("get --prefix k --rev=5 -w json")
        .ok("get --prefix k --rev=7")
        // Compacting again at or below the compacted revision is an error.
        .step(
            Step::cmd("compaction 5")
                .fails()
                .contains("etcdserver: mvcc: required revision has been compacted"),
        )
        .step(Step::cmd("compaction 3").fails())
        .step(
            Step::cmd("compaction 100")
                .fails()
                .contains("etcdserver: mvcc: required revision is a future revision"),
        )
        .step(Step::cmd("compaction --physical 8").contains("compacted revision 8"))
        .step(Step::cmd("get k3 --rev=7").fails())
        .ok("get --prefix k --rev=8 -w json")
        .ok("get --prefix k -w json")
        // Writes go on after a compaction; a compaction at the current revision is allowed.
        .ok("put k5 5")
        .step(Step::cmd("compaction --physical=true 12"))
        .ok("get --prefix k -w json")
        .step(Step::cmd("txn -i").stdin("\nget k1 --rev=11\n\n\n").fails())
        .step(Step::cmd("compaction 0").fails())
        .step(Step::cmd("compaction -- -1").fails())
        .step(Step::cmd("compaction abc").fails())
        .run();
}

#[test]
fn request_errors() {
    // Just over the 1.5 MiB --max-request-bytes (from stdin: argv has a 128 KiB per-argument
    // limit). Beyond 2 MiB etcdctl's own gRPC client refuses to send, so that case is in
    // client_kv.rs.
    let over_limit = "x".repeat(1_572_864 + 1);
    let under_limit = "x".repeat(1_500_000);
    Script::new("errors")
        .step(
            Step::args(&["put", "", "v"])
                .fails()
                .contains("etcdserver: key is not provided"),
        )
        .step(
            Step::args(&["get", ""])
                .fails()
                .contains("etcdserver: key is not provided"),
        )
        .step(
            Step::cmd("get a --rev=2")
                .fails()
                .contains("future revision"),
        )
        .step(
            Step::cmd("put big")
                .stdin(&over_limit)
                .fails()
                .contains("etcdserver: request is too large"),
        )
        .step(Step::cmd("put fits").stdin(&under_limit))
        .ok("get fits --keys-only -w json")
        // Usage errors are etcdctl's own, but they must not reach or upset the server.
        .step(Step::cmd("put onlykey-no-stdin").fails())
        .step(Step::cmd("get").fails())
        .step(Step::cmd("del").fails())
        .step(Step::cmd("get a --rev=abc").fails())
        // The server still serves after all of that.
        .ok("put a 1")
        .ok("get a -w json")
        .run();
}

/// Debian's etcdctl 3.4 against etcd 3.6 and Bramble: an older client's puts, reads, txns,
/// deletes and compaction give the same output on both.
#[test]
fn debian_etcdctl_3_4_sees_the_same() {
    sort_fixture(Script::new("etcdctl 3.4").with_debian_etcdctl_3_4())
        .ok("put a 1 --prev-kv -w json")
        .ok("get --prefix k --sort-by=MODIFY --order=DESCEND -w json")
        .ok("get k1 --rev=4")
        .step(
            Step::cmd("txn -i")
                .stdin("mod(\"k1\") = \"9\"\n\nput k1 j --prev-kv\nget k2\n\nget k3\n\n")
                .contains("SUCCESS"),
        )
        .step(Step::cmd("del k --prefix --prev-kv -w json"))
        .step(Step::cmd("compaction 5").contains("compacted revision 5"))
        .step(
            Step::cmd("get k1 --rev=4")
                .fails()
                .contains("etcdserver: mvcc: required revision has been compacted"),
        )
        .step(Step::args(&["get", "", "--from-key", "-w", "json"]))
        .run();
}

/// `endpoint status` and `endpoint health` work; their contents differ by design (ids, db
/// size, version), so they are checked field by field instead of compared.
#[test]
fn endpoint_status_and_health() {
    for kind in target::differential_targets() {
        let server = Server::start(kind);
        let ctl = server.etcdctl();
        let health = ctl.run(&["endpoint", "health"]);
        health.assert_ok();
        assert!(
            health.stdout_str().contains("is healthy") || health.stderr.contains("is healthy"),
            "{kind}: endpoint health:\n{health}"
        );
        let health_json = ctl.run(&["endpoint", "health", "-w", "json"]);
        health_json.assert_ok();
        assert!(
            health_json.stdout_str().contains("\"health\":true"),
            "{kind}: endpoint health -w json:\n{health_json}"
        );

        ctl.run(&["put", "a", "1"]).assert_ok();
        let status = ctl.run(&["endpoint", "status", "-w", "json"]);
        status.assert_ok();
        let text = status.stdout_str();
        let version = json_string_field(&text, "version")
            .unwrap_or_else(|| panic!("{kind}: no version in endpoint status:\n{status}"));
        // Kubernetes turns watch progress requests off below 3.5.13, so Bramble must claim
        // at least that.
        if kind == Kind::Bramble {
            assert!(
                version_at_least(&version, (3, 5, 13)),
                "bramble reports version {version}, need >= 3.5.13"
            );
        }
        assert!(
            text.contains("\"revision\":2"),
            "{kind}: revision after one put:\n{status}"
        );
        assert!(
            text.contains("\"dbSize\":"),
            "{kind}: dbSize missing:\n{status}"
        );
        let simple = ctl.run(&["endpoint", "status"]);
        simple.assert_ok();
        assert!(
            simple.stdout_str().contains(&version),
            "{kind}: endpoint status:\n{simple}"
        );
        let table = ctl.run(&["endpoint", "status", "-w", "table"]);
        table.assert_ok();
    }
}

/// The string value of the first `"name":"..."` in a JSON text.
fn json_string_field(text: &str, name: &str) -> Option<String> {
    let prefix = format!("\"{name}\":\"");
    let start = text.find(&prefix)? + prefix.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_string())
}

/// Compares a dotted version (`3.5.13`, `3.6.0-alpha`) with a minimum.
fn version_at_least(version: &str, min: (u64, u64, u64)) -> bool {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= min
}
