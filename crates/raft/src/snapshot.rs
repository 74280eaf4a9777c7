//! Raft snapshots of the state machine, kept as files in `<data-dir>/member/snap`
//! (beside the MVCC database, as etcd keeps its `.snap` files).
//!
//! A snapshot is the MVCC store's snapshot stream (`bramble_storage::mvcc`'s format)
//! in `<term>-<index>.snap`, with its Raft metadata (last log id and membership) in
//! `<term>-<index>.snap.meta`. openraft builds one every `--snapshot-count` applied
//! entries and then purges the WAL up to it; it sends the newest one to a member too
//! far behind to catch up from the log. Only the newest snapshot is kept.
//!
//! Files are written under a temporary name, fsynced and renamed, so a crash leaves
//! either a whole snapshot (data and meta) or none.

use std::io;
use std::path::{Path, PathBuf};

use bramble_api::bramblepb as pb;
use bramble_storage::atomic_file;
use prost::Message;

use crate::log_codec;
use crate::peer_codec;
use crate::types::{LogId, StoredMembership};

/// A point-in-time copy of the state machine, stored in a file.
#[derive(Debug)]
pub struct SnapshotData {
    /// Where the snapshot's bytes are.
    pub path: PathBuf,
}

/// What a snapshot file covers.
#[derive(Debug, Clone)]
pub struct SnapshotFileMeta {
    /// The last log entry the snapshot includes.
    pub last_log_id: Option<LogId>,
    /// The membership the state machine had applied.
    pub membership: StoredMembership,
}

const DATA_SUFFIX: &str = ".snap";
const META_SUFFIX: &str = ".snap.meta";

/// The directory of snapshot files, and the operations on it.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Snapshots in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(SnapshotDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A fresh temporary path in the directory for a snapshot being written
    /// or received.
    pub fn temp_path(&self, what: &str) -> PathBuf {
        atomic_file::temp_path(&self.dir, what)
    }

    fn name(last: Option<&LogId>) -> String {
        match last {
            Some(id) => format!("{:016x}-{:016x}", log_codec::log_term(id), id.index),
            None => "none".to_string(),
        }
    }

    /// Moves the snapshot data at `data` into place as the current snapshot
    /// with `meta`, and removes older snapshots. Returns the data's new path.
    pub fn commit(&self, data: &Path, meta: &SnapshotFileMeta) -> io::Result<PathBuf> {
        let name = Self::name(meta.last_log_id.as_ref());
        let final_data = self.dir.join(format!("{name}{DATA_SUFFIX}"));
        // Data first: a meta file is only ever next to its whole data file.
        // Writing the meta fsyncs the directory, so both renames are durable.
        std::fs::rename(data, &final_data)?;
        atomic_file::write(
            &self.dir.join(format!("{name}{META_SUFFIX}")),
            &encode_meta(meta),
        )?;
        self.remove_all_but(&name);
        Ok(final_data)
    }

    /// The newest complete snapshot: its data file and metadata.
    pub fn current(&self) -> io::Result<Option<(PathBuf, SnapshotFileMeta)>> {
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(META_SUFFIX) {
                names.push(stem.to_string());
            }
        }
        // Names are fixed-width hex term-index: the greatest sorts last.
        names.sort();
        while let Some(name) = names.pop() {
            let data = self.dir.join(format!("{name}{DATA_SUFFIX}"));
            if !data.exists() {
                continue;
            }
            let bytes = std::fs::read(self.dir.join(format!("{name}{META_SUFFIX}")))?;
            return Ok(Some((data, decode_meta(&bytes)?)));
        }
        Ok(None)
    }

    /// Removes every snapshot but `keep`.
    fn remove_all_but(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(META_SUFFIX)
                .or_else(|| name.strip_suffix(DATA_SUFFIX));
            // Temporary files may belong to a snapshot being received right
            // now: only a start removes them (`remove_temporaries`).
            let stale = stem.is_some_and(|stem| stem != keep);
            if stale {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!("removing old snapshot file {name}: {e}");
                }
            }
        }
    }

    /// Removes leftover temporary files (of snapshots a crash interrupted).
    pub(crate) fn remove_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(atomic_file::TEMP_SUFFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn encode_meta(meta: &SnapshotFileMeta) -> Vec<u8> {
    let membership = pb::StoredMembership::decode(
        log_codec::encode_stored_membership(&meta.membership).as_slice(),
    )
    .ok();
    pb::SnapshotHeader {
        vote: None,
        last_log_id: peer_codec::opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership: membership,
        cluster_id: 0,
        size: 0,
    }
    .encode_to_vec()
}

fn decode_meta(bytes: &[u8]) -> io::Result<SnapshotFileMeta> {
    let h = pb::SnapshotHeader::decode(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot meta: {e}")))?;
    // Every meta file is written with its membership: one without is damaged,
    // and an empty membership in its place would leave this member without a
    // cluster.
    let membership = match &h.last_membership {
        Some(m) => log_codec::decode_stored_membership(&m.encode_to_vec())?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "snapshot meta without a membership",
            ))
        }
    };
    Ok(SnapshotFileMeta {
        last_log_id: h.last_log_id.as_ref().map(peer_codec::log_id_from_pb),
        membership,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemberAttributes;
    use std::collections::BTreeMap;

    fn meta(term: u64, index: u64) -> SnapshotFileMeta {
        let nodes: BTreeMap<u64, MemberAttributes> = [(
            7,
            MemberAttributes {
                name: "a".into(),
                peer_urls: vec!["http://a:2380".into()],
                client_urls: vec![],
            },
        )]
        .into();
        let m = openraft::Membership::new(vec![[7u64].into()], nodes).expect("membership");
        SnapshotFileMeta {
            last_log_id: Some(log_codec::log_id(term, index)),
            membership: openraft::StoredMembership::new(Some(log_codec::log_id(1, 0)), m),
        }
    }

    #[test]
    fn newest_snapshot_wins_and_old_ones_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::new(dir.path()).expect("dir");
        assert!(snaps.current().expect("read").is_none());
        for (term, index) in [(1, 5), (2, 300)] {
            let tmp = snaps.temp_path("data");
            std::fs::write(&tmp, format!("data {index}")).expect("write");
            snaps.commit(&tmp, &meta(term, index)).expect("commit");
        }
        let (path, m) = snaps.current().expect("read").expect("a snapshot");
        assert_eq!(std::fs::read_to_string(&path).expect("data"), "data 300");
        assert_eq!(m.last_log_id, Some(log_codec::log_id(2, 300)));
        assert_eq!(m.membership, meta(2, 300).membership);
        let files = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(files, 2, "one data file and its meta");
    }

    #[test]
    fn data_without_meta_is_not_a_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::new(dir.path()).expect("dir");
        std::fs::write(
            dir.path().join("0000000000000001-0000000000000009.snap"),
            "x",
        )
        .expect("write");
        assert!(snaps.current().expect("read").is_none());
        assert!(decode_meta(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn meta_without_membership_is_an_error() {
        let good = encode_meta(&meta(2, 300));
        assert!(decode_meta(&good).is_ok());
        let mut h = pb::SnapshotHeader::decode(good.as_slice()).expect("header");
        h.last_membership = None;
        assert!(decode_meta(&h.encode_to_vec()).is_err());
    }
}
