//! Differential gRPC scenarios through the `etcd-client` crate.
//!
//! A scenario is an async function that makes calls on a [`Client`] and records each outcome
//! in a [`Transcript`]: the response rendered without its per-cluster header fields (cluster
//! id, member id, raft term), or the gRPC status code and message of an error. [`compare`]
//! runs the scenario on a fresh server per target and compares the transcripts entry by
//! entry, so every response field that etcd returns is checked, not just the ones a test
//! thought of.
//!
//! Each entry can also state what it expects (success, or an exact code and message); that is
//! checked on every target, etcd included, so the expectations themselves are proven against
//! the spec whenever the suite runs.

use std::fmt::Write;
use std::time::Duration;

use etcd_client::{
    Client, CompactionResponse, ConnectOptions, DeleteResponse, Error, GetResponse, HashKvResponse,
    KeyValue, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse,
    LeaseTimeToLiveResponse, PutResponse, ResponseHeader, TxnOpResponse, TxnResponse,
};

use crate::server::Server;
use crate::target::{self, Kind};

/// Connects an etcd-client to `server`, with timeouts so a hung server fails the test instead
/// of hanging it.
pub async fn connect(server: &Server) -> Client {
    connect_endpoint(&server.endpoint()).await
}

/// Connects an etcd-client to an endpoint URL; panics if it cannot.
pub async fn connect_endpoint(endpoint: &str) -> Client {
    try_connect_endpoint(endpoint)
        .await
        .unwrap_or_else(|e| panic!("connect etcd-client to {endpoint}: {e}"))
}

/// Connects an etcd-client to an endpoint URL, for callers that expect the server may be
/// gone (crash tests).
pub async fn try_connect_endpoint(endpoint: &str) -> Result<Client, Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    Client::connect([endpoint], Some(options)).await
}

/// A response rendered for comparison: every field except the per-cluster header ones.
pub trait Render {
    /// One line of text.
    fn render(&self) -> String;
}

fn header(h: Option<&ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev={}", h.revision()),
        None => "no-header".to_string(),
    }
}

/// One key as a Range answers it: key, value, create revision, mod revision, version,
/// lease. Tests compare whole stores as lists of these.
pub type KeyRow = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// The rows of `kvs`, in their order.
pub fn key_rows(kvs: &[etcd_client::KeyValue]) -> Vec<KeyRow> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect()
}

