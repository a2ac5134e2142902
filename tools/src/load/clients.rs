//! librdkafka clients for the load generator, configured the same way whatever the broker, and
//! the topic housekeeping around a run (create, read watermarks, delete).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// How long admin calls and metadata waits may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Client settings shared by every producer and consumer of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub acks: String,
    pub compression: String,
    pub batch_bytes: Option<u32>,
    pub linger_ms: Option<f64>,
    /// Replication factor of the topics the run creates.
    pub replicas: i32,
    /// librdkafka properties given with `-X KEY=VALUE`, applied last.
    pub extra: Vec<(String, String)>,
}

impl Settings {
    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "strand-load")
            // As Kafka's Java client does: small requests go out at once.
            .set("socket.nagle.disable", "true");
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    pub fn producer(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("acks", &self.acks)
            .set("compression.codec", &self.compression)
            .set("message.timeout.ms", "30000")
            // Bounded: at most 64 MiB or 100,000 messages waiting in each producer.
            .set("queue.buffering.max.kbytes", "65536")
            .set("queue.buffering.max.messages", "100000");
        if let Some(bytes) = self.batch_bytes {
            config.set("batch.size", bytes.to_string());
        }
        if let Some(linger) = self.linger_ms {
            config.set("linger.ms", linger.to_string());
        }
        self.finish(config)
    }

    /// A consumer in `group`, starting at the earliest offset where the group has none.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Bounded: at most 64 MiB prefetched per consumer.
            .set("queued.max.messages.kbytes", "65536");
        self.finish(config)
    }

    fn admin(&self) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        self.finish(self.base())
            .create()
            .context("creating the admin client")
    }

    /// Creates `topic` with `partitions` unless it exists; returns its partition count once
    /// the broker's metadata shows it.
    pub fn ensure_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<i32> {
        let admin = self.admin()?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(self.replicas));
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics([&new], &options))
            .with_context(|| format!("creating topic {topic}"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating topic {name}: {code}"),
            }
        }
        self.wait_for_partitions(topic)
    }

    /// Waits until the broker's metadata lists `topic` with its partitions.
    fn wait_for_partitions(&self, topic: &str) -> anyhow::Result<i32> {
        let probe: BaseConsumer = self.consumer("strand-load-metadata").create()?;
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            let metadata = probe
                .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
                .with_context(|| format!("reading metadata of {topic}"))?;
            if let Some(found) = metadata.topics().first() {
                let ready = found.error().is_none()
                    && !found.partitions().is_empty()
                    && found.partitions().iter().all(|p| p.leader() >= 0);
                if ready {
                    return i32::try_from(found.partitions().len()).context("partition count");
                }
            }
            if Instant::now() > deadline {
                bail!("topic {topic} did not appear in the broker's metadata");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn delete_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let admin = self.admin()?;
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = futures::executor::block_on(admin.delete_topics(topics, &options))
            .context("deleting topics")?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("deleting topic {name}: {code}");
            }
        }
        Ok(())
    }

    /// The log start and end offsets of each of `partitions` partitions of `topic`.
    pub fn watermarks(&self, topic: &str, partitions: i32) -> anyhow::Result<Vec<(i64, i64)>> {
        let consumer: BaseConsumer = self.consumer("strand-load-metadata").create()?;
        let ends = |position: Offset| -> anyhow::Result<Vec<i64>> {
            let mut wanted = TopicPartitionList::new();
            for partition in 0..partitions {
                wanted.add_partition_offset(topic, partition, position)?;
            }
            let found = consumer
                .offsets_for_times(wanted, ADMIN_TIMEOUT)
                .with_context(|| format!("listing offsets of {topic}"))?;
            let mut offsets = vec![0; usize::try_from(partitions).unwrap_or(0)];
            for element in found.elements() {
                let partition = usize::try_from(element.partition()).unwrap_or(usize::MAX);
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    other => bail!("partition {partition} of {topic} has no offset: {other:?}"),
                };
                if let Some(slot) = offsets.get_mut(partition) {
                    *slot = offset;
                }
            }
            Ok(offsets)
        };
        let starts = ends(Offset::Beginning)?;
        let ends = ends(Offset::End)?;
        Ok(starts.into_iter().zip(ends).collect())
    }
}

/// Parses `-X KEY=VALUE` librdkafka properties.
pub fn properties(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .with_context(|| format!("client property {pair:?} is not KEY=VALUE"))
        })
        .collect()
}
