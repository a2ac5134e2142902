//! Segment rolls and retention through real shards.
//!
//! Rolls: by `segment.bytes`, and by `segment.ms` counted from a segment's first batch
//! timestamp, as Kafka does. Retention: by `retention.ms` against batch timestamps and by
//! `retention.bytes`, whole segments, advancing the log start; when every segment has
//! expired the log rolls first so its offsets survive a restart. Timestamps in the past
//! stand in for elapsed time, so no test waits.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use strand_engine::{ConfigChange, Offset, ReadError, Router};
use support::{TestEngine, batch, create_topic, read_all, segment_logs, test_config, validated};

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn append(
    router: &Router,
    topic: &str,
    seed: u64,
    value_len: usize,
    timestamp_ms: i64,
) -> i64 {
    let bytes = batch(seed, 2, value_len, timestamp_ms);
    router
        .append(topic, 0, validated(bytes))
        .await
        .expect("append")
        .base_offset
        .value()
}

#[test]
fn segments_roll_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "sized", 1, &[("segment.bytes", "4000")]).await;
        for seed in 0..20 {
            append(&router, "sized", seed, 500, now_ms()).await;
        }
        assert_eq!(read_all(&router, "sized", 0, 0).await.unwrap().len(), 20);
    });
    engine.stop();
    let logs = segment_logs(&support::partition_dir(dir.path(), "sized", 0));
    assert!(
        logs.len() >= 6,
        "20 batches of ~1.1 KiB in 4000-byte segments: {logs:?}"
    );
    for log in &logs {
        assert!(
            std::fs::metadata(log).unwrap().len() <= 4000,
            "{log:?} exceeds segment.bytes"
        );
    }
}

#[test]
fn segments_roll_by_age_of_their_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "aged", 1, &[("segment.ms", &HOUR_MS.to_string())]).await;
        append(&router, "aged", 1, 10, now_ms() - 2 * HOUR_MS).await;
        append(&router, "aged", 2, 10, now_ms() - 2 * HOUR_MS).await;
        append(&router, "aged", 3, 10, now_ms()).await;
        append(&router, "aged", 4, 10, now_ms()).await;
    });
    engine.stop();
    let logs = segment_logs(&support::partition_dir(dir.path(), "aged", 0));
    let names: Vec<String> = logs
        .iter()
        .map(|log| log.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000000.log",
            "00000000000000000002.log",
            "00000000000000000004.log"
        ],
        "an old first batch rolls the segment at the next append; a fresh one does not"
    );
}

#[test]
fn time_retention_deletes_expired_segments_and_advances_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 1);
    let engine = TestEngine::start(config.clone());
    let log_start = engine.run(|router| async move {
        let settings = [
            ("segment.bytes", "3000"),
            ("retention.ms", &HOUR_MS.to_string()),
        ];
        create_topic(&router, "timed", 1, &settings).await;
        for seed in 0..10 {
            append(&router, "timed", seed, 500, now_ms() - 3 * HOUR_MS).await;
        }
        let first_fresh = append(&router, "timed", 100, 500, now_ms()).await;
        for seed in 101..104 {
            append(&router, "timed", seed, 500, now_ms()).await;
        }
        router.housekeeping().await;
        let offsets = router.offsets("timed", 0).await.unwrap();
        assert!(
            offsets.log_start.value() > 0 && offsets.log_start.value() <= first_fresh,
            "{offsets:?}"
        );
        let expired = router.read("timed", 0, Offset::ZERO, 1000).await;
        assert!(
            matches!(expired, Err(ReadError::OffsetOutOfRange { .. })),
            "{expired:?}"
        );
        let kept = read_all(&router, "timed", 0, offsets.log_start.value())
            .await
            .unwrap();
        assert!(
            kept.iter().any(|(base, _)| *base == first_fresh),
            "fresh batches are kept"
        );
        offsets.log_start
    });
    engine.stop();
    let logs = segment_logs(&support::partition_dir(dir.path(), "timed", 0));
    let first = logs[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .parse::<i64>()
        .unwrap();
    assert_eq!(
        first,
        log_start.value(),
        "expired segment files are deleted"
    );
    let engine = TestEngine::start(config);
    let after = engine.run(|router| async move { router.offsets("timed", 0).await.unwrap() });
    assert_eq!(
        after.log_start, log_start,
        "the log start survives a restart"
    );
}

#[test]
fn when_everything_expires_the_log_keeps_its_next_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 1);
    let engine = TestEngine::start(config.clone());
    engine.run(|router| async move {
        create_topic(
            &router,
            "emptied",
            1,
            &[("retention.ms", &HOUR_MS.to_string())],
        )
        .await;
        for seed in 0..5 {
            append(&router, "emptied", seed, 100, now_ms() - 2 * HOUR_MS).await;
        }
        router.housekeeping().await;
        let offsets = router.offsets("emptied", 0).await.unwrap();
        assert_eq!(
            (offsets.log_start.value(), offsets.log_end.value()),
            (10, 10),
            "{offsets:?}"
        );
    });
    engine.stop();
    let engine = TestEngine::start(config);
    engine.run(|router| async move {
        let offsets = router.offsets("emptied", 0).await.unwrap();
        assert_eq!(
            (offsets.log_start.value(), offsets.high_watermark.value()),
            (10, 10),
            "{offsets:?}"
        );
        assert_eq!(
            append(&router, "emptied", 9, 100, now_ms()).await,
            10,
            "offsets continue"
        );
    });
}

#[test]
fn size_retention_keeps_the_partition_under_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "bounded", 1, &[("segment.bytes", "3000")]).await;
        for seed in 0..30 {
            append(&router, "bounded", seed, 500, now_ms()).await;
        }
        router.housekeeping().await;
        assert_eq!(
            router.offsets("bounded", 0).await.unwrap().log_start,
            Offset::ZERO,
            "no limit yet"
        );
        let change = ConfigChange::Set {
            key: "retention.bytes".into(),
            value: "8000".into(),
        };
        router
            .alter_topic_config("bounded", vec![change])
            .await
            .expect("alter");
        router.housekeeping().await;
        let offsets = router.offsets("bounded", 0).await.unwrap();
        let kept = read_all(&router, "bounded", 0, offsets.log_start.value())
            .await
            .unwrap();
        let kept_bytes: usize = kept.iter().map(|(_, bytes)| bytes.len()).sum();
        assert!(offsets.log_start.value() > 0, "{offsets:?}");
        assert!(
            kept_bytes <= 8000 + 3000,
            "kept {kept_bytes} bytes, more than retention.bytes plus a segment"
        );
        assert!(
            kept_bytes > 8000 - 3000,
            "kept {kept_bytes} bytes: deleted more than needed"
        );
    });
}
