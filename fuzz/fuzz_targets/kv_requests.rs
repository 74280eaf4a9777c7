//! Fuzz target `kv_requests`: see `fuzz/src/kv_requests.rs` for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bramble_fuzz::kv_requests::run(data));
