//! Topic configs and the admin APIs through real clients (librdkafka through `rdkafka`, and
//! raw requests for what librdkafka does not send) against real `strand serve` processes:
//! compaction read back from the beginning, LogAppendTime stamps, recompression to each
//! codec, timestamp bounds, DeleteRecords then ListOffsets earliest, OffsetDelete,
//! DescribeConfigs of every key, and bad values refused with the key named.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use support::Broker;

const WAIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    broker.client_config().create().unwrap()
}

fn create_topic(broker: &Broker, name: &str, configs: &[(&str, &str)]) -> Result<(), String> {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results =
        futures::executor::block_on(admin(broker).create_topics(&[topic], &AdminOptions::new()))
            .unwrap();
    results[0]
        .clone()
        .map(drop)
        .map_err(|(_, code)| format!("{code:?}"))
}

/// A broker whose shards look for partitions to clean every 50 ms.
fn cleaning_broker(dir: &std::path::Path) -> Broker {
    let config = dir.join("strand.toml");
    std::fs::write(&config, "housekeeping_interval_ms = 50\n").unwrap();
    let data = dir.join("data");
    Broker::start_with(
        &data,
        &["--metrics", "none", "--config", config.to_str().unwrap()],
    )
}

/// A message to send: key, value (`None`: a tombstone), timestamp.
type Outgoing = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

/// Sends `(key, value)` messages to partition 0, one at a time in order, each acknowledged;
/// returns the first error.
fn produce(
    broker: &Broker,
    topic: &str,
    messages: &[Outgoing],
    settings: &[(&str, &str)],
) -> Result<Vec<(i64, Timestamp)>, String> {
    let mut config = broker.client_config();
    config
        .set("linger.ms", "2")
        .set("enable.idempotence", "true");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: FutureProducer = config.create().unwrap();
    let futures: Vec<_> = messages
        .iter()
        .map(|(key, value, timestamp)| {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(0);
            if let Some(key) = key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = value {
                record = record.payload(value.as_slice());
            }
            if let Some(timestamp) = timestamp {
                record = record.timestamp(*timestamp);
            }
            producer.send_result(record).unwrap()
        })
        .collect();
    let mut stored = Vec::new();
    for future in futures {
        match futures::executor::block_on(future).unwrap() {
            Ok(delivery) => stored.push((delivery.offset, delivery.timestamp)),
            Err((error, _)) => return Err(error.to_string()),
        }
    }
    Ok(stored)
}

type Received = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Timestamp);

/// Every message of partition 0 from the beginning up to the high watermark.
fn read_all(broker: &Broker, topic: &str) -> Vec<Received> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut messages = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{topic} did not read to its end {high}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let done = message.offset() + 1 >= high;
                messages.push((
                    message.offset(),
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                    message.timestamp(),
                ));
                if done {
                    return messages;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_)))
                if messages.last().is_none_or(|last| last.0 + 1 >= high) =>
            {
                return messages;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
}

fn fold(messages: &[Received]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = BTreeMap::new();
    for (_, key, value, _) in messages {
        let key = key.clone().unwrap();
        match value {
            Some(value) => map.insert(key, value.clone()),
            None => map.remove(&key),
        };
    }
    map
}

