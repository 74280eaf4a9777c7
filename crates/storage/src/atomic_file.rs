//! Files replaced whole or not at all: written under a temporary name in the
//! same directory, fsynced, renamed over the target, and the directory
//! fsynced, so a crash leaves the old file or the new one, never a torn one.
//! One helper for every small file Bramble rewrites (the member identity,
//! snapshot metadata) and one naming rule for temporary files, which a start
//! may delete (they end in [`TEMP_SUFFIX`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix of every temporary file: a file with it is incomplete.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A fresh temporary path in `dir` for a file about `stem`: unique within
/// this process and across processes (it holds the process id), so
/// concurrent writers never share one.
pub fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{stem}-{}-{n}{TEMP_SUFFIX}", std::process::id()))
}

/// Makes the directory entries of `dir` durable (a rename or a new file in
/// it survives a crash).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably (see the module
/// documentation). On an error the temporary file is removed.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file path", path.display()),
            )
        })?
        .to_string_lossy();
    let tmp = temp_path(dir, &name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Best effort: a leftover only costs its bytes until it is cleaned.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity");
        write(&path, b"one").expect("first write");
        write(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["identity"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Renaming a file over a directory fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("mkdir");
        assert!(write(&path, b"x").is_err());
        let leftovers = std::fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn temp_paths_are_unique_and_marked() {
        let dir = Path::new("/x");
        let a = temp_path(dir, "meta");
        let b = temp_path(dir, "meta");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with(TEMP_SUFFIX));
        assert_eq!(a.parent(), Some(dir));
    }
}
