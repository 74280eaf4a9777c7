//! Fuzz target `snapshot_install`: see `fuzz/src/snapshot_install.rs` for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bramble_fuzz::snapshot_install::run(data));
