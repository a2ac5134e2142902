//! Engine micro-benchmarks, each beside its baseline from the same run:
//!
//! - durable appends of 1 KiB records in 16 KiB, 64 KiB and 1 MiB batches (one and eight
//!   in flight) against raw O_DIRECT writes plus fdatasync of the same size;
//! - hot reads (from the batch cache) and cold reads (from disk, cache off), 1 MiB each;
//! - a request's round trip to another shard and back, against the same shard's channel.
//!
//! `cargo bench -p strand-bench --bench engine` prints criterion's figures, then a ratio
//! table, and writes it to `bench/results/engine.json`. `STRAND_BENCH_DIR` picks the
//! directory the files go to (default: the system temporary directory).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use strand_bench::interleaved::{Rounds, rate};
use strand_bench::ratio_report::{self, Comparison, Registry};
use strand_bench::workloads::{self, FILE_BYTES_MAX};
use strand_engine::group_commit::CommitProbe;
use strand_engine::{
    EngineConfig, FsyncPolicy, JobRunner, Limits, ShardId, TopicConfig, TopicSpec,
};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

const SIZES: [(&str, usize); 3] = [("16KiB", 16 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];
const READ_BYTES: usize = 1 << 20;
const READ_FILL_BYTES: usize = 48 << 20;

fn config(data_dir: &Path, cache_bytes: usize) -> EngineConfig {
    let mut config = EngineConfig::new(data_dir);
    config.shard_count = 2;
    config.fsync = FsyncPolicy::EveryCommit;
    config.housekeeping_interval_ms = 1000;
    let spin_before_park_us = std::env::var("STRAND_BENCH_SPIN_US")
        .map_or(Limits::default().spin_before_park_us, |spin| {
            spin.parse().expect("microseconds")
        });
    let mut limits = Limits {
        batch_cache_bytes_max: cache_bytes,
        spin_before_park_us,
        ..Limits::default()
    };
    if let Ok(megabytes) = std::env::var("STRAND_BENCH_IO_MEMORY_MB") {
        limits.io_memory_bytes = megabytes.parse::<usize>().expect("megabytes") << 20;
    }
    config.limits = limits;
    let mut topics = TopicConfig::default();
    topics
        .set("segment.bytes", &FILE_BYTES_MAX.to_string())
        .expect("valid");
    topics
        .set("retention.bytes", &(2 * FILE_BYTES_MAX).to_string())
        .expect("valid");
    topics.set("retention.ms", "-1").expect("valid");
    config.topic_defaults = topics;
    config
}

fn create_topic(runner: &JobRunner, name: &'static str) {
    runner
        .run(move |router| async move {
            let spec = TopicSpec {
                name: name.into(),
                partitions: 2,
                configs: Vec::new(),
                id: None,
            };
            router.create_topic(spec).await.expect("create topic");
            let owners = (
                router.resolve(name, 0).expect("partition 0").1,
                router.resolve(name, 1).expect("partition 1").1,
            );
            assert_eq!(
                owners,
                (ShardId::new(0), ShardId::new(1)),
                "partition 0 is local to the jobs, partition 1 is not"
            );
        })
        .expect("job runs");
}

fn bench_appends(criterion: &mut Criterion, runner: &JobRunner, raw_dir: &Path) {
    create_topic(runner, "appends");
    for (label, size) in SIZES {
        let batch = workloads::batch_of_size(size);
        let mut group = criterion.benchmark_group(format!("append_fdatasync/{label}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        group.throughput(Throughput::Bytes(u64::try_from(size).expect("fits")));
        let name = format!("{label} raw DMA write + fdatasync");
        group.bench_function("raw_dma_fdatasync", |bencher| {
            bencher.iter_custom(|iterations| {
                let dir = raw_dir.to_path_buf();
                let elapsed = runner
                    .run(move |_| workloads::raw_dma_fdatasync(dir, size, iterations))
                    .expect("job");
                REGISTRY.record(
                    &name,
                    iterations * u64::try_from(size).expect("fits"),
                    elapsed,
                );
                elapsed
            });
        });
        group.throughput(Throughput::Bytes(u64::try_from(batch.len()).expect("fits")));
        for (variant, in_flight, partition) in VARIANTS {
            let name = format!("{label} engine append, {variant}");
            let batch = batch.clone();
            let id = format!("engine {variant}")
                .replace([' ', ','], "_")
                .replace("__", "_");
            group.bench_function(id, |bencher| {
                bencher.iter_custom(|iterations| {
                    let batch = batch.clone();
                    let len = u64::try_from(batch.len()).expect("fits");
                    let (elapsed, _) = append_run(runner, batch, partition, iterations, in_flight);
                    REGISTRY.record(&name, iterations * len, elapsed);
                    elapsed
                });
            });
        }
        group.finish();
    }
}

/// Keeps what the group commits did during a measurement, for the report.
fn record_commits(name: &str, commits: &strand_engine::group_commit::CommitProbe) {
    REGISTRY.record(
        &format!("{name}: commits"),
        commits.commits,
        commits.write_time + commits.sync_time,
    );
    REGISTRY.record(
        &format!("{name}: batches"),
        commits.batches,
        commits.write_time + commits.sync_time,
    );
    REGISTRY.record(&format!("{name}: sync"), commits.commits, commits.sync_time);
}

/// The append variants compared with the raw baseline: `(name, in flight, partition)`.
const VARIANTS: [(&str, u64, u32); 3] = [
    ("1 in flight", 1, 0),
    ("8 in flight", 8, 0),
    ("8 in flight, other shard", 8, 1),
];

/// Runs raw writes and every append variant back to back, `rounds` times per batch size, and
/// returns the per-round rates with what the group commits did.
fn interleaved_appends(
    runner: &JobRunner,
    raw_dir: &Path,
    rounds: usize,
    seconds: f64,
) -> Vec<(&'static str, Rounds)> {
    let mut results = Vec::new();
    for (label, size) in SIZES {
        let batch = workloads::batch_of_size(size);
        let bytes = u64::try_from(size).expect("fits");
        let calibration = raw_run(runner, raw_dir, size, 50);
        let iterations = iterations_for(seconds, rate(50 * bytes, calibration) / bytes as f64);
        let mut rounds_of_size = Rounds::default();
        for _ in 0..rounds {
            let raw = rate(
                iterations * bytes,
                raw_run(runner, raw_dir, size, iterations),
            );
            let mut variants = Vec::new();
            for (name, in_flight, partition) in VARIANTS {
                let batch = batch.clone();
                let len = u64::try_from(batch.len()).expect("fits");
                let (elapsed, commits) =
                    append_run(runner, batch, partition, iterations, in_flight);
                record_commits(&format!("{label} engine append, {name}"), &commits);
                variants.push((name, rate(iterations * len, elapsed)));
            }
            rounds_of_size.push(raw, &variants);
        }
        results.push((label, rounds_of_size));
    }
    results
}

/// The criterion benchmark ids, for `--list`.
fn bench_names() -> Vec<String> {
    let mut names = Vec::new();
    for (label, _) in SIZES {
        names.push(format!("append_fdatasync/{label}/raw_dma_fdatasync"));
        for (variant, _, _) in VARIANTS {
            names.push(format!("append_fdatasync/{label}/{}", bench_id(variant)));
        }
    }
    names.extend(["shard_round_trip/same_shard", "shard_round_trip/cross_core"].map(String::from));
    names.extend(["read_1MiB/hot_cache", "read_1MiB/cold_disk"].map(String::from));
    names
}

/// A variant's criterion id: `engine_8_in_flight_other_shard`.
fn bench_id(variant: &str) -> String {
    format!("engine {variant}")
        .replace([' ', ','], "_")
        .replace("__", "_")
}

/// Iterations that take about `seconds` at `per_second`, between 20 and 20,000.
fn iterations_for(seconds: f64, per_second: f64) -> u64 {
    let wanted = (seconds * per_second).clamp(20.0, 20_000.0);
    (20..=20_000)
        .find(|count| *count as f64 >= wanted)
        .unwrap_or(20_000)
}

/// One timed run of `iterations` appends of `batch` to partition `partition` of "appends".
fn append_run(
    runner: &JobRunner,
    batch: Vec<u8>,
    partition: u32,
    iterations: u64,
    in_flight: u64,
) -> (Duration, CommitProbe) {
    runner
        .run(move |router| {
            workloads::appends(
                router,
                "appends",
                partition,
                Rc::new(batch),
                iterations,
                in_flight,
            )
        })
        .expect("job")
}

fn raw_run(runner: &JobRunner, raw_dir: &Path, size: usize, iterations: u64) -> Duration {
    let dir = raw_dir.to_path_buf();
    runner
        .run(move |_| workloads::raw_dma_fdatasync(dir, size, iterations))
        .expect("job")
}

fn fill_for_reads(runner: &JobRunner) {
    create_topic(runner, "reads");
    let batch = workloads::batch_of_size(64 << 10);
    let count = u64::try_from(READ_FILL_BYTES / batch.len()).expect("fits");
    runner
        .run(move |router| workloads::appends(router, "reads", 0, Rc::new(batch), count, 8))
        .expect("fill");
}

fn bench_reads(criterion: &mut Criterion, runner: &JobRunner, label: &str) {
    let mut group = criterion.benchmark_group("read_1MiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(u64::try_from(READ_BYTES).expect("fits")));
    let name = format!("read 1 MiB, {label}");
    group.bench_function(label, |bencher| {
        bencher.iter_custom(|iterations| {
            let (elapsed, bytes) = runner
                .run(move |router| workloads::reads(router, "reads", 0, READ_BYTES, iterations))
                .expect("job");
            REGISTRY.record(&name, bytes, elapsed);
            elapsed
        });
    });
    group.finish();
}

fn bench_round_trips(criterion: &mut Criterion, runner: &JobRunner) {
    let mut group = criterion.benchmark_group("shard_round_trip");
    group.throughput(Throughput::Elements(1));
    for (label, shard) in [("same_shard", 0), ("cross_core", 1)] {
        let name = format!("round trip, {label}");
        group.bench_function(label, |bencher| {
            bencher.iter_custom(|iterations| {
                let elapsed = runner
                    .run(move |router| workloads::pings(router, ShardId::new(shard), iterations))
                    .expect("job");
                REGISTRY.record(&name, iterations, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

fn report(dir: &Path, appends: &[(&str, Rounds)], rounds: usize, quick: bool) {
    print_commit_shapes();
    let mut comparisons = Vec::new();
    println!(
        "\nappends vs. raw O_DIRECT write + fdatasync of the same size, {rounds} interleaved rounds"
    );
    println!(
        "{:<40} {:>12} {:>12} {:>8} {:>16}",
        "measurement", "engine MB/s", "raw MB/s", "median", "range"
    );
    for (label, rounds_of_size) in appends {
        for summary in rounds_of_size.summaries() {
            let name = format!("{label} engine append, {}", summary.variant);
            println!(
                "{name:<40} {:>12.1} {:>12.1} {:>7.1}% {:>7.1}%-{:.1}%",
                summary.median_per_second / 1e6,
                summary.baseline_median_per_second / 1e6,
                summary.median_ratio * 100.0,
                summary.min_ratio * 100.0,
                summary.max_ratio * 100.0,
            );
            comparisons.push(Comparison {
                name,
                baseline: format!("{label} raw DMA write + fdatasync (median of rounds; ratio is the median per-round ratio)"),
                unit: "MB/s",
                value: summary.median_ratio * summary.baseline_median_per_second,
                baseline_value: summary.baseline_median_per_second,
            });
        }
    }
    let others: Vec<Comparison> = [
        REGISTRY.compare("read 1 MiB, cold_disk", "read 1 MiB, hot_cache", "MB/s"),
        REGISTRY.compare("round trip, cross_core", "round trip, same_shard", "ops/s"),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!(
        "\n{}",
        ratio_report::table("reads and shard hops (criterion samples)", &others)
    );
    for comparison in others
        .iter()
        .filter(|comparison| comparison.unit == "ops/s")
    {
        println!(
            "{}: {:.1} µs per round trip (baseline {:.1} µs)",
            comparison.name,
            1e6 / comparison.value,
            1e6 / comparison.baseline_value
        );
    }
    comparisons.extend(others);
    if quick {
        println!("(--test run: one pass of each, figures not saved)");
        return;
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/engine.json");
    let context = [
        (
            "commit",
            command_output("git", &["rev-parse", "--short", "HEAD"]),
        ),
        ("kernel", command_output("uname", &["-r"])),
        (
            "cpus",
            std::thread::available_parallelism()
                .map_or(0, std::num::NonZero::get)
                .to_string(),
        ),
        ("data_dir", dir.display().to_string()),
        ("fsync", "fdatasync per group commit".into()),
        (
            "spin_before_park_us",
            config(dir, 0).limits.spin_before_park_us.to_string(),
        ),
        (
            "io_memory_bytes",
            config(dir, 0).limits.io_memory_bytes.to_string(),
        ),
        (
            "command",
            "cargo bench -p strand-bench --bench engine".into(),
        ),
    ];
    match ratio_report::write_json(&out, &context, &comparisons) {
        Ok(()) => println!("written to {}", out.display()),
        Err(error) => eprintln!("could not write {}: {error}", out.display()),
    }
}

/// Batches per commit and time per commit of each append measurement.
fn print_commit_shapes() {
    println!("\ngroup commits during the interleaved append rounds");
    for (label, _) in SIZES {
        for place in ["1 in flight", "8 in flight", "8 in flight, other shard"] {
            let name = format!("{label} engine append, {place}");
            let (Some(commits), Some(batches), Some(sync)) = (
                REGISTRY.totals(&format!("{name}: commits")),
                REGISTRY.totals(&format!("{name}: batches")),
                REGISTRY.totals(&format!("{name}: sync")),
            ) else {
                continue;
            };
            let count = commits.units.max(1);
            println!(
                "{name:<44} {:>5.2} batches/commit, {:>7.1} µs/commit of which fdatasync {:>6.1} µs",
                batches.units as f64 / count as f64,
                commits.elapsed.as_secs_f64() * 1e6 / count as f64,
                sync.elapsed.as_secs_f64() * 1e6 / count as f64,
            );
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    if std::env::args().any(|argument| argument == "--list") {
        // Listing must not start shards or measure anything.
        bench_names()
            .iter()
            .for_each(|name| println!("{name}: benchmark"));
        return;
    }
    let base = std::env::var_os("STRAND_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(&base).expect("benchmark directory");
    let data_dir = dir.path().join("data");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("raw directory");

    let runner = JobRunner::start(config(&data_dir, Limits::default().batch_cache_bytes_max))
        .expect("shards start");
    bench_appends(&mut criterion, &runner, &raw_dir);
    let quick = std::env::args().any(|argument| argument == "--test");
    let rounds = if quick {
        1
    } else {
        std::env::var("STRAND_BENCH_ROUNDS").map_or(5, |n| n.parse().expect("rounds"))
    };
    let appends = interleaved_appends(&runner, &raw_dir, rounds, if quick { 0.05 } else { 1.0 });
    bench_round_trips(&mut criterion, &runner);
    fill_for_reads(&runner);
    bench_reads(&mut criterion, &runner, "hot_cache");
    runner.stop().expect("shards stop");

    let cold = JobRunner::start(config(&data_dir, 0)).expect("shards start");
    bench_reads(&mut criterion, &cold, "cold_disk");
    cold.stop().expect("shards stop");

    criterion.final_summary();
    report(dir.path(), &appends, rounds, quick);
}
