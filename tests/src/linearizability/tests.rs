//! Hand-written histories with a known answer: the checker must accept every linearizable one
//! and catch every kind of bug a replicated store can show a client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// The key most histories here use.
const K: &str = "k";

fn value(s: &str) -> Value {
    s.as_bytes().to_vec()
}

fn answered(client: u64, call: u64, ret: u64, input: Input, output: Output) -> Operation {
    Operation {
        client,
        key: K.into(),
        input,
        call,
        ret: Some(ret),
        outcome: Outcome::Ok(output),
    }
}

fn get(client: u64, call: u64, ret: u64, seen: Option<&str>) -> Operation {
    answered(client, call, ret, Input::Get, Output::Get(seen.map(value)))
}

fn put(client: u64, call: u64, ret: u64, v: &str) -> Operation {
    answered(client, call, ret, Input::Put(value(v)), Output::Put)
}

fn delete(client: u64, call: u64, ret: u64) -> Operation {
    answered(client, call, ret, Input::Delete, Output::Delete)
}

fn cas_input(expected: Option<&str>, new: &str) -> Input {
    Input::Cas {
        expected: expected.map(value),
        new: value(new),
    }
}

fn cas(client: u64, call: u64, ret: u64, expected: Option<&str>, new: &str, ok: bool) -> Operation {
    answered(client, call, ret, cas_input(expected, new), Output::Cas(ok))
}

/// An operation whose client never learned the outcome (it gave up at `gave_up`, if ever).
fn unknown(client: u64, call: u64, gave_up: Option<u64>, input: Input) -> Operation {
    Operation {
        client,
        key: K.into(),
        input,
        call,
        ret: gave_up,
        outcome: Outcome::Unknown,
    }
}

fn on(key: &str, op: Operation) -> Operation {
    Operation {
        key: key.into(),
        ..op
    }
}

fn verdict(ops: Vec<Operation>) -> Verdict {
    check(
        &ops.into_iter().collect(),
        Budget::time(Duration::from_secs(30)),
    )
}

fn assert_linearizable(ops: Vec<Operation>) {
    let verdict = verdict(ops);
    assert!(verdict.is_linearizable(), "{verdict}");
}

fn assert_violation(ops: Vec<Operation>) -> Violation {
    match verdict(ops) {
        Verdict::NotLinearizable(violation) => {
            println!("{violation}");
            *violation
        }
        other => panic!("expected a violation, got: {other}"),
    }
}

// Linearizable histories.

#[test]
fn empty_history() {
    assert_linearizable(vec![]);
}

#[test]
fn sequential_history() {
    assert_linearizable(vec![
        get(1, 0, 1, None),
        put(1, 2, 3, "a"),
        get(2, 4, 5, Some("a")),
        delete(1, 6, 7),
        delete(2, 8, 9),
        get(1, 10, 11, None),
        put(2, 12, 13, "b"),
        put(1, 14, 15, "c"),
        get(2, 16, 17, Some("c")),
    ]);
}

#[test]
fn concurrent_writes_take_effect_in_either_order() {
    for last in ["a", "b"] {
        assert_linearizable(vec![
            put(1, 0, 10, "a"),
            put(2, 0, 10, "b"),
            get(3, 20, 30, Some(last)),
            get(1, 31, 32, Some(last)),
        ]);
    }
}

#[test]
fn read_during_a_write_sees_old_then_new() {
    assert_linearizable(vec![
        put(1, 0, 1, "a"),
        put(2, 10, 20, "b"),
        get(3, 11, 13, Some("a")),
        get(3, 14, 16, Some("b")),
        get(4, 12, 19, Some("a")),
    ]);
}

#[test]
fn long_call_takes_effect_after_a_later_short_one() {
    // "a" must be linearized after "b" although it was called first: the search has to
    // backtrack from trying operations in call order.
    assert_linearizable(vec![
        put(1, 0, 100, "a"),
        put(2, 10, 20, "b"),
        get(3, 21, 22, Some("b")),
        get(3, 30, 40, Some("a")),
        get(2, 110, 120, Some("a")),
    ]);
}

#[test]
fn reads_overlapping_two_writes_need_backtracking() {
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        put(2, 0, 10, "b"),
        get(3, 1, 9, Some("a")),
        get(4, 2, 8, Some("b")),
        get(3, 11, 12, Some("b")),
    ]);
}

#[test]
fn equal_timestamps_are_concurrent() {
    // The read's call and the write's return carry the same stamp: either could be first.
    assert_linearizable(vec![put(1, 0, 5, "a"), get(2, 5, 6, None)]);
}

