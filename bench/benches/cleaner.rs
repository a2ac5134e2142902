//! The log cleaner's cost, in one run: how fast a pass cleans a compacted partition (MB/s
//! of segments read), and the p99 latency of durable 1 KiB appends to a partition on the
//! same shard while the pass runs, against the same appends with no pass running (measured
//! first, on the same engine, so the ratio is taken on one machine state).
//!
//! `cargo bench -p strand-bench --bench cleaner` fills 256 MiB (`STRAND_BENCH_CLEAN_MB`
//! picks another size); `-- --test` fills 8 MiB, for CI. Prints a table and writes
//! `cleaner.json` to `STRAND_BENCH_DIR` (default: the system temporary directory).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use strand_bench::workloads;
use strand_engine::batch_builder::BatchBuilder;
use strand_engine::{
    CleanStats, EngineConfig, FsyncPolicy, JobRunner, Router, TopicSpec, ValidatedBatch,
};

const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 200;
const RECORDS_PER_BATCH: usize = 64;
/// Appends measured in each phase, at most.
const APPENDS_MAX: usize = 20_000;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[at]
}

fn keyed_batch(seed: u64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms());
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let value = vec![b'v'; VALUE_BYTES];
    for _ in 0..RECORDS_PER_BATCH {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = (state % KEYS).to_be_bytes();
        builder.record(Some(&key), Some(&value), &[]);
    }
    builder.build()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// Durable appends one at a time while `keep_going` says so (at most `APPENDS_MAX`).
async fn timed_appends(
    router: &Router,
    topic: &str,
    index: u32,
    keep_going: impl Fn(usize) -> bool,
) -> Vec<Duration> {
    let batch = workloads::batch_of_size(1024);
    let mut latencies = Vec::new();
    while latencies.len() < APPENDS_MAX && keep_going(latencies.len()) {
        let started = Instant::now();
        router
            .append(
                topic,
                index,
                ValidatedBatch::new(batch.clone(), 1 << 20).expect("valid"),
            )
            .await
            .expect("append");
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

struct Outcome {
    fill_bytes: u64,
    stats: CleanStats,
    baseline: Vec<Duration>,
    cleaning: Vec<Duration>,
}

fn main() {
    let test = std::env::args().any(|arg| arg == "--test");
    let fill_mb: u64 = if test {
        8
    } else {
        std::env::var("STRAND_BENCH_CLEAN_MB").map_or(256, |mb| mb.parse().expect("megabytes"))
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = EngineConfig::new(dir.path());
    config.shard_count = 1;
    config.fsync = FsyncPolicy::EveryCommit;
    config.limits.io_memory_bytes = 4 << 20;
    let runner = JobRunner::start(config).expect("engine starts");
    let outcome = runner
        .run(move |router| async move {
            let compacted = TopicSpec {
                name: "compacted".into(),
                partitions: 1,
                configs: vec![
                    ("cleanup.policy".into(), "compact".into()),
                    ("segment.bytes".into(), (4 << 20).to_string()),
                ],
                id: None,
            };
            router.create_topic(compacted).await.expect("topic");
            let plain = TopicSpec {
                name: "produce".into(),
                partitions: 1,
                configs: Vec::new(),
                id: None,
            };
            router.create_topic(plain).await.expect("topic");
            // Fill, eight appends in flight.
            let target = fill_mb << 20;
            let mut filled = 0u64;
            let mut seed = 0;
            while filled < target {
                let batches: Vec<Vec<u8>> = (0..8)
                    .map(|_| {
                        seed += 1;
                        keyed_batch(seed)
                    })
                    .collect();
                filled += batches.iter().map(|batch| batch.len() as u64).sum::<u64>();
                let appends = batches.into_iter().map(|batch| {
                    router.append(
                        "compacted",
                        0,
                        ValidatedBatch::new(batch, 1 << 20).expect("valid"),
                    )
                });
                for appended in futures::future::join_all(appends).await {
                    appended.expect("fill append");
                }
            }
            // The same number of appends with and without a pass, the baseline first.
            let cleaning_done = Rc::new(Cell::new(false));
            let stats: Rc<RefCell<Option<CleanStats>>> = Rc::new(RefCell::new(None));
            let pass = {
                let (router, done, stats) = (router.clone(), cleaning_done.clone(), stats.clone());
                glommio::spawn_local(async move {
                    *stats.borrow_mut() = Some(router.clean("compacted", 0).await.expect("pass"));
                    done.set(true);
                })
            };
            let cleaning = timed_appends(&router, "produce", 0, |_| !cleaning_done.get()).await;
            pass.await;
            let count = cleaning.len().max(200);
            let baseline = timed_appends(&router, "produce", 0, |done| done < count).await;
            let stats = stats.borrow().expect("the pass ran");
            Outcome {
                fill_bytes: filled,
                stats,
                baseline,
                cleaning,
            }
        })
        .expect("the bench job runs");
    runner.stop().expect("engine stops");
    report(&outcome, fill_mb);
}

fn report(outcome: &Outcome, fill_mb: u64) {
    let seconds = outcome.stats.duration.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let cleaned_mb_s = outcome.stats.bytes_read as f64 / seconds / 1e6;
    let p = |latencies: &[Duration], fraction| percentile(latencies, fraction).as_secs_f64() * 1e6;
    let (base_p50, base_p99) = (p(&outcome.baseline, 0.5), p(&outcome.baseline, 0.99));
    let (clean_p50, clean_p99) = (p(&outcome.cleaning, 0.5), p(&outcome.cleaning, 0.99));
    println!("cleaner: {fill_mb} MiB of compacted segments (100k keys, 200-byte values)");
    println!(
        "  pass: read {} bytes, wrote {} bytes, removed {} records in {:.3} s: {cleaned_mb_s:.1} MB/s",
        outcome.stats.bytes_read,
        outcome.stats.bytes_written,
        outcome.stats.records_removed,
        seconds
    );
    println!(
        "  1 KiB durable appends, same shard: p50 {base_p50:.0} us / p99 {base_p99:.0} us alone ({} appends); \
         p50 {clean_p50:.0} us / p99 {clean_p99:.0} us while cleaning ({} appends); p99 ratio {:.2}",
        outcome.baseline.len(),
        outcome.cleaning.len(),
        clean_p99 / base_p99.max(1e-9)
    );
    let json = serde_json::json!({
        "fill_bytes": outcome.fill_bytes,
        "cleaner_bytes_read": outcome.stats.bytes_read,
        "cleaner_bytes_written": outcome.stats.bytes_written,
        "cleaner_seconds": seconds,
        "cleaner_mb_per_s": cleaned_mb_s,
        "produce_p50_us_alone": base_p50,
        "produce_p99_us_alone": base_p99,
        "produce_p50_us_cleaning": clean_p50,
        "produce_p99_us_cleaning": clean_p99,
        "produce_p99_ratio": clean_p99 / base_p99.max(1e-9),
        "appends_alone": outcome.baseline.len(),
        "appends_cleaning": outcome.cleaning.len(),
    });
    let dir: std::path::PathBuf =
        std::env::var("STRAND_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let path = dir.join("cleaner.json");
    if let Err(error) = std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")) {
        eprintln!("cannot write {}: {error}", path.display());
    } else {
        println!("  written to {}", path.display());
    }
}
