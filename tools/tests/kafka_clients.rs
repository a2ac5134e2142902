//! Real Kafka clients (librdkafka through the `rdkafka` crate) against real `strand serve`
//! processes: what goes in comes out, message by message.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use support::Broker;

const WAIT: Duration = Duration::from_secs(60);

/// A message as sent, to compare with what comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sent {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

/// Counts failed deliveries, keeping the first error.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result {
            self.failed.lock().unwrap().push(error.to_string());
        }
    }
}

fn create_topic(broker: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results =
        futures::executor::block_on(admin.create_topics(&[topic], &AdminOptions::new())).unwrap();
    assert!(results[0].is_ok(), "creating {name}: {:?}", results[0]);
}

/// Sends `messages` to partition 0 of `topic` and waits until every one is acknowledged.
fn produce(broker: &Broker, topic: &str, messages: &[Sent], settings: &[(&str, &str)]) {
    let mut config = broker.client_config();
    config
        .set("linger.ms", "5")
        .set("message.max.bytes", "4000000");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: BaseProducer<Deliveries> =
        config.create_with_context(Deliveries::default()).unwrap();
    for message in messages {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(0).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        if let Some(timestamp) = message.timestamp {
            record = record.timestamp(timestamp);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("send failed: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(WAIT).unwrap();
    let failed = producer.context().failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} deliveries failed: {:?}",
        failed.len(),
        &failed[..1]
    );
}

/// Reads `count` messages of partition 0 from the beginning, by assignment.
fn consume(broker: &Broker, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("enable.partition.eof", "false")
        // The crate wants a group id even to assign partitions; nothing is committed.
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages of {topic} arrived",
            messages.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.unwrap().detach());
        }
    }
    messages
}

fn received(message: &OwnedMessage) -> Sent {
    let headers = message.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|header| (header.key.to_string(), header.value.map(<[u8]>::to_vec)))
            .collect()
    });
    Sent {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: message.timestamp().to_millis(),
    }
}

/// Keys, null keys, null values, headers, chosen timestamps, and one 1 MiB value.
fn assorted_messages() -> Vec<Sent> {
    let base = 1_700_000_000_000;
    let mut messages: Vec<Sent> = (0..300u32)
        .map(|i| Sent {
            key: (i % 4 != 1).then(|| format!("key-{i}").into_bytes()),
            value: (i % 7 != 3).then(|| {
                format!("value {i} ")
                    .repeat(1 + i as usize % 9)
                    .into_bytes()
            }),
            headers: if i % 3 == 0 {
                vec![
                    ("h".into(), Some(i.to_be_bytes().to_vec())),
                    ("null".into(), None),
                ]
            } else {
                Vec::new()
            },
            timestamp: Some(base + i64::from(i)),
        })
        .collect();
    let big: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    messages.insert(
        150,
        Sent {
            key: Some(b"big".to_vec()),
            value: Some(big),
            headers: vec![("size".into(), Some(b"1MiB".to_vec()))],
            timestamp: Some(base + 150),
        },
    );
    messages
}

/// The codec `strand dump-log` reports for the stored batches of `topic`'s partition 0.
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
fn every_kind_of_message_round_trips_with_every_compression() {
    let broker = Broker::start();
    let sent = assorted_messages();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("roundtrip-{codec}");
        create_topic(&broker, &topic, 1, &[("max.message.bytes", "4000000")]);
        produce(&broker, &topic, &sent, &[("compression.codec", codec)]);
        let messages = consume(&broker, &topic, sent.len());
        for (at, (message, expected)) in messages.iter().zip(&sent).enumerate() {
            assert_eq!(message.offset(), i64::try_from(at).unwrap(), "{codec}");
            assert_eq!(&received(message), expected, "{codec}: message {at}");
        }
        let dump = stored_codecs(&broker, &topic);
        assert!(
            dump.contains(&format!("compresscodec: {codec}")),
            "{codec}: batches were not stored with {codec}"
        );
    }
}

