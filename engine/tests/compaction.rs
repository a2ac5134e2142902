//! Log compaction through real shards.
//!
//! Cleaning keeps exactly the latest record of every key below the active segment, keeps
//! every offset readable (the log still starts at 0 and reads from any offset work),
//! removes tombstones once `delete.retention.ms` has passed since the pass that first saw
//! them, keeps an idempotent producer's latest batch (so a retry is still recognised after
//! a restart), and survives restarts. A property test checks random runs of writes,
//! deletes, passes and restarts against a model map of key → latest value.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use strand_engine::batch_builder::BatchBuilder;
use strand_engine::{Offset, Router};
use support::{
    ReadRecord, TestEngine, active_base, create_topic, partition_dir, read_all, records_of,
    test_config, validated,
};

/// One batch of `(key, value)` records; a `None` value is a tombstone.
fn keyed(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms());
    for (key, value) in records {
        builder.record(Some(key), value.as_deref(), &[]);
    }
    builder.build()
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

async fn put(router: &Router, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> i64 {
    router
        .append(topic, 0, validated(keyed(records)))
        .await
        .expect("append")
        .base_offset
        .value()
}

/// Runs passes until one finds nothing to do; returns how many did something.
async fn clean_fully(router: &Router, topic: &str) -> u64 {
    for pass in 0..32 {
        let stats = router.clean(topic, 0).await.expect("a pass runs");
        if stats.passes == 0 {
            return pass;
        }
    }
    panic!("cleaning {topic} never settles");
}

async fn read_records(router: &Router, topic: &str, from: i64) -> Vec<ReadRecord> {
    records_of(&read_all(router, topic, 0, from).await.expect("reads"))
}

/// The latest value of every key in `records` (tombstones delete).
fn fold(records: &[ReadRecord]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = BTreeMap::new();
    for (_, key, value) in records {
        let key = key.clone().expect("compacted topics hold keyed records");
        match value {
            Some(value) => map.insert(key, value.clone()),
            None => map.remove(&key),
        };
    }
    map
}

/// Below the active segment (which passes never clean, as in Kafka), every record left is
/// the latest of its key there; `writes` is every record written, as (key, offset).
fn assert_cleaned(records: &[ReadRecord], writes: &[(Vec<u8>, i64)], active: i64) {
    let mut latest = BTreeMap::new();
    for (key, offset) in writes.iter().filter(|(_, offset)| *offset < active) {
        latest.insert(key.clone(), *offset);
    }
    let mut previous = -1;
    for (offset, key, _) in records {
        assert!(
            *offset > previous,
            "offsets increase: {offset} after {previous}"
        );
        previous = *offset;
        if *offset < active {
            let key = key.as_ref().unwrap();
            assert_eq!(
                latest.get(key),
                Some(offset),
                "offset {offset} below the active segment at {active} is not its key's latest there"
            );
        }
    }
}

#[test]
fn compaction_keeps_exactly_the_latest_value_of_each_key_over_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 2);
    let engine = TestEngine::start(config.clone());
    let (model, latest) = engine.run(|router| async move {
        let settings = [("cleanup.policy", "compact"), ("segment.bytes", "4096")];
        create_topic(&router, "changelog", 1, &settings).await;
        let mut model = BTreeMap::new();
        let mut latest = Vec::new();
        let mut state = 0x2545_f491_u64;
        for round in 0..500 {
            let mut records = Vec::new();
            for _ in 0..3 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let key = format!("key-{}", (state >> 33) % 80).into_bytes();
                let value = format!("value-{round}-{}", state % 1000).into_bytes();
                records.push((key, Some(value)));
            }
            let base = put(&router, "changelog", &records).await;
            for (index, (key, value)) in records.into_iter().enumerate() {
                latest.push((key.clone(), base + i64::try_from(index).unwrap()));
                model.insert(key, value.unwrap());
            }
        }
        let passes = clean_fully(&router, "changelog").await;
        assert!(passes >= 1, "there was something to clean");
        let offsets = router.offsets("changelog", 0).await.unwrap();
        assert_eq!(
            offsets.log_start,
            Offset::ZERO,
            "cleaning keeps the log start"
        );
        assert_eq!(offsets.high_watermark.value(), 1500, "and the log end");
        (model, latest)
    });
    let active = active_base(&partition_dir(dir.path(), "changelog", 0));
    assert!(active > 0, "the records span many segments");
    let check = move |router: Router| {
        let (model, latest) = (model.clone(), latest.clone());
        async move {
            let records = read_records(&router, "changelog", 0).await;
            assert_eq!(
                fold(&records),
                model,
                "reading from the start gives each key's latest value"
            );
            assert_cleaned(&records, &latest, active);
            let below = records
                .iter()
                .filter(|(offset, ..)| *offset < active)
                .count();
            assert!(
                below <= 80,
                "at most one record per key below the active segment: {below}"
            );
            // Reads from inside a removed run start at the next record kept.
            for from in [1, 100, 777, active - 1] {
                let mut tail = read_records(&router, "changelog", from).await;
                // A read returns whole batches; clients skip the records before `from`.
                tail.retain(|(offset, ..)| *offset >= from);
                let expected: Vec<&ReadRecord> = records
                    .iter()
                    .filter(|(offset, ..)| *offset >= from)
                    .collect();
                assert_eq!(
                    tail.iter().collect::<Vec<_>>(),
                    expected,
                    "read from {from}"
                );
            }
        }
    };
    engine.run(check.clone());
    engine.stop();
    // Everything holds after a restart too (and cleaning again finds nothing new).
    let engine = TestEngine::start(config);
    engine.run(check.clone());
    engine.run(|router| async move {
        let stats = router.clean("changelog", 0).await.unwrap();
        assert_eq!(
            stats.records_removed, 0,
            "a second pass after a restart removes nothing"
        );
    });
    engine.run(check);
    engine.stop();
}

