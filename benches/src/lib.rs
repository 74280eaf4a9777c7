//! Criterion benchmarks live in `benches/benches/`; what several of them share is here.

#![warn(missing_docs, unreachable_pub)]

pub mod loopback;
