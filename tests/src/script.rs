//! Differential etcdctl scripts: the same commands on a fresh etcd and a fresh Bramble.
//!
//! A [`Script`] is a list of etcdctl invocations ([`Step`]s). [`Script::run`] starts one
//! fresh server per target (see [`crate::target`]), runs every step against each, normalizes
//! the outputs (see [`crate::normalize`]) and compares them step by step. A difference panics
//! with every differing step shown side by side: each is a Bramble bug, since etcd is the spec.
//!
//! Steps also carry a light expectation (exit code zero or not, and optionally a text the
//! output must contain), checked on every target, etcd included. That keeps a script honest
//! when it runs on etcd alone: a typo in a flag makes etcdctl print its usage and fail, which
//! would otherwise "match" on both servers and test nothing.
//!
//! `BRAMBLE_E2E_VERBOSE=1` (with `--nocapture`) prints every step's output on every target.

use std::fmt::Write;

use crate::normalize;
use crate::protobuf;
use crate::server::Server;
use crate::target::{self, Kind};

/// What `etcdctl txn -i` prints on stdout before reading each section of its input.
const TXN_PROMPTS: &[u8] =
    b"compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n";

/// One etcdctl invocation with its expectation.
#[derive(Clone, Debug)]
pub struct Step {
    args: Vec<String>,
    stdin: Option<String>,
    expect_success: bool,
    contains: Vec<String>,
}

impl Step {
    /// A step with exact arguments (use this for values with spaces or empty strings);
    /// expected to exit 0.
    pub fn args(args: &[&str]) -> Step {
        Step {
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            expect_success: true,
            contains: Vec::new(),
        }
    }

