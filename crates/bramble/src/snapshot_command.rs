//! `bramble snapshot ...`: tools for the snapshot files `etcdctl snapshot save` writes
//! from Bramble, as `etcdutl snapshot ...` is for etcd's. The server's etcd flags are
//! untouched: etcd takes no positional argument, so a first argument `snapshot` cannot
//! be a server invocation.
//!
//! `status FILE` checks the whole file (length, SHA-256 trailer, the stream's framing
//! and crc) and prints what etcdutl prints: hash, revision, total keys, total size.
//! `restore FILE ...` makes a new cluster member's data dir from it, or from an etcd
//! snapshot file (migration from etcd, `crate::snapshot_restore`).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;

use bramble_storage::mvcc::{verify_saved_snapshot, SavedSnapshotInfo};
use clap::{Parser, Subcommand, ValueEnum};

/// The first argument that selects these tools.
pub const SUBCOMMAND: &str = "snapshot";

#[derive(Debug, Parser)]
#[command(
    name = "bramble snapshot",
    about = "Bramble snapshot files (from etcdctl snapshot save)"
)]
struct SnapshotArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a snapshot file and prints its hash, revision, total keys and total size.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Output format, as etcdutl's `-w`.
        #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Table)]
        write_out: Format,
    },
    /// Restores a snapshot file into the data dir of a member of a new cluster.
    Restore(crate::snapshot_restore::RestoreArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Simple,
    Table,
    Json,
}

/// Runs `bramble snapshot ARGS...` (`args` starts after `snapshot`); returns the
/// process exit code.
pub fn run(args: &[String]) -> std::process::ExitCode {
    let parsed = match SnapshotArgs::try_parse_from(
        std::iter::once("bramble snapshot".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(p) => p,
        Err(e) => e.exit(),
    };
    match parsed.command {
        Command::Restore(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("BRAMBLE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            crate::snapshot_restore::run(args)
        }
        Command::Status { file, write_out } => match status(&file) {
            Ok(info) => {
                let text = render(&info, write_out);
                let _ = std::io::stdout().write_all(text.as_bytes());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {}: {e}", file.display());
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// Checks the saved snapshot at `path`.
fn status(path: &std::path::Path) -> Result<SavedSnapshotInfo, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    verify_saved_snapshot(&mut BufReader::new(file), len).map_err(|e| e.to_string())
}

/// The hash etcdutl prints is a 32-bit number; Bramble's is the first 4 bytes of the
/// file's SHA-256 trailer.
fn hash32(info: &SavedSnapshotInfo) -> u32 {
    u32::from_be_bytes([
        info.sha256[0],
        info.sha256[1],
        info.sha256[2],
        info.sha256[3],
    ])
}

/// etcdutl's output for `format` (its table, simple and JSON writers).
fn render(info: &SavedSnapshotInfo, format: Format) -> String {
    let hash = format!("{:x}", hash32(info));
    let revision = info.stream.revision.to_string();
    let keys = info.stream.rows.to_string();
    let size = human_bytes(info.file_bytes);
    match format {
        Format::Simple => format!("{hash}, {revision}, {keys}, {size}\n"),
        Format::Json => format!(
            "{{\"hash\":{},\"revision\":{revision},\"totalKey\":{keys},\"totalSize\":{}}}\n",
            hash32(info),
            info.file_bytes
        ),
        Format::Table => table(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[&hash, &revision, &keys, &size],
        ),
    }
}

/// A one-row table as etcdctl's tablewriter draws it (header centred, cells right
/// aligned except the last, which is left aligned as text).
fn table(header: &[&str], row: &[&str]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .zip(row)
        .map(|(h, c)| h.len().max(c.len()))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut head = String::new();
    let mut body = String::new();
    for (i, w) in widths.iter().enumerate() {
        let h = header[i];
        let pad = w - h.len();
        let left = pad / 2 + pad % 2;
        head += &format!("| {}{}{} ", " ".repeat(left), h, " ".repeat(pad - left));
        if i + 1 == widths.len() {
            body += &format!("| {:<w$} ", row[i]);
        } else {
            body += &format!("| {:>w$} ", row[i]);
        }
    }
    format!("{rule}{head}|\n{rule}{body}|\n{rule}")
}

/// Sizes as go-humanize's `Bytes` (SI units), which etcdutl uses.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let exp = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let value = (n as f64 / 1000f64.powi(exp as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2_100_000), "2.1 MB");
        assert_eq!(human_bytes(20_500), "20 kB");
        assert_eq!(human_bytes(82_000_000), "82 MB");
    }

    #[test]
    fn table_as_etcdutl() {
        assert_eq!(
            table(
                &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                &["fe01cf57", "10", "7", "2.1 MB"]
            ),
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | fe01cf57 |       10 |          7 | 2.1 MB     |\n\
             +----------+----------+------------+------------+\n"
        );
    }
}
