//! `strand`: Strand's command line.

mod admin_client;
mod cluster;
mod consume;
mod dump_log;
mod group;
mod group_reset;
mod load;
mod metrics_http;
mod produce;
mod records;
mod serve;
mod topic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strand: a Kafka-compatible streaming platform on a thread-per-core io_uring engine.
#[derive(Debug, Parser)]
#[command(name = "strand", version, about)]
struct Cli {
    /// The broker the client commands talk to.
    #[arg(
        long,
        global = true,
        env = "STRAND_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker: with no flags, a single node on 127.0.0.1:9092 with data in
    /// ./strand-data and one shard per CPU. Stops cleanly on SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Create, list, describe, delete and configure topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// The cluster: nodes and their liveness, the controller, chains and committed offsets.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// List, describe and delete consumer groups; reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Delete a partition's records below an offset (Kafka's DeleteRecords).
    #[command(subcommand)]
    Records(records::RecordsCommand),
    /// Send each line of stdin as a message.
    Produce(produce::ProduceArgs),
    /// Print messages of a topic.
    Consume(consume::ConsumeArgs),
    /// Generate load and measure it: produce, consume, e2e, pubsub, queue or request-reply.
    /// Works against any Kafka-compatible broker (it drives librdkafka).
    Load(Box<load::LoadArgs>),
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
        Command::Serve(args) => {
            init_logging();
            serve::serve(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Topic(command) => Ok(exit(topic::run(&cli.bootstrap, command)?)),
        Command::Cluster(command) => Ok(exit(cluster::run(&cli.bootstrap, command)?)),
        Command::Group(command) => Ok(exit(group::run(&cli.bootstrap, command)?)),
        Command::Records(command) => Ok(exit(records::run(&cli.bootstrap, command)?)),
        Command::Produce(args) => Ok(exit(produce::run(&cli.bootstrap, &args)?)),
        Command::Consume(args) => Ok(exit(consume::run(&cli.bootstrap, &args)?)),
        Command::Load(args) => Ok(exit(load::run(&cli.bootstrap, *args)?)),
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

/// Logs go to stderr; `STRAND_LOG` (or `RUST_LOG`) filters them, `info` by default.
fn init_logging() {
    let filter = std::env::var("STRAND_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files or CI logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Exit status 1 when the broker refused part of a command.
fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
