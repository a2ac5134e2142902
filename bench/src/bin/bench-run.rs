//! `cargo run --release -p strand-bench --bin bench-run`: the end-to-end benchmark run that
//! writes bench/results/RESULTS.md. See `strand_bench::run`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    strand_bench::run::main(&strand_bench::run::Options::parse())
}
