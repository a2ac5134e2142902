//! Group commits that overlap: while one commit's fdatasync runs, the next one writes.
//!
//! Many appends in flight at once, into segments small enough to roll every few batches,
//! so commits that create a segment's file overlap with commits that write to it. Every
//! append must be acknowledged at its own offsets and read back whole, before and after a
//! restart.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{
    TestEngine, as_sent, batch, create_topic, read_all, segment_logs, test_config, validated,
};

const ROUNDS: u64 = 8;
const APPENDS_PER_ROUND: u64 = 60;
const RECORDS_PER_BATCH: usize = 3;

#[test]
fn concurrent_appends_across_segment_rolls_are_all_stored_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 1);
    let engine = TestEngine::start(config.clone());
    let mut sent: Vec<(i64, Vec<u8>)> = engine.run(|router| async move {
        create_topic(&router, "overlap", 1, &[("segment.bytes", "16384")]).await;
        let mut sent = Vec::new();
        for round in 0..ROUNDS {
            let appends = (0..APPENDS_PER_ROUND).map(|index| {
                let bytes = batch(
                    round * APPENDS_PER_ROUND + index,
                    RECORDS_PER_BATCH,
                    300,
                    now_ms(),
                );
                let router = router.clone();
                async move {
                    let outcome = router
                        .append("overlap", 0, validated(bytes.clone()))
                        .await
                        .expect("append");
                    (outcome.base_offset.value(), bytes)
                }
            });
            sent.extend(futures::future::join_all(appends).await);
        }
        let stored = read_all(&router, "overlap", 0, 0).await.unwrap();
        assert_stored(&mut sent.clone(), &stored);
        sent
    });
    engine.stop();
    let logs = segment_logs(&support::partition_dir(dir.path(), "overlap", 0));
    assert!(
        logs.len() >= 20,
        "{} batches of ~1 KiB roll 16 KiB segments often: {logs:?}",
        sent.len()
    );

    let engine = TestEngine::start(config);
    let stored = engine.run(|router| async move { read_all(&router, "overlap", 0, 0).await });
    assert_stored(&mut sent, &stored.unwrap());
}

/// Each acknowledged batch is stored at its acknowledged offset, in offset order, with
/// nothing else in the log.
fn assert_stored(sent: &mut [(i64, Vec<u8>)], stored: &[(i64, Vec<u8>)]) {
    sent.sort_by_key(|(offset, _)| *offset);
    let expected_offsets: Vec<i64> = (0..sent.len())
        .map(|index| i64::try_from(index * RECORDS_PER_BATCH).unwrap())
        .collect();
    let acknowledged: Vec<i64> = sent.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        acknowledged, expected_offsets,
        "acknowledged offsets are dense"
    );
    assert_eq!(
        stored.len(),
        sent.len(),
        "every acknowledged batch is stored"
    );
    for ((offset, bytes), (stored_offset, stored_bytes)) in sent.iter().zip(stored) {
        assert_eq!(offset, stored_offset);
        assert_eq!(&as_sent(stored_bytes), bytes, "the batch at {offset}");
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}
