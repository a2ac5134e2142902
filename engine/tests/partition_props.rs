//! Property tests of partition logs through real shards.
//!
//! Random runs of appends (random partitions, record counts, sizes and timestamps, sent
//! concurrently so group commits take several at once) on small segments and sparse
//! indexes, interleaved with restarts, clean or recovered as after a crash. After every run
//! each partition must read back exactly the acknowledged batches, byte for byte, at the
//! offsets the appends returned; reads from any offset must start at the batch holding it;
//! and timestamp lookups must agree with a brute-force scan of every record.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use strand_engine::{Offset, RecordAtTime, Router};
use support::{TestEngine, as_sent, batch, create_topic, read_all, test_config, validated};

const TOPIC: &str = "props";
const PARTITIONS: u32 = 3;
const BASE_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// Appends sent at once: `(partition, records, value_len, timestamp offset)`.
    Appends(Vec<(u32, usize, usize, i64)>),
    Restart {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0..PARTITIONS, 1usize..5, 0usize..3000, 0i64..10_000), 1..12).prop_map(Op::Appends),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// Per partition: base offset → (sent bytes, record timestamps).
type Expected = BTreeMap<u32, BTreeMap<i64, (Vec<u8>, Vec<i64>)>>;

fn check_run(ops: &[Op], segment_bytes: u32, interval_bytes: u32) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = test_config(dir.path(), 2);
    let mut engine = TestEngine::start(config.clone());
    let configs = [segment_bytes.to_string(), interval_bytes.to_string()];
    engine.run(move |router| async move {
        let settings = [
            ("segment.bytes", configs[0].as_str()),
            ("index.interval.bytes", configs[1].as_str()),
            ("segment.ms", "315360000000"),
        ];
        create_topic(&router, TOPIC, PARTITIONS, &settings).await;
    });
    let mut expected = Expected::new();
    let mut seed = 0u64;
    for op in ops {
        match op {
            Op::Appends(appends) => {
                let sent: Vec<(u32, Vec<u8>, Vec<i64>)> = appends
                    .iter()
                    .map(|&(partition, records, value_len, at)| {
                        seed += 1;
                        let timestamps = (0..records)
                            .map(|i| BASE_MS + at + i64::try_from(i).unwrap())
                            .collect();
                        (
                            partition,
                            batch(seed, records, value_len, BASE_MS + at),
                            timestamps,
                        )
                    })
                    .collect();
                let bytes: Vec<(u32, Vec<u8>)> =
                    sent.iter().map(|(p, b, _)| (*p, b.clone())).collect();
                let bases = engine.run(move |router| append_all(router, bytes));
                for ((partition, bytes, timestamps), base) in sent.into_iter().zip(bases) {
                    expected
                        .entry(partition)
                        .or_default()
                        .insert(base, (bytes, timestamps));
                }
            }
            Op::Restart { clean } => {
                engine.stop();
                if !clean {
                    support::forget_clean_shutdown(dir.path());
                }
                engine = TestEngine::start(config.clone());
            }
        }
    }
    verify(&engine, &expected);
    engine.stop();
    let engine = TestEngine::start(config);
    let reports = engine.recovery_reports();
    assert!(
        reports.iter().all(|report| report.scanned == 0),
        "a clean restart scans nothing: {reports:?}"
    );
    verify(&engine, &expected);
}

async fn append_all(router: Router, batches: Vec<(u32, Vec<u8>)>) -> Vec<i64> {
    let appends = batches.into_iter().map(|(partition, bytes)| {
        let router = router.clone();
        async move {
            router
                .append(TOPIC, partition, validated(bytes))
                .await
                .expect("append succeeds")
        }
    });
    futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|outcome| outcome.base_offset.value())
        .collect()
}

fn verify(engine: &TestEngine, expected: &Expected) {
    let expected = expected.clone();
    engine.run(move |router| async move {
        for partition in 0..PARTITIONS {
            let batches = expected.get(&partition).cloned().unwrap_or_default();
            let stored = read_all(&router, TOPIC, partition, 0)
                .await
                .expect("partition reads back");
            let stored_bases: Vec<i64> = stored.iter().map(|(base, _)| *base).collect();
            let expected_bases: Vec<i64> = batches.keys().copied().collect();
            assert_eq!(
                stored_bases, expected_bases,
                "partition {partition} holds exactly the acknowledged batches"
            );
            for ((base, bytes), (sent, _)) in stored.iter().zip(batches.values()) {
                assert_eq!(
                    &as_sent(bytes),
                    sent,
                    "batch at {base} of partition {partition} is byte-identical"
                );
            }
            check_reads_from_every_offset(&router, partition, &batches).await;
            check_timestamp_lookups(&router, partition, &batches).await;
        }
    });
}

async fn check_reads_from_every_offset(
    router: &Router,
    partition: u32,
    batches: &BTreeMap<i64, (Vec<u8>, Vec<i64>)>,
) {
    let end: i64 = batches
        .iter()
        .next_back()
        .map_or(0, |(base, (_, ts))| base + i64::try_from(ts.len()).unwrap());
    for from in (0..end).step_by(3).chain([end]) {
        let outcome = router
            .read(TOPIC, partition, Offset::new(from).unwrap(), 100)
            .await
            .expect("read in range");
        if from == end {
            assert!(
                outcome.bytes.is_empty(),
                "reading at the high watermark returns nothing"
            );
            continue;
        }
        let header = strand_engine::batch::BatchHeader::parse(&outcome.bytes).expect("a batch");
        assert!(
            header.base_offset <= from && from <= header.last_offset(),
            "read of {from} starts at {header:?}"
        );
    }
    let beyond = router
        .read(TOPIC, partition, Offset::new(end + 1).unwrap(), 100)
        .await;
    assert!(
        matches!(
            beyond,
            Err(strand_engine::ReadError::OffsetOutOfRange { .. })
        ),
        "{beyond:?}"
    );
}

async fn check_timestamp_lookups(
    router: &Router,
    partition: u32,
    batches: &BTreeMap<i64, (Vec<u8>, Vec<i64>)>,
) {
    for target in (BASE_MS - 1..BASE_MS + 10_010)
        .step_by(997)
        .chain([BASE_MS + 10_010])
    {
        let brute = batches.iter().find_map(|(base, (_, timestamps))| {
            let at = timestamps.iter().position(|ts| *ts >= target)?;
            let offset = base + i64::try_from(at).unwrap();
            Some(RecordAtTime {
                offset,
                timestamp_ms: timestamps[at],
            })
        });
        let found = router
            .offset_for_timestamp(TOPIC, partition, target)
            .await
            .expect("lookup succeeds");
        assert_eq!(
            found, brute,
            "timestamp lookup of {target} in partition {partition}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn appended_batches_read_back_identically_across_rolls_and_restarts(
        ops in prop::collection::vec(op(), 1..14),
        segment_bytes in 1024u32..24_000,
        interval_bytes in 64u32..4096,
    ) {
        check_run(&ops, segment_bytes, interval_bytes);
    }
}
