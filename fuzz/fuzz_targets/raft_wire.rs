//! Fuzz target `raft_wire`: see `fuzz/src/raft_wire.rs` for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bramble_fuzz::raft_wire::run(data));
