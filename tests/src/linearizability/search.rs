//! Wing & Gong's linearizability search over one key's history, with Lowe's memoization.
//!
//! The history becomes a doubly linked list of call and return events sorted by time (a call
//! before a return at the same time: equal stamps are concurrent). Linearizing an operation
//! means taking its call and return out of the list; the search walks the list from the head,
//! tries each call it meets against the register, and takes the first that fits and leads to a
//! configuration not seen before. Meeting a return means the operation returning there had to
//! be linearized before everything after it and was not, so the search backtracks: it puts the
//! last linearized operation back and tries the next call after it. The list is empty when
//! every operation is linearized.
//!
//! The memo holds every (set of linearized operations, register state) reached so far. Two
//! paths that reach the same pair have the same futures, so the second stops there; this is
//! what makes the search practical (Lowe, "Testing for linearizability", 2017; Porcupine).
//!
//! Unknown outcomes return at +infinity, so they stay linearizable until the end, where an
//! operation that never took effect is indistinguishable from one that took effect last. Once
//! only those are left the history is linearizable, and the search stops without placing them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::register::{step, Call, Return, State, ABSENT};

/// One operation of the key being searched, values interned.
#[derive(Clone, Debug)]
pub(crate) struct KeyOp {
    /// When it was called.
    pub(crate) call_time: u64,
    /// When it returned; `None` for an unknown outcome, i.e. +infinity.
    pub(crate) ret_time: Option<u64>,
    pub(crate) call: Call,
    /// The answer; `None` when unknown.
    pub(crate) ret: Option<Return>,
}

impl KeyOp {
    /// The return time with +infinity as `u64::MAX`, sorting after every real stamp.
    fn ret_key(&self) -> u64 {
        self.ret_time.unwrap_or(u64::MAX)
    }
}

/// How one key's search ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Linearizable,
    /// No order works. `prefix` is the longest linearizable prefix found: operations (indices
    /// into the searched slice) in order, each with the state after it.
    NotLinearizable {
        prefix: Vec<(usize, State)>,
    },
    /// The budget ran out first.
    Exhausted,
}

/// Counts search steps against a budget shared by all keys of one check.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Steps taken so far.
    pub(crate) steps: u64,
    max_steps: Option<u64>,
    deadline: Option<Instant>,
}

impl Meter {
    /// How often the clock is read: `Instant::now` costs more than a step.
    const CLOCK_EVERY: u64 = 1024;

    /// A meter allowing `max_steps` steps and `max_time` from now (`None`: no limit).
    pub(crate) fn new(max_steps: Option<u64>, max_time: Option<Duration>) -> Meter {
        Meter {
            steps: 0,
            max_steps,
            // A budget too large to represent as an instant is no limit.
            deadline: max_time.and_then(|t| Instant::now().checked_add(t)),
        }
    }

    /// Counts a step; false once the budget is spent.
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.max_steps.is_some_and(|max| self.steps > max) {
            return false;
        }
        let check_clock = self.steps % Self::CLOCK_EVERY == 1;
        !(check_clock && self.deadline.is_some_and(|d| Instant::now() >= d))
    }
}

/// The set of linearized operations, one bit each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The events of one history as a dancing-links list: nodes `1..=2n` are events in time order,
/// `HEAD` (0) and `tail` (2n + 1) are sentinels, so unlinking never meets an end.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation of each event node (sentinels: unused).
    op: Vec<usize>,
    /// Whether each event node is a call (else a return).
    is_call: Vec<bool>,
    /// The return node of each operation.
    ret_node: Vec<usize>,
    tail: usize,
}

const HEAD: usize = 0;

impl Events {
    fn new(ops: &[KeyOp]) -> Events {
        // (time, 0 = call / 1 = return, op): calls sort first at equal times.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call_time, 0, i));
            events.push((op.ret_key(), 1, i));
        }
        events.sort_unstable();
        let tail = events.len() + 1;
        let mut list = Events {
            next: (1..=tail + 1).collect(),
            prev: (0..=tail).map(|i| i.saturating_sub(1)).collect(),
            op: vec![usize::MAX; tail + 1],
            is_call: vec![false; tail + 1],
            ret_node: vec![0; ops.len()],
            tail,
        };
        for (position, &(_, kind, op)) in events.iter().enumerate() {
            let node = position + 1;
            list.op[node] = op;
            list.is_call[node] = kind == 0;
            if kind == 1 {
                list.ret_node[op] = node;
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    /// Unlinks a call node and its return node; the nodes keep their own links so
    /// [`Events::unlift`] can put them back (in reverse order of lifting).
    fn lift(&mut self, call: usize) {
        let ret = self.ret_node[self.op[call]];
        for node in [call, ret] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = n;
            self.prev[n] = p;
        }
    }

    /// Relinks what the last [`Events::lift`] took out.
    fn unlift(&mut self, call: usize) {
        let ret = self.ret_node[self.op[call]];
        for node in [ret, call] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            self.prev[n] = node;
        }
    }
}

