//! Differential etcdctl tests of the lease commands (`lease grant/revoke/timetolive/list/
//! keep-alive --once`, `put --lease`, `get -w json` showing the lease): the same steps on a
//! fresh etcd and a fresh Bramble, outputs compared after normalization.
//!
//! etcdctl 3.4 cannot choose a lease id, so each server assigns its own: the ids printed by
//! `lease grant` are captured, later steps use them through `{L1}`, `{L2}`, ..., and every
//! output has them (in hex and in decimal) replaced by `<L1>`, `<L2>`, .... Remaining TTLs
//! are clock readings and are masked (also `"ttl"` in `timetolive -w json`); a lease's keys (`attached keys([...])`,
//! `"keys":[...]`) are sorted, as etcd lists them in Go map order.

use bramble_tests::normalize;
use bramble_tests::target::{self, Kind};
use bramble_tests::Server;

/// What one step printed, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    line: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Replaces `remaining(NNs)` by `remaining(<n>s)` and sorts the attached keys.
fn mask_clock(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("remaining(") {
        let after = &rest[i + "remaining(".len()..];
        let digits = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'-')
            .count();
        out.push_str(&rest[..i]);
        out.push_str("remaining(<n>");
        rest = &after[digits..];
    }
    out.push_str(rest);
    sort_list(&mut out, "attached keys([", "])", " ");
    sort_list(&mut out, "\"keys\":[", "]", ",");
    out
}

/// Sorts the `separator`-separated items between the first `open` and the next `close`:
/// etcd lists a lease's keys in Go map order, which changes from run to run.
fn sort_list(text: &mut String, open: &str, close: &str, separator: &str) {
    if let Some(i) = text.find(open) {
        let start = i + open.len();
        if let Some(len) = text[start..].find(close) {
            let mut items: Vec<&str> = text[start..start + len].split(separator).collect();
            items.sort_unstable();
            let sorted = items.join(separator);
            text.replace_range(start..start + len, &sorted);
        }
    }
}

/// Runs the step templates on a fresh server of `kind`.
fn run_on(kind: Kind, steps: &[&str]) -> Vec<Outcome> {
    let server = Server::start(kind);
    let ctl = server.etcdctl();
    // Captured lease ids, in hex as etcdctl prints them.
    let mut ids: Vec<String> = Vec::new();
    let mut outcomes = Vec::new();
    for template in steps {
        let mut line = template.trim_start_matches("! ").to_string();
        for (i, hex) in ids.iter().enumerate() {
            line = line.replace(&format!("{{L{}}}", i + 1), hex);
        }
        let (command, stdin) = match line.split_once(" <<< ") {
            Some((c, input)) => (c.to_string(), Some(input.replace("\\n", "\n"))),
            None => (line.clone(), None),
        };
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = ctl.run_stdin(&args, stdin.as_deref());
        let mut stdout =
            normalize::endpoint(&normalize::stdout_text(&out.stdout_str()), ctl.endpoint());
        let mut stderr = normalize::stderr_text(&out.stderr, ctl.endpoint());
        if let Some(rest) = stdout.strip_prefix("lease ") {
            if template.starts_with("lease grant") && rest.contains(" granted with TTL") {
                if let Some(hex) = rest.split_whitespace().next() {
                    ids.push(hex.to_string());
                }
            }
        }
        for (i, hex) in ids.iter().enumerate() {
            let name = format!("<L{}>", i + 1);
            let decimal = i64::from_str_radix(hex, 16)
                .map(|d| d.to_string())
                .unwrap_or_else(|_| hex.clone());
            stdout = stdout.replace(hex.as_str(), &name).replace(&decimal, &name);
            stderr = stderr.replace(hex.as_str(), &name).replace(&decimal, &name);
        }
        if stdout.contains("\"granted-ttl\":") {
            stdout = normalize::mask_number_after(&stdout, "\"ttl\":");
        }
        outcomes.push(Outcome {
            line: template.to_string(),
            code: out.code,
            stdout: mask_clock(&stdout),
            stderr: mask_clock(&stderr),
        });
    }
    outcomes
}

/// Runs `steps` on every differential target; checks that each succeeds (or fails, when
/// it starts with `! `) and compares the targets step by step. `CMD <<< INPUT` feeds INPUT
/// (with `\n` for newlines) on stdin. (etcdctl 3.4's `txn -i` ignores `--lease` on its
/// puts and cannot express a lease compare: `client_lease.rs` covers leases in txns.)
fn differential(name: &str, steps: &[&str]) {
    let kinds = target::differential_targets();
    let runs: Vec<(Kind, Vec<Outcome>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = kinds
            .iter()
            .map(|&k| (k, scope.spawn(move || run_on(k, steps))))
            .collect();
        handles
            .into_iter()
            .map(|(k, h)| (k, h.join().expect("script thread")))
            .collect()
    });
    let verbose = std::env::var_os("BRAMBLE_E2E_VERBOSE").is_some();
    let mut report = String::new();
    for (kind, outcomes) in &runs {
        for (i, o) in outcomes.iter().enumerate() {
            if verbose {
                println!(
                    "[{name}] {kind}: $ {}\n  rc={} out={:?} err={:?}",
                    o.line, o.code, o.stdout, o.stderr
                );
            }
            let should_fail = steps[i].starts_with("! ");
            if should_fail == (o.code == 0) {
                report.push_str(&format!(
                    "step {} on {kind}: expected {}: $ {}\n  rc={} out={:?} err={:?}\n",
                    i + 1,
                    if should_fail { "failure" } else { "success" },
                    o.line,
                    o.code,
                    o.stdout,
                    o.stderr
                ));
            }
        }
    }
    if let [(reference, expected), (tested, actual)] = runs.as_slice() {
        for (i, (a, b)) in expected.iter().zip(actual).enumerate() {
            if a != b {
                report.push_str(&format!(
                    "step {} differs: $ {}\n  {reference}: rc={} out={:?} err={:?}\n  {tested}: rc={} out={:?} err={:?}\n",
                    i + 1,
                    a.line,
                    a.code,
                    a.stdout,
                    a.stderr,
                    b.code,
                    b.stdout,
                    b.stderr
                ));
            }
        }
    }
    assert!(report.is_empty(), "script `{name}`:\n{report}");
}

#[test]
fn lease_commands() {
    differential(
        "lease commands",
        &[
            "lease grant 60", // L1
            "lease grant 30", // L2
            "put --lease={L1} k1 v1",
            "put --lease={L1} k2 v2",
            "put --lease={L2} k3 v3",
            "get k1 -w json",
            "get k --prefix -w fields",
            "lease timetolive {L1}",
            "lease timetolive {L1} --keys",
            "lease timetolive {L1} --keys -w json",
            "lease timetolive 1234",
            "lease timetolive 1234 -w json",
            "lease list",
            "lease list -w json",
            "lease keep-alive --once {L1}",
            "! lease keep-alive --once 1234",
            "! put --lease=1234 x y",
            "! put --lease=zz x y",
            // A put moves the key to its new lease; --ignore-lease keeps it.
            "put --lease={L2} k1 moved",
            "put k3 v3b --ignore-lease",
            "get k3 -w json",
            "lease timetolive {L1} --keys",
            "lease timetolive {L2} --keys",
            "lease revoke {L1}",
            "! lease revoke {L1}",
            "get k --prefix",
            "lease timetolive {L1}",
            "! lease grant 100000000000",
            "lease grant 1", // L3, raised to the minimum TTL
            // Revoking L2 deletes k1 and k3 in one revision.
            "lease revoke {L2}",
            "get k --prefix -w json",
        ],
    );
}
