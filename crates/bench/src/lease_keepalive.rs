//! The `lease-keepalive` workload: many leases kept alive over LeaseKeepAlive
//! streams, the keep-alive round trip timed.
//!
//! etcd's `benchmark lease-keepalive` grants one lease per client and renews
//! it with `KeepAliveOnce`, a new stream per request. Real clients (and
//! kube-apiserver's event leases) keep one stream open and renew many leases
//! over it, so here `--leases` leases are granted before the run, every
//! client opens one LeaseKeepAlive stream on its connection, and request `i`
//! renews lease `i % --leases` on it: send the request, wait for its answer.
//!
//! After the run each lease's TimeToLive must still be positive (a keep-alive
//! the server answered but did not apply would show here), and after the
//! servers' counters are read every lease is revoked, so the run leaves
//! nothing behind; a lease not alive or not revoked is a failed check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::lease_client::LeaseClient;
use bramble_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::conn::Token;
use crate::report::LatencyMs;
use crate::run::{self, OpFuture, Outcome, Plan};
use crate::section::{latency, latency_line, Section};

/// `lease-keepalive` flags.
#[derive(clap::Args, Debug, serde::Serialize)]
pub(crate) struct LeaseKeepaliveArgs {
    /// Leases to grant before the run; keep-alive i renews lease i % --leases.
    #[arg(long, default_value_t = 100)]
    pub(crate) leases: u64,
    /// Each lease's TTL in seconds (longer than the run, or an idle lease expires).
    #[arg(long, default_value_t = 60)]
    pub(crate) ttl: i64,
}

/// A Lease stub whose requests carry the run's token.
type Lease = LeaseClient<InterceptedService<Channel, Token>>;

/// A client's own keep-alive stream: requests go in, answers come back in order.
struct Stream {
    /// The request side.
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    /// The answer side.
    responses: Streaming<LeaseKeepAliveResponse>,
}

/// A client of the timed run: its stream and the leases to renew.
#[derive(Clone)]
pub(crate) struct KeepAliveClient {
    /// Locked for each request; only this client's task ever uses it, one
    /// request at a time, so the lock is never contended.
    stream: Arc<tokio::sync::Mutex<Stream>>,
    /// Every granted lease.
    ids: Arc<Vec<i64>>,
}

/// The granted leases, the clients that renew them, and what was measured
/// outside the timed run.
pub(crate) struct Leases {
    /// Lease IDs, in grant order.
    ids: Arc<Vec<i64>>,
    /// Plain Lease stubs, one per client, for grants, checks and revokes.
    stubs: Vec<Lease>,
    /// The keep-alive clients (dropped before the revokes).
    clients: Vec<KeepAliveClient>,
    /// TTL granted.
    ttl: i64,
    /// Grant latencies, nanoseconds.
    grants: Vec<u64>,
    /// After the run: leases still alive, TimeToLive latencies, and failures.
    alive: Option<(u64, Vec<u64>, Vec<String>)>,
    /// How long each setup and check phase may take.
    timeout: Duration,
}

/// A plan for one phase outside the timed run (grants, checks, revokes):
/// one request per lease, bounded by `timeout`.
fn phase(total: u64, timeout: Duration) -> Plan {
    Plan {
        total,
        duration: None,
        rate: 0,
        deadline: Instant::now() + timeout,
        quiet: true,
        interval: timeout,
        progress: false,
    }
}

/// Fails with the phase's first error, if it had any.
fn check_phase(what: &str, outcome: &Outcome) -> Result<()> {
    if outcome.errors.count > 0 || outcome.timed_out {
        bail!(
            "{what}: {} failed{}: {}",
            outcome.errors.count,
            if outcome.timed_out { ", timed out" } else { "" },
            outcome.errors.samples.join("; ")
        );
    }
    Ok(())
}