#[test]
fn unknown_write_that_took_effect() {
    assert_linearizable(vec![
        put(1, 0, 1, "a"),
        unknown(2, 2, Some(5), Input::Put(value("b"))),
        get(3, 10, 11, Some("b")),
        get(1, 12, 13, Some("b")),
    ]);
}

#[test]
fn unknown_write_that_did_not_take_effect() {
    assert_linearizable(vec![
        put(1, 0, 1, "a"),
        unknown(2, 2, Some(5), Input::Put(value("b"))),
        unknown(2, 6, None, Input::Delete),
        get(3, 10, 11, Some("a")),
        get(1, 20, 21, Some("a")),
    ]);
}

#[test]
fn unknown_write_takes_effect_after_the_client_gave_up() {
    // A timed-out request can still sit in a leader's log and commit later.
    assert_linearizable(vec![
        put(1, 0, 1, "a"),
        unknown(2, 2, Some(5), Input::Put(value("b"))),
        get(3, 10, 11, Some("a")),
        get(3, 20, 21, Some("b")),
    ]);
}

#[test]
fn unknown_gets_are_dropped() {
    assert_linearizable(vec![
        unknown(1, 0, None, Input::Get),
        put(2, 1, 2, "a"),
        unknown(1, 3, Some(4), Input::Get),
    ]);
    // They do not count as operations of the key either.
    let violation = assert_violation(vec![
        unknown(1, 0, None, Input::Get),
        get(2, 1, 2, Some("a")),
    ]);
    assert_eq!(violation.ops_on_key, 1);
}

#[test]
fn unknown_cas_explains_a_value() {
    assert_linearizable(vec![
        put(1, 0, 1, "a"),
        unknown(2, 2, Some(3), cas_input(Some("a"), "b")),
        get(3, 10, 11, Some("b")),
    ]);
}

#[test]
fn cas_chain() {
    assert_linearizable(vec![
        cas(1, 0, 1, None, "a", true),
        cas(2, 2, 3, Some("a"), "b", true),
        cas(1, 4, 5, Some("a"), "c", false),
        cas(2, 6, 7, Some("b"), "c", true),
        get(3, 8, 9, Some("c")),
    ]);
}

#[test]
fn concurrent_cas_from_the_same_value_one_wins() {
    for (b_wins, c_wins) in [(true, false), (false, true)] {
        let winner = if b_wins { "b" } else { "c" };
        assert_linearizable(vec![
            put(1, 0, 1, "a"),
            cas(2, 10, 20, Some("a"), "b", b_wins),
            cas(3, 10, 20, Some("a"), "c", c_wins),
            get(1, 21, 22, Some(winner)),
        ]);
    }
}

#[test]
fn cas_on_absent_creates_only_when_absent() {
    assert_linearizable(vec![
        cas(1, 0, 1, None, "a", true),
        cas(2, 2, 3, None, "b", false),
        delete(1, 4, 5),
        cas(2, 6, 7, None, "c", true),
        // A value compare against an absent key fails, as in etcd.
        delete(1, 8, 9),
        cas(2, 10, 11, Some("c"), "d", false),
        get(1, 12, 13, None),
    ]);
}

#[test]
fn keys_are_independent_registers() {
    assert_linearizable(vec![
        on("x", put(1, 0, 1, "a")),
        on("y", get(2, 2, 3, None)),
        on("x", get(2, 4, 5, Some("a"))),
        on("y", put(1, 6, 7, "a")),
        on("y", get(1, 8, 9, Some("a"))),
    ]);
}

// Histories that are not linearizable: each one a bug a replicated store can have.

#[test]
fn stale_read_after_a_completed_write() {
    let violation = assert_violation(vec![
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        get(2, 4, 5, Some("a")),
    ]);
    assert_eq!(violation.state(), Some(&value("b")));
    assert_eq!(violation.next, [get(2, 4, 5, Some("a"))]);
}

#[test]
fn read_of_a_value_never_written() {
    assert_violation(vec![put(1, 0, 1, "a"), get(2, 0, 5, Some("zzz"))]);
}

#[test]
fn lost_update_two_cas_from_the_same_value_both_succeed() {
    let violation = assert_violation(vec![
        put(1, 0, 1, "a"),
        cas(2, 2, 10, Some("a"), "b", true),
        cas(3, 3, 9, Some("a"), "c", true),
    ]);
    assert_eq!(violation.prefix.len(), 2);
}

