//! `strand`: Strand's command line.

mod dump_log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strand: a Kafka-compatible streaming platform on a thread-per-core io_uring engine.
#[derive(Debug, Parser)]
#[command(name = "strand", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the batches of segment files (.log) or the entries of their indexes
    /// (.index, .timeindex), like Kafka's kafka-dump-log.sh. Exits 1 if any batch is invalid.
    DumpLog {
        /// Segment files to dump.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("strand: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::DumpLog { paths } => {
            let mut out = std::io::stdout().lock();
            let mut clean = true;
            for path in &paths {
                clean &= dump_log::dump(path, &mut out)?.is_clean();
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