#[test]
fn tombstones_go_after_delete_retention_and_stay_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        for (topic, retention) in [("quick", "0"), ("slow", "86400000")] {
            let settings = [
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1024"),
                ("delete.retention.ms", retention),
            ];
            create_topic(&router, topic, 1, &settings).await;
            for key in 0..10 {
                let record = (format!("k{key}").into_bytes(), Some(vec![b'v'; 40]));
                put(&router, topic, &[record]).await;
            }
            for key in 0..5 {
                put(&router, topic, &[(format!("k{key}").into_bytes(), None)]).await;
            }
            // Fillers roll the tombstones into closed segments.
            for filler in 0..40 {
                let record = (
                    format!("f{}", filler % 4).into_bytes(),
                    Some(vec![b'f'; 40]),
                );
                put(&router, topic, &[record]).await;
            }
            clean_fully(&router, topic).await;
        }
        let quick = read_records(&router, "quick", 0).await;
        let slow = read_records(&router, "slow", 0).await;
        let tombstones = |records: &[ReadRecord]| {
            records
                .iter()
                .filter(|(_, _, value)| value.is_none())
                .count()
        };
        assert_eq!(
            tombstones(&quick),
            0,
            "tombstones past delete.retention.ms are removed"
        );
        assert_eq!(
            tombstones(&slow),
            5,
            "tombstones within delete.retention.ms stay"
        );
        for records in [&quick, &slow] {
            let keys: Vec<Vec<u8>> = fold(records).into_keys().collect();
            let expected: Vec<Vec<u8>> = ["f0", "f1", "f2", "f3", "k5", "k6", "k7", "k8", "k9"]
                .iter()
                .map(|key| key.as_bytes().to_vec())
                .collect();
            assert_eq!(keys, expected, "deleted keys stay deleted");
        }
    });
    engine.stop();
}

