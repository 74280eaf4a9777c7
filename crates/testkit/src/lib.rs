//! Test support shared by Bramble's unit tests (`crates/*`), end-to-end tests
//! (`tests/`) and benchmarks (`benches/`), so each helper exists once:
//!
//! - [`rng`]: a seeded PRNG for randomized tests (a failure names its seed, the seed replays).
//! - [`temp`]: temp dirs named after what they hold.
//! - [`disk`]: a small tmpfs over a directory, for real "no space left" errors.
//! - [`process`]: spawning a server or client binary with its output in a log file and
//!   none of the test's own flag variables.
//! - `store` (feature `store`): an MVCC store in a temp dir and commands to fill it.

#![warn(missing_docs, unreachable_pub)]

pub mod disk;
pub mod process;
pub mod rng;
#[cfg(feature = "store")]
pub mod store;
pub mod temp;