#[test]
fn a_compacted_topic_read_from_the_beginning_after_cleaning_gives_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = cleaning_broker(dir.path());
    let settings = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2048"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "0"),
    ];
    create_topic(&broker, "changelog", &settings).unwrap();
    let mut messages = Vec::new();
    let mut model = BTreeMap::new();
    for i in 0..600u32 {
        let key = format!("key-{}", i % 20).into_bytes();
        // Keys 0 to 4 end deleted.
        let value = (i < 580 || i % 20 >= 5).then(|| format!("value-{i}").into_bytes());
        match &value {
            Some(value) => model.insert(key.clone(), value.clone()),
            None => model.remove(&key),
        };
        messages.push((Some(key), value, None));
    }
    // Small batches, so the records span many segments.
    let small = [("batch.size", "300"), ("linger.ms", "0")];
    produce(&broker, "changelog", &messages, &small).unwrap();
    // A keyless record is refused, as Kafka refuses it.
    let refused = produce(
        &broker,
        "changelog",
        &[(None, Some(b"x".to_vec()), None)],
        &[],
    );
    assert!(
        refused.unwrap_err().contains("InvalidRecord"),
        "keyless record on a compacted topic"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let read = read_all(&broker, "changelog");
        assert_eq!(
            fold(&read),
            model,
            "the topic reads as the latest value per key"
        );
        // The cleaner ran once most superseded records are gone (the active segment
        // keeps its own).
        if read.len() < 100 {
            assert!(
                read.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "offsets increase"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cleaner left {} of 600 records",
            read.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Offsets are kept: the log still starts at 0 and ends at 600.
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let watermarks = consumer
        .fetch_watermarks("changelog", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(watermarks, (0, 600));
    broker.stop();
}

#[test]
fn log_append_time_topics_stamp_each_batch_with_the_brokers_clock() {
    let broker = Broker::start();
    create_topic(
        &broker,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .unwrap();
    let before = now_ms();
    let messages: Vec<_> = (0..5)
        .map(|i| (None, Some(vec![i]), Some(1_000_000 + i64::from(i))))
        .collect();
    let stored = produce(&broker, "stamped", &messages, &[]).unwrap();
    let after = now_ms();
    for (_, timestamp) in &stored {
        let Timestamp::LogAppendTime(ms) = timestamp else {
            panic!("the produce answer carries the append time: {timestamp:?}");
        };
        assert!(
            (before..=after).contains(ms),
            "{ms} within [{before}, {after}]"
        );
    }
    for (_, _, _, timestamp) in read_all(&broker, "stamped") {
        let Timestamp::LogAppendTime(ms) = timestamp else {
            panic!("consumers see LogAppendTime: {timestamp:?}");
        };
        assert!((before..=after).contains(&ms));
    }
    broker.stop();
}

#[test]
fn timestamps_outside_the_topics_bounds_are_refused_with_invalid_timestamp() {
    let broker = Broker::start();
    create_topic(
        &broker,
        "bounded",
        &[("message.timestamp.before.max.ms", "60000")],
    )
    .unwrap();
    let old = produce(
        &broker,
        "bounded",
        &[(None, Some(b"v".to_vec()), Some(now_ms() - 600_000))],
        &[],
    );
    assert!(old.unwrap_err().contains("InvalidTimestamp"));
    let future = produce(
        &broker,
        "bounded",
        &[(None, Some(b"v".to_vec()), Some(now_ms() + 7_200_000))],
        &[],
    );
    assert!(future.unwrap_err().contains("InvalidTimestamp"));
    produce(
        &broker,
        "bounded",
        &[(None, Some(b"v".to_vec()), Some(now_ms() - 1000))],
        &[],
    )
    .unwrap();
    broker.stop();
}

/// The codecs `strand dump-log` reports for the stored batches of `topic`'s partition 0.
fn stored_codecs(broker: &Broker, topic: &str) -> String {
    let partitions = broker.data_dir().join("partitions");
    let dir = std::fs::read_dir(&partitions)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&format!("{topic}-0~"))
        })
        .unwrap();
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strand"))
        .arg("dump-log")
        .args(&logs)
        .output()
        .unwrap();
    assert!(output.status.success(), "dump-log found invalid batches");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_broker_recompresses_to_the_topics_codec() {
    let broker = Broker::start();
    for (setting, dumped, sent_as) in [
        ("gzip", "gzip", "none"),
        ("snappy", "snappy", "none"),
        ("lz4", "lz4", "zstd"),
        ("zstd", "zstd", "gzip"),
        ("uncompressed", "none", "lz4"),
    ] {
        let topic = format!("codec-{setting}");
        create_topic(&broker, &topic, &[("compression.type", setting)]).unwrap();
        let messages: Vec<_> = (0..50u32)
            .map(|i| {
                (
                    Some(format!("k{i}").into_bytes()),
                    Some(format!("value {i} ").repeat(20).into_bytes()),
                    None,
                )
            })
            .collect();
        produce(
            &broker,
            &topic,
            &messages,
            &[("compression.codec", sent_as)],
        )
        .unwrap();
        let read = read_all(&broker, &topic);
        assert_eq!(read.len(), 50, "{setting}");
        for ((_, key, value, _), (sent_key, sent_value, _)) in read.iter().zip(&messages) {
            assert_eq!((key, value), (sent_key, sent_value), "{setting}");
        }
        let dump = stored_codecs(&broker, &topic);
        assert!(
            dump.contains(&format!("compresscodec: {dumped}")),
            "{setting}: {dump}"
        );
        assert!(
            !dump.contains(&format!("compresscodec: {sent_as}")),
            "{setting}: sent as {sent_as}, stored as is"
        );
    }
    broker.stop();
}

#[test]
fn delete_records_moves_the_log_start_that_list_offsets_earliest_returns() {
    let broker = Broker::start();
    create_topic(&broker, "trimmed", &[]).unwrap();
    let messages: Vec<_> = (0..30u8).map(|i| (None, Some(vec![i]), None)).collect();
    produce(&broker, "trimmed", &messages, &[]).unwrap();
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset("trimmed", 0, Offset::Offset(12))
        .unwrap();
    let result =
        futures::executor::block_on(admin(&broker).delete_records(&before, &AdminOptions::new()))
            .unwrap();
    let element = result.find_partition("trimmed", 0).unwrap();
    assert_eq!(
        element.offset(),
        Offset::Offset(12),
        "the new low watermark"
    );
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let watermarks = consumer
        .fetch_watermarks("trimmed", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        watermarks,
        (12, 30),
        "ListOffsets earliest returns the new log start"
    );
    let read = read_all(&broker, "trimmed");
    assert_eq!(read.first().map(|message| message.0), Some(12));
    // Past the high watermark: OFFSET_OUT_OF_RANGE. The CLI says so too.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "--bootstrap",
            &broker.bootstrap(),
            "records",
            "delete",
            "trimmed:0",
            "--before",
            "99",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("OffsetOutOfRange"), "{text}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "--bootstrap",
            &broker.bootstrap(),
            "records",
            "delete",
            "trimmed:0",
            "--before",
            "-1",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let watermarks = consumer
        .fetch_watermarks("trimmed", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(watermarks, (30, 30), "-1 deletes up to the high watermark");
    broker.stop();
}

/// Sends one request over a fresh connection and decodes the answer.
fn call<R: Request + Encodable>(broker: &Broker, request: &R, version: i16) -> R::Response {
    let mut stream = TcpStream::connect(broker.bootstrap()).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    stream
        .write_all(&u32::try_from(body.len()).unwrap().to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut answer = vec![0u8; usize::try_from(u32::from_be_bytes(prefix)).unwrap()];
    stream.read_exact(&mut answer).unwrap();
    let mut answer = bytes::Bytes::from(answer);
    ResponseHeader::decode(&mut answer, R::Response::header_version(version)).unwrap();
    R::Response::decode(&mut answer, version).unwrap()
}

#[test]
fn offset_delete_removes_a_groups_committed_offsets() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetDeleteRequest, TopicName};
    let broker = Broker::start();
    create_topic(&broker, "consumed", &[]).unwrap();
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "tidy")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("consumed", 0, Offset::Offset(0))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);
    let request = |group: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("consumed")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ])
    };
    let answer = call(&broker, &request("tidy"), 0);
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.topics[0].partitions[0].error_code, 0);
    let missing = call(&broker, &request("nobody"), 0);
    assert_eq!(missing.error_code, 69, "GROUP_ID_NOT_FOUND");
    // The offset is gone: the group's committed offset reads as none.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "tidy")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("consumed", 0);
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition("consumed", 0).unwrap().offset(),
        Offset::Invalid
    );
    broker.stop();
}

