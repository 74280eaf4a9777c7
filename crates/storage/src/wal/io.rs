//! The file-system seam under the WAL.
//!
//! Everything the WAL does to disk goes through [`WalDir`] and [`WalFile`],
//! so tests can swap the real directory ([`OsDir`]) for a fault-injecting
//! in-memory one that loses unsynced data on a simulated crash or stops a
//! write half-way (see `fault.rs`). The traits are object-safe and used as
//! `Arc<dyn ...>`: a virtual call is nothing next to a syscall.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One open segment file.
pub(crate) trait WalFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset` (pread).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (pwrite).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current file size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Reserves `[0, len)` on disk, zero-filled, and sets the size to `len`.
    /// Returns the bytes actually written to do so (0 with fallocate).
    fn preallocate(&self, len: u64) -> io::Result<u64>;
    /// fdatasync: data and the metadata needed to read it back.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync: everything, including size and allocation.
    fn sync_all(&self) -> io::Result<()>;
}

/// The directory holding the segments.
pub(crate) trait WalDir: Send + Sync {
    /// Path used in error messages for `name`.
    fn path_of(&self, name: &str) -> PathBuf;
    /// Names of all entries in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates `name`, failing if it exists; opened read-write.
    fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>>;
    /// Opens an existing `name` read-write.
    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>>;
    /// Atomically renames `from` to `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Deletes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// fsyncs the directory, making creates, renames and removes durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// Tells when a WAL's directory lock was released: every handle on the WAL
/// is gone and its writer thread has ended, so the directory can be opened
/// again (a member closing waits for it: openraft's tasks may still hold
/// the log for a moment after its shutdown returns).
#[derive(Clone, Debug, Default)]
pub struct WalRelease(Arc<AtomicBool>);

impl WalRelease {
    /// Whether the lock is released. A WAL on a test backend without a
    /// lock never reports released.
    pub fn is_released(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Marks its [`WalRelease`] when dropped.
struct ReleaseOnDrop(WalRelease);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0 .0.store(true, Ordering::Release);
    }
}

/// A real directory, locked against a second opener with `flock`.
pub(crate) struct OsDir {
    path: PathBuf,
    /// Held open for the lifetime of the WAL: closing it releases the lock.
    _lock: File,
    /// Declared after `_lock`, so it is dropped (and reports the release)
    /// once the lock file is closed.
    released: ReleaseOnDrop,
}

/// Name of the lock file inside the WAL directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

impl OsDir {
    /// Creates `path` if needed and takes an exclusive lock on it. Two
    /// processes appending to one raft log would interleave records.
    pub(crate) fn open(path: &Path) -> Result<OsDir, super::WalError> {
        use super::WalError;
        if !path.is_dir() {
            fs::create_dir_all(path)
                .map_err(|e| WalError::io(format!("creating {}", path.display()), e))?;
            // The new directory's own entry must be durable too, or a crash
            // could lose the whole log after segments inside it were synced.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| WalError::io(format!("syncing {}", parent.display()), e))?;
            }
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| WalError::io(format!("opening {}", lock_path.display()), e))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(WalError::Locked {
                    path: path.to_path_buf(),
                });
            }
            return Err(WalError::io(
                format!("locking {}", lock_path.display()),
                err,
            ));
        }
        Ok(OsDir {
            path: path.to_path_buf(),
            _lock: lock,
            released: ReleaseOnDrop(WalRelease::default()),
        })
    }

    /// Reports when this directory's lock is released.
    pub(crate) fn release(&self) -> WalRelease {
        self.released.0.clone()
    }
}

impl WalDir for OsDir {
    fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            // Non-UTF-8 names cannot be ours; skip them.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(OsFile(f)))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(OsFile(f)))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}

/// A real segment file.
pub(crate) struct OsFile(File);

impl WalFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn preallocate(&self, len: u64) -> io::Result<u64> {
        // fallocate reserves the blocks without writing them: the segment can
        // no longer hit ENOSPC half-way, and its size never changes while we
        // append, so fdatasync has no inode size to flush. (On ext4 the
        // extents start "unwritten" and the first write into each one still
        // costs a journal update; zero-filling would avoid that but doubles
        // the bytes written per segment, the worse trade on an SD card.)
        if try_fallocate(&self.0, len)? {
            return Ok(0);
        }
        zero_fill(&self.0, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// `Ok(false)` when the file system does not support fallocate.
#[cfg(target_os = "linux")]
fn try_fallocate(f: &File, len: u64) -> io::Result<bool> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    loop {
        // SAFETY: fallocate on a valid, owned descriptor; mode 0 allocates
        // and extends the size.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn try_fallocate(_f: &File, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// Fallback preallocation: write zeros up to `len`.
fn zero_fill(f: &File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let mut off = f.metadata()?.len().min(len);
    let written = len - off;
    while off < len {
        let n = (len - off).min(CHUNK) as usize;
        f.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preallocate_sets_size_and_reads_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OsDir::open(tmp.path()).unwrap();
        let f = dir.create("a").unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.preallocate(1 << 16).unwrap();
        assert_eq!(f.size().unwrap(), 1 << 16);
        let mut buf = vec![1u8; 8];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head\0\0\0\0");
        let tail = tempfile::tempfile().unwrap();
        assert_eq!(zero_fill(&tail, 5000).unwrap(), 5000);
        assert_eq!(tail.metadata().unwrap().len(), 5000);
    }

    #[test]
    fn second_open_is_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = OsDir::open(tmp.path()).unwrap();
        match OsDir::open(tmp.path()) {
            Err(super::super::WalError::Locked { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[test]
    fn release_is_reported_once_every_handle_is_gone() {
        use super::super::{Wal, WalOptions};
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let release = wal.release();
        let other = wal.clone();
        drop(wal);
        assert!(!release.is_released(), "a handle is still open");
        drop(other);
        assert!(release.is_released());
        // Released means released: the directory opens again at once.
        Wal::open(tmp.path(), WalOptions::default()).unwrap();
    }
}