    /// A step from a command line split on whitespace, e.g. `"get a --prefix"`.
    pub fn cmd(line: &str) -> Step {
        Step::args(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Feeds `input` on stdin (for `txn -i`).
    pub fn stdin(mut self, input: &str) -> Step {
        self.stdin = Some(input.to_string());
        self
    }

    /// Expects a non-zero exit code (an error from the server or from etcdctl).
    pub fn fails(mut self) -> Step {
        self.expect_success = false;
        self
    }

    /// Expects `text` somewhere in stdout or stderr (after normalization).
    pub fn contains(mut self, text: &str) -> Step {
        self.contains.push(text.to_string());
        self
    }

    /// The step as a shell-like line, for reports.
    pub fn display(&self) -> String {
        let args: Vec<String> = self.args.iter().map(|a| quote(a)).collect();
        let mut line = format!("etcdctl {}", args.join(" "));
        if let Some(input) = &self.stdin {
            let _ = write!(line, " <<EOF\n{}EOF", input);
        }
        line
    }

    fn is_protobuf(&self) -> bool {
        self.args
            .windows(2)
            .any(|w| (w[0] == "-w" || w[0] == "--write-out") && w[1] == "protobuf")
            || self
                .args
                .iter()
                .any(|a| a == "-wprotobuf" || a == "--write-out=protobuf" || a == "-w=protobuf")
    }
}

/// What one step printed on one target, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// Exit code of etcdctl.
    pub code: i32,
    /// Normalized stdout.
    pub stdout: String,
    /// Normalized stderr.
    pub stderr: String,
}

impl StepResult {
    fn render(&self) -> String {
        format!(
            "  exit {}\n  stdout: {}\n  stderr: {}",
            self.code,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

/// A named sequence of steps run on fresh servers and compared.
#[derive(Clone, Debug)]
pub struct Script {
    name: String,
    steps: Vec<Step>,
    /// Run with Debian's etcdctl 3.4 instead of the reference etcdctl.
    debian_etcdctl_3_4: bool,
}

impl Script {
    /// An empty script; the name appears in failure reports.
    pub fn new(name: &str) -> Script {
        Script {
            name: name.to_string(),
            steps: Vec::new(),
            debian_etcdctl_3_4: false,
        }
    }

    /// The same script run with Debian's etcdctl 3.4 (`etcd-client`), the client many Pi
    /// clusters still have, on both targets.
    pub fn with_debian_etcdctl_3_4(mut self) -> Script {
        self.debian_etcdctl_3_4 = true;
        self
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Script {
        self.steps.push(step);
        self
    }

    /// Appends a whitespace-split command expected to succeed.
    pub fn ok(self, line: &str) -> Script {
        self.step(Step::cmd(line))
    }

    /// Appends a whitespace-split command expected to fail.
    pub fn err(self, line: &str) -> Script {
        self.step(Step::cmd(line).fails())
    }

    /// Runs the script on each differential target (in parallel, one fresh server each),
    /// checks each step's expectation, and compares the targets step by step.
    pub fn run(&self) {
        let kinds = target::differential_targets();
        let results: Vec<(Kind, Vec<StepResult>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = kinds
                .iter()
                .map(|&kind| (kind, scope.spawn(move || self.run_on(kind))))
                .collect();
            handles
                .into_iter()
                .map(|(kind, h)| {
                    let results = h
                        .join()
                        .unwrap_or_else(|_| panic!("script `{}` panicked on {kind}", self.name));
                    (kind, results)
                })
                .collect()
        });

        if std::env::var_os("BRAMBLE_E2E_VERBOSE").is_some() {
            for (kind, results) in &results {
                for (step, result) in self.steps.iter().zip(results) {
                    println!(
                        "[{}] {kind}: $ {}\n{}",
                        self.name,
                        step.display(),
                        result.render()
                    );
                }
            }
        }

        let mut report = String::new();
        for (kind, results) in &results {
            self.check_expectations(*kind, results, &mut report);
        }
        if let [(reference, expected), (tested, actual)] = results.as_slice() {
            self.compare(*reference, expected, *tested, actual, &mut report);
        }
        assert!(report.is_empty(), "script `{}`:\n{report}", self.name);
    }

    /// Runs every step on a fresh server of `kind`.
    pub fn run_on(&self, kind: Kind) -> Vec<StepResult> {
        let server = Server::start(kind);
        let ctl = if self.debian_etcdctl_3_4 {
            server.etcdctl().debian_3_4()
        } else {
            server.etcdctl()
        };
        self.steps
            .iter()
            .map(|step| {
                let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
                let out = ctl.run_stdin(&args, step.stdin.as_deref());
                let stdout = if step.is_protobuf() && out.code == 0 {
                    // `txn -i` prints its prompts as text before the binary response.
                    let (prompts, message) = match out.stdout.strip_prefix(TXN_PROMPTS) {
                        Some(rest) => (String::from_utf8_lossy(TXN_PROMPTS).into_owned(), rest),
                        None => (String::new(), out.stdout.as_slice()),
                    };
                    prompts + &protobuf::render_response(message)
                } else {
                    normalize::stdout_text(&out.stdout_str())
                };
                StepResult {
                    code: out.code,
                    stdout: normalize::endpoint(&stdout, ctl.endpoint()),
                    stderr: normalize::stderr_text(&out.stderr, ctl.endpoint()),
                }
            })
            .collect()
    }

    /// Appends a line to `report` for every step whose expectation failed on `kind`.
    fn check_expectations(&self, kind: Kind, results: &[StepResult], report: &mut String) {
        for (i, (step, result)) in self.steps.iter().zip(results).enumerate() {
            let mut problems = Vec::new();
            if step.expect_success != (result.code == 0) {
                problems.push(if step.expect_success {
                    "expected success".to_string()
                } else {
                    "expected failure".to_string()
                });
            }
            for text in &step.contains {
                if !result.stdout.contains(text) && !result.stderr.contains(text) {
                    problems.push(format!("expected output containing {text:?}"));
                }
            }
            if !problems.is_empty() {
                let _ = writeln!(
                    report,
                    "step {} on {kind}: {}\n  $ {}\n{}\n",
                    i + 1,
                    problems.join(", "),
                    step.display(),
                    result.render()
                );
            }
        }
    }

    /// Appends every step where `actual` differs from `expected`.
    fn compare(
        &self,
        reference: Kind,
        expected: &[StepResult],
        tested: Kind,
        actual: &[StepResult],
        report: &mut String,
    ) {
        let mut differing = 0;
        for (i, step) in self.steps.iter().enumerate() {
            if expected[i] != actual[i] {
                differing += 1;
                let _ = writeln!(
                    report,
                    "step {} differs:\n  $ {}\n{reference}:\n{}\n{tested}:\n{}\n",
                    i + 1,
                    step.display(),
                    expected[i].render(),
                    actual[i].render()
                );
            }
        }
        if differing > 0 {
            let _ = writeln!(
                report,
                "{differing} of {} steps differ between {reference} and {tested}",
                self.steps.len()
            );
        }
    }
}

/// Quotes an argument for display when it is empty or has shell-special characters.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Indents continuation lines so multi-line outputs read as one block in a report.
fn indent(text: &str) -> String {
    if text.is_empty() {
        return "(empty)".to_string();
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut out = trimmed.replace('\n', "\n          ");
    if !text.ends_with('\n') {
        out.push_str(" [no trailing newline]");
    }
    out
}
