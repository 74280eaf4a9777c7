//! `bramble-bench`: a load generator for any etcd v3 endpoints, Bramble or etcd.
//!
//! The command line mirrors etcd's `benchmark` tool (`--endpoints --conns
//! --clients --total`, then a workload: `put`, `range`, `txn-put`, `txn-cas`
//! (the compare-and-swap update kube-apiserver sends), `txn-mixed`, `mixed`,
//! `watch`, `watch-latency` and `lease-keepalive`), and adds what a
//! Raspberry Pi cluster cares about: bytes written to storage per request
//! (`--pid`, from `/proc/PID/io`), server CPU time and memory. `--json` prints
//! one JSON object so scripts (`scripts/compare-etcd`) can compare runs,
//! `--report out.html` a page of charts, and `bramble-bench report a.json
//! b.json` puts several `--json` results side by side.
//!
//! Exit status: 0 when every request succeeded, 2 when the report was
//! printed but some requests failed, the `--timeout` cut the run short or a
//! workload's check failed (a watch event never delivered, a lease expired),
//! 1 when nothing could be measured (bad flags, server unreachable).

mod bench;
mod charts;
mod cli;
#[cfg(test)]
mod cli_tests;
mod compare;
mod conn;
mod html;
mod k8s;
mod lease_keepalive;
mod mix;
mod mixed;
mod procfs;
mod progress;
mod put;
mod range;
mod report;
mod run;
mod section;
mod series;
mod server_metrics;
mod stats;
mod txn_cas;
mod txn_mixed;
mod txn_put;
mod watch;
mod watch_latency;
mod watch_tally;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Workload};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Workload::Report(args) = &cli.workload {
        return match compare::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bramble-bench report: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bramble-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::bench(cli)) {
        Ok(report) => {
            if report.1 {
                println!("{}", report.0.to_json());
            } else {
                print!("{}", report.0.to_text());
            }
            if report.0.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("bramble-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
