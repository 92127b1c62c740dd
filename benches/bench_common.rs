//! Unit tests of the benches' shared code (the Zipf sampler, the trace
//! parsers, the cache adapters). The benches are `harness = false` targets,
//! so their own `#[test]`s would never run; this target includes the same
//! file and runs them under `cargo test`.
#![allow(missing_docs)]

mod common;
