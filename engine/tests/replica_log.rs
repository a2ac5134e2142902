//! The engine's side of chain replication, through real shards: a follower appends the
//! batches a head stored at the head's offsets and epoch, byte for byte, and refuses one
//! that does not continue its log; a replicated partition's consumers read only below the
//! committed offset while replication reads everything durable; and a follower keeps the
//! idempotent producers' state, so a retry is still recognised after it takes over. A log
//! cut back (entries a deposed head never committed) loses exactly what lies past the cut,
//! across segments, restarts and crashes, and refuses cuts it must not make.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use strand_engine::TruncateError;
use strand_engine::batch_builder::BatchBuilder;
use strand_engine::producer_state::{ProducerStates, SNAPSHOT_FILE};
use strand_engine::{AppendError, Offset, ReadLimit, Router};
use support::{
    TestEngine, batch, create_topic, forget_clean_shutdown, partition_dir, read_all, segment_logs,
    test_config, validated,
};

fn offset(value: i64) -> Offset {
    Offset::new(value).unwrap()
}

/// The wall clock in Unix milliseconds, for batches retention and `segment.ms` leave be.
fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

/// Every durable batch of `topic`-0 from `from`, as stored.
async fn durable_batches(router: &Router, topic: &str, from: i64) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut next = offset(from);
    loop {
        let outcome = router
            .read_up_to(topic, 0, next, 1 << 20, ReadLimit::Durable)
            .await
            .unwrap();
        if outcome.bytes.is_empty() {
            return batches;
        }
        let mut rest = &outcome.bytes[..];
        while !rest.is_empty() {
            let len =
                usize::try_from(i32::from_be_bytes(rest[8..12].try_into().unwrap())).unwrap() + 12;
            let header = strand_engine::batch::check_batch(&rest[..len]).unwrap();
            batches.push(rest[..len].to_vec());
            next = offset(header.last_offset() + 1);
            rest = &rest[len..];
        }
    }
}

#[test]
fn a_follower_stores_the_heads_batches_as_they_are_and_refuses_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 2));
    engine.run(|router| async move {
        create_topic(&router, "head", 1, &[("segment.bytes", "4096")]).await;
        create_topic(&router, "follower", 1, &[("segment.bytes", "4096")]).await;
        for seed in 0..12 {
            router
                .append_in_epoch("head", 0, validated(batch(seed, 3, 200, 1_000)), 7)
                .await
                .unwrap();
        }
        let stored = durable_batches(&router, "head", 0).await;
        assert_eq!(stored.len(), 12);
        for bytes in &stored {
            let header = strand_engine::batch::check_batch(bytes).unwrap();
            assert_eq!(header.partition_leader_epoch, 7);
            let outcome = router
                .append_replica("follower", 0, validated(bytes.clone()))
                .await
                .unwrap();
            assert_eq!(outcome.base_offset.value(), header.base_offset);
        }
        assert_eq!(durable_batches(&router, "follower", 0).await, stored);
        let head = read_all(&router, "head", 0, 0).await.unwrap();
        let follower = read_all(&router, "follower", 0, 0).await.unwrap();
        assert_eq!(head, follower, "rolled segments and all");

        // A batch already held, and one past the end, do not continue the log.
        for bytes in [stored[3].clone(), {
            let mut later = validated(stored[0].clone());
            later.assign(offset(40), 7);
            later.to_vec()
        }] {
            let refused = router.append_replica("follower", 0, validated(bytes)).await;
            assert!(
                matches!(refused, Err(AppendError::NotAtLogEnd { expected: 36, .. })),
                "{refused:?}"
            );
        }
    });
}

#[test]
fn consumers_read_below_the_committed_offset_and_replication_reads_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "chain", 1, &[]).await;
        for seed in 0..4 {
            router
                .append("chain", 0, validated(batch(seed, 2, 50, 1_000)))
                .await
                .unwrap();
        }
        // Not yet replicated: everything durable is readable.
        assert_eq!(read_all(&router, "chain", 0, 0).await.unwrap().len(), 4);
        let offsets = router.set_committed("chain", 0, offset(4)).await.unwrap();
        assert_eq!(offsets.high_watermark, offset(4));
        assert_eq!(offsets.log_end, offset(8));
        let visible = read_all(&router, "chain", 0, 0).await.unwrap();
        assert_eq!(
            visible.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(durable_batches(&router, "chain", 0).await.len(), 4);
        // Reading at the committed offset finds nothing yet; a lower commit is ignored.
        let at = router.read("chain", 0, offset(4), 1 << 20).await.unwrap();
        assert!(at.bytes.is_empty());
        let lower = router.set_committed("chain", 0, offset(2)).await.unwrap();
        assert_eq!(lower.high_watermark, offset(4));
        // A consumer waiting at the committed offset wakes when it rises.
        let waiter = router.clone();
        let (_, raised) = futures::join!(
            async move { waiter.wait_for_data("chain", 0, offset(4)).await },
            async {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                router.set_committed("chain", 0, offset(100)).await.unwrap()
            }
        );
        assert_eq!(
            raised.high_watermark,
            offset(8),
            "capped at the durable end"
        );
        assert_eq!(read_all(&router, "chain", 0, 0).await.unwrap().len(), 4);
    });
}

