//! The member's identity on disk: its member and cluster ids, fixed at the
//! first start, so a restart keeps them whatever flags it is given (as etcd
//! ignores `--initial-cluster*` once a data dir exists).

use std::io::Write;
use std::path::Path;

use bramble_raft::identity;

use crate::node::{Error, NodeOptions};

const FILE: &str = "identity";

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error {
        code: tonic::Code::Unavailable,
        message: format!("{}: {e}", path.display()),
    }
}

/// Reads `<data-dir>/member/identity`, or derives the ids from the options
/// (as etcd does for a new cluster) and writes them durably.
pub fn load_or_create(opts: &NodeOptions) -> Result<(u64, u64), Error> {
    let dir = opts.data_dir.join("member");
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).ok_or_else(|| io_error(&path, "malformed identity file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let member_id = identity::member_id(&opts.peer_urls, &opts.cluster_token);
            let cluster_id = identity::cluster_id(&[member_id]);
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            write_durably(&dir, &path, &format!("{member_id:x} {cluster_id:x}\n"))
                .map_err(|e| io_error(&path, e))?;
            Ok((member_id, cluster_id))
        }
        Err(e) => Err(io_error(&path, e)),
    }
}

fn parse(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_whitespace();
    let member = u64::from_str_radix(parts.next()?, 16).ok()?;
    let cluster = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((member, cluster))
}

/// Writes via a temporary file, fsyncs it and the directory, then renames:
/// a crash leaves either no identity or the whole one.
fn write_durably(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_different_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = NodeOptions::new(dir.path());
        let first = load_or_create(&opts).expect("create");
        assert_eq!(format!("{:x}", first.0), "8e9e05c52164694d");
        opts.peer_urls = vec!["http://10.0.0.1:2380".into()];
        assert_eq!(load_or_create(&opts).expect("load"), first);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse("zz"), None);
        assert_eq!(parse("1 2"), Some((1, 2)));
    }
}