#[test]
fn describe_configs_lists_every_key_and_bad_values_are_refused_with_the_key_named() {
    let broker = Broker::start();
    create_topic(
        &broker,
        "described",
        &[("retention.ms", "1234"), ("flush.ms", "10")],
    )
    .unwrap();
    let described = futures::executor::block_on(admin(&broker).describe_configs(
        &[ResourceSpecifier::Topic("described")],
        &AdminOptions::new(),
    ))
    .unwrap();
    let resource = described[0].as_ref().unwrap();
    let entries = resource.entry_map();
    for def in strand_engine::topic_config::TOPIC_CONFIGS {
        assert!(
            entries.contains_key(def.key),
            "DescribeConfigs lists {}",
            def.key
        );
    }
    let retention = entries["retention.ms"];
    assert_eq!(retention.value.as_deref(), Some("1234"));
    assert!(!retention.is_default);
    assert!(entries["segment.bytes"].is_default);
    // Every Kafka topic config is accepted at CreateTopics.
    let everything: Vec<(&str, &str)> = strand_engine::topic_config::TOPIC_CONFIGS
        .iter()
        .map(|def| (def.key, def.default))
        .collect();
    create_topic(&broker, "every-key", &everything).unwrap();
    // Wrong types, ranges and unknown keys: INVALID_CONFIG naming the key.
    for (key, value) in [
        ("retention.ms", "soon"),
        ("min.cleanable.dirty.ratio", "2"),
        ("cleanup.policy", "shred"),
        ("no.such.config", "1"),
    ] {
        let error = create_topic(&broker, "refused", &[(key, value)]).unwrap_err();
        assert!(error.contains("InvalidConfig"), "{key}={value}: {error}");
    }
    let mut create =
        kafka_protocol::messages::CreateTopicsRequest::default().with_timeout_ms(10_000);
    create.topics.push(
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(kafka_protocol::messages::TopicName(
                StrBytes::from_static_str("refused"),
            ))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("segment.ms"))
                    .with_value(Some(StrBytes::from_static_str("-5"))),
            ]),
    );
    let answer = call(&broker, &create, 5);
    let message = answer.topics[0].error_message.as_ref().unwrap().to_string();
    assert_eq!(answer.topics[0].error_code, 40, "INVALID_CONFIG");
    assert!(message.contains("segment.ms"), "{message}");
    // AlterConfigs names the key too, at every version.
    for version in 0..=2 {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let request =
            kafka_protocol::messages::AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("described"))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("max.message.bytes"))
                            .with_value(Some(StrBytes::from_static_str("lots"))),
                    ]),
            ]);
        let answer = call(&broker, &request, version);
        let refused = &answer.responses[0];
        assert_eq!(refused.error_code, 40, "v{version}: INVALID_CONFIG");
        let message = refused.error_message.as_ref().unwrap().to_string();
        assert!(
            message.contains("max.message.bytes"),
            "v{version}: {message}"
        );
    }
    broker.stop();
}

