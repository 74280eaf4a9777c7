//! Running `bramble` as a server: flags to [`NodeOptions`], client listeners,
//! and a clean stop on SIGTERM/SIGINT. A fatal failure of the member (its
//! disk or Raft core, see [`bramble_raft::fatal`]) ends [`run`] at once with
//! that [`FatalError`]; `main` turns it into a non-zero exit.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bramble_raft::FatalError;
use bramble_server::{Keepalive, Limits};
use tokio_util::sync::CancellationToken;

use crate::backups::BackupConfig;
use crate::client_listeners;
use crate::config::{
    auto_compaction, is_https, listen_addrs, parse_initial_cluster, split_urls, Flags,
};
use crate::node::{ClusterState, ListenAddr, Node, NodeOptions};

/// The shortest `--backup-interval`: a full copy of the store more often than this
/// would mostly wear the SD card.
const MIN_BACKUP_INTERVAL: Duration = Duration::from_secs(1);

/// Turns the flags into node options, checking what this version supports.
pub(crate) fn node_options(flags: &Flags) -> anyhow::Result<NodeOptions> {
    let data_dir = flags
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.bramble", flags.name)));
    let peer_urls = split_urls(&flags.initial_advertise_peer_urls);
    let initial_cluster = match &flags.initial_cluster {
        Some(spec) => parse_initial_cluster(spec).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    // Every request the server accepts must be storable as one log entry.
    bramble_raft::network::check_max_request_bytes(flags.max_request_bytes)
        .map_err(|e| anyhow::anyhow!("--max-request-bytes: {e}"))?;
    let initial_cluster_state = match flags.initial_cluster_state.as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => bail!("--initial-cluster-state must be 'new' or 'existing', not {other:?}"),
    };
    if flags.force_new_cluster && initial_cluster_state == ClusterState::Existing {
        bail!(
            "--force-new-cluster cannot be used with --initial-cluster-state existing: it \
             makes this member a cluster of its own, it does not join one"
        );
    }
    // etcd ignores a zero interval (tokio's timers would spin on it).
    let progress_interval = match flags.watch_progress_notify_interval {
        d if d.is_zero() => crate::defaults::WATCH_PROGRESS_NOTIFY_INTERVAL,
        d => d,
    };
    // etcd takes 0 for either compaction setting as "the default".
    let compaction_batch_limit = match flags.compaction_batch_limit {
        0 => crate::defaults::COMPACTION_BATCH_LIMIT,
        n => n,
    };
    let compaction_sleep_interval = match flags.compaction_sleep_interval {
        d if d.is_zero() => crate::defaults::COMPACTION_SLEEP_INTERVAL,
        d => d,
    };
    let (corruption_checks, warnings) =
        crate::config::corruption_checks(flags).map_err(anyhow::Error::msg)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(NodeOptions {
        name: flags.name.clone(),
        data_dir: data_dir.clone(),
        peer_urls,
        client_urls: split_urls(&flags.advertise_client_urls),
        cluster_token: flags.initial_cluster_token.clone(),
        limits: Limits {
            max_request_bytes: flags.max_request_bytes,
            max_txn_ops: flags.max_txn_ops,
            watch_progress_notify_interval: progress_interval,
            quota_backend_bytes: flags.quota_backend_bytes,
        },
        heartbeat_interval_ms: flags.heartbeat_interval,
        election_timeout_ms: flags.election_timeout,
        snapshot_count: flags.snapshot_count,
        snapshot_catchup_entries: flags.snapshot_catchup_entries,
        compaction_batch_limit,
        compaction_sleep_interval,
        initial_cluster,
        initial_cluster_state,
        peer_tls: crate::tls::peer_tls(flags, &data_dir)?,
        listen_peer_addrs: bind_addrs(&flags.listen_peer_urls)?,
        corruption_checks,
        force_new_cluster: flags.force_new_cluster,
        auth: crate::config::auth_options(flags).map_err(anyhow::Error::msg)?,
        // `run` binds and serves the client and metrics ports itself: its
        // stop drains them together, before closing the node.
        listen_client_addrs: Vec::new(),
        client_tls: None,
        client_keepalive: keepalive(flags),
    })
}

/// Picks the address to bind for each listen URL, and whether it is TLS. Like
/// Go's net.Listen, a name is bound at its first IPv4 address if it has one.
fn bind_addrs(urls: &str) -> anyhow::Result<Vec<ListenAddr>> {
    let mut out = Vec::new();
    for url in split_urls(urls) {
        let addrs = listen_addrs(&url).map_err(anyhow::Error::msg)?;
        let tls = is_https(&url).map_err(anyhow::Error::msg)?;
        let pick = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied();
        if let Some(addr) = pick {
            out.push(ListenAddr { addr, tls });
        }
    }
    Ok(out)
}

