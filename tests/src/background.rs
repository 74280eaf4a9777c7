//! etcdctl commands that run until killed (`watch`, `watch -i`): started in the background,
//! fed lines on stdin, polled for their output, then killed and collected.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};

use bramble_testkit::{process, temp};
use std::time::{Duration, Instant};

use crate::etcdctl::Output;
use crate::tools;

/// A running etcdctl whose stdout and stderr go to files.
pub struct Background {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl Background {
    /// Starts `etcdctl --endpoints=<endpoint> <args>` with a piped stdin.
    pub fn start(endpoint: &str, args: &[&str]) -> Background {
        let dir = temp::dir("bramble-etcdctl-");
        let out = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut cmd = Command::new(tools::etcdctl_bin());
        process::remove_env_prefixed(&mut cmd, process::ETCDCTL_ENV_PREFIX);
        let mut child = cmd
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn etcdctl");
        let stdin = child.stdin.take();
        Background { child, stdin, dir }
    }

    /// Writes one line to its stdin.
    pub fn line(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Waits until stdout contains `needle` `times` times (false after `timeout`).
    pub fn wait_for(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stdout().matches(needle).count() >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills it (if still running) and returns what it wrote.
    pub fn finish(mut self) -> Output {
        // Killed before its stdin closes: `watch -i` would exit on EOF with its own message.
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for etcdctl");
        drop(self.stdin.take());
        Output {
            stdout: std::fs::read(self.dir.path().join("stdout")).unwrap_or_default(),
            stderr: std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default(),
            code: status.code().unwrap_or(-1),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
