//! The code behind Bramble's fuzz targets (`fuzz_targets/*.rs` are one line each), so
//! that the seed generator (`examples/make_seeds.rs`) and the targets share one
//! definition of each input format.
//!
//! Each module is one target: how it reads the fuzz input, what it drives, and which
//! invariants it asserts (a failed assertion is a finding, as is a panic in the code
//! under test, an allocation over `-malloc_limit_mb`, or a hang over `-timeout`).

pub mod etcd_import;
pub mod kv_requests;
pub mod raft_wire;
pub mod snapshot_install;
pub mod wal_recover;

/// A scratch directory for one input, on tmpfs when there is one (`TMPDIR` wins).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("creating a scratch directory")
}
