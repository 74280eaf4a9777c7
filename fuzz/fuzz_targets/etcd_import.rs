//! Fuzz target `etcd_import`: see `fuzz/src/etcd_import.rs` for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bramble_fuzz::etcd_import::run(data));
