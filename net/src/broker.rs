//! What every request handler on a shard shares: the engine's router, the settings, and
//! the shard's budget of request memory.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use strand_engine::{ConfigChange, Router, TopicMeta, TopicSpec};

use crate::config::NetConfig;
use crate::groups::coordinator::Coordinators;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::kafka_errors::KafkaError;
use crate::metrics::ShardMetrics;

/// One shard's Kafka front end.
pub struct Broker {
    pub router: Router,
    pub config: Rc<NetConfig>,
    /// Bytes of requests read and not yet answered, over the shard's connections.
    pub request_memory: Rc<Semaphore>,
    /// Open connections on this shard.
    pub connections: Cell<usize>,
    /// Every shard's group coordinator.
    pub coordinators: Arc<Coordinators>,
    /// This shard's counters for Prometheus.
    pub metrics: RefCell<ShardMetrics>,
    /// Groups this shard's coordinator holds.
    pub groups: Cell<usize>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("shard", &self.router.shard())
            .field("connections", &self.connections.get())
            .finish_non_exhaustive()
    }
}

impl Broker {
    pub fn new(router: Router, config: Rc<NetConfig>, coordinators: Arc<Coordinators>) -> Broker {
        let budget = u64::try_from(config.limits.request_bytes_in_flight_max).unwrap_or(u64::MAX);
        Broker {
            router,
            request_memory: Rc::new(Semaphore::new(budget)),
            config,
            connections: Cell::new(0),
            coordinators,
            metrics: RefCell::new(ShardMetrics::default()),
            groups: Cell::new(0),
        }
    }

    /// Appends a client's batch (or the group coordinator's): to the engine on a single
    /// node, answered once durable; in a cluster through the partition's chain, answered
    /// once committed.
    pub async fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: strand_engine::ValidatedBatch,
    ) -> Result<strand_engine::AppendOutcome, KafkaError> {
        let Some(cluster) = &self.config.cluster else {
            return Ok(self.router.append(topic, partition, batch).await?);
        };
        let Some((_, owner)) = self.router.resolve(topic, partition) else {
            return Err(KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic or partition {topic}-{partition}"),
            ));
        };
        Ok(cluster
            .chains()
            .produce(owner.index(), topic, partition, batch)
            .await?)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicMeta>> {
        self.router.metadata().topic(name).cloned()
    }

    /// The topic with Kafka topic id `uuid` (KIP-516).
    pub fn topic_by_id(&self, uuid: &[u8; 16]) -> Option<Arc<TopicMeta>> {
        self.router
            .metadata()
            .topics()
            .find(|topic| &topic.uuid == uuid)
            .cloned()
    }

    /// Creates the internal `__consumer_offsets` topic unless it exists, so every group has
    /// a partition and with it a coordinator. It is compacted, as in Kafka: the cleaner
    /// keeps each group's latest offset per partition and drops deleted ones (tombstones).
    /// A topic an earlier version created with `cleanup.policy=delete` and infinite
    /// retention is switched to compaction.
    pub async fn ensure_offsets_topic(&self) {
        let compact = || {
            vec![ConfigChange::Set {
                key: "cleanup.policy".into(),
                value: "compact".into(),
            }]
        };
        if let Some(topic) = self.topic(OFFSETS_TOPIC) {
            if topic.config.compacted() {
                return;
            }
            let switched = match &self.config.cluster {
                Some(cluster) => {
                    crate::cluster::configure_topic(self, cluster, OFFSETS_TOPIC, &compact())
                        .await
                        .map_err(|error| error.message)
                }
                None => self
                    .router
                    .alter_topic_config(OFFSETS_TOPIC, compact())
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string()),
            };
            match switched {
                Ok(()) => tracing::info!("{OFFSETS_TOPIC} is now compacted"),
                Err(error) => {
                    tracing::debug!(%error, "{OFFSETS_TOPIC} not switched to compaction here")
                }
            }
            return;
        }
        let configs = vec![("cleanup.policy".to_owned(), "compact".to_owned())];
        if let Some(cluster) = &self.config.cluster {
            let factor = crate::cluster::replication_factor(cluster, -1).unwrap_or(1);
            let partitions = self.config.offsets_partitions;
            match crate::cluster::create_topic(
                self,
                cluster,
                OFFSETS_TOPIC,
                partitions,
                factor,
                configs,
            )
            .await
            {
                Ok(_) => tracing::info!("created {OFFSETS_TOPIC} through the controller"),
                Err(error) => tracing::debug!(%error, "{OFFSETS_TOPIC} not created here"),
            }
            return;
        }
        let spec = TopicSpec {
            name: OFFSETS_TOPIC.into(),
            partitions: self.config.offsets_partitions,
            configs,
            id: None,
        };
        match self.router.create_topic(spec).await {
            Ok(_) => tracing::info!("created {OFFSETS_TOPIC}"),
            Err(strand_engine::TopicError::AlreadyExists { .. }) => {}
            Err(error) => tracing::error!(%error, "cannot create {OFFSETS_TOPIC}"),
        }
    }

    /// The topic, created with the broker's defaults when it does not exist and
    /// `auto.create.topics.enable` is on.
    pub async fn topic_or_create(&self, name: &str) -> Result<Arc<TopicMeta>, KafkaError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !self.config.auto_create_topics {
            return Err(unknown_topic(name));
        }
        if let Some(cluster) = &self.config.cluster {
            let factor = crate::cluster::replication_factor(cluster, -1)?;
            let partitions = self.config.default_partitions;
            return crate::cluster::create_topic(self, cluster, name, partitions, factor, vec![])
                .await;
        }
        let spec = TopicSpec {
            name: name.to_string(),
            partitions: self.config.default_partitions,
            configs: Vec::new(),
            id: None,
        };
        match self.router.create_topic(spec).await {
            Ok(topic) => {
                tracing::info!(topic = name, "topic created on first use");
                Ok(topic)
            }
            // Another connection created it meanwhile.
            Err(strand_engine::TopicError::AlreadyExists { .. }) => {
                self.topic(name).ok_or_else(|| unknown_topic(name))
            }
            Err(error) => Err(error.into()),
        }
    }
}

pub fn unknown_topic(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("unknown topic {name}"),
    )
}

/// A string for the wire.
pub fn wire(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub fn topic_name(text: &str) -> TopicName {
    TopicName(wire(text))
}
