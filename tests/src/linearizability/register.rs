//! The sequential specification: one etcd key as a register holding an optional value.
//!
//! The search calls [`step`] millions of times and memoizes states, so values are interned per
//! key into small integers ([`Values`]): a state is then `Copy`, hashes in one word, and two
//! equal values are one state.

use std::collections::HashMap;

use super::history::{Input, Outcome, Output, Value};

/// A register state: [`ABSENT`], or the id of a value in [`Values`].
pub(crate) type State = u32;

/// The key does not exist (never created, or deleted).
pub(crate) const ABSENT: State = 0;

/// The distinct values seen in one key's history, numbered from 1.
#[derive(Debug, Default)]
pub(crate) struct Values {
    ids: HashMap<Value, State>,
    values: Vec<Value>,
}

impl Values {
    /// The state holding `value` (`None`: [`ABSENT`]), numbering it if it is new.
    pub(crate) fn intern(&mut self, value: Option<&Value>) -> State {
        let Some(value) = value else {
            return ABSENT;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.values.push(value.clone());
        let id = State::try_from(self.values.len()).expect("more than 2^32 distinct values");
        self.ids.insert(value.clone(), id);
        id
    }

    /// The value a state holds, `None` for [`ABSENT`].
    pub(crate) fn value(&self, state: State) -> Option<&Value> {
        let index = usize::try_from(state).ok()?.checked_sub(1)?;
        Some(&self.values[index])
    }
}

/// An [`Input`] with its values interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Get,
    Put(State),
    Delete,
    Cas { expected: State, new: State },
}

/// An [`Output`] with its values interned; put and delete answer only "done".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Return {
    Get(State),
    Done,
    Cas(bool),
}

/// Interns an operation's input and outcome (`None`: unknown) for [`step`].
pub(crate) fn intern(
    input: &Input,
    outcome: &Outcome,
    values: &mut Values,
) -> (Call, Option<Return>) {
    let call = match input {
        Input::Get => Call::Get,
        Input::Put(v) => Call::Put(values.intern(Some(v))),
        Input::Delete => Call::Delete,
        Input::Cas { expected, new } => Call::Cas {
            expected: values.intern(expected.as_ref()),
            new: values.intern(Some(new)),
        },
    };
    let ret = match outcome {
        Outcome::Unknown => None,
        Outcome::Ok(Output::Get(v)) => Some(Return::Get(values.intern(v.as_ref()))),
        Outcome::Ok(Output::Put | Output::Delete) => Some(Return::Done),
        Outcome::Ok(Output::Cas(succeeded)) => Some(Return::Cas(*succeeded)),
    };
    (call, ret)
}

/// Applies `call` to `state`: the state after it if the register could have answered `ret`
/// (`None`: the answer is unknown, so any), else `None`.
///
/// An unknown outcome constrains nothing, and the checker lets it take effect last if it never
/// took effect at all, so `step` never rejects one; the search relies on that.
pub(crate) fn step(state: State, call: Call, ret: Option<Return>) -> Option<State> {
    match (call, ret) {
        (Call::Get, Some(Return::Get(seen))) => (seen == state).then_some(state),
        (Call::Get, None) => Some(state),
        (Call::Put(value), None | Some(Return::Done)) => Some(value),
        (Call::Delete, None | Some(Return::Done)) => Some(ABSENT),
        (Call::Cas { expected, new }, Some(Return::Cas(true))) => {
            (state == expected).then_some(new)
        }
        (Call::Cas { expected, .. }, Some(Return::Cas(false))) => {
            (state != expected).then_some(state)
        }
        (Call::Cas { expected, new }, None) => Some(if state == expected { new } else { state }),
        (call, Some(ret)) => unreachable!("{ret:?} does not answer {call:?}: History::push checks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_intern_to_stable_ids() {
        let mut values = Values::default();
        let a = values.intern(Some(&b"a".to_vec()));
        let b = values.intern(Some(&b"b".to_vec()));
        assert_ne!(a, ABSENT);
        assert_ne!(a, b);
        assert_eq!(values.intern(Some(&b"a".to_vec())), a);
        assert_eq!(values.intern(None), ABSENT);
        assert_eq!(values.value(a), Some(&b"a".to_vec()));
        assert_eq!(values.value(ABSENT), None);
    }

    #[test]
    fn step_follows_etcd_semantics() {
        let (a, b) = (1, 2);
        assert_eq!(step(a, Call::Get, Some(Return::Get(a))), Some(a));
        assert_eq!(step(a, Call::Get, Some(Return::Get(ABSENT))), None);
        assert_eq!(step(ABSENT, Call::Put(b), Some(Return::Done)), Some(b));
        assert_eq!(step(a, Call::Delete, Some(Return::Done)), Some(ABSENT));
        assert_eq!(step(ABSENT, Call::Delete, Some(Return::Done)), Some(ABSENT));
        let cas = Call::Cas {
            expected: a,
            new: b,
        };
        assert_eq!(step(a, cas, Some(Return::Cas(true))), Some(b));
        assert_eq!(step(b, cas, Some(Return::Cas(true))), None);
        assert_eq!(step(b, cas, Some(Return::Cas(false))), Some(b));
        assert_eq!(step(a, cas, Some(Return::Cas(false))), None);
        // A value compare on an absent key fails, as in etcd.
        assert_eq!(step(ABSENT, cas, Some(Return::Cas(false))), Some(ABSENT));
        // expected = absent is etcd's create_revision == 0.
        let create = Call::Cas {
            expected: ABSENT,
            new: a,
        };
        assert_eq!(step(ABSENT, create, Some(Return::Cas(true))), Some(a));
        assert_eq!(step(b, create, Some(Return::Cas(false))), Some(b));
        // Unknown outcomes: whatever the register would have done.
        assert_eq!(step(a, cas, None), Some(b));
        assert_eq!(step(ABSENT, cas, None), Some(ABSENT));
        assert_eq!(step(a, Call::Put(b), None), Some(b));
    }
}
