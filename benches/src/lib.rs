//! Criterion benchmarks live in `benches/benches/`.

#![warn(missing_docs, unreachable_pub)]
