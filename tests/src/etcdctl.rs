//! Running the real `etcdctl` (v3 API) against one endpoint.
//!
//! etcdctl is what operators and scripts use, so its exact output (stdout, stderr and exit
//! code) is part of what Bramble must reproduce. The runner captures all three as bytes and
//! can feed stdin, which `etcdctl txn -i` reads its compares and operations from.

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

use bramble_testkit::process;

use crate::tools;

/// What one etcdctl invocation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Raw stdout (`-w protobuf` writes binary).
    pub stdout: Vec<u8>,
    /// stderr as text (etcdctl's errors and its client library's log lines).
    pub stderr: String,
    /// Exit code; -1 if killed by a signal.
    pub code: i32,
}

impl Output {
    /// stdout as text, invalid UTF-8 replaced.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with the whole output unless the exit code is 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "etcdctl failed:\n{self}");
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout_str())?;
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// What one etcdctl command line printed, normalized (`crate::normalize`) so that two
/// servers' answers compare equal when they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The command line, as given.
    pub line: String,
    /// etcdctl's exit code.
    pub code: i32,
    /// Its stdout, normalized.
    pub stdout: String,
    /// Its stderr, normalized.
    pub stderr: String,
}

/// etcdctl bound to one endpoint.
#[derive(Clone, Debug)]
pub struct Etcdctl {
    endpoint: String,
    /// Global flags given to every command (`--cacert`, `--cert`, `--key`, ...).
    flags: Vec<String>,
    /// The etcdctl binary; `None` is the reference one ([`tools::etcdctl_bin`]).
    bin: Option<std::path::PathBuf>,
}

impl Etcdctl {
    /// A runner for `endpoint` (a URL such as `http://127.0.0.1:2379`).
    pub fn new(endpoint: impl Into<String>) -> Etcdctl {
        Etcdctl {
            endpoint: endpoint.into(),
            flags: Vec::new(),
            bin: None,
        }
    }

    /// The same runner with Debian's etcdctl 3.4 ([`tools::debian_etcdctl_bin`]): for the
    /// checks where what an older client sees matters.
    pub fn debian_3_4(mut self) -> Etcdctl {
        self.bin = Some(tools::debian_etcdctl_bin());
        self
    }

    /// The same runner, giving `flags` to every command (TLS: `--cacert=...`).
    pub fn with_flags(mut self, flags: &[String]) -> Etcdctl {
        self.flags.extend(flags.iter().cloned());
        self
    }

    /// The endpoint this runner talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs the command line `line` (split on whitespace) with `stdin`, normalized.
    pub fn step(&self, line: &str, stdin: Option<&str>) -> Step {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = self.run_stdin(&args, stdin);
        Step {
            line: line.to_string(),
            code: out.code,
            stdout: crate::normalize::endpoint(
                &crate::normalize::stdout_text(&out.stdout_str()),
                self.endpoint(),
            ),
            stderr: crate::normalize::stderr_text(&out.stderr, self.endpoint()),
        }
    }

    /// Runs `etcdctl --endpoints=<endpoint> <args>` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    /// `etcdctl endpoint hashkv --rev REV`: the endpoint's hash at `rev`.
    pub fn hashkv(&self, rev: i64) -> u64 {
        let out = self.run(&["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"]);
        out.assert_ok();
        let text = out.stdout_str();
        let at = text.find("\"hash\":").expect("a hash") + "\"hash\":".len();
        text[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("hashkv output: {text}"))
    }

    /// Runs etcdctl, writing `stdin` (if any) to it and closing it.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let bin = self.bin.clone().unwrap_or_else(tools::etcdctl_bin);
        let mut cmd = Command::new(&bin);
        // etcdctl reads ETCDCTL_* as flags (3.4 and later speak the v3 API by default; 3.6
        // warns about an ETCDCTL_API variable).
        process::remove_env_prefixed(&mut cmd, process::ETCDCTL_ENV_PREFIX);
        cmd.arg(format!("--endpoints={}", self.endpoint))
            .args(&self.flags)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut pipe = child.stdin.take().expect("etcdctl stdin is piped");
        let input = stdin.unwrap_or("").as_bytes().to_vec();
        // Written from a thread so a chatty etcdctl cannot deadlock against a full pipe.
        let writer = std::thread::spawn(move || {
            // etcdctl may exit (on a bad flag) without reading: a broken pipe is fine then.
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait for etcdctl");
        writer.join().expect("stdin writer thread");
        Output {
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }
}