/// Every key at `revision` (0: the current one), as `c`'s member alone has it
/// (serializable: its own copy, not the leader's), and the header's revision.
pub async fn all_keys_at(c: &mut Client, revision: i64) -> (i64, Vec<KeyRow>) {
    let resp = c
        .get(
            "",
            Some(
                etcd_client::GetOptions::new()
                    .with_all_keys()
                    .with_revision(revision)
                    .with_serializable(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("range at {revision}: {e}"));
    let rev = resp.header().expect("a response header").revision();
    (rev, key_rows(resp.kvs()))
}

/// The current keys of `endpoint` ([`all_keys_at`]) once it has applied revision `rev`
/// (a follower's serializable read may lag behind a commit), or after `patience`
/// whatever it has.
pub async fn all_keys_once_at(
    endpoint: &str,
    rev: i64,
    patience: std::time::Duration,
) -> (i64, Vec<KeyRow>) {
    let deadline = tokio::time::Instant::now() + patience;
    let mut c = connect_endpoint(endpoint).await;
    loop {
        let (at, rows) = all_keys_at(&mut c, 0).await;
        if at >= rev || tokio::time::Instant::now() > deadline {
            return (at, rows);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Renders bytes as text when printable UTF-8, else as hex, so diffs stay readable.
pub fn bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

fn kv(kv: &KeyValue) -> String {
    format!(
        "{}={} c={} m={} v={} lease={}",
        bytes(kv.key()),
        bytes(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease()
    )
}

fn kvs(list: &[KeyValue]) -> String {
    list.iter().map(kv).collect::<Vec<_>>().join(", ")
}

impl Render for GetResponse {
    fn render(&self) -> String {
        format!(
            "get {} count={} more={} kvs=[{}]",
            header(self.header()),
            self.count(),
            self.more(),
            kvs(self.kvs())
        )
    }
}

/// Without `hash_revision`, which etcd 3.4 does not send (the tests check it apart).
impl Render for HashKvResponse {
    fn render(&self) -> String {
        format!(
            "hashkv {} hash={} compact_revision={}",
            header(self.header()),
            self.hash(),
            self.compact_version()
        )
    }
}

impl Render for PutResponse {
    fn render(&self) -> String {
        let prev = self
            .prev_key()
            .map(kv)
            .unwrap_or_else(|| "none".to_string());
        format!("put {} prev={prev}", header(self.header()))
    }
}

impl Render for DeleteResponse {
    fn render(&self) -> String {
        format!(
            "delete {} deleted={} prev=[{}]",
            header(self.header()),
            self.deleted(),
            kvs(self.prev_kvs())
        )
    }
}

impl Render for TxnResponse {
    fn render(&self) -> String {
        let ops: Vec<String> = self
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Put(r) => r.render(),
                TxnOpResponse::Get(r) => r.render(),
                TxnOpResponse::Delete(r) => r.render(),
                TxnOpResponse::Txn(r) => format!("({})", r.render()),
            })
            .collect();
        format!(
            "txn {} succeeded={} ops=[{}]",
            header(self.header()),
            self.succeeded(),
            ops.join("; ")
        )
    }
}

impl Render for CompactionResponse {
    fn render(&self) -> String {
        format!("compact {}", header(self.header()))
    }
}

impl Render for LeaseGrantResponse {
    fn render(&self) -> String {
        format!(
            "lease grant {} id={} ttl={} error={:?}",
            header(self.header()),
            self.id(),
            self.ttl(),
            self.error()
        )
    }
}

impl Render for LeaseRevokeResponse {
    fn render(&self) -> String {
        format!("lease revoke {}", header(self.header()))
    }
}

/// The remaining TTL is a clock reading: rendered as whether it lies within
/// `(granted - 2, granted + 2]` (a fresh or just renewed lease; etcd adds an election
/// timeout after a restart), or -1 for a missing lease.
impl Render for LeaseTimeToLiveResponse {
    fn render(&self) -> String {
        let ttl = match self.ttl() {
            -1 => "-1".to_string(),
            t if t <= self.granted_ttl() + 2 && t > self.granted_ttl() - 2 => "fresh".to_string(),
            t => format!("{t}"),
        };
        // Sorted: etcd lists them in Go map order.
        let mut keys: Vec<String> = self.keys().iter().map(|k| bytes(k)).collect();
        keys.sort_unstable();
        format!(
            "lease ttl {} id={} ttl={ttl} granted={} keys=[{}]",
            header(self.header()),
            self.id(),
            self.granted_ttl(),
            keys.join(", ")
        )
    }
}

/// Lease ids sorted (etcd lists them soonest expiry first, ties in map order).
impl Render for LeaseLeasesResponse {
    fn render(&self) -> String {
        let mut ids: Vec<i64> = self.leases().iter().map(|l| l.id()).collect();
        ids.sort_unstable();
        format!("lease leases {} ids={ids:?}", header(self.header()))
    }
}

impl Render for LeaseKeepAliveResponse {
    fn render(&self) -> String {
        format!(
            "lease keep-alive {} id={} ttl={}",
            header(self.header()),
            self.id(),
            self.ttl()
        )
    }
}

/// Renders an error: a gRPC status as `Code: message`, anything else as the client's text.
pub fn render_error(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("client error: {other}"),
    }
}

/// One recorded call.
#[derive(Clone, Debug)]
struct Entry {
    what: String,
    outcome: String,
    problems: Vec<String>,
}

/// The outcomes of a scenario's calls, in order.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    entries: Vec<Entry>,
}

impl Transcript {
    /// Records a call expected to succeed; returns the response for further use.
    pub fn ok<T: Render>(&mut self, what: &str, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(resp) => {
                self.push(what, resp.render(), Vec::new());
                Some(resp)
            }
            Err(e) => {
                let outcome = render_error(&e);
                self.push(what, outcome, vec!["expected success".to_string()]);
                None
            }
        }
    }

    /// Records a call expected to fail with exactly this gRPC `code` (as tonic's `Code`
    /// debug name, e.g. `"InvalidArgument"`) and `message`.
    pub fn err<T: Render>(
        &mut self,
        what: &str,
        result: Result<T, Error>,
        code: &str,
        message: &str,
    ) {
        let expected = format!("{code}: {message}");
        match result {
            Ok(resp) => self.push(
                what,
                resp.render(),
                vec![format!("expected error {expected}")],
            ),
            Err(e) => {
                let outcome = render_error(&e);
                let problems = if outcome == expected {
                    Vec::new()
                } else {
                    vec![format!("expected error {expected}")]
                };
                self.push(what, outcome, problems);
            }
        }
    }

    /// Records any outcome without an expectation (compared across targets only).
    pub fn any<T: Render>(&mut self, what: &str, result: Result<T, Error>) {
        let outcome = match result {
            Ok(resp) => resp.render(),
            Err(e) => render_error(&e),
        };
        self.push(what, outcome, Vec::new());
    }

    /// Records a derived observation, e.g. a check computed from several calls.
    pub fn note(&mut self, what: &str, outcome: String) {
        self.push(what, outcome, Vec::new());
    }

    /// Records a condition that must hold on every target.
    pub fn check(&mut self, what: &str, holds: bool, detail: String) {
        let problems = if holds {
            Vec::new()
        } else {
            vec![format!("check failed: {detail}")]
        };
        self.push(what, format!("holds={holds}"), problems);
    }

    fn push(&mut self, what: &str, outcome: String, problems: Vec<String>) {
        self.entries.push(Entry {
            what: what.to_string(),
            outcome,
            problems,
        });
    }
}

/// Runs `scenario` on a fresh server of each differential target and compares the
/// transcripts; panics with every failed expectation and every differing entry.
pub fn compare<F>(name: &str, scenario: F)
where
    F: AsyncFn(&mut Client, &mut Transcript),
{
    compare_with_server(name, async |server: &mut Server, t: &mut Transcript| {
        let mut client = connect(server).await;
        scenario(&mut client, t).await;
    });
}

/// Like [`compare`], but the scenario gets the server itself, to crash or restart it in the
/// middle (it connects its own clients). Server calls block, which is fine on the
/// single-threaded runtime the scenario runs on.
pub fn compare_with_server<F>(name: &str, scenario: F)
where
    F: AsyncFn(&mut Server, &mut Transcript),
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime");
    let mut runs: Vec<(Kind, Transcript)> = Vec::new();
    for kind in target::differential_targets() {
        let mut server = Server::start(kind);
        let mut transcript = Transcript::default();
        runtime.block_on(scenario(&mut server, &mut transcript));
        runs.push((kind, transcript));
    }

    let verbose = std::env::var_os("BRAMBLE_E2E_VERBOSE").is_some();
    let mut report = String::new();
    for (kind, transcript) in &runs {
        for (i, e) in transcript.entries.iter().enumerate() {
            if verbose {
                println!("[{name}] {kind} #{}: {} -> {}", i + 1, e.what, e.outcome);
            }
            if !e.problems.is_empty() {
                let _ = writeln!(
                    report,
                    "#{} on {kind}: {}\n  call: {}\n  got:  {}\n",
                    i + 1,
                    e.problems.join(", "),
                    e.what,
                    e.outcome
                );
            }
        }
    }
    if let [(reference, expected), (tested, actual)] = runs.as_slice() {
        let n = expected.entries.len().max(actual.entries.len());
        let mut differing = 0;
        for i in 0..n {
            let (a, b) = (expected.entries.get(i), actual.entries.get(i));
            if a.map(|e| (&e.what, &e.outcome)) != b.map(|e| (&e.what, &e.outcome)) {
                differing += 1;
                let show = |e: Option<&Entry>| {
                    e.map(|e| format!("{} -> {}", e.what, e.outcome))
                        .unwrap_or_else(|| "(missing)".to_string())
                };
                let _ = writeln!(
                    report,
                    "#{} differs:\n  {reference}: {}\n  {tested}: {}\n",
                    i + 1,
                    show(a),
                    show(b)
                );
            }
        }
        if differing > 0 {
            let _ = writeln!(
                report,
                "{differing} of {n} calls differ between {reference} and {tested}"
            );
        }
    }
    assert!(report.is_empty(), "scenario `{name}`:\n{report}");
}
