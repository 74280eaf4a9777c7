//! `bramble snapshot restore FILE ...`: a data dir for one member of a NEW cluster,
//! made from a file `etcdctl snapshot save` wrote from Bramble, or from etcd 3.4, 3.5
//! or 3.6 (a bbolt database, recognised by content and converted with its whole MVCC
//! history, revisions and leases: `bramble_storage::etcd_import`, the migration from
//! etcd), with etcdutl 3.6's flags, defaults and refusals.
//!
//! The member and cluster ids are derived from `--initial-cluster`,
//! `--initial-cluster-token` and `--name` exactly as a fresh bootstrap derives them
//! (`identity_file`), and the storage is made by `bramble_raft::restore` (the file's
//! data, the new membership, an empty WAL). Restoring every member from the same file
//! with the same cluster flags, then starting them with those flags, forms a cluster
//! that serves the data.
//!
//! Nothing is written before every check passed, and the data dir appears whole or
//! not at all: it is built in a temporary directory beside the target, every file and
//! directory fsynced, then renamed into place (and its parent fsynced). A failure
//! removes the temporary directory and any parent directories it had to create.

use std::path::{Path, PathBuf};

use bramble_raft::restore::{restore_member, RestoreRequest};
use bramble_storage::atomic_file;
use bramble_storage::mvcc::RestoreInfo;
use clap::Args;

use crate::config::{parse_initial_cluster, split_urls};
use crate::identity_file;
use crate::node::NodeOptions;

/// etcdutl's exit code for bad arguments (cobrautl.ExitBadArgs).
const EXIT_BAD_ARGS: u8 = 128;
/// etcdutl's exit code for a failed command (cobrautl.ExitError).
const EXIT_ERROR: u8 = 1;

/// etcdutl 3.6's `snapshot restore` flags, with its defaults.
#[derive(Debug, Clone, Args)]
pub(crate) struct RestoreArgs {
    /// The snapshot file (from `etcdctl snapshot save`, of Bramble or of etcd).
    file: Option<PathBuf>,
    /// Path to the output data directory (default: NAME.etcd).
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Path to the WAL directory: refused, Bramble keeps the WAL in DATA-DIR/member/wal.
    #[arg(long = "wal-dir")]
    wal_dir: Option<PathBuf>,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap.
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    initial_advertise_peer_urls: String,
    /// Human-readable name for this member.
    #[arg(long = "name", default_value = "default")]
    name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory).
    #[arg(long = "skip-hash-check", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::value_parser!(bool))]
    skip_hash_check: bool,
    /// bbolt's initial memory map size: accepted for etcdutl's command lines, no
    /// meaning for Bramble's database.
    #[arg(long = "initial-memory-map-size", default_value_t = 0)]
    initial_memory_map_size: u64,
    /// How much to increase the latest revision after restore.
    #[arg(long = "bump-revision", default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction
    /// (required if --bump-revision > 0, disallowed otherwise).
    #[arg(long = "mark-compacted", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::value_parser!(bool))]
    mark_compacted: bool,
}

/// A refusal or failure, with etcdutl's exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn bad_args(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_BAD_ARGS,
        message: message.into(),
    }
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_ERROR,
        message: message.to_string(),
    }
}

/// Runs the restore; prints etcdutl's `Error: ...` and returns its exit code on failure.
pub(crate) fn run(args: RestoreArgs) -> std::process::ExitCode {
    match restore(&args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("Error: {}", f.message);
            std::process::ExitCode::from(f.code)
        }
    }
}

