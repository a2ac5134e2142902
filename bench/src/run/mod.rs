//! The end-to-end benchmark runner: in one run, the machine's limits (disk by fio, loopback
//! TCP), Strand durable and with fsync off, and Tansu on sqlite and in memory, all under the
//! same `strand load` workloads; then Strand at 1 to 10,000 partitions and 1 to 1,000
//! connections, and an idle broker holding 1,000 partitions. Writes RESULTS.md with figures,
//! ratios and plots, and keeps every report as JSON.

pub mod broker;
pub mod cluster;
pub mod limits;
pub mod load;
pub mod plots;
pub mod profile;
pub mod results;
pub mod systems;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use broker::{BrokerProcess, Memory};
use limits::DiskLimits;
use load::Outcome;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-run", about = "Strand's end-to-end benchmark runner")]
pub struct Options {
    /// Where RESULTS.md, results.json, the plots and each run's JSON go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Scratch space for broker data and fio's file, on the disk being measured.
    #[arg(long, default_value = "target/bench-run")]
    pub work: PathBuf,
    /// Seconds each workload is measured.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of warm-up before each measured workload.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Leave Tansu out (otherwise it is installed with cargo install when missing).
    #[arg(long)]
    pub skip_tansu: bool,
    /// Leave out the partition and connection scale runs and the idle broker.
    #[arg(long)]
    pub skip_scale: bool,
    /// Leave out the three-node cluster (replicated produce and failover).
    #[arg(long)]
    pub skip_cluster: bool,
    /// Leave out the second runs of peak produce, half-peak produce and request-reply that
    /// show where their time goes (CPU per process, the broker's commit timings, perf's
    /// hottest functions).
    #[arg(long)]
    pub skip_profile: bool,
    /// Measure only the single node's durable produce and the three-node cluster.
    #[arg(long)]
    pub only_cluster: bool,
    /// Head kills the cluster's failover measurement makes (0 leaves it out).
    #[arg(long, default_value_t = 20)]
    pub failover_kills: usize,
    /// The strand binary [default: target/release/strand, built first].
    #[arg(long)]
    pub strand: Option<PathBuf>,
    /// Measure nothing: redraw the plots and RESULTS.md in --out from its results.json.
    #[arg(long)]
    pub render_only: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub command: String,
    pub commit: String,
    pub started_unix_s: u64,
    pub machine: String,
    pub seconds: u64,
    pub warmup: u64,
    pub disk: DiskLimits,
    pub loopback_bytes_per_s: f64,
    pub systems: Vec<systems::SystemRun>,
    pub scale_partitions: Vec<ScalePoint>,
    pub scale_connections: Vec<ScalePoint>,
    pub idle: Option<Idle>,
    #[serde(default)]
    pub cluster: Option<cluster::ClusterRun>,
    /// Where the time goes in the workloads behind the targets (absent from older runs).
    #[serde(default)]
    pub profiles: Vec<profile::Profile>,
}

/// Strand's produce throughput and memory at one partition or connection count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScalePoint {
    pub count: u32,
    pub outcome: Outcome,
    pub memory: Memory,
}

/// A broker restarted over 1,000 partitions and left idle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub partitions: u32,
    pub ready_ms: f64,
    pub rss_bytes: u64,
    pub error: Option<String>,
}

pub fn main(options: &Options) -> anyhow::Result<()> {
    if options.render_only {
        let path = options.out.join("results.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let results: Results = serde_json::from_str(&text)?;
        plots::draw(&results, &options.out)?;
        std::fs::write(options.out.join("RESULTS.md"), results::render(&results))?;
        return Ok(());
    }
    let strand = match &options.strand {
        Some(path) => path.clone(),
        None => build_strand()?,
    };
    std::fs::create_dir_all(&options.work)?;
    std::fs::create_dir_all(options.out.join("load"))?;
    let mut results = Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        machine: machine(),
        commit: Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .unwrap_or_default(),
        seconds: options.seconds,
        warmup: options.warmup,
        ..Results::default()
    };
    if options.only_cluster {
        results.systems = vec![systems::run_durable_produce(options, &strand)];
    } else {
        eprintln!("== disk limits (fio)");
        results.disk = limits::disk(&options.work, options.seconds)?;
        eprintln!("== loopback TCP limit");
        results.loopback_bytes_per_s = limits::loopback(Duration::from_secs(5))?;
        let tansu = if options.skip_tansu {
            None
        } else {
            Some(broker::tansu_binary()?)
        };
        results.systems = systems::run_all(options, &strand, tansu.as_deref());
        if !options.skip_profile {
            let durable = results
                .systems
                .iter()
                .find(|system| system.name == "strand");
            results.profiles = profile::run_all(options, &strand, durable);
        }
        if !options.skip_scale {
            scale(options, &strand, &mut results);
        }
    }
    if !options.skip_cluster {
        eprintln!("== cluster (3 nodes)");
        results.cluster = Some(cluster::run(options, &strand));
    }
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(options.out.join("results.json"), json + "\n")?;
    plots::draw(&results, &options.out)?;
    let markdown = results::render(&results);
    std::fs::write(options.out.join("RESULTS.md"), &markdown)?;
    println!("{markdown}");
    let _ = std::fs::remove_dir_all(&options.work);
    Ok(())
}

