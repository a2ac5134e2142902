//! Compaction in a chain: every replica cleans its own copy of a compacted partition, the
//! offsets stay the same everywhere, so the committed offset and high watermark do not
//! move, and after the head is killed the new head serves the same latest value per key.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use support::cluster::{Cluster, SETTLE};

const TOPIC: &str = "compacted-chain";

fn create_topic(cluster: &Cluster) {
    let admin: AdminClient<DefaultClientContext> = cluster.client_config().create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let started = Instant::now();
    loop {
        let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3))
            .set("cleanup.policy", "compact")
            .set("segment.bytes", "4096")
            .set("min.cleanable.dirty.ratio", "0.01");
        let outcome = futures::executor::block_on(admin.create_topics([&topic], &options));
        match outcome.map(|mut results| results.remove(0)) {
            Ok(Ok(_)) => return,
            other => {
                assert!(started.elapsed() < SETTLE, "topic not created: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn produce(cluster: &Cluster, messages: &[(String, String)]) {
    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("batch.size", "500")
        .create()
        .unwrap();
    let sent: Vec<_> = messages
        .iter()
        .map(|(key, value)| {
            producer
                .send_result(FutureRecord::to(TOPIC).partition(0).key(key).payload(value))
                .unwrap()
        })
        .collect();
    for delivery in sent {
        futures::executor::block_on(delivery).unwrap().unwrap();
    }
}

/// Every record from the start to the high watermark, and the watermarks.
fn read_all(cluster: &Cluster) -> (Vec<(String, String)>, (i64, i64)) {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", "chain-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let watermarks = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + SETTLE;
    let mut records = Vec::new();
    let mut next = 0;
    while next < watermarks.1 {
        assert!(
            Instant::now() < deadline,
            "read stopped at {next} of {watermarks:?}"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            next = message.offset() + 1;
            let text = |bytes: Option<&[u8]>| String::from_utf8(bytes.unwrap().to_vec()).unwrap();
            records.push((text(message.key()), text(message.payload())));
        }
    }
    (records, watermarks)
}

fn fold(records: &[(String, String)]) -> BTreeMap<String, String> {
    records.iter().cloned().collect()
}

/// The chain's head, once Metadata names one.
fn head(cluster: &Cluster, not: Option<i32>) -> i32 {
    let consumer: BaseConsumer = cluster.client_config().create().unwrap();
    let started = Instant::now();
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(2))
            && let Some(partition) = metadata
                .topics()
                .first()
                .and_then(|t| t.partitions().first())
            && partition.error().is_none()
            && partition.leader() >= 0
            && Some(partition.leader()) != not
        {
            return partition.leader();
        }
        assert!(started.elapsed() < SETTLE, "no new head within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_replica_compacts_its_copy_and_a_new_head_serves_the_same_latest_values() {
    let mut cluster = Cluster::start_configured(Some("housekeeping_interval_ms = 100\n"));
    create_topic(&cluster);
    let messages: Vec<(String, String)> = (0..600)
        .map(|i| (format!("key-{}", i % 25), format!("value-{i}")))
        .collect();
    produce(&cluster, &messages);
    let model = fold(&messages);
    let deadline = Instant::now() + SETTLE;
    loop {
        let (records, watermarks) = read_all(&cluster);
        assert_eq!(fold(&records), model);
        assert_eq!(
            watermarks,
            (0, 600),
            "cleaning moves neither the log start nor the end"
        );
        if records.len() < 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the head did not clean: {} records",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Give the followers' cleaners their ticks too, then take the head away.
    std::thread::sleep(Duration::from_millis(500));
    let old = head(&cluster, None);
    cluster.kill(usize::try_from(old).unwrap());
    head(&cluster, Some(old));
    // The new head's high watermark reaches the committed end once the chain re-forms.
    let deadline = Instant::now() + SETTLE;
    let (records, watermarks) = loop {
        let (records, watermarks) = read_all(&cluster);
        if watermarks.1 >= 600 || Instant::now() > deadline {
            break (records, watermarks);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        fold(&records),
        model,
        "the new head serves the latest value per key"
    );
    assert_eq!(watermarks, (0, 600));
    assert!(
        records.len() < 200,
        "the new head's copy is compacted too: {}",
        records.len()
    );
    // Producing goes on.
    let more: Vec<(String, String)> = (0..10)
        .map(|i| (format!("key-{i}"), format!("late-{i}")))
        .collect();
    produce(&cluster, &more);
    let mut expected = model;
    expected.extend(more.iter().cloned());
    let (records, watermarks) = read_all(&cluster);
    assert_eq!(fold(&records), expected);
    assert_eq!(watermarks.1, 610);
    cluster.stop();
}
