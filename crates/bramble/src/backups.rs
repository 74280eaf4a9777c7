//! Scheduled backups (`--backup-dir`, `--backup-interval`, `--backup-retention`), which
//! etcd lacks: every interval this member writes a snapshot of its store into the backup
//! directory, in the file format `etcdctl snapshot save` writes (so `bramble snapshot
//! status` and `bramble snapshot restore` take it), and keeps the newest few.
//!
//! A backup is taken from one redb read transaction, so writes go on while it is
//! written. It is written to a temporary file, fsynced, read back and verified
//! (framing, checksum, SHA-256), renamed into place, and the directory fsynced: a crash
//! leaves either the whole new file or none, plus perhaps a temporary file, which the
//! next start removes. A failure is logged and counted and never affects serving; the
//! next interval tries again.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bramble_storage::mvcc::{verify_saved_snapshot, MvccStore};
use prometheus::{Gauge, IntCounter, IntGauge};
use tokio_util::sync::CancellationToken;

/// Backup files are named `<PREFIX><UTC time>-r<revision><SUFFIX>`; the time sorts
/// them, oldest first.
const PREFIX: &str = "bramble-backup-";
const SUFFIX: &str = ".db";
/// A backup being written; left behind only by a crash.
const TEMP_SUFFIX: &str = ".db.tmp";

/// The schedule, from the flags.
#[derive(Debug, Clone)]
pub(crate) struct BackupConfig {
    /// Where backups go (created if missing).
    pub(crate) dir: PathBuf,
    /// Time between two backups; the first is taken one interval after start.
    pub(crate) interval: Duration,
    /// How many backups to keep (at least 1).
    pub(crate) retention: usize,
}

/// What the backups did so far: Prometheus collectors (Bramble's own names),
/// registered with the member's `/metrics`.
#[derive(Clone)]
pub(crate) struct BackupStats {
    successes: IntCounter,
    failures: IntCounter,
    last_success: Gauge,
    last_bytes: IntGauge,
    last_duration: Gauge,
}

impl BackupStats {
    /// New collectors, registered with `metrics`.
    pub(crate) fn registered(metrics: &bramble_server::metrics::Metrics) -> BackupStats {
        // Fixed, valid names: creating them cannot fail.
        let stats = BackupStats {
            successes: IntCounter::new(
                "bramble_backups_total",
                "Scheduled backups written and verified.",
            )
            .expect("a valid metric"),
            failures: IntCounter::new(
                "bramble_backup_failures_total",
                "Scheduled backups that failed.",
            )
            .expect("a valid metric"),
            last_success: Gauge::new(
                "bramble_backup_last_success_timestamp_seconds",
                "Unix time of the last successful scheduled backup (0: none yet).",
            )
            .expect("a valid metric"),
            last_bytes: IntGauge::new(
                "bramble_backup_last_size_bytes",
                "Size of the last successful scheduled backup.",
            )
            .expect("a valid metric"),
            last_duration: Gauge::new(
                "bramble_backup_last_duration_seconds",
                "How long the last successful scheduled backup took.",
            )
            .expect("a valid metric"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(stats.successes.clone()),
            Box::new(stats.failures.clone()),
            Box::new(stats.last_success.clone()),
            Box::new(stats.last_bytes.clone()),
            Box::new(stats.last_duration.clone()),
        ];
        for c in collectors {
            if let Err(e) = metrics.register(c) {
                tracing::warn!(error = %e, "backup metrics not registered");
            }
        }
        stats
    }

    fn succeeded(&self, written: &Written, took: Duration) {
        self.successes.inc();
        self.last_bytes
            .set(i64::try_from(written.bytes).unwrap_or(i64::MAX));
        self.last_duration.set(took.as_secs_f64());
        self.last_success.set(unix_now() as f64);
    }
}

/// One successful backup.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) revision: i64,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] bramble_storage::mvcc::MvccError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// Runs the schedule until `stop`: one backup per interval, each on a blocking thread.
pub(crate) async fn run(
    store: Arc<MvccStore>,
    config: BackupConfig,
    stats: BackupStats,
    stop: CancellationToken,
) {
    let dir = config.dir.clone();
    match tokio::task::spawn_blocking(move || remove_temporaries(&dir)).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(n)) => tracing::info!(removed = n, "removed unfinished backups left by a crash"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot clean the backup directory"),
    }
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval,
    );
    // A backup that took longer than the interval does not cause a burst after it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (store, cfg) = (store.clone(), config.clone());
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || take_and_rotate(&store, &cfg)).await;
        let elapsed = started.elapsed();
        match result {
            Ok(Ok(w)) => {
                stats.succeeded(&w, elapsed);
                tracing::info!(
                    path = %w.path.display(),
                    bytes = w.bytes,
                    revision = w.revision,
                    took_ms = elapsed.as_millis() as u64,
                    "backup written and verified"
                );
            }
            Ok(Err(e)) => {
                stats.failures.inc();
                tracing::error!(error = %e, "backup failed; serving goes on, next try in one interval");
            }
            Err(e) => {
                stats.failures.inc();
                tracing::error!(error = %e, "backup task failed; serving goes on");
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes one backup, then removes the oldest beyond the retention.
pub(crate) fn take_and_rotate(
    store: &MvccStore,
    config: &BackupConfig,
) -> Result<Written, BackupError> {
    let written = take(store, &config.dir)?;
    rotate(&config.dir, config.retention)?;
    Ok(written)
}

/// Writes one verified backup of `store` into `dir`.
pub(crate) fn take(store: &MvccStore, dir: &Path) -> Result<Written, BackupError> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let view = store.begin_snapshot()?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let base = format!("{PREFIX}{stamp}");
    let temp = dir.join(format!("{base}{TEMP_SUFFIX}"));
    let result = write_verified(&view, &temp);
    drop(view);
    let (bytes, revision) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    let path = dir.join(format!("{base}-r{revision}{SUFFIX}"));
    fs::rename(&temp, &path).map_err(io_err("renaming the backup to", &path))?;
    sync_dir(dir)?;
    Ok(Written {
        path,
        bytes,
        revision,
    })
}

/// Writes the view to `path`, fsyncs it, reads it back and verifies it. Returns its
/// size and revision.
fn write_verified(
    view: &bramble_storage::mvcc::StoreSnapshot,
    path: &Path,
) -> Result<(u64, i64), BackupError> {
    let file = File::create(path).map_err(io_err("creating", path))?;
    let mut out = BufWriter::new(file);
    let info = view.write_saved(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("writing", path)(e.into_error()))?;
    file.sync_all().map_err(io_err("fsyncing", path))?;
    drop(file);
    let len = fs::metadata(path).map_err(io_err("reading", path))?.len();
    let mut input = BufReader::new(File::open(path).map_err(io_err("reopening", path))?);
    let verified = verify_saved_snapshot(&mut input, len)?;
    if verified != info {
        return Err(BackupError::Store(
            bramble_storage::mvcc::MvccError::Storage(format!(
                "{}: read back differs from what was written",
                path.display()
            )),
        ));
    }
    Ok((len, info.stream.revision))
}

/// The finished backups in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            out.push(entry.path());
        }
    }
    // The UTC time right after the prefix sorts them.
    out.sort();
    Ok(out)
}

