//! Spawning the processes a test drives (bramble, etcd, etcdctl): the same environment
//! hygiene and log handling everywhere.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

/// The prefix of the variables bramble and etcd read as flags (kubeadm relies on it).
pub(crate) const SERVER_ENV_PREFIX: &str = "ETCD_";
/// The prefix of the variables etcdctl reads as flags.
pub const ETCDCTL_ENV_PREFIX: &str = "ETCDCTL_";

/// Removes from `cmd`'s environment every variable whose name starts with `prefix`: the
/// binary would read them as flags, and the test's own (such as `ETCD_BIN`) must not leak
/// into it.
pub fn remove_env_prefixed<'a>(cmd: &'a mut Command, prefix: &str) -> &'a mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Prepares `cmd` to run a server: stdin closed, stdout and stderr appended to a new file
/// at `log`, and no `ETCD_*` variables.
pub fn server_command<'a>(cmd: &'a mut Command, log: &Path) -> &'a mut Command {
    let out =
        File::create(log).unwrap_or_else(|e| panic!("create the log file {}: {e}", log.display()));
    let err = out.try_clone().expect("duplicate the log file handle");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    remove_env_prefixed(cmd, SERVER_ENV_PREFIX)
}