/// Grants `a.leases` leases over `clients` stubs and opens one keep-alive
/// stream per client (before the timed run, so neither is measured in it).
pub(crate) async fn grant(
    channels: &[Channel],
    token: &Token,
    clients: usize,
    a: &LeaseKeepaliveArgs,
    timeout: Duration,
) -> Result<Leases> {
    if a.leases == 0 {
        bail!("--leases must be at least 1");
    }
    if a.ttl <= 0 {
        bail!("--ttl must be at least 1 second");
    }
    let stubs: Vec<Lease> = (0..clients)
        .map(|i| LeaseClient::with_interceptor(channels[i % channels.len()].clone(), token.clone()))
        .collect();
    let granted = Arc::new(Mutex::new(Vec::new()));
    let (ttl, ids) = (a.ttl, granted.clone());
    let outcome = run::drive(
        stubs.clone(),
        phase(a.leases, timeout),
        move |mut l: Lease, _| {
            let ids = ids.clone();
            Box::pin(async move {
                let reply = l
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await?
                    .into_inner();
                if reply.id == 0 || !reply.error.is_empty() {
                    return Err(Status::internal(format!(
                        "bramble-bench: LeaseGrant failed: {}",
                        reply.error
                    )));
                }
                ids.lock().unwrap_or_else(|p| p.into_inner()).push(reply.id);
                Ok(())
            }) as OpFuture
        },
    )
    .await;
    check_phase("granting leases", &outcome)?;
    let ids = Arc::new(std::mem::take(
        &mut *granted.lock().unwrap_or_else(|p| p.into_inner()),
    ));

    let mut keepalive_clients = Vec::with_capacity(clients);
    for (c, stub) in stubs.iter().enumerate() {
        let (tx, rx) = mpsc::channel(1);
        // Queue one renewal before the call: a server may send the response
        // headers, which the call waits for, only with its first answer.
        let first = ids[c % ids.len()];
        tx.send(LeaseKeepAliveRequest { id: first })
            .await
            .context("queueing the first keep-alive")?;
        let mut responses = tokio::time::timeout(
            timeout,
            stub.clone().lease_keep_alive(ReceiverStream::new(rx)),
        )
        .await
        .context("opening a keep-alive stream: timed out")?
        .context("opening a keep-alive stream")?
        .into_inner();
        let reply = tokio::time::timeout(timeout, responses.message())
            .await
            .context("the first keep-alive: timed out")?
            .context("the first keep-alive")?;
        if !reply.is_some_and(|r| r.id == first && r.ttl > 0) {
            bail!("the first keep-alive of lease {first:x} was not answered with its TTL");
        }
        keepalive_clients.push(KeepAliveClient {
            stream: Arc::new(tokio::sync::Mutex::new(Stream {
                requests: tx,
                responses,
            })),
            ids: ids.clone(),
        });
    }
    Ok(Leases {
        ids,
        stubs,
        clients: keepalive_clients,
        ttl,
        grants: outcome.latencies,
        alive: None,
        timeout,
    })
}

impl Leases {
    /// The clients of the timed run.
    pub(crate) fn clients(&self) -> Vec<KeepAliveClient> {
        self.clients.clone()
    }

    /// After the run: asks each lease's TimeToLive; a lease that is not
    /// alive fails the run.
    pub(crate) async fn check_alive(&mut self) {
        let alive = Arc::new(Mutex::new((0u64, Vec::new())));
        let (ids, found) = (self.ids.clone(), alive.clone());
        let total = self.ids.len() as u64;
        let outcome = run::drive(
            self.stubs.clone(),
            phase(total, self.timeout),
            move |mut l: Lease, i| {
                let (id, found) = (ids[i as usize], found.clone());
                Box::pin(async move {
                    let reply = l
                        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
                        .await?
                        .into_inner();
                    let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
                    if reply.ttl > 0 {
                        f.0 += 1;
                    } else {
                        f.1.push(format!("lease {id:x} is not alive (TTL {})", reply.ttl));
                    }
                    Ok(())
                }) as OpFuture
            },
        )
        .await;
        let (count, mut failures) =
            std::mem::take(&mut *alive.lock().unwrap_or_else(|p| p.into_inner()));
        failures.truncate(5);
        if let Err(e) = check_phase("LeaseTimeToLive", &outcome) {
            failures.push(format!("{e:#}"));
        }
        self.alive = Some((count, outcome.latencies, failures));
    }

