//! The member's identity: its member and cluster ids, derived or fetched at
//! the first start and kept in `<data-dir>/member/identity`, so a restart
//! keeps them whatever flags it is given (as etcd ignores `--initial-cluster*`
//! once a data dir exists).
//!
//! A member of a new cluster derives every id from `--initial-cluster` and
//! `--initial-cluster-token` exactly as etcd does, so all members agree
//! without talking. A member joining an existing cluster (after `member
//! add`) asks the listed peers for the member list and finds itself by its
//! peer URLs, as etcd's `GetClusterFromRemotePeers` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bramble_api::bramblepb::peer_client::PeerClient;
use bramble_api::bramblepb::MembersRequest;
use bramble_raft::{derived_ids, MemberAttributes, NodeConfig};
use bramble_server::Identity;
use bramble_storage::atomic_file;
use bramble_storage::wal::Wal;

use crate::error::Error;
use crate::node::{ClusterState, NodeOptions};

const FILE: &str = "identity";

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("{}: {e}", path.display()))
}

fn config_error(message: String) -> Error {
    Error::invalid_argument(message)
}

/// Reads `<data-dir>/member/identity`, or works the ids out (see the module
/// docs) and writes them durably.
///
/// The file I/O runs on blocking threads (the fsyncs of a first start take
/// tens of milliseconds on an SD card); the peers are asked on the runtime.
pub(crate) async fn load_or_create(opts: &NodeOptions) -> Result<Identity, Error> {
    let dir = opts.data_dir.join("member");
    let path = dir.join(FILE);
    let read_path = path.clone();
    let stored = blocking(&path, move || match std::fs::read_to_string(&read_path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await?;
    match stored {
        Some(text) => {
            let ids = parse(&text).ok_or_else(|| io_error(&path, "malformed identity file"))?;
            // etcd asks the peers whenever a new-cluster member has no WAL
            // (isMemberBootstrapped): one whose WAL and database were both lost
            // must not bootstrap again either, or it could vote twice in a term.
            // (With its database left, the raft layer refuses with a clearer error.)
            if opts.initial_cluster_state == ClusterState::New && lost_raft_state(opts).await? {
                refuse_if_bootstrapped(opts, ids.member_id).await?;
            }
            Ok(ids)
        }
        None => {
            let ids = match opts.initial_cluster_state {
                ClusterState::New => {
                    let ids = new_cluster_ids(opts)?;
                    refuse_if_bootstrapped(opts, ids.member_id).await?;
                    ids
                }
                ClusterState::Existing => fetch_from_peers(opts).await?,
            };
            let data_dir = opts.data_dir.clone();
            blocking(&path, move || write(&data_dir, ids)).await?;
            Ok(ids)
        }
    }
}

/// Writes `<data_dir>/member/identity` durably (creating `member/`). Blocking: a first
/// start runs it on a blocking thread, `bramble snapshot restore` directly.
pub(crate) fn write(data_dir: &Path, ids: Identity) -> std::io::Result<()> {
    let dir = data_dir.join("member");
    std::fs::create_dir_all(&dir)?;
    let text = format!("{:x} {:x}\n", ids.member_id, ids.cluster_id);
    // A crash leaves either no identity or the whole one.
    atomic_file::write(&dir.join(FILE), text.as_bytes())
}

/// Runs file I/O about `path` on a blocking thread; its error names `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    io: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(io)
        .await
        .map_err(|e| io_error(path, e))?
        .map_err(|e| io_error(path, e))
}

/// Whether the data dir has neither a WAL nor a state machine database, as a
/// fresh one (or one that lost both).
async fn lost_raft_state(opts: &NodeOptions) -> Result<bool, Error> {
    let layout = NodeConfig::new(&opts.data_dir, 0, MemberAttributes::default());
    let wal_dir = layout.wal_dir();
    let db_path = layout.db_path();
    let dir = wal_dir.clone();
    blocking(&wal_dir, move || {
        Ok(!Wal::exists(&dir)? && !db_path.exists())
    })
    .await
}

/// This member's and the cluster's ids in a new cluster, derived from the
/// flags alone.
pub(crate) fn new_cluster_ids(opts: &NodeOptions) -> Result<Identity, Error> {
    let members = initial_members(opts)?;
    let all: Vec<u64> = members.keys().copied().collect();
    Ok(Identity {
        member_id: own_id(opts, &members)?,
        cluster_id: derived_ids::cluster_id(&all),
    })
}

/// The members of a new cluster, by the ids etcd would give them. Every
/// member bootstraps Raft with this same membership (openraft requires the
/// initial entry to be identical everywhere), so it holds only what all of
/// them know: names and peer URLs. Client URLs are published after start.
pub(crate) fn initial_members(
    opts: &NodeOptions,
) -> Result<BTreeMap<u64, MemberAttributes>, Error> {
    let mut members = BTreeMap::new();
    for (name, urls) in opts.initial_members() {
        let id = derived_ids::member_id(&urls, &opts.cluster_token);
        let member = MemberAttributes {
            name: name.clone(),
            peer_urls: urls,
            client_urls: Vec::new(),
        };
        if members.insert(id, member).is_some() {
            return Err(config_error(format!(
                "--initial-cluster: member {name:?} has the same peer URLs as another member"
            )));
        }
    }
    own_id(opts, &members)?;
    Ok(members)
}

/// This member's id among the initial members; its advertised peer URLs must
/// be the ones `--initial-cluster` gives its name (etcd checks the same).
fn own_id(opts: &NodeOptions, members: &BTreeMap<u64, MemberAttributes>) -> Result<u64, Error> {
    let (id, me) = members
        .iter()
        .find(|(_, m)| m.name == opts.name)
        .ok_or_else(|| {
            config_error(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                opts.name
            ))
        })?;
    let mut listed = me.peer_urls.clone();
    let mut advertised = opts.peer_urls.clone();
    listed.sort();
    advertised.sort();
    if listed != advertised {
        return Err(config_error(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\" does not match \"{}\")",
            opts.name,
            me.peer_urls.join(","),
            opts.peer_urls.join(","),
            listed.join(","),
            advertised.join(",")
        )));
    }
    Ok(*id)
}