#[test]
fn a_hundred_thousand_messages_keep_their_order() {
    let broker = Broker::start();
    let count = 100_000;
    let sent: Vec<Sent> = (0..count)
        .map(|i| Sent {
            key: None,
            value: Some(format!("{i:08}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce(&broker, "ordered", &sent, &[]);
    let messages = consume(&broker, "ordered", count);
    for (at, message) in messages.iter().enumerate() {
        assert_eq!(message.offset(), i64::try_from(at).unwrap());
        assert_eq!(message.payload(), sent[at].value.as_deref(), "message {at}");
    }
}

#[test]
fn offsets_are_found_by_timestamp() {
    let broker = Broker::start();
    let base = 1_600_000_000_000i64;
    let sent: Vec<Sent> = (0..10i64)
        .map(|i| Sent {
            key: None,
            value: Some(vec![u8::try_from(i).unwrap()]),
            headers: Vec::new(),
            timestamp: Some(base + i * 1000),
        })
        .collect();
    produce(&broker, "timed", &sent, &[("linger.ms", "0")]);
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let lookup = |timestamp: i64| {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("timed", 0, Offset::Offset(timestamp))
            .unwrap();
        let found = consumer.offsets_for_times(query, WAIT).unwrap();
        found.find_partition("timed", 0).unwrap().offset()
    };
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 3500), Offset::Offset(4));
    assert_eq!(lookup(base + 9000), Offset::Offset(9));
    assert_eq!(lookup(base + 9001), Offset::End);
    let (low, high) = consumer.fetch_watermarks("timed", 0, WAIT).unwrap();
    assert_eq!((low, high), (0, 10));
}

#[test]
fn topics_are_created_and_refused_with_kafka_errors() {
    let broker = Broker::start();
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let options = AdminOptions::new();
    let create = |topic: NewTopic<'_>| {
        futures::executor::block_on(admin.create_topics(&[topic], &options)).unwrap()[0].clone()
    };
    let fixed = || TopicReplication::Fixed(1);
    assert!(create(NewTopic::new("admin-made", 3, fixed()).set("retention.ms", "60000")).is_ok());
    let again = create(NewTopic::new("admin-made", 3, fixed()));
    assert_eq!(again.unwrap_err().1, RDKafkaErrorCode::TopicAlreadyExists);
    let replicated = create(NewTopic::new("replicated", 1, TopicReplication::Fixed(3)));
    assert_eq!(
        replicated.unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    let bad_name = create(NewTopic::new("bad/name", 1, fixed()));
    assert_eq!(bad_name.unwrap_err().1, RDKafkaErrorCode::InvalidTopic);
    let bad_config = create(NewTopic::new("bad-config", 1, fixed()).set("retention.ms", "soon"));
    assert_eq!(bad_config.unwrap_err().1, RDKafkaErrorCode::InvalidConfig);
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(Some("admin-made"), WAIT).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    let all = consumer.fetch_metadata(None, WAIT).unwrap();
    let names: Vec<&str> = all.topics().iter().map(|topic| topic.name()).collect();
    assert_eq!(names, ["admin-made"]);
}

#[test]
fn a_restarted_broker_keeps_topics_and_messages() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(data.path());
    create_topic(&broker, "kept", 3, &[]);
    let sent: Vec<Sent> = (0..50u8)
        .map(|i| Sent {
            key: Some(vec![i]),
            value: Some(vec![i; 100]),
            headers: vec![("n".into(), Some(vec![i]))],
            timestamp: Some(1_650_000_000_000 + i64::from(i)),
        })
        .collect();
    produce(&broker, "kept", &sent, &[]);
    broker.stop();
    let broker = Broker::start_in(data.path());
    let messages = consume(&broker, "kept", sent.len());
    let back: Vec<Sent> = messages.iter().map(received).collect();
    assert_eq!(back, sent);
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(Some("kept"), WAIT).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
}

#[test]
fn topics_are_described_altered_grown_and_deleted() {
    use futures::executor::block_on;
    use rdkafka::admin::{AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};

    let broker = Broker::start();
    create_topic(&broker, "managed", 1, &[("retention.ms", "60000")]);
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let options = AdminOptions::new();
    let describe = || {
        let described =
            block_on(admin.describe_configs(&[ResourceSpecifier::Topic("managed")], &options));
        described.unwrap().remove(0).unwrap()
    };
    let configs = describe();
    let retention = configs.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert_eq!(
        configs.get("segment.bytes").unwrap().source,
        ConfigSource::Default
    );

    let alter = AlterConfig::new(ResourceSpecifier::Topic("managed"))
        .set("retention.ms", "120000")
        .set("max.message.bytes", "2000000");
    let altered = block_on(admin.alter_configs(&[alter], &options)).unwrap();
    assert!(altered[0].is_ok(), "{:?}", altered[0]);
    let configs = describe();
    assert_eq!(
        configs.get("retention.ms").unwrap().value.as_deref(),
        Some("120000")
    );
    assert_eq!(
        configs.get("max.message.bytes").unwrap().value.as_deref(),
        Some("2000000")
    );
    let bad = AlterConfig::new(ResourceSpecifier::Topic("managed")).set("retention.bytes", "lots");
    // The rdkafka crate drops per-resource errors of AlterConfigs (net/tests/wire.rs checks
    // the INVALID_CONFIG code); what matters here is that nothing changed.
    let _ = block_on(admin.alter_configs(&[bad], &options)).unwrap();
    let configs = describe();
    assert_eq!(
        configs.get("retention.bytes").unwrap().value.as_deref(),
        Some("-1")
    );
    assert_eq!(
        configs.get("retention.ms").unwrap().value.as_deref(),
        Some("120000")
    );

    let grown = block_on(admin.create_partitions(&[NewPartitions::new("managed", 4)], &options));
    assert!(grown.unwrap()[0].is_ok());
    let shrunk = block_on(admin.create_partitions(&[NewPartitions::new("managed", 2)], &options));
    assert_eq!(
        shrunk.unwrap()[0].clone().unwrap_err().1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(Some("managed"), WAIT).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);

    let deleted = block_on(admin.delete_topics(&["managed"], &options)).unwrap();
    assert!(deleted[0].is_ok());
    let again = block_on(admin.delete_topics(&["managed"], &options)).unwrap();
    assert_eq!(
        again[0].clone().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    let all = consumer.fetch_metadata(None, WAIT).unwrap();
    assert!(all.topics().is_empty(), "deleted topic still listed");
}

#[test]
fn an_idempotent_producer_stores_each_message_once() {
    let broker = Broker::start();
    let count = 20_000;
    let sent: Vec<Sent> = (0..count)
        .map(|i| Sent {
            key: Some(format!("k{}", i % 10).into_bytes()),
            value: Some(format!("{i:06}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    let settings = [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("max.in.flight.requests.per.connection", "5"),
        ("batch.num.messages", "100"),
    ];
    produce(&broker, "exactly-once", &sent, &settings);
    produce(&broker, "exactly-once", &sent[..100], &settings);
    let messages = consume(&broker, "exactly-once", count + 100);
    let values: Vec<&[u8]> = messages.iter().map(|m| m.payload().unwrap()).collect();
    for (at, value) in values.iter().enumerate() {
        let expected = sent[at % count].value.as_deref().unwrap();
        assert_eq!(*value, expected, "message {at}");
    }
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let (_, high) = consumer.fetch_watermarks("exactly-once", 0, WAIT).unwrap();
    assert_eq!(
        high,
        i64::try_from(count + 100).unwrap(),
        "no duplicates were stored"
    );
}
