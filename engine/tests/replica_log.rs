//! The engine's side of chain replication, through real shards: a follower appends the
//! batches a head stored at the head's offsets and epoch, byte for byte, and refuses one
//! that does not continue its log; a replicated partition's consumers read only below the
//! committed offset while replication reads everything durable; and a follower keeps the
//! idempotent producers' state, so a retry is still recognised after it takes over.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use strand_engine::batch_builder::BatchBuilder;
use strand_engine::{AppendError, Offset, ReadLimit, Router};
use support::{TestEngine, batch, create_topic, read_all, test_config, validated};

fn offset(value: i64) -> Offset {
    Offset::new(value).unwrap()
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