/// A broker on `dir`'s data whose shards look for partitions to clean every 20 ms, on a
/// fresh port each time (the killed one's connections may still hold the old port).
fn restarted_cleaning_broker(dir: &std::path::Path) -> Broker {
    let config = dir.join("strand.toml");
    std::fs::write(&config, "housekeeping_interval_ms = 20\n").unwrap();
    let flags = ["--metrics", "none", "--config", config.to_str().unwrap()];
    Broker::start_on(support::free_port(), 1, &dir.join("data"), &flags)
}

#[test]
fn sigkill_at_any_point_of_cleaning_loses_nothing_that_should_survive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = restarted_cleaning_broker(dir.path());
    let settings = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "8192"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "0"),
    ];
    create_topic(&broker, "crashing", &settings).unwrap();
    let small = [("batch.size", "1000"), ("linger.ms", "0")];
    let mut model = BTreeMap::new();
    let mut state = 0x9e37_79b9_u64;
    let mut broker = Some(broker);
    let mut produced = 0;
    for round in 0..20u32 {
        let running = match broker.take() {
            Some(running) => running,
            None => restarted_cleaning_broker(dir.path()),
        };
        let mut messages = Vec::new();
        for i in 0..300u32 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let key = format!("key-{}", (state >> 33) % 40).into_bytes();
            let value =
                (!state.is_multiple_of(10)).then(|| format!("{round}-{i}-").repeat(8).into_bytes());
            match &value {
                Some(value) => model.insert(key.clone(), value.clone()),
                None => model.remove(&key),
            };
            messages.push((Some(key), value, None));
        }
        produce(&running, "crashing", &messages, &small).unwrap();
        produced += messages.len();
        // Acknowledged, so durable; the cleaner runs within 20 ms. Kill at a different
        // point of its pass each round.
        std::thread::sleep(Duration::from_millis(u64::from(round * 3 % 40)));
        running.kill();
    }
    let broker = restarted_cleaning_broker(dir.path());
    let read = read_all(&broker, "crashing");
    assert_eq!(
        fold(&read),
        model,
        "every acknowledged latest value survived the kills"
    );
    assert!(
        read.len() < produced,
        "the cleaner ran: {} of {produced} records left",
        read.len()
    );
    broker.stop();
    // Recovery finished or discarded every interrupted pass.
    let partitions = dir.path().join("data").join("partitions");
    for entry in std::fs::read_dir(partitions).unwrap() {
        for file in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                !name.ends_with(".cleaned") && name != "clean-swap",
                "{name} left behind"
            );
        }
    }
}

