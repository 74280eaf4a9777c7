//! Fuzz target `wal_recover`: see `fuzz/src/wal_recover.rs` for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bramble_fuzz::wal_recover::run(data));
