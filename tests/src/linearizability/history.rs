//! Histories: what concurrent clients asked the store to do, when, and what came back.
//!
//! Times are `u64` nanoseconds on one monotonic clock shared by every client of a history; only
//! their order matters. A [`Recorder`] takes them from a single `Instant` (its epoch), so clients
//! on different threads or tokio tasks are comparable; hand-built histories (tests, imports)
//! can use any unit. Equal times count as concurrent, which is the safe reading of a clock
//! too coarse to order two events.
//!
//! An operation's interval must contain the moment it took effect on the server: the call time
//! is taken before the request is sent and the return time after the response arrived. An
//! operation whose outcome the client never learned ([`Outcome::Unknown`]: timeout, connection
//! lost, node killed) may or may not have taken effect, and if it did, at any moment after its
//! call, even long after the client gave up; the checker treats its return time as +infinity.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A key, as etcd stores it: bytes.
pub type Key = Vec<u8>;

/// A value, as etcd stores it: bytes.
pub type Value = Vec<u8>;

/// What a client asked for, on the key of its [`Operation`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Range of the one key: its value, or that it is absent.
    Get,
    /// Put of a value.
    Put(Value),
    /// DeleteRange of the one key (whether or not it existed).
    Delete,
    /// `Txn(If value(k) == expected Then Put(k, new))`; `expected: None` is
    /// `If create_revision(k) == 0`, i.e. "the key is absent".
    Cas {
        /// The value the key must hold (or `None`: must be absent) for the put to happen.
        expected: Option<Value>,
        /// The value put when the comparison holds.
        new: Value,
    },
}

/// What the server answered, for the [`Input`] of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// The value read, `None` if the key was absent.
    Get(Option<Value>),
    /// The put was applied.
    Put,
    /// The delete was applied.
    Delete,
    /// The txn's `succeeded`: whether the comparison held and the put happened.
    Cas(bool),
}

/// How an operation ended for the client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The server answered.
    Ok(Output),
    /// The client never learned the result: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of one client: its input, interval and outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Who issued it; only for reading reports (real-time order already covers a client's
    /// own sequence of operations).
    pub client: u64,
    /// The one key it touched.
    pub key: Key,
    /// What was asked.
    pub input: Input,
    /// When it was called (nanoseconds, see the module doc).
    pub call: u64,
    /// When the client saw it end, `None` if it never did. Only an [`Outcome::Ok`] operation's
    /// return time bounds when it took effect.
    pub ret: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// Panics with the operation if it cannot have been recorded correctly: an output of the
    /// wrong kind for its input, an answer without a return time, or a return before the call.
    /// Those are bugs in the recording client, never in the server under test.
    fn validate(&self) {
        if let Outcome::Ok(output) = &self.outcome {
            let kinds_match = matches!(
                (&self.input, output),
                (Input::Get, Output::Get(_))
                    | (Input::Put(_), Output::Put)
                    | (Input::Delete, Output::Delete)
                    | (Input::Cas { .. }, Output::Cas(_))
            );
            assert!(kinds_match, "output does not answer the input: {self}");
            assert!(
                self.ret.is_some(),
                "an answered operation needs a return time: {self}"
            );
        }
        if let Some(ret) = self.ret {
            assert!(
                ret >= self.call,
                "operation returns before its call: {self}"
            );
        }
    }
}

/// Bytes shown as a quoted string when they are printable UTF-8, else as hex.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if !s.chars().any(char::is_control) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// An optional value: its bytes, or `absent`.
pub(crate) struct Maybe<'a>(pub(crate) Option<&'a [u8]>);

impl fmt::Display for Maybe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => Bytes(v).fmt(f),
            None => f.write_str("absent"),
        }
    }
}