/// Removes the oldest backups so that `keep` remain.
fn rotate(dir: &Path, keep: usize) -> Result<(), BackupError> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    for old in &all[..excess] {
        fs::remove_file(old).map_err(io_err("removing the old backup", old))?;
    }
    if excess > 0 {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes temporary files a crash left in `dir`; returns how many.
fn remove_temporaries(dir: &Path) -> Result<usize, BackupError> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path()).map_err(io_err("removing", &entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing the directory", dir))
}

/// Writes `data` to `path` (tests: a leftover temporary).
#[cfg(test)]
fn write_file(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = File::create(path).expect("create");
    f.write_all(data).expect("write");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bramble_api::bramblepb::command::Op;
    use bramble_api::bramblepb::Command;
    use bramble_api::etcdserverpb::PutRequest;
    use bramble_storage::mvcc::MvccOptions;

    fn store(dir: &Path, keys: u64) -> MvccStore {
        let store = MvccStore::open(&dir.join("db"), MvccOptions::default()).expect("open");
        for i in 0..keys {
            let put = PutRequest {
                key: format!("k{i:04}").into_bytes(),
                value: vec![b'v'; 100],
                ..Default::default()
            };
            let cmd = Command {
                auth: None,
                op: Some(Op::Put(put)),
            };
            store.apply(i + 1, 1, &cmd).expect("apply");
        }
        store
    }

    #[test]
    fn backups_verify_rotate_and_leftovers_go() {
        let tmp = bramble_testkit::temp::dir("bramble-backups-");
        let s = store(tmp.path(), 50);
        let dir = tmp.path().join("backups");
        let cfg = BackupConfig {
            dir: dir.clone(),
            interval: Duration::from_secs(1),
            retention: 3,
        };
        fs::create_dir_all(&dir).expect("mkdir");
        write_file(&dir.join(format!("{PREFIX}x{TEMP_SUFFIX}")), b"partial");
        assert_eq!(remove_temporaries(&dir).expect("clean"), 1);
        let mut names = Vec::new();
        for _ in 0..5 {
            let w = take_and_rotate(&s, &cfg).expect("backup");
            assert_eq!(w.revision, 51);
            names.push(w.path);
            // Distinct millisecond stamps.
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept = list(&dir).expect("list");
        assert_eq!(
            kept,
            names[2..].to_vec(),
            "the newest three are kept, in order"
        );
        for path in &kept {
            let len = fs::metadata(path).expect("stat").len();
            let info =
                verify_saved_snapshot(&mut File::open(path).expect("open"), len).expect("verifies");
            assert_eq!(info.stream.revision, 51);
        }
        assert_eq!(
            fs::read_dir(&dir).expect("ls").count(),
            3,
            "nothing else left"
        );
    }

    #[test]
    fn a_failing_directory_is_an_error_not_a_panic() {
        let tmp = bramble_testkit::temp::dir("bramble-backups-");
        let s = store(tmp.path(), 1);
        // A regular file where the directory should be.
        let not_a_dir = tmp.path().join("file");
        write_file(&not_a_dir, b"x");
        let err = take(&s, &not_a_dir.join("backups")).expect_err("fails");
        assert!(matches!(err, BackupError::Io { .. }), "{err}");
    }
}
