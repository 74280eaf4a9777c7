//! One benchmark run: the workload built from the command line (bad flags fail
//! before any connection), the connections, the counters read before and after,
//! the load through [`crate::run::drive`] or the workload's own driver, and the
//! report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use crate::cli::{Cli, Workload};
use crate::report::{self, EndpointReport, ProcessReport, Report};
use crate::{
    conn, html, k8s, lease_keepalive, mix, mixed, procfs, progress, put, range, run,
    server_metrics, txn_cas, txn_mixed, txn_put, watch, watch_latency,
};

/// Runs the benchmark `cli` describes; returns the report and whether it is
/// wanted as JSON.
pub(crate) async fn bench(cli: Cli) -> Result<(Report, bool)> {
    let c = cli.common;
    if c.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if c.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let conns = c.conns.min(c.clients);
    if conns < c.endpoints.len() && !c.json {
        eprintln!(
            "bramble-bench: {conns} connection(s) for {} endpoints: only the first {conns} endpoint(s) get load",
            c.endpoints.len()
        );
    }
    let mut pids = c.pid.clone();
    pids.extend(&c.pids);
    pids.sort_unstable();
    pids.dedup();
    let dial_timeout = Duration::from_secs(c.dial_timeout);

    // Build the workload first: bad flags should fail before any connection.
    let (name, params, op): (&'static str, serde_json::Value, Op) = match cli.workload {
        Workload::Put(a) => {
            let shape = mix::put_shape(&a)?;
            let params = serde_json::json!({
                "key_size": a.key_size, "val_size": a.val_size,
                "key_space": a.key_space, "seq_keys": a.seq_keys, "seed": a.seed,
            });
            ("put", params, Op::Put(shape))
        }
        Workload::Range(a) => {
            let mut shape =
                range::RangeShape::new(&a.key, a.end.as_deref(), a.prefix, a.limit, a.consistency)?;
            shape.count_only = a.count_only;
            shape.keys_only = a.keys_only;
            let params = serde_json::json!({
                "key": a.key, "end": a.end, "prefix": a.prefix,
                "limit": a.limit, "consistency": a.consistency,
                "count_only": a.count_only, "keys_only": a.keys_only,
            });
            ("range", params, Op::Range(shape))
        }
        Workload::TxnPut(a) => {
            let shape = txn_put::TxnPutShape {
                keys: put::PutShape {
                    key_size: a.keys.key_size,
                    val_size: a.keys.val_size,
                    key_space: a.keys.key_space,
                    seq_keys: a.keys.seq_keys,
                    seed: a.keys.seed,
                },
                ops: a.txn_ops,
            };
            shape.validate()?;
            let params = serde_json::json!({
                "key_size": a.keys.key_size, "val_size": a.keys.val_size,
                "key_space": a.keys.key_space, "seq_keys": a.keys.seq_keys,
                "seed": a.keys.seed, "txn_ops": a.txn_ops,
            });
            ("txn-put", params, Op::TxnPut(shape))
        }
        Workload::TxnCas(a) => {
            let shape = txn_cas::CasShape {
                prefix: a.prefix.clone(),
                value: put::random_value(a.val_size, a.seed),
            };
            shape.validate()?;
            let params = serde_json::json!({
                "prefix": a.prefix, "val_size": a.val_size, "seed": a.seed,
            });
            ("txn-cas", params, Op::TxnCas(shape))
        }
        Workload::TxnMixed(a) => {
            let shape = txn_mixed::TxnMixedShape::from_args(&a)?;
            ("txn-mixed", params(&a)?, Op::TxnMixed(shape))
        }
        Workload::Mixed(a) => {
            let shape = mixed::MixedShape::from_args(&a)?;
            ("mixed", params(&a)?, Op::Mixed(shape))
        }
        Workload::Watch(a) => {
            let shape = watch::WatchShape::from_args(&a)?;
            ("watch", params(&a)?, Op::Watch(shape))
        }
        Workload::WatchLatency(a) => {
            let shape = watch_latency::shape(&a)?;
            ("watch-latency", params(&a)?, Op::Watch(shape))
        }
        Workload::LeaseKeepalive(a) => ("lease-keepalive", params(&a)?, Op::LeaseKeepalive(a)),
        Workload::Report(_) => bail!("`report` reads results; it runs no workload"),
        Workload::K8s(a) => ("k8s", a.params(c.duration), Op::K8s(a.shape(c.duration)?)),
    };
    if !(c.interval > 0.0 && c.interval.is_finite()) {
        bail!("--interval must be a positive number of seconds");
    }
    if c.duration == Some(0) {
        bail!("--duration must be at least 1 second");
    }
    // Create the page's file now, so a bad path fails before the load does.
    let html_file = match &c.html_report {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("--report {}", path.display()))?,
        ),
        None => None,
    };

    let tls = conn::tls(c.cacert.clone(), c.cert.clone().zip(c.cert_key.clone()))?;
    let channels = conn::dial(&c.endpoints, conns, dial_timeout, tls.clone()).await?;
    let token = conn::authenticate(channels[0].clone(), c.user.as_deref(), dial_timeout).await?;
    let clients = conn::kv_clients(&channels, c.clients, &token);
    // txn-cas creates its keys now, before the Status calls and the process
    // counters, so neither the reported revisions nor the bytes written
    // include that setup.
    let cas_clients = match &op {
        Op::TxnCas(shape) => txn_cas::create_keys(&clients, shape, dial_timeout).await?,
        _ => Vec::new(),
    };
    // Likewise the watchers are created and the leases granted (with their
    // keep-alive streams opened) before the run and its counters.
    let mut watchers = match &op {
        Op::Watch(shape) => Some(watch::open(&channels, &token, shape, dial_timeout).await?),
        _ => None,
    };
    let mut leases = match &op {
        Op::LeaseKeepalive(a) => {
            let timeout = Duration::from_secs(c.timeout);
            Some(lease_keepalive::grant(&channels, &token, c.clients, a, timeout).await?)
        }
        _ => None,
    };
    // Channel i goes to endpoint i % n, so the first min(n, conns) channels
    // cover each used endpoint once.
    let used = c.endpoints.len().min(channels.len());
    let mut before = Vec::with_capacity(used);
    for (ep, ch) in c.endpoints.iter().zip(&channels).take(used) {
        match conn::status(ep, ch.clone(), &token, dial_timeout).await {
            Ok(s) => before.push(Some(s)),
            Err(e) => {
                eprintln!("bramble-bench: warning: {e:#}");
                before.push(None);
            }
        }
    }

    // Read the counters last, just before the load starts, so the
    // connection setup and Status calls above are not in the deltas.
    let mut samples = Vec::with_capacity(pids.len());
    for &pid in &pids {
        let name = procfs::name(pid).with_context(|| format!("--pid {pid}"))?;
        samples.push((pid, name, procfs::sample(pid)?));
    }
    let metrics_before = if c.metrics {
        server_metrics::scrape_all(&c.endpoints, tls.as_ref(), dial_timeout).await
    } else {
        Vec::new()
    };

    // watch and watch-latency take etcd's --put-rate: the writers' --rate.
    let rate = match &op {
        Op::Watch(shape) if c.rate == 0 => shape.put_rate,
        _ => c.rate,
    };
    let plan = run::Plan {
        total: if c.duration.is_some() {
            u64::MAX
        } else {
            c.total
        },
        duration: c.duration.map(Duration::from_secs),
        rate,
        deadline: Instant::now() + Duration::from_secs(c.timeout),
        quiet: c.quiet || c.json,
        interval: Duration::from_secs_f64(c.interval),
        progress: progress::wanted(c.progress),
    };
    let mut conflicts = None;
    let mut sections = Vec::new();
    let mut k8s_ran = false;
    let outcome = match op {
        Op::Put(shape) => run::drive(clients, plan, put::op(shape)).await,
        Op::Range(shape) => run::drive(clients, plan, range::op(shape)).await,
        Op::TxnPut(shape) => run::drive(clients, plan, txn_put::op(shape)).await,
        Op::TxnCas(shape) => {
            let failed_compares = Arc::new(AtomicU64::new(0));
            let op = txn_cas::op(&shape, failed_compares.clone());
            let outcome = run::drive(cas_clients, plan, op).await;
            conflicts = Some(failed_compares.load(Ordering::Relaxed));
            outcome
        }
        Op::Mixed(shape) => {
            let kinds = Arc::new(mix::Mix::default());
            let outcome = run::drive(clients, plan, mixed::op(shape, kinds.clone())).await;
            sections.push(kinds.section());
            outcome
        }
        Op::TxnMixed(shape) => {
            let kinds = Arc::new(mix::Mix::default());
            let outcome = run::drive(clients, plan, txn_mixed::op(shape, kinds.clone())).await;
            sections.push(kinds.section());
            outcome
        }
        Op::Watch(shape) => {
            let w = watchers.take().context("the watchers were not opened")?;
            let (outcome, section) = watch::run(clients, plan, &shape, w).await;
            sections.push(section);
            outcome
        }
        Op::LeaseKeepalive(_) => {
            let l = leases.as_mut().context("the leases were not granted")?;
            let outcome = run::drive(l.clients(), plan, lease_keepalive::op()).await;
            l.check_alive().await;
            outcome
        }
        Op::K8s(shape) => {
            let interval = plan.interval;
            let (outcome, k) =
                k8s::run(&channels, c.clients, &token, shape, plan.quiet, interval).await?;
            sections.push(k.section());
            k8s_ran = true;
            outcome
        }
    };

    let settle = !pids.is_empty() || c.metrics;
    if settle {
        tokio::time::sleep(Duration::from_millis(c.settle_ms)).await;
    }
    let ok = outcome.ok();
    if c.metrics {
        let after = server_metrics::scrape_all(&c.endpoints, tls.as_ref(), dial_timeout).await;
        let m = server_metrics::compare(&c.endpoints, &metrics_before, &after, ok);
        sections.push(server_metrics::section(&m));
    }
    // With --duration the run had no count to reach: report the requests it sent.
    let total = match c.duration {
        Some(_) => ok + outcome.errors.count,
        None => c.total,
    };
    let ticks = procfs::clock_ticks_per_sec();
    let mut processes = Vec::with_capacity(samples.len());
    for (pid, name, start) in samples {
        // A server that died during the run is a finding, not a reason to
        // lose the rest of the report: report its counters as unreadable.
        let end = match procfs::sample(pid).and_then(|s| Ok((s, procfs::memory(pid)?))) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("bramble-bench: warning: pid {pid} after the run: {e:#}");
                continue;
            }
        };
        processes.push(ProcessReport::new(
            pid,
            name,
            &start.io,
            &end.0.io,
            end.0.cpu.since(&start.cpu),
            ticks,
            end.1,
            ok,
        ));
    }

    let mut servers = Vec::with_capacity(used);
    for ((ep, ch), b) in c.endpoints.iter().zip(&channels).zip(before) {
        let Some(b) = b else { continue };
        let after = conn::status(ep, ch.clone(), &token, dial_timeout)
            .await
            .ok();
        servers.push(EndpointReport { before: b, after });
    }

    let mut report = Report::new(
        name,
        c.endpoints.clone(),
        c.clients,
        conns,
        total,
        params,
        outcome,
        if settle { c.settle_ms } else { 0 },
    );
    report.set_processes(processes);
    report.servers = servers;
    report.conflicts = conflicts;
    report.label = c.label.clone();
    if let Some(d) = c.duration {
        report.bound = report::Bound::Duration;
        report.duration_s = Some(d as f64);
    }
    report.rate = rate;
    report.interval_s = c.interval;
    for s in sections {
        report.add_section(s);
    }
    // Revoked last, after the servers' counters and revisions are read.
    if let Some(l) = leases {
        report.add_section(l.finish().await);
    }
    if k8s_ran {
        // k8s always runs for a duration: every request it sent is the total.
        report.total = report.ok + report.errors.count;
        report.bound = report::Bound::Duration;
        report.duration_s = Some(c.duration.unwrap_or(k8s::DEFAULT_DURATION) as f64);
    }
    if let (Some(file), Some(path)) = (html_file, &c.html_report) {
        html::write_run(&report, file).with_context(|| format!("--report {}", path.display()))?;
    }
    Ok((report, c.json))
}

/// A workload's flags as the report's `params`.
pub(crate) fn params(args: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(args).context("serializing the workload's flags")
}

/// A validated workload, ready to run.
enum Op {
    /// `put`.
    Put(put::PutShape),
    /// `range`.
    Range(range::RangeShape),
    /// `txn-put`.
    TxnPut(txn_put::TxnPutShape),
    /// `txn-cas`.
    TxnCas(txn_cas::CasShape),
    /// `txn-mixed`.
    TxnMixed(txn_mixed::TxnMixedShape),
    /// `mixed`.
    Mixed(mixed::MixedShape),
    /// `watch` and `watch-latency`.
    Watch(watch::WatchShape),
    /// `lease-keepalive`.
    LeaseKeepalive(lease_keepalive::LeaseKeepaliveArgs),
    /// `k8s`.
    K8s(k8s::Shape),
}