fn build_strand() -> anyhow::Result<PathBuf> {
    eprintln!("== cargo build --release -p strand");
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "strand"])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "building strand failed");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(PathBuf::from(target).join("release/strand"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = broker::kib_field(&meminfo, "MemTotal:").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let gib = memory as f64 / (1 << 20) as f64;
    format!("{cores} × {cpu}, {gib:.0} GiB, Linux {}", kernel.trim())
}

/// Strand at 1, 64, 1,024 and 10,000 partitions, at 1, 100 and 1,000 connections, and idle
/// over 1,000 partitions.
fn scale(options: &Options, strand: &std::path::Path, results: &mut Results) {
    for partitions in [1_u32, 64, 1024, 10_000] {
        eprintln!("== scale: {partitions} partitions");
        let args = systems::produce_args(
            options,
            &["--partitions", &partitions.to_string(), "--producers", "2"],
        );
        results.scale_partitions.push(scale_point(
            options,
            strand,
            "partitions",
            partitions,
            &args,
        ));
    }
    for connections in [1_u32, 100, 1000] {
        eprintln!("== scale: {connections} connections");
        // Each producer is one librdkafka client with its own connection; their queues are
        // kept small so a thousand of them stay bounded.
        let args = systems::produce_args(
            options,
            &[
                "--partitions",
                "16",
                "--producers",
                &connections.to_string(),
                "-X",
                "queue.buffering.max.kbytes=2048",
            ],
        );
        results.scale_connections.push(scale_point(
            options,
            strand,
            "connections",
            connections,
            &args,
        ));
    }
    eprintln!("== idle broker over 1,000 partitions");
    results.idle = Some(idle(options, strand).unwrap_or_else(|error| Idle {
        partitions: 1000,
        error: Some(format!("{error:#}")),
        ..Idle::default()
    }));
}

fn scale_point(
    options: &Options,
    strand: &std::path::Path,
    label: &str,
    count: u32,
    args: &[String],
) -> ScalePoint {
    let data = options.work.join(format!("scale-{count}"));
    let _ = std::fs::remove_dir_all(&data);
    let mut point = ScalePoint {
        count,
        ..ScalePoint::default()
    };
    match BrokerProcess::strand(strand, &data, true) {
        Ok(broker) => {
            let json = options.out.join(format!("load/scale-{count}-{label}.json"));
            point.outcome = load::run(
                strand,
                &broker.bootstrap(),
                args,
                &json,
                systems::timeout(options),
            );
            point.memory = broker.memory();
            broker.stop();
        }
        Err(error) => point.outcome.error = Some(format!("{error:#}")),
    }
    let _ = std::fs::remove_dir_all(&data);
    point
}

fn idle(options: &Options, strand: &std::path::Path) -> anyhow::Result<Idle> {
    let data = options.work.join("idle");
    let _ = std::fs::remove_dir_all(&data);
    let broker = BrokerProcess::strand(strand, &data, true)?;
    let status = Command::new(strand)
        .args(["--bootstrap", &broker.bootstrap()])
        .args(["topic", "create", "idle", "--partitions", "1000"])
        .output()?;
    anyhow::ensure!(
        status.status.success(),
        "creating 1,000 partitions: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    broker.stop();
    let broker = BrokerProcess::strand(strand, &data, true)?;
    std::thread::sleep(Duration::from_secs(5));
    let idle = Idle {
        partitions: 1000,
        ready_ms: broker.ready_after.as_secs_f64() * 1000.0,
        rss_bytes: broker.memory().rss_bytes,
        error: None,
    };
    broker.stop();
    let _ = std::fs::remove_dir_all(&data);
    Ok(idle)
}
