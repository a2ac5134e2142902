//! Benchmark workloads that run on a shard (through [`strand_engine::JobRunner`]), each
//! returning the time its measured part took.
//!
//! The baseline, [`raw_dma_fdatasync`], is what the disk can do for durable sequential
//! appends of one size: an aligned O_DIRECT write from one reused buffer, then fdatasync,
//! over and over, with nothing else. The engine workloads do what a produce request does
//! from the moment its bytes have arrived: copy them out of the receive buffer (the clone),
//! validate the batch (CRC), route it, append, group-commit and answer.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use strand_engine::batch_builder::BatchBuilder;
use strand_engine::group_commit::CommitProbe;
use strand_engine::{Offset, Router, ShardId, ValidatedBatch};

/// Files of the raw baseline and segments of the engine roll at this size, so a long run
/// neither fills the disk nor measures a file system that only ever overwrites.
pub const FILE_BYTES_MAX: u64 = 256 << 20;

/// Bytes of a record's value in the append benchmarks.
pub const RECORD_VALUE_BYTES: usize = 1024;

/// A batch of 1 KiB records no larger than `size_bytes`, as a producer would send it now.
pub fn batch_of_size(size_bytes: usize) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let mut builder = BatchBuilder::new(now_ms);
    let value = vec![0x5a; RECORD_VALUE_BYTES];
    let mut key = 0u64;
    loop {
        let mut grown = builder.clone();
        grown.record(Some(&key.to_be_bytes()), Some(&value), &[]);
        if grown.build().len() > size_bytes && builder.record_count() > 0 {
            return builder.build();
        }
        builder = grown;
        key += 1;
    }
}

/// `iterations` sequential O_DIRECT writes of `size_bytes`, each followed by fdatasync,
/// into files under `dir` that roll at [`FILE_BYTES_MAX`].
pub async fn raw_dma_fdatasync(dir: PathBuf, size_bytes: usize, iterations: u64) -> Duration {
    let mut buffer = glommio::allocate_dma_buffer(size_bytes);
    buffer.as_bytes_mut().fill(0x5a);
    let buffer = Rc::new(buffer);
    let size = u64::try_from(size_bytes).expect("size fits in u64");
    let mut file_number = 0;
    let mut file = create(&dir, file_number).await;
    let mut position = 0;
    let mut elapsed = Duration::ZERO;
    let mut started = Instant::now();
    for _ in 0..iterations {
        if position + size > FILE_BYTES_MAX {
            elapsed += started.elapsed();
            file.close().await.expect("close raw file");
            let _ = std::fs::remove_file(raw_path(&dir, file_number));
            file_number += 1;
            file = create(&dir, file_number).await;
            position = 0;
            started = Instant::now();
        }
        let written = file
            .write_rc_at(buffer.clone(), position)
            .await
            .expect("raw write");
        assert_eq!(written, size_bytes, "short raw write");
        file.fdatasync().await.expect("raw fdatasync");
        position += size;
    }
    elapsed += started.elapsed();
    file.close().await.expect("close raw file");
    let _ = std::fs::remove_file(raw_path(&dir, file_number));
    elapsed
}

fn raw_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("raw-{number}.dat"))
}

async fn create(dir: &Path, number: u32) -> DmaFile {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(raw_path(dir, number))
        .await
        .expect("create raw file")
}

/// `iterations` appends of `batch` to `topic`/`partition`, `in_flight` at a time, each
/// answered only once durable. Returns the time and what the group commits did meanwhile.
pub async fn appends(
    router: Router,
    topic: &str,
    partition: u32,
    batch: Rc<Vec<u8>>,
    iterations: u64,
    in_flight: u64,
) -> (Duration, CommitProbe) {
    let (_, owner) = router.resolve(topic, partition).expect("partition exists");
    let before = router.stats(owner).await.expect("shard answers").commits;
    let started = Instant::now();
    let workers = (0..in_flight).map(|worker| {
        let (router, batch) = (router.clone(), batch.clone());
        let count = iterations / in_flight + u64::from(worker < iterations % in_flight);
        async move {
            for _ in 0..count {
                let validated =
                    ValidatedBatch::new(batch.as_ref().clone(), 64 << 20).expect("valid batch");
                router
                    .append(topic, partition, validated)
                    .await
                    .expect("append");
            }
        }
    });
    futures::future::join_all(workers).await;
    let elapsed = started.elapsed();
    let after = router.stats(owner).await.expect("shard answers").commits;
    (elapsed, commits_between(before, after))
}

fn commits_between(before: CommitProbe, after: CommitProbe) -> CommitProbe {
    CommitProbe {
        commits: after.commits - before.commits,
        batches: after.batches - before.batches,
        bytes: after.bytes - before.bytes,
        write_time: after.write_time - before.write_time,
        sync_time: after.sync_time - before.sync_time,
    }
}

/// Reads `iterations` times up to `bytes_max` from `topic`/`partition`, walking the log
/// from offset 0 and starting over at the end. Returns the time and the bytes read.
pub async fn reads(
    router: Router,
    topic: &str,
    partition: u32,
    bytes_max: usize,
    iterations: u64,
) -> (Duration, u64) {
    let end = router
        .offsets(topic, partition)
        .await
        .expect("offsets")
        .high_watermark;
    let mut from = Offset::ZERO;
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        if from >= end {
            from = Offset::ZERO;
        }
        let outcome = router
            .read(topic, partition, from, bytes_max)
            .await
            .expect("read");
        bytes += u64::try_from(outcome.bytes.len()).expect("fits");
        from = next_offset(&outcome.bytes).unwrap_or(end);
    }
    (started.elapsed(), bytes)
}

/// The offset after the last batch in `bytes`.
fn next_offset(bytes: &[u8]) -> Option<Offset> {
    let mut at = 0;
    let mut next = None;
    while at < bytes.len() {
        let header = strand_engine::BatchHeader::parse(&bytes[at..]).ok()?;
        next = Offset::new(header.last_offset() + 1);
        at += header.total_len();
    }
    next
}

/// `iterations` round trips to `shard` and back over its request channel.
pub async fn pings(router: Router, shard: ShardId, iterations: u64) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        router.ping(shard).await.expect("shard answers");
    }
    started.elapsed()
}
