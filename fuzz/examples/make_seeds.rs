//! Writes the committed seed corpora, `fuzz/corpus/<target>/seed-<n>`, from each
//! target's `seeds()`: valid inputs made by the encoders they mirror. Run from `fuzz/`:
//! `cargo +nightly run --example make_seeds` (scripts/fuzz does not need it: the seeds
//! are committed).

use std::path::Path;

fn main() {
    let targets: [(&str, fn() -> Vec<Vec<u8>>); 5] = [
        ("wal_recover", bramble_fuzz::wal_recover::seeds),
        ("snapshot_install", bramble_fuzz::snapshot_install::seeds),
        ("raft_wire", bramble_fuzz::raft_wire::seeds),
        ("kv_requests", bramble_fuzz::kv_requests::seeds),
        ("etcd_import", bramble_fuzz::etcd_import::seeds),
    ];
    for (name, seeds) in targets {
        let dir = Path::new("corpus").join(name);
        std::fs::create_dir_all(&dir).expect("creating the corpus directory");
        for (n, seed) in seeds().into_iter().enumerate() {
            // Each seed must pass its target: they are the valid starting points.
            match name {
                "wal_recover" => bramble_fuzz::wal_recover::run(&seed),
                "snapshot_install" => bramble_fuzz::snapshot_install::run(&seed),
                "raft_wire" => bramble_fuzz::raft_wire::run(&seed),
                "etcd_import" => bramble_fuzz::etcd_import::run(&seed),
                _ => bramble_fuzz::kv_requests::run(&seed),
            }
            std::fs::write(dir.join(format!("seed-{n}")), seed).expect("writing a seed");
        }
        println!("{name}: seeds written to {}", dir.display());
    }
}