/// Restores as `args` say; returns what the new data dir holds.
fn restore(args: &RestoreArgs) -> Result<RestoreInfo, Failure> {
    let file = args
        .file
        .clone()
        .ok_or_else(|| bad_args("snapshot restore requires exactly one argument"))?;
    // etcdutl 3.6: the two go together, one without the other is refused.
    if (args.bump_revision == 0) == args.mark_compacted {
        return Err(bad_args("--mark-compacted required if --revision-bump > 0"));
    }
    if let Some(wal) = &args.wal_dir {
        // Accepting it would put the WAL where no Bramble member looks for it.
        return Err(bad_args(format!(
            "--wal-dir {}: not supported, Bramble keeps the WAL in <data-dir>/member/wal",
            wal.display()
        )));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    let (members, ids) = cluster(args, &data_dir)?;
    if !empty_or_missing(&data_dir) {
        return Err(failed(format!(
            "data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        )));
    }
    if !file.is_file() {
        return Err(failed(format!("open {}: no such file", file.display())));
    }
    tracing::info!(
        path = %file.display(),
        wal_dir = %data_dir.join("member").join("wal").display(),
        data_dir = %data_dir.display(),
        snap_dir = %data_dir.join("member").join("snap").display(),
        "restoring snapshot"
    );
    let staging = Staging::new(&data_dir)?;
    let request = RestoreRequest {
        snapshot: file.clone(),
        data_dir: staging.dir.clone(),
        members,
        skip_hash_check: args.skip_hash_check,
        bump_revision: args.bump_revision,
        mark_compacted: args.mark_compacted,
    };
    let built = restore_member(&request).map_err(failed).and_then(|info| {
        identity_file::write(&staging.dir, ids).map_err(|e| {
            failed(format!(
                "{}: {e}",
                staging.dir.join("member").join("identity").display()
            ))
        })?;
        Ok(info)
    });
    let info = match built {
        Ok(info) => info,
        Err(f) => {
            staging.abandon();
            return Err(f);
        }
    };
    staging.commit()?;
    if args.bump_revision > 0 {
        tracing::info!(
            latest_revision = info.snapshot.revision,
            bump_amount = args.bump_revision,
            new_latest_revision = info.revision,
            "bumping latest revision"
        );
        tracing::info!(revision = info.revision, "marking revision compacted");
    }
    tracing::info!(
        path = %file.display(),
        data_dir = %data_dir.display(),
        member_id = %format!("{:x}", ids.member_id),
        cluster_id = %format!("{:x}", ids.cluster_id),
        revision = info.revision,
        compact_revision = info.compact_revision,
        hash_checked = info.hash_checked,
        "restored snapshot"
    );
    Ok(info)
}

/// The new cluster's members and this member's ids, checked as etcd's
/// `VerifyBootstrap` checks them (the name is listed, its URLs are the advertised ones,
/// no two members share URLs).
fn cluster(
    args: &RestoreArgs,
    data_dir: &Path,
) -> Result<
    (
        std::collections::BTreeMap<u64, bramble_raft::MemberAttributes>,
        bramble_server::Identity,
    ),
    Failure,
> {
    let initial_cluster = parse_initial_cluster(&args.initial_cluster).map_err(failed)?;
    if initial_cluster.is_empty() {
        return Err(failed("initial cluster unset and no discovery URL found"));
    }
    let mut opts = NodeOptions::new(data_dir);
    opts.name = args.name.clone();
    opts.peer_urls = split_urls(&args.initial_advertise_peer_urls);
    opts.cluster_token = args.initial_cluster_token.clone();
    opts.initial_cluster = initial_cluster;
    let members = identity_file::initial_members(&opts).map_err(|e| failed(e.message()))?;
    let ids = identity_file::new_cluster_ids(&opts).map_err(|e| failed(e.message()))?;
    Ok((members, ids))
}

/// Whether `dir` does not exist or is an empty directory (etcdutl's check: anything
/// else, an unreadable directory included, is refused).
fn empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound && !dir.exists(),
    }
}

/// The temporary directory a data dir is built in.
///
/// A missing data dir is built beside its target and renamed into place whole. An
/// existing (empty) one may be a mount point, which cannot be renamed over: then the
/// temporary directory is inside it, and its `member/` (everything a member reads) is
/// renamed into place.
struct Staging {
    /// The temporary directory.
    dir: PathBuf,
    /// The target data dir.
    target: PathBuf,
    /// Whether the target exists (and `dir` is inside it).
    inside: bool,
    /// The first ancestor of the target that did not exist (created for it), removed
    /// again if the restore fails.
    created_parent: Option<PathBuf>,
}

impl Staging {
    /// Creates the temporary directory (and the target's missing parents).
    fn new(target: &Path) -> Result<Staging, Failure> {
        let target = absolute(target)?;
        let parent = target
            .parent()
            .ok_or_else(|| failed(format!("{}: no parent directory", target.display())))?
            .to_path_buf();
        let inside = target.is_dir();
        let created_parent = if inside { None } else { first_missing(&parent) };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let dir = if inside {
            atomic_file::temp_path(&target, ".restore")
        } else {
            atomic_file::temp_path(&parent, &format!(".{name}.restore"))
        };
        let staging = Staging {
            dir,
            target,
            inside,
            created_parent,
        };
        if let Err(e) = std::fs::create_dir_all(&staging.dir) {
            let f = failed(format!("{}: {e}", staging.dir.display()));
            staging.abandon();
            return Err(f);
        }
        Ok(staging)
    }

    /// Makes the built directory durable and renames it into place.
    fn commit(self) -> Result<(), Failure> {
        let result = sync_tree(&self.dir).and_then(|()| {
            if self.inside {
                let member = self.target.join("member");
                std::fs::rename(self.dir.join("member"), &member)?;
                let synced = sync_dir(&self.target);
                if synced.is_err() {
                    // Not known durable: take it back rather than leave it half there.
                    let _ = std::fs::remove_dir_all(&member);
                }
                synced?;
                // Empty now; a leftover would only make the dir look not empty.
                std::fs::remove_dir(&self.dir)?;
                sync_dir(&self.target)
            } else {
                std::fs::rename(&self.dir, &self.target)?;
                match self.target.parent() {
                    Some(parent) => sync_dir(parent),
                    None => Ok(()),
                }
            }
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let f = failed(format!("{}: {e}", self.target.display()));
                self.abandon();
                Err(f)
            }
        }
    }

    /// Removes everything this restore created.
    fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(p) = &self.created_parent {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// `path` made absolute (so that its parent is a real directory even for `x.etcd`).
fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path).map_err(|e| failed(format!("{}: {e}", path.display())))
}

/// The outermost ancestor of `dir` (itself included) that does not exist.
fn first_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing = Some(d.to_path_buf());
        cur = d.parent();
    }
    missing
}