#[test]
fn a_follower_keeps_idempotent_producers_so_a_retry_after_takeover_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "head", 1, &[]).await;
        create_topic(&router, "follower", 1, &[]).await;
        let idempotent = |sequence: i32| {
            let mut builder = BatchBuilder::new(1_700_000_000_000);
            builder.producer(42, 0, sequence);
            builder.record(None, Some(b"once"), &[]);
            builder.record(None, Some(b"only"), &[]);
            builder.build()
        };
        let first = router
            .append_in_epoch("head", 0, validated(idempotent(0)), 1)
            .await
            .unwrap();
        for bytes in durable_batches(&router, "head", 0).await {
            router
                .append_replica("follower", 0, validated(bytes))
                .await
                .unwrap();
        }
        // The follower is head now; the producer retries its batch there.
        let retry = router
            .append_in_epoch("follower", 0, validated(idempotent(0)), 2)
            .await
            .unwrap();
        assert_eq!(retry.base_offset, first.base_offset);
        assert_eq!(retry.last_offset, first.last_offset);
        let next = router
            .append_in_epoch("follower", 0, validated(idempotent(2)), 2)
            .await
            .unwrap();
        assert_eq!(next.base_offset.value(), 2);
    });
}

/// The base offsets of `topic`-0's segments, from their file names.
fn segment_bases(data_dir: &std::path::Path, topic: &str) -> Vec<i64> {
    segment_logs(&partition_dir(data_dir, topic, 0))
        .iter()
        .map(|path| path.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .collect()
}

/// Twelve batches of three records (bases 0, 3, .. 33) over several 4 KiB segments.
async fn twelve_batches(router: &Router, topic: &str) {
    create_topic(router, topic, 1, &[("segment.bytes", "4096")]).await;
    // Recent timestamps, so only size rolls segments (segment.ms counts from them).
    let now_ms = now_ms();
    for seed in 0..12 {
        router
            .append(topic, 0, validated(batch(seed, 3, 200, now_ms)))
            .await
            .unwrap();
    }
}

fn bases(batches: &[(i64, Vec<u8>)]) -> Vec<i64> {
    batches.iter().map(|(base, _)| *base).collect()
}

#[test]
fn a_cut_drops_exactly_what_lies_past_it_and_survives_restarts_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let engine = TestEngine::start(test_config(&data, 1));
    engine.run(|router| async move {
        twelve_batches(&router, "cut").await;
    });
    let segments = segment_bases(&data, "cut");
    assert!(segments.len() >= 3, "several segments: {segments:?}");
    // A cut inside an earlier segment, one at a segment's base, and one at the log start.
    let inside = (segments[1]..segments[2]).find(|base| base % 3 == 0 && *base > segments[1]);
    let inside = inside.unwrap();
    let at_base = segments[2];
    let kept: Vec<i64> = (0..12).map(|n| n * 3).collect();
    let (before, after) = engine.run(move |router| async move {
        let before = read_all(&router, "cut", 0, 0).await.unwrap();
        let offsets = router.truncate("cut", 0, offset(at_base)).await.unwrap();
        assert_eq!(offsets.log_end, offset(at_base));
        let offsets = router.truncate("cut", 0, offset(inside)).await.unwrap();
        assert_eq!(
            (offsets.log_end, offsets.high_watermark),
            (offset(inside), offset(inside))
        );
        let next = router
            .append("cut", 0, validated(batch(99, 2, 10, 2_000)))
            .await
            .unwrap();
        assert_eq!(
            next.base_offset,
            offset(inside),
            "appends continue at the cut"
        );
        (before, read_all(&router, "cut", 0, 0).await.unwrap())
    });
    assert_eq!(bases(&before), kept);
    let expected: Vec<(i64, Vec<u8>)> = before
        .iter()
        .filter(|(base, _)| *base < inside)
        .cloned()
        .chain(after.last().cloned())
        .collect();
    assert_eq!(after, expected);
    assert!(
        segment_bases(&data, "cut")
            .iter()
            .all(|base| *base <= inside)
    );

    // A clean restart, then a crash-like one, read the same.
    engine.stop();
    let engine = TestEngine::start(test_config(&data, 1));
    let expected_again = expected.clone();
    engine.run(move |router| async move {
        assert_eq!(
            read_all(&router, "cut", 0, 0).await.unwrap(),
            expected_again
        );
        let offsets = router.truncate("cut", 0, offset(0)).await.unwrap();
        assert_eq!(offsets.log_end, offset(0), "cut back to the log start");
        router
            .append("cut", 0, validated(batch(7, 1, 10, 3_000)))
            .await
            .unwrap();
    });
    engine.stop();
    forget_clean_shutdown(&data);
    let engine = TestEngine::start(test_config(&data, 1));
    engine.run(|router| async move {
        let left = read_all(&router, "cut", 0, 0).await.unwrap();
        assert_eq!(bases(&left), vec![0]);
        assert_eq!(
            left[0].1[61..],
            validated(batch(7, 1, 10, 3_000)).to_vec()[61..]
        );
    });
}

