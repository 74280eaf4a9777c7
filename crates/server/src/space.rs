//! The database's space in use (`Maintenance.Status`'s `db_size_in_use` and the
//! `etcd_mvcc_db_total_size_in_use_in_bytes` gauge), answered without waiting.
//!
//! redb tells the pages it has allocated only from inside a write transaction, and
//! [`MvccStore::space`] walks every table's pages to do it: it waits for the applier
//! and holds the applies up while it walks (tens of ms for a 100 MB file). Status is
//! what health checks and kube-apiserver poll, so it must not wait behind a slow apply
//! or a slow disk (a stalled leader's Status went unanswered for 30 s when it did).
//! etcd's value is a counter bolt keeps. Here a measurement is made in the background,
//! at most once per [`MAX_AGE`] and only when someone asks, and readers get the last
//! one; before the first is done they get the file size, an upper bound.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bramble_storage::mvcc::MvccStore;

/// How long a measurement is answered before a new one is started. kube-apiserver
/// polls Status every 30 s by default (`--etcd-db-metric-poll-interval`), Prometheus
/// scrapes every 15-60 s: about one page walk per poll.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// The last measured space in use, and the background measurement.
pub struct SpaceInUse {
    store: Arc<MvccStore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last measurement: when it finished, and the bytes in use.
    last: Option<(Instant, u64)>,
    /// A measurement is running (at most one at a time).
    measuring: bool,
}

impl SpaceInUse {
    /// Space in use of `store`, not measured yet.
    pub fn new(store: Arc<MvccStore>) -> Arc<Self> {
        Arc::new(SpaceInUse {
            store,
            state: Mutex::default(),
        })
    }

    /// The bytes in use, at most `db_size` (pages written since the measurement can
    /// have grown the file past an older size, never the other way round). Never
    /// waits: the last measurement, or `db_size` before the first one; starts a new
    /// measurement in the background when the last is older than [`MAX_AGE`]. Must be
    /// called inside the tokio runtime.
    pub fn get(self: &Arc<Self>, db_size: u64) -> u64 {
        let last = {
            let mut state = self.lock();
            let fresh = state.last.is_some_and(|(at, _)| at.elapsed() < MAX_AGE);
            if !fresh && !state.measuring {
                state.measuring = true;
                self.measure_in_background();
            }
            state.last
        };
        last.map_or(db_size, |(_, bytes)| bytes.min(db_size))
    }

    /// Starts a new measurement now (a defragmentation changed the space in use); until
    /// it finishes, readers get the older one.
    pub fn refresh(self: &Arc<Self>) {
        let mut state = self.lock();
        if !state.measuring {
            state.measuring = true;
            self.measure_in_background();
        }
    }

    /// Measures on a blocking thread (the walk, and the wait for the applier) and
    /// stores the result. A failed measurement keeps the last one: the store's own
    /// failures surface on its own paths (applies, checkpoints), and the next reader
    /// tries again.
    fn measure_in_background(self: &Arc<Self>) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let measured = this.store.space();
            let mut state = this.lock();
            state.measuring = false;
            match measured {
                Ok(space) => state.last = Some((Instant::now(), space.in_use)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not measure the database's space in use")
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain values, consistent at every point a panic could
        // happen: a poisoned lock holds nothing half done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<MvccStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MvccStore::open(&dir.path().join("db"), Default::default()).expect("open");
        (dir, Arc::new(store))
    }

    async fn measured(space: &Arc<SpaceInUse>) -> u64 {
        for _ in 0..500 {
            if let Some((_, bytes)) = space.lock().last {
                return bytes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no measurement within 5 s");
    }

    #[tokio::test]
    async fn answers_the_file_size_until_measured_then_the_measurement() {
        let (_dir, store) = store();
        let expected = store.space().expect("space").in_use;
        let space = SpaceInUse::new(store);
        let file_size = u64::MAX;
        // The first call starts the measurement and does not wait for it.
        assert_eq!(space.get(file_size), file_size);
        assert_eq!(measured(&space).await, expected);
        assert_eq!(space.get(file_size), expected);
        // Capped at the file size.
        assert_eq!(space.get(expected / 2), expected / 2);
    }

    /// A snapshot stream that blocks until told to fail: installing it holds the
    /// store's writer lock (as a slow apply does) until then.
    struct BlockedStream {
        reading: Option<std::sync::mpsc::Sender<()>>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl std::io::Read for BlockedStream {
        fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
            if let Some(reading) = self.reading.take() {
                let _ = reading.send(());
            }
            let _ = self.release.recv();
            Err(std::io::Error::other("released"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_waits_for_the_applier() {
        let (_dir, store) = store();
        let space = SpaceInUse::new(store.clone());
        space.get(0);
        let first = measured(&space).await;

        let (reading_tx, reading) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let installer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut stream = BlockedStream {
                    reading: Some(reading_tx),
                    release: release_rx,
                };
                store.install_snapshot(&mut stream).is_err()
            })
        };
        reading.recv().expect("the install started reading");

        // An old measurement: the next call starts a new one, which waits for the
        // writer lock the install holds, and still answers at once.
        let old = Instant::now().checked_sub(MAX_AGE).expect("uptime");
        space.lock().last = Some((old, first));
        let t = Instant::now();
        assert_eq!(space.get(u64::MAX), first);
        assert_eq!(space.get(u64::MAX), first);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            space.lock().measuring,
            "the measurement waits for the writer"
        );
        assert_eq!(space.get(u64::MAX), first);

        drop(release);
        assert!(installer.join().expect("installer"), "the install failed");
        for _ in 0..500 {
            if !space.lock().measuring {
                assert!(space.lock().last.is_some_and(|(at, _)| at > t));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the measurement did not finish once the writer was free");
    }
}