/// A member whose data dir was lost must not bootstrap again as if new: it
/// would forget its votes and log. Like etcd's `isMemberBootstrapped`: if a
/// reachable peer lists this member with client URLs (it has run and
/// published them), refuse to start.
async fn refuse_if_bootstrapped(opts: &NodeOptions, member_id: u64) -> Result<(), Error> {
    for (name, urls) in opts.initial_members() {
        if name == opts.name {
            continue;
        }
        for url in urls {
            let Ok(reply) = members_of(opts, &url).await else {
                continue;
            };
            let membership = reply.membership.unwrap_or_default();
            let bootstrapped = membership
                .members
                .iter()
                .any(|m| m.id == member_id && !m.client_urls.is_empty());
            if bootstrapped {
                return Err(config_error(format!(
                    "member {member_id:x} has already been bootstrapped"
                )));
            }
            // One answer is the cluster's view (etcd asks until one answers).
            return Ok(());
        }
    }
    Ok(())
}

/// Asks the other listed members for the member list and finds this member
/// in it by its peer URLs.
async fn fetch_from_peers(opts: &NodeOptions) -> Result<Identity, Error> {
    let mut wanted = opts.peer_urls.clone();
    wanted.sort();
    let mut last_error = String::from("no other member listed in --initial-cluster");
    for (name, urls) in opts.initial_members() {
        if name == opts.name {
            continue;
        }
        for url in urls {
            match members_of(opts, &url).await {
                Ok(reply) => {
                    let membership = reply.membership.unwrap_or_default();
                    let me = membership.members.iter().find(|m| {
                        let mut urls = m.peer_urls.clone();
                        urls.sort();
                        urls == wanted
                    });
                    return match me {
                        Some(m) => Ok(Identity {
                            member_id: m.id,
                            cluster_id: reply.cluster_id,
                        }),
                        None => Err(config_error(format!(
                            "member with peer URLs {} has not been added to the cluster (etcdctl member add)",
                            opts.peer_urls.join(",")
                        ))),
                    };
                }
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
    }
    Err(Error::unavailable(format!(
        "cannot fetch cluster info from peer urls: {last_error}"
    )))
}

async fn members_of(
    opts: &NodeOptions,
    url: &str,
) -> Result<bramble_api::bramblepb::MembersReply, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let channel = endpoint
        .connect_with_connector(opts.peer_connector())
        .await
        .map_err(|e| e.to_string())?;
    PeerClient::new(channel)
        .members(MembersRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.message().to_string())
}

fn parse(text: &str) -> Option<Identity> {
    let mut parts = text.split_whitespace();
    let member_id = u64::from_str_radix(parts.next()?, 16).ok()?;
    let cluster_id = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some(Identity {
        member_id,
        cluster_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identity_survives_different_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = NodeOptions::new(dir.path());
        let first = load_or_create(&opts).await.expect("create");
        assert_eq!(format!("{:x}", first.member_id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", first.cluster_id), "cdf818194e3a8c32");
        opts.peer_urls = vec!["http://10.0.0.1:2380".into()];
        assert_eq!(load_or_create(&opts).await.expect("load"), first);
    }

    /// The ids etcd 3.4 printed for `--initial-cluster
    /// n0=http://127.0.0.1:12380,n1=http://127.0.0.1:22380,n2=http://127.0.0.1:32380
    /// --initial-cluster-token tok` (its log: `added member ...`, `cluster f7d1d29ba4cd2368`).
    #[test]
    fn three_members_agree_on_ids() {
        let cluster: Vec<(String, Vec<String>)> = (0..3)
            .map(|i| {
                (
                    format!("n{i}"),
                    vec![format!("http://127.0.0.1:{}2380", i + 1)],
                )
            })
            .collect();
        let mut seen = Vec::new();
        for (name, urls) in &cluster {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut opts = NodeOptions::new(dir.path());
            opts.name = name.clone();
            opts.peer_urls = urls.clone();
            opts.cluster_token = "tok".into();
            opts.initial_cluster = cluster.clone();
            // Ids only: the start-up check would ask these (maybe live) peers.
            seen.push(new_cluster_ids(&opts).expect("ids"));
            assert_eq!(initial_members(&opts).expect("members").len(), 3);
        }
        let hex: Vec<String> = seen
            .iter()
            .map(|i| format!("{:x} {:x}", i.member_id, i.cluster_id))
            .collect();
        assert_eq!(
            hex,
            [
                "d622127685879b3c f7d1d29ba4cd2368",
                "117b9266988c4966 f7d1d29ba4cd2368",
                "ca7a34e16cff9c1b f7d1d29ba4cd2368"
            ]
        );
    }

    #[test]
    fn a_member_must_advertise_its_listed_urls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = NodeOptions::new(dir.path());
        opts.initial_cluster = vec![
            ("default".into(), vec!["http://a:2380".into()]),
            ("other".into(), vec!["http://b:2380".into()]),
        ];
        let err = initial_members(&opts).expect_err("url mismatch");
        assert!(err
            .message()
            .contains("missing from --initial-advertise-peer-urls"));
        opts.name = "nobody".into();
        let err = initial_members(&opts).expect_err("name missing");
        assert!(err.message().contains("couldn't find local name"));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse("zz"), None);
        assert_eq!(
            parse("1 2"),
            Some(Identity {
                member_id: 1,
                cluster_id: 2
            })
        );
    }
}
