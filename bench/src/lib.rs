//! `strand-bench` measures Strand against the machine's own limits. It owns the workloads
//! the criterion benchmarks in `benches/` run on the engine's shards, and the same-run
//! ratio reporting they print and save, and the end-to-end runner (`run`, the `bench-run`
//! binary) that puts Strand beside the disk, loopback TCP and Tansu. It never runs in the test suite's timed paths:
//! figures live here, not in tests.

pub mod interleaved;
pub mod ratio_report;
pub mod run;
pub mod workloads;