#[test]
fn read_goes_back_in_time() {
    // v2's write is still in flight, but once a read saw it, no later read may miss it.
    assert_violation(vec![
        put(1, 0, 1, "v1"),
        put(1, 2, 20, "v2"),
        get(2, 3, 4, Some("v2")),
        get(2, 5, 6, Some("v1")),
    ]);
}

#[test]
fn values_cannot_flip_after_concurrent_writes_completed() {
    assert_violation(vec![
        put(1, 0, 10, "a"),
        put(2, 0, 10, "b"),
        get(3, 20, 21, Some("a")),
        get(3, 22, 23, Some("b")),
    ]);
}

#[test]
fn write_visible_before_its_call() {
    assert_violation(vec![get(1, 0, 1, Some("a")), put(2, 5, 6, "a")]);
}

#[test]
fn sequentially_consistent_but_not_linearizable() {
    // Order client 2's first read before client 1's write and every client's program order
    // holds: sequentially consistent. But the write had returned before the read was called.
    assert_violation(vec![
        put(1, 0, 1, "a"),
        get(2, 2, 3, None),
        get(2, 4, 5, Some("a")),
    ]);
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    assert_violation(vec![
        get(1, 0, 1, Some("b")),
        unknown(2, 5, Some(6), Input::Put(value("b"))),
    ]);
}

#[test]
fn unknown_cas_cannot_explain_a_value_it_could_not_write() {
    // The key holds "a", so a create-if-absent cannot have put "b".
    assert_violation(vec![
        put(1, 0, 1, "a"),
        unknown(2, 2, None, cas_input(None, "b")),
        get(3, 10, 11, Some("b")),
    ]);
}

#[test]
fn cas_failed_although_the_value_matched() {
    assert_violation(vec![put(1, 0, 1, "a"), cas(2, 2, 3, Some("a"), "b", false)]);
}

#[test]
fn cas_succeeded_against_another_value() {
    assert_violation(vec![put(1, 0, 1, "a"), cas(2, 2, 3, Some("x"), "b", true)]);
}

#[test]
fn deleted_key_still_read() {
    assert_violation(vec![
        put(1, 0, 1, "a"),
        delete(2, 2, 3),
        get(1, 4, 5, Some("a")),
    ]);
}

#[test]
fn violation_names_the_key_and_the_operations_around_it() {
    let violation = assert_violation(vec![
        on("good", put(1, 0, 1, "a")),
        on("bad", put(1, 2, 3, "a")),
        on("bad", put(2, 4, 10, "b")),
        on("good", get(2, 11, 12, Some("a"))),
        on("bad", get(3, 5, 6, Some("b"))),
        on("bad", get(3, 7, 8, Some("a"))),
    ]);
    assert_eq!(violation.key, b"bad");
    assert_eq!(violation.ops_on_key, 4);
    let prefix: Vec<(&Operation, Option<&Value>)> = violation
        .prefix
        .iter()
        .map(|l| (&l.op, l.after.as_ref()))
        .collect();
    let put_a = on("bad", put(1, 2, 3, "a"));
    let put_b = on("bad", put(2, 4, 10, "b"));
    let read_b = on("bad", get(3, 5, 6, Some("b")));
    let read_a = on("bad", get(3, 7, 8, Some("a")));
    assert_eq!(
        prefix,
        [
            (&put_a, Some(&value("a"))),
            (&put_b, Some(&value("b"))),
            (&read_b, Some(&value("b"))),
        ]
    );
    assert_eq!(violation.next, [read_a]);
    let report = violation.to_string();
    assert!(
        report.contains("key \"bad\" is not linearizable"),
        "{report}"
    );
    assert!(
        report.contains("[0.000000007 .. 0.000000008] client 3 on \"bad\": get = \"a\""),
        "{report}"
    );
}

#[test]
fn report_shows_binary_values_as_hex() {
    let op = Operation {
        client: 7,
        key: vec![0, 0xff],
        input: Input::Cas {
            expected: None,
            new: vec![1, 2],
        },
        call: 1_500_000_000,
        ret: None,
        outcome: Outcome::Unknown,
    };
    assert_eq!(
        op.to_string(),
        "[1.500000000 .. never] client 7 on 0x00ff: cas absent -> 0x0102 = unknown"
    );
}

// Budgets.

