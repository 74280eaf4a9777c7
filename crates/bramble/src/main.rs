//! The `bramble` binary: an etcd-compatible server, started with etcd's flags.

use bramble::config::{parse_command_line, CommandLineError};

/// The exit status after a fatal failure of the member (etcd's `lg.Fatal`
/// exits with 1 too), for systemd or the kubelet to restart it.
const FATAL_EXIT_CODE: i32 = 1;

/// Refuses to start (before logging is set up, so on stderr) with etcd's exit
/// status for a bad configuration.
fn refuse(reason: &str) -> std::process::ExitCode {
    eprintln!("bramble: {reason}");
    std::process::ExitCode::FAILURE
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(bramble::snapshot_command::SUBCOMMAND) {
        return bramble::snapshot_command::run(&argv[2..]);
    }
    if argv
        .iter()
        .skip(1)
        .any(|a| a == "--version" || a == "-version")
    {
        // write_all rather than println!: a closed pipe (`| head -1`) is not a panic.
        use std::io::Write;
        let text = format!(
            "bramble Version: {}\netcd API Version: {}\nOS/Arch: {}/{}\n",
            env!("CARGO_PKG_VERSION"),
            bramble_server::version::ETCD_VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        let _ = std::io::stdout().write_all(text.as_bytes());
        return std::process::ExitCode::SUCCESS;
    }
    let (flags, warnings) = match parse_command_line(argv) {
        Ok(parsed) => parsed,
        Err(CommandLineError::Refused(reason)) => return refuse(&reason),
        Err(CommandLineError::Clap(e)) => e.exit(),
    };

    let level = match bramble::logging::level_filter(&flags.log_level) {
        Ok(level) => level,
        Err(refusal) => return refuse(&refusal),
    };
    let format = match bramble::logging::LogFormat::parse(&flags.log_format) {
        Ok(format) => format,
        Err(refusal) => return refuse(&refusal),
    };
    bramble::logging::init(level, format);
    for w in warnings {
        tracing::warn!("{w}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bramble::server::run(flags)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if bramble::server::fatal_cause(&e).is_some() => {
            // The cause was logged when it happened. Exit now rather than
            // drop the runtime: dropping waits for its threads, and one may
            // be stuck on the failed disk. Nothing is left to flush: every
            // acknowledged write is already durable.
            std::process::exit(FATAL_EXIT_CODE)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