/// Searches for a linearization of `ops` (one key's operations) from an absent key.
pub(crate) fn search(ops: &[KeyOp], meter: &mut Meter) -> Outcome {
    let mut events = Events::new(ops);
    let mut linearized = Bitset::new(ops.len());
    let mut memo: HashSet<(Bitset, State)> = HashSet::new();
    // The linearized calls, each with the state before it.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = ABSENT;
    let mut known_left = ops.iter().filter(|op| op.ret.is_some()).count();
    let mut longest: Vec<(usize, State)> = Vec::new();

    let mut node = events.first();
    while known_left > 0 {
        // An answered operation is still in the list, so a return comes before the end.
        assert_ne!(
            node, events.tail,
            "search ran off the end of the event list"
        );
        if !meter.tick() {
            return Outcome::Exhausted;
        }
        let i = events.op[node];
        if events.is_call[node] {
            let op = &ops[i];
            if let Some(after) = step(state, op.call, op.ret) {
                linearized.set(i);
                if memo.insert((linearized.clone(), after)) {
                    stack.push((node, state));
                    state = after;
                    known_left -= usize::from(op.ret.is_some());
                    events.lift(node);
                    if stack.len() > longest.len() {
                        longest = linearization(&stack, state, &events);
                    }
                    node = events.first();
                    continue;
                }
                linearized.clear(i);
            }
            node = events.next[node];
        } else {
            // Operation `i` returns here without being linearized, and everything further on
            // was called after that: undo the last choice and try the call after it.
            let Some((call, before)) = stack.pop() else {
                return Outcome::NotLinearizable { prefix: longest };
            };
            let undone = events.op[call];
            linearized.clear(undone);
            state = before;
            known_left += usize::from(ops[undone].ret.is_some());
            events.unlift(call);
            node = events.next[call];
        }
    }
    Outcome::Linearizable
}

/// The stack as operations in order, each with the state after it.
fn linearization(stack: &[(usize, State)], last: State, events: &Events) -> Vec<(usize, State)> {
    let afters = stack.iter().skip(1).map(|&(_, before)| before);
    stack
        .iter()
        .zip(afters.chain([last]))
        .map(|(&(call, _), after)| (events.op[call], after))
        .collect()
}

/// The operations that could come right after `prefix` by real time: not in it, and called
/// no later than the earliest return among the operations not in it. Sorted by call time.
pub(crate) fn frontier(ops: &[KeyOp], prefix: &[(usize, State)]) -> Vec<usize> {
    let mut done = vec![false; ops.len()];
    prefix.iter().for_each(|&(i, _)| done[i] = true);
    let pending = || (0..ops.len()).filter(|&i| !done[i]);
    let Some(first_return) = pending().map(|i| ops[i].ret_key()).min() else {
        return Vec::new();
    };
    let mut next: Vec<usize> = pending()
        .filter(|&i| ops[i].call_time <= first_return)
        .collect();
    next.sort_by_key(|&i| (ops[i].call_time, i));
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call_time: u64, ret_time: Option<u64>, call: Call, ret: Option<Return>) -> KeyOp {
        KeyOp {
            call_time,
            ret_time,
            call,
            ret,
        }
    }

    #[test]
    fn events_lift_and_unlift_restore_the_list() {
        let ops = [
            op(0, Some(10), Call::Put(1), Some(Return::Done)),
            op(1, Some(2), Call::Put(2), Some(Return::Done)),
            op(3, None, Call::Delete, None),
        ];
        let mut events = Events::new(&ops);
        let walk = |e: &Events| {
            let mut order = Vec::new();
            let mut node = e.first();
            while node != e.tail {
                order.push((e.op[node], e.is_call[node]));
                node = e.next[node];
            }
            order
        };
        let before = walk(&events);
        assert_eq!(
            before,
            [
                (0, true),
                (1, true),
                (1, false),
                (2, true),
                (0, false),
                (2, false)
            ]
        );
        let call_of = |e: &Events, i: usize| (1..e.tail).find(|&n| e.op[n] == i && e.is_call[n]);
        let c1 = call_of(&events, 1).unwrap();
        let c0 = call_of(&events, 0).unwrap();
        events.lift(c1);
        events.lift(c0);
        assert_eq!(walk(&events), [(2, true), (2, false)]);
        events.unlift(c0);
        events.unlift(c1);
        assert_eq!(walk(&events), before);
    }

    #[test]
    fn step_budget_is_enforced() {
        let ops: Vec<KeyOp> = (0..20)
            .map(|i| op(0, Some(100), Call::Put(i + 1), Some(Return::Done)))
            .collect();
        let mut meter = Meter::new(Some(5), None);
        assert!(matches!(search(&ops, &mut meter), Outcome::Exhausted));
        let mut meter = Meter::new(None, None);
        assert!(matches!(search(&ops, &mut meter), Outcome::Linearizable));
    }
}
