//! Idempotent producers through real shards: a retried batch is answered with its original
//! offsets and stored once, a sequence gap and an old epoch are refused, and all of it
//! holds across clean restarts and restarts that must rebuild the state from the log.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use strand_engine::batch_builder::BatchBuilder;
use strand_engine::producer_state::{SNAPSHOT_FILE, SequenceError};
use strand_engine::{AppendError, AppendOutcome, Router};
use support::{
    TestEngine, create_topic, forget_clean_shutdown, partition_dir, read_all, test_config,
    validated,
};

fn idempotent(producer: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    builder.producer(producer, epoch, sequence);
    for record in 0..records {
        let value = format!("{producer}/{epoch}/{}", i64::from(sequence) + record as i64);
        builder.record(None, Some(value.as_bytes()), &[]);
    }
    builder.build()
}

async fn send(router: &Router, bytes: Vec<u8>) -> Result<AppendOutcome, AppendError> {
    router.append("idem", 0, validated(bytes)).await
}

fn sequence_error(result: Result<AppendOutcome, AppendError>) -> SequenceError {
    match result {
        Err(AppendError::Sequence { error, .. }) => error,
        other => panic!("expected a sequence error, got {other:?}"),
    }
}

#[test]
fn retries_are_stored_once_and_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 2));
    engine.run(|router| async move {
        create_topic(&router, "idem", 1, &[]).await;
        let first = send(&router, idempotent(9, 0, 0, 3)).await.unwrap();
        let second = send(&router, idempotent(9, 0, 3, 2)).await.unwrap();
        // Retries of both, the older first, and concurrently with a new batch.
        let (retry_first, retry_second, third) = futures::join!(
            send(&router, idempotent(9, 0, 0, 3)),
            send(&router, idempotent(9, 0, 3, 2)),
            send(&router, idempotent(9, 0, 5, 1)),
        );
        assert_eq!(retry_first.unwrap().base_offset, first.base_offset);
        assert_eq!(retry_second.unwrap().last_offset, second.last_offset);
        assert_eq!(third.unwrap().base_offset.value(), 5);
        let gap = sequence_error(send(&router, idempotent(9, 0, 8, 1)).await);
        assert!(matches!(
            gap,
            SequenceError::OutOfOrder {
                expected: 6,
                got: 8,
                ..
            }
        ));
        let bumped = send(&router, idempotent(9, 1, 0, 1)).await.unwrap();
        assert_eq!(bumped.base_offset.value(), 6);
        let fenced = sequence_error(send(&router, idempotent(9, 0, 6, 1)).await);
        assert!(matches!(fenced, SequenceError::Fenced { current: 1, .. }));
        let unknown = sequence_error(send(&router, idempotent(10, 0, 4, 1)).await);
        assert!(matches!(
            unknown,
            SequenceError::OutOfOrder { expected: 0, .. }
        ));
        let stored = read_all(&router, "idem", 0, 0).await.unwrap();
        assert_eq!(stored.len(), 4, "each batch is stored once");
    });
    engine.stop();
}

/// Restarts, the second time with the snapshot gone so the state comes from the log.
#[test]
fn a_retry_after_a_restart_still_gets_its_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    let first = engine.run(|router| async move {
        create_topic(&router, "idem", 1, &[]).await;
        for sequence in [0, 2] {
            send(&router, idempotent(4, 0, sequence, 2)).await.unwrap();
        }
        send(&router, idempotent(4, 0, 0, 2)).await.unwrap()
    });
    engine.stop();
    let partition = partition_dir(dir.path(), "idem", 0);
    assert!(
        partition.join(SNAPSHOT_FILE).exists(),
        "a clean stop saves the snapshot"
    );
    for rebuild in [false, true] {
        if rebuild {
            std::fs::remove_file(partition.join(SNAPSHOT_FILE)).unwrap();
            forget_clean_shutdown(dir.path());
        }
        let engine = TestEngine::start(test_config(dir.path(), 1));
        engine.run(move |router| async move {
            let retry = send(&router, idempotent(4, 0, 0, 2)).await.unwrap();
            assert_eq!(
                retry,
                AppendOutcome {
                    log_start: retry.log_start,
                    ..first
                }
            );
            let gap = sequence_error(send(&router, idempotent(4, 0, 7, 1)).await);
            assert!(matches!(gap, SequenceError::OutOfOrder { expected: 4, .. }));
            assert_eq!(read_all(&router, "idem", 0, 0).await.unwrap().len(), 2);
        });
        engine.stop();
    }
}
