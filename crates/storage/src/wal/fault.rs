//! A fault-injecting in-memory disk for tests.
//!
//! It models what survives a power cut: each file keeps the content as of
//! its last fsync plus the list of writes since, and the directory keeps the
//! names as of its last fsync. [`MemDisk::crash`] builds the disk a reboot
//! would see: synced state, plus a prefix of the unsynced writes of each file
//! with the next one torn at a chosen byte. (Real disks may also persist
//! unsynced pages out of order; recovery reports that as corruption rather
//! than guess, which this model does not exercise.) Writes can be made to
//! fail half-way, and syncs to fail or to take time.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::io::{WalDir, WalFile};

/// Knobs shared by a disk and its files.
#[derive(Default)]
pub(crate) struct Faults {
    /// Bytes that may still be written; the write crossing it is torn and
    /// fails, and so does every later one. `u64::MAX` = no limit.
    write_budget: AtomicU64,
    /// Fail every sync.
    fail_sync: AtomicBool,
    /// Sleep this long in every sync_data (an SD card's fdatasync).
    sync_delay_us: AtomicU64,
    /// sync_data calls.
    pub(crate) syncs: AtomicU64,
}

enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
}

fn apply(data: &mut Vec<u8>, op: &Op, limit: usize) {
    match op {
        Op::Write(off, bytes) => {
            let n = bytes.len().min(limit);
            let end = *off as usize + n;
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*off as usize..end].copy_from_slice(&bytes[..n]);
        }
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// One in-memory file.
pub(crate) struct MemFile {
    st: Mutex<FileState>,
    faults: Arc<Faults>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemFile {
    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut st = lock(&self.st);
        st.durable = st.data.clone();
        st.unsynced.clear();
        Ok(())
    }
}

impl WalFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = lock(&self.st);
        let end = offset as usize + buf.len();
        if end > st.data.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&st.data[offset as usize..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let budget = self.faults.write_budget.load(Ordering::SeqCst);
        let n = (buf.len() as u64).min(budget) as usize;
        if budget != u64::MAX {
            self.faults
                .write_budget
                .fetch_sub(n as u64, Ordering::SeqCst);
        }
        let mut st = lock(&self.st);
        let op = Op::Write(offset, buf[..n].to_vec());
        apply(&mut st.data, &op, usize::MAX);
        st.unsynced.push(op);
        if n < buf.len() {
            return Err(io::Error::other("injected write failure"));
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.st).data.len() as u64)
    }

    fn preallocate(&self, len: u64) -> io::Result<u64> {
        let mut st = lock(&self.st);
        let op = Op::SetLen(len.max(st.data.len() as u64));
        apply(&mut st.data, &op, usize::MAX);
        st.unsynced.push(op);
        Ok(0)
    }

    fn sync_data(&self) -> io::Result<()> {
        let delay = self.faults.sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }
}

#[derive(Default)]
struct DirState {
    names: BTreeMap<String, Arc<MemFile>>,
    durable: BTreeMap<String, Arc<MemFile>>,
}

/// An in-memory directory with crash simulation.
#[derive(Clone)]
pub(crate) struct MemDisk {
    dir: Arc<Mutex<DirState>>,
    pub(crate) faults: Arc<Faults>,
}

impl MemDisk {
    /// An empty disk with no faults armed.
    pub(crate) fn new() -> MemDisk {
        let faults = Faults::default();
        faults.write_budget.store(u64::MAX, Ordering::SeqCst);
        MemDisk {
            dir: Arc::default(),
            faults: Arc::new(faults),
        }
    }

    /// Lets `bytes` more bytes be written, then tears the next write.
    pub(crate) fn fail_writes_after(&self, bytes: u64) {
        self.faults.write_budget.store(bytes, Ordering::SeqCst);
    }

    /// Makes every sync fail (or not).
    pub(crate) fn fail_syncs(&self, on: bool) {
        self.faults.fail_sync.store(on, Ordering::SeqCst);
    }

    /// Makes every sync_data take `d`.
    pub(crate) fn set_sync_delay(&self, d: Duration) {
        self.faults
            .sync_delay_us
            .store(d.as_micros() as u64, Ordering::SeqCst);
    }

    /// The disk after a power cut. For each file that the directory had
    /// durably named, `choose(name, unsynced_ops)` returns how many unsynced
    /// operations reached the disk and how many bytes of the next write did.
    pub(crate) fn crash(&self, mut choose: impl FnMut(&str, usize) -> (usize, usize)) -> MemDisk {
        let out = MemDisk::new();
        let dir = lock(&self.dir);
        let mut new_dir = lock(&out.dir);
        for (name, file) in &dir.durable {
            let st = lock(&file.st);
            let (whole, torn) = choose(name, st.unsynced.len());
            let mut data = st.durable.clone();
            for op in st.unsynced.iter().take(whole) {
                apply(&mut data, op, usize::MAX);
            }
            if let Some(op) = st.unsynced.get(whole) {
                if let Op::Write(..) = op {
                    apply(&mut data, op, torn);
                }
            }
            let f = Arc::new(MemFile {
                st: Mutex::new(FileState {
                    durable: data.clone(),
                    data,
                    unsynced: Vec::new(),
                }),
                faults: out.faults.clone(),
            });
            new_dir.names.insert(name.clone(), f.clone());
            new_dir.durable.insert(name.clone(), f);
        }
        drop(new_dir);
        out
    }

    /// The disk after a crash that lost every unsynced byte.
    pub(crate) fn crash_clean(&self) -> MemDisk {
        self.crash(|_, _| (0, 0))
    }

    /// Names in the directory now.
    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.dir).names.keys().cloned().collect()
    }

    /// A copy of a file's current content.
    pub(crate) fn contents(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.dir)
            .names
            .get(name)
            .map(|f| lock(&f.st).data.clone())
    }

    /// Overwrites bytes of a file in place, durably (simulated bit rot).
    pub(crate) fn poke(&self, name: &str, offset: usize, bytes: &[u8]) {
        let dir = lock(&self.dir);
        let Some(f) = dir.names.get(name) else {
            panic!("no file {name}");
        };
        let mut st = lock(&f.st);
        st.data[offset..offset + bytes.len()].copy_from_slice(bytes);
        st.durable = st.data.clone();
    }

    /// This disk as a WAL directory backend.
    pub(crate) fn backend(&self) -> Arc<dyn WalDir> {
        Arc::new(self.clone())
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, name.to_string())
}

impl WalDir for MemDisk {
    fn path_of(&self, name: &str) -> PathBuf {
        PathBuf::from("/mem").join(name)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let mut dir = lock(&self.dir);
        if dir.names.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let f = Arc::new(MemFile {
            st: Mutex::default(),
            faults: self.faults.clone(),
        });
        dir.names.insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let dir = lock(&self.dir);
        let f = dir.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(f.clone())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut dir = lock(&self.dir);
        let f = dir.names.remove(from).ok_or_else(|| not_found(from))?;
        dir.names.insert(to.to_string(), f);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut dir = lock(&self.dir);
        dir.names
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut dir = lock(&self.dir);
        dir.durable = dir.names.clone();
        Ok(())
    }
}