#[test]
fn cuts_that_would_lose_committed_data_or_split_a_batch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        twelve_batches(&router, "refuse").await;
        let split = router.truncate("refuse", 0, offset(10)).await;
        assert!(
            matches!(split, Err(TruncateError::NotABatchBoundary { to: 10, .. })),
            "{split:?}"
        );
        router.set_committed("refuse", 0, offset(12)).await.unwrap();
        let committed = router.truncate("refuse", 0, offset(9)).await;
        assert!(
            matches!(
                committed,
                Err(TruncateError::BelowCommitted { committed: 12, .. })
            ),
            "{committed:?}"
        );
        let past = router.truncate("refuse", 0, offset(36)).await.unwrap();
        assert_eq!(
            past.log_end,
            offset(36),
            "a cut at the log end changes nothing"
        );
        assert_eq!(read_all(&router, "refuse", 0, 0).await.unwrap().len(), 4);
        assert_eq!(durable_batches(&router, "refuse", 0).await.len(), 12);
        // At the committed offset is allowed, and the partition stays replicated.
        let cut = router.truncate("refuse", 0, offset(12)).await.unwrap();
        assert_eq!((cut.high_watermark, cut.log_end), (offset(12), offset(12)));
        router
            .append("refuse", 0, validated(batch(1, 1, 10, 1_000)))
            .await
            .unwrap();
        assert_eq!(
            router.offsets("refuse", 0).await.unwrap().high_watermark,
            offset(12),
            "still capped by the committed offset after reopening"
        );
    });
}

#[test]
fn a_cut_forgets_the_idempotent_batches_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let engine = TestEngine::start(test_config(&data, 1));
    engine.run(move |router| async move {
        create_topic(&router, "idem", 1, &[]).await;
        // Recent timestamps: housekeeping below must not expire them.
        let now_ms = now_ms();
        let idempotent = |sequence: i32| {
            let mut builder = BatchBuilder::new(now_ms);
            builder.producer(42, 0, sequence);
            builder.record(None, Some(b"x"), &[]);
            builder.build()
        };
        for sequence in 0..3 {
            router
                .append("idem", 0, validated(idempotent(sequence)))
                .await
                .unwrap();
        }
        // A producer snapshot covering all three batches, then the cut: no snapshot of
        // the old log may survive it (a crash would restore sequences that are gone).
        let snapshot = partition_dir(&data, "idem", 0).join(SNAPSHOT_FILE);
        router.housekeeping().await;
        while !snapshot.exists() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let (_, covered) = ProducerStates::decode(&std::fs::read(&snapshot).unwrap()).unwrap();
        assert_eq!(covered, offset(3));
        router.truncate("idem", 0, offset(1)).await.unwrap();
        if let Ok(bytes) = std::fs::read(&snapshot) {
            let (_, covered) = ProducerStates::decode(&bytes).unwrap();
            assert!(covered <= offset(1), "a snapshot past the cut: {covered}");
        }
        // Sequence 1 is gone with the cut: sent again, it is stored anew at the cut.
        let again = router
            .append("idem", 0, validated(idempotent(1)))
            .await
            .unwrap();
        assert_eq!(again.base_offset, offset(1));
        let retry = router
            .append("idem", 0, validated(idempotent(0)))
            .await
            .unwrap();
        assert_eq!(
            retry.base_offset,
            offset(0),
            "a retry of a kept batch is a duplicate"
        );
    });
}

#[test]
fn appends_that_arrive_while_a_cut_waits_are_refused_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        twelve_batches(&router, "busy").await;
        // The first append's commit is in flight when the cut arrives, so the cut waits
        // for it; the append behind the cut must not be acknowledged and then cut away.
        let (before, cut, behind) = futures::join!(
            router.append("busy", 0, validated(batch(50, 1, 10, 1_000))),
            router.truncate("busy", 0, offset(3)),
            router.append("busy", 0, validated(batch(51, 1, 10, 1_000))),
        );
        assert_eq!(before.unwrap().base_offset, offset(36));
        assert_eq!(cut.unwrap().log_end, offset(3));
        assert!(
            matches!(behind, Err(AppendError::CutInProgress { .. })),
            "{behind:?}"
        );
        let after = router
            .append("busy", 0, validated(batch(52, 1, 10, 1_000)))
            .await
            .unwrap();
        assert_eq!(after.base_offset, offset(3));
        assert_eq!(
            bases(&read_all(&router, "busy", 0, 0).await.unwrap()),
            vec![0, 3]
        );
    });
}
