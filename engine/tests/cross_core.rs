//! Appends crossing cores.
//!
//! Four shards (on however many CPUs the machine has) each run 16 concurrent "connections"
//! that append 40 batches each, every one to a partition owned by another shard, through
//! the shard's router and the bounded cross-core channels. Afterwards, and after a restart,
//! every acknowledged batch must be stored exactly once at the offset its append returned,
//! byte for byte, each connection's batches in a partition in the order it sent them, and
//! nothing else stored.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use strand_engine::batch_builder::BatchBuilder;
use strand_engine::{Router, ShardSet};
use support::{TestEngine, as_sent, create_topic, read_all, test_config, validated};

const SHARDS: usize = 4;
const PARTITIONS: u32 = 8;
const CONNECTIONS: u16 = 16;
const BATCHES: u16 = 40;

/// One acknowledged append: who sent it and where it landed.
#[derive(Clone, Copy, Debug)]
struct Ack {
    shard: u16,
    connection: u16,
    sequence: u16,
    partition: u32,
    base_offset: i64,
}

fn batch_of(shard: u16, connection: u16, sequence: u16) -> Vec<u8> {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    let key = [
        shard.to_be_bytes(),
        connection.to_be_bytes(),
        sequence.to_be_bytes(),
    ]
    .concat();
    builder.record(
        Some(&key),
        Some(&[u8::try_from(sequence % 251).unwrap(); 200]),
        &[],
    );
    builder.record(Some(&key), None, &[("from", b"another core")]);
    builder.build()
}

async fn connection(router: Router, connection: u16, acks: flume::Sender<Ack>) {
    let shard = router.shard();
    let foreign: Vec<u32> = (0..PARTITIONS)
        .filter(|p| router.resolve("x", *p).unwrap().1 != shard)
        .collect();
    assert!(
        !foreign.is_empty(),
        "every shard has partitions owned elsewhere"
    );
    for sequence in 0..BATCHES {
        let partition = foreign[usize::from(sequence + connection) % foreign.len()];
        let bytes = batch_of(shard.value(), connection, sequence);
        let outcome = router
            .append("x", partition, validated(bytes))
            .await
            .expect("cross-core append");
        let ack = Ack {
            shard: shard.value(),
            connection,
            sequence,
            partition,
            base_offset: outcome.base_offset.value(),
        };
        acks.send_async(ack).await.expect("the test collects acks");
    }
}

#[test]
fn appends_from_every_shard_land_on_partitions_owned_by_other_shards() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), SHARDS);
    let engine = TestEngine::start(config.clone());
    engine.run(|router| async move {
        create_topic(&router, "x", PARTITIONS, &[("segment.bytes", "65536")]).await
    });
    engine.stop();

    let (acks_tx, acks_rx) = flume::unbounded();
    let set = ShardSet::start(config.clone(), move |router: Router| {
        let acks = acks_tx.clone();
        async move {
            let connections =
                (0..CONNECTIONS).map(|id| connection(router.clone(), id, acks.clone()));
            futures::future::join_all(connections).await;
        }
    })
    .unwrap();
    let expected_acks = SHARDS * usize::from(CONNECTIONS) * usize::from(BATCHES);
    let acks: Vec<Ack> = (0..expected_acks)
        .map(|_| acks_rx.recv().expect("every append is acknowledged"))
        .collect();
    assert!(set.shutdown().unwrap().clean);

    let engine = TestEngine::start(config);
    let stored = engine.run(|router| async move {
        let mut stored = BTreeMap::new();
        for partition in 0..PARTITIONS {
            for (base, bytes) in read_all(&router, "x", partition, 0).await.unwrap() {
                stored.insert((partition, base), bytes);
            }
        }
        stored
    });
    assert_eq!(
        stored.len(),
        acks.len(),
        "exactly the acknowledged batches are stored"
    );
    let mut order: BTreeMap<(u16, u16, u32), Vec<(u16, i64)>> = BTreeMap::new();
    for ack in &acks {
        let bytes = stored
            .get(&(ack.partition, ack.base_offset))
            .expect("acknowledged batch is stored");
        assert_eq!(
            as_sent(bytes),
            batch_of(ack.shard, ack.connection, ack.sequence),
            "{ack:?}"
        );
        order
            .entry((ack.shard, ack.connection, ack.partition))
            .or_default()
            .push((ack.sequence, ack.base_offset));
    }
    for (sender, mut batches) in order {
        batches.sort_unstable();
        assert!(
            batches.windows(2).all(|pair| pair[0].1 < pair[1].1),
            "{sender:?} stored out of order: {batches:?}"
        );
    }
}