#[test]
fn acks_all_needs_min_insync_replicas_chain_members() {
    let broker = Broker::start();
    create_topic(&broker, "guarded", &[("min.insync.replicas", "2")]).unwrap();
    let message = [(None, Some(b"v".to_vec()), None)];
    // NOT_ENOUGH_REPLICAS is retriable; without retries the client reports it at once.
    let once = [
        ("acks", "all"),
        ("retries", "0"),
        ("enable.idempotence", "false"),
    ];
    let refused = produce(&broker, "guarded", &message, &once).unwrap_err();
    assert!(refused.contains("NotEnoughReplicas"), "{refused}");
    let settings = [("acks", "1"), ("enable.idempotence", "false")];
    produce(&broker, "guarded", &message, &settings).unwrap();
    broker.stop();
}

#[test]
fn list_offsets_and_describe_producers_answer_as_kafka_does() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        BrokerId, DescribeProducersRequest, ListOffsetsRequest, TopicName,
    };
    let broker = Broker::start();
    create_topic(&broker, "admin", &[]).unwrap();
    let now = now_ms();
    let messages = [
        (None, Some(b"a".to_vec()), Some(now - 3000)),
        (None, Some(b"b".to_vec()), Some(now - 1000)),
        (None, Some(b"c".to_vec()), Some(now - 2000)),
    ];
    // One batch per message, from an idempotent producer.
    produce(
        &broker,
        "admin",
        &messages,
        &[("linger.ms", "0"), ("max.in.flight", "1")],
    )
    .unwrap();
    let name = || TopicName(StrBytes::from_static_str("admin"));
    // ListOffsets -3: the record with the largest timestamp.
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name())
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-3),
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-4),
                ]),
        ]);
    let listed = call(&broker, &list, 10);
    let partitions = &listed.topics[0].partitions;
    assert_eq!(
        (partitions[0].offset, partitions[0].timestamp),
        (1, now - 1000)
    );
    assert_eq!(partitions[1].offset, 0, "-4: earliest local");
    // DescribeProducers: librdkafka's idempotent producer.
    let producers = call(
        &broker,
        &DescribeProducersRequest::default().with_topics(vec![
            ProducersTopic::default()
                .with_name(name())
                .with_partition_indexes(vec![0]),
        ]),
        0,
    );
    let active = &producers.topics[0].partitions[0].active_producers;
    assert_eq!(active.len(), 1, "one idempotent producer");
    assert_eq!(active[0].last_sequence, 2);
    broker.stop();
}

#[test]
fn describe_apis_answer_as_kafka_does() {
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        DescribeClusterRequest, DescribeLogDirsRequest, DescribeTopicPartitionsRequest,
        ElectLeadersRequest, MetadataRequest, TopicName,
    };
    let broker = Broker::start();
    create_topic(&broker, "admin", &[]).unwrap();
    produce(&broker, "admin", &[(None, Some(b"a".to_vec()), None)], &[]).unwrap();
    let name = || TopicName(StrBytes::from_static_str("admin"));
    // DescribeTopicPartitions, one partition per page.
    let described = call(
        &broker,
        &DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name())])
            .with_response_partition_limit(10),
        0,
    );
    let topic = &described.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.partitions.len(), 1);
    assert_eq!(topic.topic_authorized_operations, 3576);
    assert!(described.next_cursor.is_none());
    // ElectLeaders: the only replica already leads.
    let elected = call(
        &broker,
        &ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(Some(vec![
                TopicPartitions::default()
                    .with_topic(name())
                    .with_partitions(vec![0]),
            ])),
        2,
    );
    let result = &elected.replica_election_results[0].partition_result[0];
    assert_eq!(result.error_code, 84, "ELECTION_NOT_NEEDED");
    // DescribeLogDirs: the data directory with the partition's bytes and the disk's size.
    let dirs = call(
        &broker,
        &DescribeLogDirsRequest::default().with_topics(None),
        4,
    );
    let dir = &dirs.results[0];
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
    let admin_topic = dir
        .topics
        .iter()
        .find(|topic| topic.name.0.as_str() == "admin")
        .unwrap();
    assert!(admin_topic.partitions[0].partition_size > 0);
    // authorized_operations when asked, INT32_MIN when not.
    let metadata = |asked: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name())),
            ]))
            .with_include_topic_authorized_operations(asked)
    };
    assert_eq!(
        call(&broker, &metadata(true), 12).topics[0].topic_authorized_operations,
        3576
    );
    assert_eq!(
        call(&broker, &metadata(false), 12).topics[0].topic_authorized_operations,
        i32::MIN
    );
    let cluster =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    assert_eq!(
        call(&broker, &cluster, 1).cluster_authorized_operations,
        8096
    );
    broker.stop();
}
