//! Randomized tests: histories of a simulated linearizable store with random concurrent timings
//! must pass, and the same histories with one impossible read must fail.
//!
//! The simulation gives every operation a moment inside its interval (or, for an unknown
//! outcome, any moment after its call, or never) and applies operations to a map in that
//! order: the result is linearizable by construction, with the moments as the witness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use bramble_testkit::rng::Rng;

/// The size and fault rate of a simulated history.
struct Shape {
    clients: usize,
    keys: u64,
    ops: usize,
    /// Operations whose client never learns the outcome, per mille.
    unknown_per_mille: u64,
}

/// A linearizable history of `shape`. Every written value is unique, so a read names its write.
fn simulate(seed: u64, shape: &Shape) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    let mut idle_at = vec![0u64; shape.clients];
    let mut written: HashMap<Key, Vec<Value>> = HashMap::new();
    let mut ops = Vec::with_capacity(shape.ops);
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut answered = Vec::with_capacity(shape.ops);
    for n in 0..shape.ops {
        // The client idle longest goes next, so every client keeps one request in flight.
        let client = (0..shape.clients).min_by_key(|&c| idle_at[c]).unwrap();
        let call = idle_at[client] + rng.below(20);
        let latency = 1 + rng.below(100);
        let ret = call + latency;
        idle_at[client] = ret;
        let key: Key = format!("key{}", rng.below(shape.keys)).into();
        let new = format!("{client}.{n}").into_bytes();
        let seen = written.entry(key.clone()).or_default();
        let input = match rng.below(100) {
            0..40 => Input::Get,
            40..65 => Input::Put(new.clone()),
            65..90 => {
                let recent = &seen[seen.len().saturating_sub(3)..];
                let expected = if recent.is_empty() || rng.chance(200) {
                    None
                } else {
                    Some(recent[rng.below(recent.len() as u64) as usize].clone())
                };
                Input::Cas {
                    expected,
                    new: new.clone(),
                }
            }
            _ => Input::Delete,
        };
        if !matches!(input, Input::Get | Input::Delete) {
            seen.push(new);
        }
        answered.push(!rng.chance(shape.unknown_per_mille));
        let effect = if answered[n] {
            Some(call + rng.below(latency + 1))
        } else if rng.chance(500) {
            // Took effect, possibly long after the client gave up.
            Some(call + rng.below(4 * latency + 1))
        } else {
            None
        };
        if let Some(at) = effect {
            effects.push((at, n));
        }
        ops.push(Operation {
            client: client as u64,
            key,
            input,
            call,
            ret: Some(ret),
            outcome: Outcome::Unknown,
        });
    }
    effects.sort_unstable();
    let mut store: HashMap<Key, Value> = HashMap::new();
    for (_, n) in effects {
        let op = &mut ops[n];
        let output = match &op.input {
            Input::Get => Output::Get(store.get(&op.key).cloned()),
            Input::Put(v) => {
                store.insert(op.key.clone(), v.clone());
                Output::Put
            }
            Input::Delete => {
                store.remove(&op.key);
                Output::Delete
            }
            Input::Cas { expected, new } => {
                let holds = store.get(&op.key) == expected.as_ref();
                if holds {
                    store.insert(op.key.clone(), new.clone());
                }
                Output::Cas(holds)
            }
        };
        if answered[n] {
            op.outcome = Outcome::Ok(output);
        }
    }
    ops
}

/// A shape that varies with the seed: 1-6 clients, 1-3 keys, 10-89 operations.
fn small_shape(seed: u64) -> Shape {
    Shape {
        clients: 1 + (seed % 6) as usize,
        keys: 1 + seed % 3,
        ops: 10 + (seed % 80) as usize,
        unknown_per_mille: 50,
    }
}

fn budget() -> Budget {
    Budget::time(Duration::from_secs(60))
}

/// Checks a mutated history that must fail, on `key`.
fn assert_caught(seed: u64, ops: Vec<Operation>, key: &Key) {
    match check(&ops.into_iter().collect(), budget()) {
        Verdict::NotLinearizable(violation) => assert_eq!(&violation.key, key, "seed {seed}"),
        other => panic!("seed {seed}: expected a violation, got: {other}"),
    }
}

#[test]
fn simulated_histories_are_linearizable() {
    for seed in 0..300 {
        let ops = simulate(seed, &small_shape(seed));
        let verdict = check(&ops.into_iter().collect(), budget());
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict}");
    }
}

#[test]
fn simulated_histories_with_a_read_of_a_value_never_written_fail() {
    let mut mutated = 0;
    for seed in 0..300 {
        let mut ops = simulate(seed, &small_shape(seed));
        let mut rng = Rng::new(seed ^ 0xbad);
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| matches!(ops[i].outcome, Outcome::Ok(Output::Get(_))))
            .collect();
        if reads.is_empty() {
            continue;
        }
        let read = reads[rng.below(reads.len() as u64) as usize];
        ops[read].outcome = Outcome::Ok(Output::Get(Some(b"never written".to_vec())));
        let key = ops[read].key.clone();
        assert_caught(seed, ops, &key);
        mutated += 1;
    }
    assert!(
        mutated > 250,
        "only {mutated} histories had a read to mutate"
    );
}

#[test]
fn simulated_histories_with_a_read_from_the_future_fail() {
    // A read that returns before a put is called cannot see the put's (unique) value.
    let mut mutated = 0;
    for seed in 0..300 {
        let mut ops = simulate(seed, &small_shape(seed));
        let mut rng = Rng::new(seed ^ 0xf00);
        let pairs: Vec<(usize, Value)> = ops
            .iter()
            .enumerate()
            .filter(|(_, read)| matches!(read.outcome, Outcome::Ok(Output::Get(_))))
            .flat_map(|(i, read)| {
                ops.iter()
                    .filter(move |w| w.key == read.key && Some(w.call) > read.ret)
                    .filter_map(|w| match &w.input {
                        Input::Put(v) => Some(v.clone()),
                        _ => None,
                    })
                    .map(move |v| (i, v))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let (read, future) = pairs[rng.below(pairs.len() as u64) as usize].clone();
        ops[read].outcome = Outcome::Ok(Output::Get(Some(future)));
        let key = ops[read].key.clone();
        assert_caught(seed, ops, &key);
        mutated += 1;
    }
    assert!(
        mutated > 200,
        "only {mutated} histories had a read to mutate"
    );
}

#[test]
fn large_history_checks_quickly() {
    // Not a benchmark: a guard against the search losing its memo, without which this runs
    // out of time or memory. Tens of milliseconds in debug.
    let shape = Shape {
        clients: 8,
        keys: 10,
        ops: 2000,
        unknown_per_mille: 10,
    };
    let ops = simulate(42, &shape);
    let started = Instant::now();
    let verdict = check(&ops.iter().cloned().collect(), budget());
    let elapsed = started.elapsed();
    println!("2000 operations, 10 keys, 8 clients: {verdict} in {elapsed:?}");
    assert!(verdict.is_linearizable(), "{verdict}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");

    let mut ops = ops;
    let read = ops
        .iter()
        .rposition(|op| matches!(op.outcome, Outcome::Ok(Output::Get(_))))
        .unwrap();
    ops[read].outcome = Outcome::Ok(Output::Get(Some(b"never written".to_vec())));
    let key = ops[read].key.clone();
    let started = Instant::now();
    assert_caught(42, ops, &key);
    let elapsed = started.elapsed();
    println!("the same with one impossible read: caught in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}
