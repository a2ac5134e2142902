//! `strand-bench` measures Strand against the machine's own limits. It owns the workloads
//! the criterion benchmarks in `benches/` run on the engine's shards, and the same-run
//! ratio reporting they print and save. It never runs in the test suite's timed paths:
//! figures live here, not in tests.

pub mod interleaved;
pub mod ratio_report;
pub mod workloads;