/// fsyncs every file and directory under `dir`, and `dir` itself (the files' own
/// writers fsynced their data; this makes every directory entry durable too).
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RestoreArgs,
    }

    fn parse(list: &[&str]) -> RestoreArgs {
        Cli::try_parse_from(std::iter::once("restore").chain(list.iter().copied()))
            .expect("parse")
            .args
    }

    fn refusal(list: &[&str]) -> Failure {
        restore(&parse(list)).expect_err("refused")
    }

    #[test]
    fn defaults_are_etcdutls() {
        let a = parse(&["snap.db"]);
        assert_eq!(a.name, "default");
        assert_eq!(a.initial_cluster, "default=http://localhost:2380");
        assert_eq!(a.initial_cluster_token, "etcd-cluster");
        assert_eq!(a.initial_advertise_peer_urls, "http://localhost:2380");
        assert!(!a.skip_hash_check && !a.mark_compacted);
        assert_eq!(a.bump_revision, 0);
        let a = parse(&["snap.db", "--skip-hash-check=true", "--mark-compacted"]);
        assert!(a.skip_hash_check && a.mark_compacted);
    }

    #[test]
    fn bad_arguments_are_refused_with_etcdutls_words_and_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("d");
        let data = data.to_str().expect("utf-8");
        let f = refusal(&["--data-dir", data]);
        assert_eq!(
            (f.code, f.message.as_str()),
            (128, "snapshot restore requires exactly one argument")
        );
        for flags in [
            &["x.db", "--data-dir", data, "--mark-compacted"][..],
            &["x.db", "--data-dir", data, "--bump-revision", "5"][..],
        ] {
            let f = refusal(flags);
            assert_eq!(
                (f.code, f.message.as_str()),
                (128, "--mark-compacted required if --revision-bump > 0")
            );
        }
        let f = refusal(&["x.db", "--data-dir", data, "--wal-dir", "/tmp/w"]);
        assert_eq!(f.code, 128);
        let f = refusal(&["x.db", "--data-dir", data, "--name", "nobody"]);
        assert!(
            f.message.contains("couldn't find local name"),
            "{}",
            f.message
        );
        let f = refusal(&[
            "x.db",
            "--data-dir",
            data,
            "--initial-advertise-peer-urls",
            "http://other:2380",
        ]);
        assert!(
            f.message.contains("--initial-advertise-peer-urls"),
            "{}",
            f.message
        );
        let f = refusal(&["x.db", "--data-dir", data]);
        assert_eq!(f.message, "open x.db: no such file");
        // Nothing was written by any of them.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn a_non_empty_data_dir_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep"), b"mine").expect("write");
        let snap = dir.path().join("keep");
        let f = refusal(&[
            snap.to_str().expect("utf-8"),
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
        ]);
        assert_eq!(
            f.message,
            format!(
                "data-dir {:?} not empty or could not be read",
                dir.path().display().to_string()
            )
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    /// A bare snapshot stream of a store holding one key (restorable with
    /// `--skip-hash-check`).
    fn bare_snapshot(dir: &Path) -> PathBuf {
        use bramble_api::bramblepb::{command::Op, Command};
        use bramble_api::etcdserverpb::PutRequest;
        use bramble_storage::mvcc::{MvccOptions, MvccStore};
        let store =
            MvccStore::open(&dir.join("src.db"), MvccOptions::default()).expect("open store");
        let put = Command {
            auth: None,
            op: Some(Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        store.apply(1, 1, &put).expect("put");
        let file = dir.join("bare.snap");
        store.write_snapshot_file(&file).expect("snapshot");
        file
    }

    #[test]
    fn restores_into_a_missing_or_an_empty_existing_dir_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = bare_snapshot(dir.path());
        let missing = dir.path().join("new").join("data");
        let empty = dir.path().join("mounted");
        std::fs::create_dir(&empty).expect("mkdir");
        for target in [&missing, &empty] {
            let info = restore(&parse(&[
                snap.to_str().expect("utf-8"),
                "--skip-hash-check",
                "--data-dir",
                target.to_str().expect("utf-8"),
            ]))
            .expect("restore");
            assert_eq!(info.revision, 2);
            let mut names: Vec<String> = std::fs::read_dir(target.join("member"))
                .expect("member dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["identity", "snap", "wal"], "{}", target.display());
            let top: Vec<_> = std::fs::read_dir(target).expect("list").collect();
            assert_eq!(top.len(), 1, "only member/ in {}", target.display());
            // The default flags' ids, as a fresh `bramble` of the same flags has them.
            let identity =
                std::fs::read_to_string(target.join("member").join("identity")).expect("read");
            assert_eq!(identity, "8e9e05c52164694d cdf818194e3a8c32\n");
        }
        let mut top: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["bare.snap", "mounted", "new", "src.db"]);
    }

    /// The restored data dir opens as a member that serves the data and goes on from
    /// the next revision (openraft finds it initialized at index 0 with an empty log).
    #[tokio::test]
    async fn a_restored_data_dir_opens_and_serves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = bare_snapshot(dir.path());
        let target = dir.path().join("data");
        restore(&parse(&[
            snap.to_str().expect("utf-8"),
            "--skip-hash-check",
            "--data-dir",
            target.to_str().expect("utf-8"),
        ]))
        .expect("restore");
        for round in 0..2 {
            let node = crate::Node::open(NodeOptions::new(&target))
                .await
                .expect("open the restored member");
            let kv = node.get("k").await.expect("get").expect("the key");
            assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"v"[..], 2));
            let put = node.put(format!("r{round}"), "x").await.expect("put");
            assert_eq!(put.header.expect("header").revision, 3 + round);
            node.close().await;
        }
    }

    #[test]
    fn a_bad_file_leaves_nothing_behind_not_even_new_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = dir.path().join("snap.db");
        std::fs::write(&snap, vec![0u8; 544]).expect("write");
        let data = dir.path().join("a").join("b").join("data");
        let f = refusal(&[
            snap.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ]);
        assert_eq!(f.code, 1);
        assert!(
            f.message.contains("not a Bramble snapshot"),
            "{}",
            f.message
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["snap.db"]);
    }
}