/// Runs the server until SIGTERM or SIGINT. Fails with a [`FatalError`]
/// (downcast the `anyhow::Error`) if the member failed for good, at once
/// when it happens or from the final checkpoint of a stop.
pub async fn run(flags: Flags) -> anyhow::Result<()> {
    let opts = node_options(&flags)?;
    let backups = backup_config(&flags)?;
    let auto_compaction = auto_compaction(
        &flags.auto_compaction_mode,
        &flags.auto_compaction_retention,
    )
    .map_err(anyhow::Error::msg)?;
    let addrs = bind_addrs(&flags.listen_client_urls)?;
    if addrs.is_empty() {
        bail!("--listen-client-urls is empty");
    }
    let metrics_addrs = match &flags.listen_metrics_urls {
        Some(urls) => bind_addrs(urls)?,
        None => Vec::new(),
    };
    let client_tls = crate::tls::client_tls(&flags, &opts.data_dir)?;
    // Bind first: a port in use should fail before any data is touched.
    let listeners = client_listeners::bind(&addrs, &client_tls, "clients").await?;
    let metrics_listeners = client_listeners::bind(&metrics_addrs, &client_tls, "metrics").await?;
    tracing::info!(data_dir = %opts.data_dir.display(), name = %opts.name, "starting bramble");
    let node = Node::open(opts).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let ident = node.context().identity;
    tracing::info!(
        member_id = %format!("{:x}", ident.member_id),
        cluster_id = %format!("{:x}", ident.cluster_id),
        "ready to serve client requests on {}",
        addrs.iter().map(describe).collect::<Vec<_>>().join(",")
    );

    let stop = CancellationToken::new();
    // Leaving early (an error) stops the servers too.
    let _stop_on_return = stop.clone().drop_guard();
    let mut servers = Vec::new();
    for l in listeners {
        servers.push(client_listeners::serve_when_published(
            node.context().clone(),
            keepalive(&flags),
            l,
            node.published(),
            stop.clone(),
        ));
    }

    {
        // etcd notifies systemd once it serves clients: so does Bramble, once published.
        let mut published = node.published();
        let stop = stop.clone();
        servers.push(tokio::spawn(async move {
            tokio::select! {
                _ = published.wait_for(|p| *p) => crate::systemd::notify_ready(),
                _ = stop.cancelled() => {}
            }
            Ok(())
        }));
    }

    if let Some(policy) = auto_compaction {
        tracing::info!(?policy, "automatic compaction (by the leader)");
        let ctx = node.context().clone();
        let stop = stop.clone();
        servers.push(tokio::spawn(async move {
            bramble_server::auto_compaction::run(ctx, policy, stop).await;
            Ok(())
        }));
    }
    if let Some(config) = backups {
        tracing::info!(
            dir = %config.dir.display(),
            interval = ?config.interval,
            retention = config.retention,
            "scheduled backups"
        );
        let store = node.context().node.store().clone();
        let stats = crate::backups::BackupStats::registered(&node.context().metrics);
        let stop = stop.clone();
        servers.push(tokio::spawn(async move {
            crate::backups::run(store, config, stats, stop).await;
            Ok(())
        }));
    }

    for (l, tls) in metrics_listeners {
        let stopped = stop.clone().cancelled_owned();
        let ctx = node.context().clone();
        servers.push(tokio::spawn(async move {
            bramble_server::http::serve(ctx, l, tls, stopped).await;
            Ok(())
        }));
    }
    if !metrics_addrs.is_empty() {
        tracing::info!(
            "serving /health, /livez, /readyz and /metrics on {}",
            metrics_addrs
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(",")
        );
    }

    // etcd stops a member the cluster removed, as if it had been signalled.
    tokio::select! {
        r = wait_for_signal() => {
            r?;
            tracing::info!("received stop signal, shutting down");
        }
        _ = node.removed() => tracing::warn!("removed from the cluster, shutting down"),
        // No drain, no final checkpoint: the state on disk is in doubt and
        // the member must stop serving now (etcd panics).
        e = node.fatal() => return Err(e.into()),
    }
    stop.cancel();
    client_listeners::drain(servers).await;
    node.close().await;
    if let Some(e) = node.fatal_error() {
        return Err(e.into());
    }
    tracing::info!("stopped");
    Ok(())
}

/// The backup schedule, if `--backup-dir` is set; refuses a schedule that would
/// never keep a backup or would spin.
fn backup_config(flags: &Flags) -> anyhow::Result<Option<BackupConfig>> {
    let Some(dir) = &flags.backup_dir else {
        return Ok(None);
    };
    if flags.backup_interval < MIN_BACKUP_INTERVAL {
        bail!("--backup-interval must be at least {MIN_BACKUP_INTERVAL:?}");
    }
    if flags.backup_retention == 0 {
        bail!("--backup-retention must be at least 1");
    }
    Ok(Some(BackupConfig {
        dir: dir.clone(),
        interval: flags.backup_interval,
        retention: flags.backup_retention,
    }))
}

/// etcd's `--grpc-keepalive-*` flags.
fn keepalive(flags: &Flags) -> Keepalive {
    Keepalive {
        min_time: flags.grpc_keepalive_min_time,
        interval: flags.grpc_keepalive_interval,
        timeout: flags.grpc_keepalive_timeout,
    }
}

/// Whether `run` ended on the member's fatal failure.
pub fn fatal_cause(e: &anyhow::Error) -> Option<&FatalError> {
    e.downcast_ref::<FatalError>()
}

/// `https://addr` or `http://addr`, for the log.
fn describe(a: &ListenAddr) -> String {
    let scheme = if a.tls { "https" } else { "http" };
    format!("{scheme}://{}", a.addr)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(max_request_bytes: &str) -> Flags {
        Flags::try_parse_from([
            "bramble",
            &format!("--max-request-bytes={max_request_bytes}"),
        ])
        .expect("parses")
    }

    #[test]
    fn a_max_request_bytes_the_log_cannot_store_is_refused_at_start() {
        let opts = node_options(&flags("33554432")).expect("etcd allows 32 MiB; so do we");
        assert_eq!(opts.limits.max_request_bytes, 33_554_432);
        let err = node_options(&flags("2147483648"))
            .expect_err("2 GiB does not fit in a log entry")
            .to_string();
        assert!(
            err.starts_with("--max-request-bytes: 2147483648 is above"),
            "{err}"
        );
    }
}