#[test]
fn budget_exhausted_is_a_timeout_not_a_verdict() {
    // The search tries the first write first, and only a history where it came last works:
    // it has to go through about 2^20 orders of the others before finding that out.
    let ops: Vec<Operation> = (0..20)
        .map(|i| put(i, 0, 100, &format!("v{i}")))
        .chain([get(0, 200, 201, Some("v0"))])
        .collect();
    let history: History = ops.into_iter().collect();
    for budget in [Budget::steps(10_000), Budget::time(Duration::ZERO)] {
        let verdict = check(&history, budget);
        assert!(
            matches!(&verdict, Verdict::Timeout { key, keys_checked: 0, keys_total: 1, .. } if key == b"k"),
            "{verdict}"
        );
    }
}

#[test]
fn small_bad_key_is_found_before_a_big_key_spends_the_budget() {
    let mut ops: Vec<Operation> = (0..2000)
        .map(|i| on("big", put(1, 10 * i, 10 * i + 1, "a")))
        .collect();
    ops.push(on("small", put(2, 0, 1, "a")));
    ops.push(on("small", get(2, 2, 3, None)));
    let verdict = check(&ops.into_iter().collect(), Budget::steps(100));
    assert_eq!(
        verdict.violation().map(|v| v.key.as_slice()),
        Some(&b"small"[..])
    );
}

// Recording.

#[test]
#[should_panic(expected = "output does not answer the input")]
fn push_rejects_an_output_for_another_input() {
    History::new().push(answered(1, 0, 1, Input::Get, Output::Put));
}

#[test]
#[should_panic(expected = "returns before its call")]
fn push_rejects_a_return_before_the_call() {
    History::new().push(put(1, 5, 4, "a"));
}

#[test]
#[should_panic(expected = "needs a return time")]
fn push_rejects_an_answer_without_a_return() {
    let op = Operation {
        ret: None,
        ..put(1, 0, 1, "a")
    };
    History::new().push(op);
}

#[test]
fn dropped_handle_leaves_the_operation_unknown() {
    let recorder = Recorder::new();
    let op = recorder.invoke(1, "k", Input::Put(value("a")));
    drop(op);
    let done = recorder.invoke(2, "k", Input::Get);
    recorder.complete(done, Outcome::Ok(Output::Get(None)));
    let history = recorder.history();
    assert_eq!(history.len(), 2);
    let [dropped, read] = history.ops() else {
        unreachable!()
    };
    assert_eq!(
        (dropped.outcome.clone(), dropped.ret),
        (Outcome::Unknown, None)
    );
    assert!(read.call >= dropped.call && read.ret >= Some(read.call));
    assert!(check(&history, Budget::unlimited()).is_linearizable());
}

/// A store that is linearizable by construction: one lock around a map, taken between the
/// recorder's invoke and complete.
#[derive(Clone, Default)]
struct LockedStore(Arc<Mutex<BTreeMap<Key, Value>>>);

impl LockedStore {
    fn apply(&self, key: &Key, input: &Input) -> Output {
        let mut map = self.0.lock().unwrap();
        match input {
            Input::Get => Output::Get(map.get(key).cloned()),
            Input::Put(v) => {
                map.insert(key.clone(), v.clone());
                Output::Put
            }
            Input::Delete => {
                map.remove(key);
                Output::Delete
            }
            Input::Cas { expected, new } => {
                let holds = map.get(key) == expected.as_ref();
                if holds {
                    map.insert(key.clone(), new.clone());
                }
                Output::Cas(holds)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorder_in_concurrent_tokio_tasks() {
    let recorder = Recorder::new();
    let store = LockedStore::default();
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let (recorder, store) = (recorder.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let key: Key = format!("k{}", (client + i) % 3).into();
                let new = value(&format!("{client}.{i}"));
                let input = match i % 4 {
                    0 => Input::Get,
                    1 => Input::Put(new),
                    2 => Input::Cas {
                        expected: Some(value(&format!("{}.{}", (client + 1) % 8, i - 1))),
                        new,
                    },
                    _ => Input::Delete,
                };
                let op = recorder.invoke(client, key.clone(), input.clone());
                tokio::task::yield_now().await;
                let output = store.apply(&key, &input);
                tokio::task::yield_now().await;
                if i % 10 == 9 {
                    // Applied, but the client never hears back: a lost response.
                    drop(op);
                } else {
                    recorder.complete(op, Outcome::Ok(output));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let history = recorder.history();
    assert_eq!(history.len(), 400);
    let verdict = check(&history, Budget::time(Duration::from_secs(60)));
    assert!(verdict.is_linearizable(), "{verdict}");
}
