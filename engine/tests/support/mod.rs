//! Shared harness for the engine's integration tests: a running shard set whose shard 0
//! runs jobs sent from the test thread, and deterministic record batches.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};

use strand_engine::batch_builder::BatchBuilder;
use strand_engine::recovery::RecoveryReport;
use strand_engine::{
    EngineConfig, JobRunner, Limits, Offset, ReadError, Router, ShutdownSummary, TopicSpec,
    ValidatedBatch,
};

/// A shard set for one test whose shard 0 runs the test's jobs. Stops its shards when
/// dropped, on every path.
pub struct TestEngine {
    runner: JobRunner,
}

/// An engine configuration for tests: unpinned shards, small I/O memory.
pub fn test_config(dir: &Path, shard_count: usize) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.shard_count = shard_count;
    config.pin_cpus = false;
    config.limits = Limits {
        io_memory_bytes: 1 << 20,
        ..Limits::default()
    };
    config
}

impl TestEngine {
    /// Starts the shards; `RUST_LOG` turns on the engine's logs.
    pub fn start(config: EngineConfig) -> TestEngine {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        TestEngine {
            runner: JobRunner::start(config).expect("shards start"),
        }
    }

    /// Runs `work` on shard 0 with its router and returns its result.
    pub fn run<T, F, Fut>(&self, work: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Router) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.runner
            .run(work)
            .expect("the job on shard 0 finishes (see any panic above)")
    }

    pub fn recovery_reports(&self) -> Vec<RecoveryReport> {
        self.runner.recovery_reports().to_vec()
    }

    pub fn stop(self) -> ShutdownSummary {
        self.runner.stop().expect("shards stop")
    }
}

/// Creates `name` with `partitions` partitions and the given settings.
pub async fn create_topic(router: &Router, name: &str, partitions: u32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    router
        .create_topic(TopicSpec {
            name: name.into(),
            partitions,
            configs,
            id: None,
        })
        .await
        .expect("topic created");
}

/// A batch of `records` records of `value_len` bytes whose content derives from `seed`,
/// with record timestamps `timestamp_ms + i`.
pub fn batch(seed: u64, records: usize, value_len: usize, timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp_ms);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for record in 0..records {
        let value: Vec<u8> = (0..value_len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let key = seed.to_be_bytes();
        let offset_ms = i64::try_from(record).expect("small");
        builder.record_at(
            timestamp_ms + offset_ms,
            Some(&key),
            Some(&value),
            &[("seed", &key)],
        );
    }
    builder.build()
}

pub fn validated(bytes: Vec<u8>) -> ValidatedBatch {
    ValidatedBatch::new(bytes, 64 << 20).expect("test batches are valid")
}

/// Every batch of the partition from `from` to its high watermark, as `(base offset, bytes)`.
pub async fn read_all(
    router: &Router,
    topic: &str,
    partition: u32,
    from: i64,
) -> Result<Vec<(i64, Vec<u8>)>, ReadError> {
    let mut batches = Vec::new();
    let mut next = Offset::new(from).expect("non-negative");
    loop {
        let outcome = router.read(topic, partition, next, 256 << 10).await?;
        if outcome.bytes.is_empty() {
            assert_eq!(
                next, outcome.offsets.high_watermark,
                "an empty read happens only at the end"
            );
            return Ok(batches);
        }
        let mut rest = &outcome.bytes[..];
        while !rest.is_empty() {
            let header = strand_engine::batch::check_stored_batch(&rest[..total_len(rest)])
                .expect("reads return valid batches");
            let len = header.total_len();
            if header.last_offset() >= next.value() {
                batches.push((header.base_offset, rest[..len].to_vec()));
            }
            next = Offset::new(header.last_offset() + 1).expect("non-negative");
            rest = &rest[len..];
        }
    }
}

fn total_len(bytes: &[u8]) -> usize {
    12 + usize::try_from(i32::from_be_bytes(
        bytes[8..12].try_into().expect("4 bytes"),
    ))
    .expect("positive")
}

/// `bytes` with the broker-owned fields (base offset, leader epoch) zeroed, for comparing
/// a stored batch with the one that was sent.
pub fn as_sent(bytes: &[u8]) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[..8].fill(0);
    copy[12..16].fill(0);
    copy
}

/// The segment log files in the partition directory `dir`, oldest first.
pub fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

/// The directory of partition `index` of `topic` under `data_dir`.
pub fn partition_dir(data_dir: &Path, topic: &str, index: u32) -> PathBuf {
    let prefix = format!("{topic}-{index}~");
    std::fs::read_dir(data_dir.join("partitions"))
        .expect("partitions directory")
        .map(|entry| entry.expect("entry").path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .expect("partition directory exists")
}

/// Removes the clean-shutdown marker, so the next start recovers as after a crash.
pub fn forget_clean_shutdown(data_dir: &Path) {
    std::fs::remove_file(data_dir.join("clean-shutdown"))
        .expect("a clean shutdown left its marker");
}

/// A record read back: offset, key, value (`None`: a tombstone).
pub type ReadRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `batches` (as [`read_all`] returns them), in offset order.
pub fn records_of(batches: &[(i64, Vec<u8>)]) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    for (_, bytes) in batches {
        let header = strand_engine::batch::check_stored_batch(bytes).expect("a stored batch");
        let records = strand_engine::batch_rewrite::open_records(bytes, &header, 64 << 20)
            .expect("records open");
        let count = usize::try_from(header.record_count).expect("non-negative");
        for record in strand_engine::records::parse(&records, count).expect("records parse") {
            out.push((
                header.base_offset + i64::from(record.offset_delta),
                record.key.map(<[u8]>::to_vec),
                record.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// The base offset of the partition's newest segment (the active one); 0 before the
/// first segment file exists.
pub fn active_base(dir: &Path) -> i64 {
    let Some(last) = segment_logs(dir).pop() else {
        return 0;
    };
    last.file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("segment files are named by their base offset")
}