/// Nanoseconds as seconds with nanosecond precision, so event order is visible in a report.
struct Nanos(u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// One line: `[call .. return] client C on K: input -> outcome`.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} .. ", Nanos(self.call))?;
        match self.ret {
            Some(ret) => write!(f, "{}", Nanos(ret))?,
            None => f.write_str("never")?,
        }
        write!(f, "] client {} on {}: ", self.client, Bytes(&self.key))?;
        match &self.input {
            Input::Get => f.write_str("get")?,
            Input::Put(v) => write!(f, "put {}", Bytes(v))?,
            Input::Delete => f.write_str("delete")?,
            Input::Cas { expected, new } => {
                write!(f, "cas {} -> {}", Maybe(expected.as_deref()), Bytes(new))?
            }
        }
        match &self.outcome {
            Outcome::Ok(Output::Get(v)) => write!(f, " = {}", Maybe(v.as_deref())),
            Outcome::Ok(Output::Put | Output::Delete) => f.write_str(" = ok"),
            Outcome::Ok(Output::Cas(succeeded)) => write!(f, " = {succeeded}"),
            Outcome::Unknown => f.write_str(" = unknown"),
        }
    }
}

/// A finished recording: every operation of every client, in no particular order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history, to fill by hand with [`History::push`].
    pub fn new() -> History {
        History::default()
    }

    /// Adds an operation. Panics if it cannot have been recorded correctly (an output of the
    /// wrong kind for its input, an answer without a return time, a return before the call).
    pub fn push(&mut self, op: Operation) {
        op.validate();
        self.ops.push(op);
    }

    /// The operations, in the order they were added (a [`Recorder`]'s: by call).
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl FromIterator<Operation> for History {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> History {
        let mut history = History::new();
        iter.into_iter().for_each(|op| history.push(op));
        history
    }
}

/// Records a history from many clients at once: clone it into every thread or tokio task.
///
/// Each client calls [`Recorder::invoke`] right before sending a request and
/// [`Recorder::complete`] right after learning how it ended. An operation whose handle is
/// dropped without completing it (its task was aborted, the test gave up) stays
/// [`Outcome::Unknown`], which is what it is. The lock is held for a push or a store, never
/// across an await.
#[derive(Clone, Debug)]
pub struct Recorder {
    shared: Arc<Shared>,
}

/// The clock and the operations behind all clones of one [`Recorder`].
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    ops: Mutex<Vec<Operation>>,
}

/// An operation called but not yet completed; give it back to [`Recorder::complete`].
#[derive(Debug)]
#[must_use = "complete the operation, or drop the handle to leave its outcome unknown"]
pub struct OpHandle {
    index: usize,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                ops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the epoch; u64 nanoseconds last 584 years.
    fn now(&self) -> u64 {
        u64::try_from(self.shared.epoch.elapsed().as_nanos()).expect("recorder clock overflow")
    }

    /// Records that `client` is about to send `input` on `key`. Call it before the request
    /// leaves, so the call time is no later than the moment the server can apply it.
    pub fn invoke(&self, client: u64, key: impl Into<Key>, input: Input) -> OpHandle {
        let call = self.now();
        let mut ops = self.shared.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.push(Operation {
            client,
            key: key.into(),
            input,
            call,
            ret: None,
            outcome: Outcome::Unknown,
        });
        OpHandle {
            index: ops.len() - 1,
        }
    }

    /// Records how the operation ended. Call it after the response arrived (or the client gave
    /// up, with [`Outcome::Unknown`]), so the return time is no earlier than its effect. Panics
    /// if the output does not answer the input: a bug in the client, not in the server.
    pub fn complete(&self, op: OpHandle, outcome: Outcome) {
        let ret = self.now();
        let mut ops = self.shared.ops.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut ops[op.index];
        assert!(slot.ret.is_none(), "operation completed twice: {slot}");
        slot.ret = Some(ret);
        slot.outcome = outcome;
        slot.validate();
    }

    /// The operations recorded so far; those not completed yet are [`Outcome::Unknown`].
    pub fn history(&self) -> History {
        let ops = self.shared.ops.lock().unwrap_or_else(|e| e.into_inner());
        History { ops: ops.clone() }
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}