#[test]
fn an_idempotent_producers_latest_batch_survives_cleaning_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 1);
    let engine = TestEngine::start(config.clone());
    let producer_batch = |sequence: i32, value: &str| {
        let mut builder = BatchBuilder::new(now_ms());
        builder.producer(77, 0, sequence);
        builder.record(Some(b"same-key"), Some(value.as_bytes()), &[]);
        builder.build()
    };
    let last = producer_batch(9, "ten");
    let sent = last.clone();
    let original = engine.run(move |router| async move {
        let settings = [("cleanup.policy", "compact"), ("segment.bytes", "1024")];
        create_topic(&router, "idem", 1, &settings).await;
        for sequence in 0..9 {
            let bytes = producer_batch(sequence, &format!("v{sequence}"));
            router.append("idem", 0, validated(bytes)).await.unwrap();
        }
        let original = router.append("idem", 0, validated(sent)).await.unwrap();
        // Other keys roll the producer's batches into closed segments.
        for filler in 0..30 {
            put(
                &router,
                "idem",
                &[(b"other".to_vec(), Some(vec![b'o'; 60 + filler]))],
            )
            .await;
        }
        clean_fully(&router, "idem").await;
        let producers = router.producers("idem", 0).await.unwrap();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].producer_id, 77);
        assert_eq!(producers[0].last_sequence, 9);
        original
    });
    engine.stop();
    support::forget_clean_shutdown(dir.path());
    let engine = TestEngine::start(config);
    engine.run(move |router| async move {
        let retry = router.append("idem", 0, validated(last)).await.unwrap();
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (original.base_offset, original.last_offset),
            "a retry of the latest batch is still answered with its offsets"
        );
        let records = read_records(&router, "idem", 0).await;
        let map = fold(&records);
        assert_eq!(map.get(b"same-key".as_slice()), Some(&b"ten".to_vec()));
    });
    engine.stop();
}

#[test]
fn a_topic_without_compact_refuses_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        create_topic(&router, "plain", 1, &[]).await;
        let error = router.clean("plain", 0).await.unwrap_err();
        assert!(error.contains("cleanup.policy"), "{error}");
    });
    engine.stop();
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Clean,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..8, any::<u16>()).prop_map(|(key, value)| Op::Put(key, value)),
        3 => (0u8..8).prop_map(Op::Delete),
        3 => Just(Op::Clean),
        1 => Just(Op::Restart),
    ]
}

fn check_model(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), 1);
    let mut engine = TestEngine::start(config.clone());
    engine.run(|router| async move {
        let settings = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "400"),
            ("delete.retention.ms", "0"),
        ];
        create_topic(&router, "model", 1, &settings).await;
    });
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut latest: Vec<(Vec<u8>, i64)> = Vec::new();
    for op in ops {
        match op {
            Op::Put(key, _) | Op::Delete(key) => {
                let key = vec![b'k', *key];
                let value = match op {
                    Op::Put(_, value) => Some(value.to_be_bytes().repeat(8)),
                    _ => None,
                };
                let record = (key.clone(), value.clone());
                let base =
                    engine.run(move |router| async move { put(&router, "model", &[record]).await });
                latest.push((key.clone(), base));
                match value {
                    Some(value) => model.insert(key, value),
                    None => model.remove(&key),
                };
            }
            Op::Clean => {
                engine.run(|router| async move { clean_fully(&router, "model").await });
            }
            Op::Restart => {
                engine.stop();
                engine = TestEngine::start(config.clone());
            }
        }
    }
    let records = engine.run(|router| async move { read_records(&router, "model", 0).await });
    assert_eq!(fold(&records), model, "the log reads as the model");
    // A last full clean leaves only each key's latest record below the active segment.
    let records = engine.run(|router| async move {
        clean_fully(&router, "model").await;
        read_records(&router, "model", 0).await
    });
    assert_eq!(
        fold(&records),
        model,
        "the log reads as the model after cleaning"
    );
    let active = active_base(&partition_dir(dir.path(), "model", 0));
    assert_cleaned(&records, &latest, active);
    engine.stop();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_agrees_with_a_model_of_the_latest_value_per_key(
        ops in prop::collection::vec(op(), 1..60),
    ) {
        check_model(&ops);
    }
}

#[test]
fn a_compacted_active_segment_rolls_at_max_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(test_config(dir.path(), 1));
    engine.run(|router| async move {
        let settings = [
            ("cleanup.policy", "compact"),
            ("max.compaction.lag.ms", "3600000"),
        ];
        create_topic(&router, "lagged", 1, &settings).await;
        for timestamp in [now_ms() - 7_200_000, now_ms()] {
            let mut builder = BatchBuilder::new(timestamp);
            builder.record(Some(b"k"), Some(b"v"), &[]);
            router
                .append("lagged", 0, validated(builder.build()))
                .await
                .unwrap();
        }
    });
    engine.stop();
    let logs = support::segment_logs(&partition_dir(dir.path(), "lagged", 0));
    assert_eq!(
        logs.len(),
        2,
        "the first segment rolled at the lag: {logs:?}"
    );
}