    /// Revokes every lease (after the servers' counters are read) and builds
    /// the report's `leases` section.
    pub(crate) async fn finish(mut self) -> Section {
        // Close the keep-alive streams first: a revoke is the end of the lease.
        self.clients.clear();
        let ids = self.ids.clone();
        let total = ids.len() as u64;
        let outcome = run::drive(
            self.stubs.clone(),
            phase(total, self.timeout),
            move |mut l: Lease, i| {
                let id = ids[i as usize];
                Box::pin(async move { l.lease_revoke(LeaseRevokeRequest { id }).await.map(|_| ()) })
                    as OpFuture
            },
        )
        .await;
        let (alive, ttl_latencies, mut failures) = self.alive.take().unwrap_or_default();
        if let Err(e) = check_phase("LeaseRevoke", &outcome) {
            failures.push(format!("{e:#}"));
        }
        let body = LeasesSection {
            leases: total,
            ttl: self.ttl,
            alive_after_run: alive,
            revoked: outcome.ok(),
            grant_latency_ms: latency(self.grants),
            time_to_live_latency_ms: latency(ttl_latencies),
            revoke_latency_ms: latency(outcome.latencies),
        };
        let mut s = Section::new("leases", &body);
        s.text.push(format!(
            "  leases      {} granted (TTL {} s), {} alive after the run, {} revoked",
            body.leases, body.ttl, body.alive_after_run, body.revoked
        ));
        s.text
            .push(latency_line("grant ms", body.grant_latency_ms.as_ref()));
        s.text.push(latency_line(
            "ttl ms",
            body.time_to_live_latency_ms.as_ref(),
        ));
        s.text
            .push(latency_line("revoke ms", body.revoke_latency_ms.as_ref()));
        if body.alive_after_run < total {
            s.failed_checks.push(format!(
                "{} of {total} leases were not alive after the run",
                total - body.alive_after_run
            ));
        }
        if body.revoked < total {
            s.failed_checks.push(format!(
                "{} of {total} leases could not be revoked",
                total - body.revoked
            ));
        }
        s.failed_checks.extend(failures);
        s
    }
}

/// The report's `leases` section.
#[derive(Debug, Serialize)]
struct LeasesSection {
    /// Leases granted before the run.
    leases: u64,
    /// Their TTL, seconds.
    ttl: i64,
    /// Of those, alive (positive TimeToLive) after the run.
    alive_after_run: u64,
    /// Of those, revoked at the end.
    revoked: u64,
    /// LeaseGrant latency.
    grant_latency_ms: Option<LatencyMs>,
    /// LeaseTimeToLive latency.
    time_to_live_latency_ms: Option<LatencyMs>,
    /// LeaseRevoke latency.
    revoke_latency_ms: Option<LatencyMs>,
}

/// The request for keep-alive number `i`: renew lease `i % leases` on the
/// client's stream and wait for its answer.
pub(crate) fn op() -> impl Fn(KeepAliveClient, u64) -> OpFuture + Send + Sync {
    |c: KeepAliveClient, i: u64| -> OpFuture {
        Box::pin(async move {
            // ids is never empty (grant refuses --leases 0), and i % len < len.
            let id = c.ids[(i % c.ids.len() as u64) as usize];
            let mut stream = c.stream.lock().await;
            stream
                .requests
                .send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Status::unavailable("bramble-bench: the keep-alive stream closed"))?;
            let Some(reply) = stream.responses.message().await? else {
                return Err(Status::unavailable(
                    "bramble-bench: the server ended the keep-alive stream",
                ));
            };
            if reply.id != id {
                return Err(Status::internal(format!(
                    "bramble-bench: keep-alive of lease {id:x} answered for lease {:x}",
                    reply.id
                )));
            }
            if reply.ttl <= 0 {
                return Err(Status::not_found(format!(
                    "bramble-bench: lease {id:x} expired or not found"
                )));
            }
            Ok(())
        })
    }
}
