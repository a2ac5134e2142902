//! The one place topics change: a task on shard 0 that takes admin requests one at a time,
//! builds the next [`MetadataSnapshot`], persists it, sends it to every shard and answers
//! once every shard has applied it (so any shard can route to the change).

use std::rc::Rc;
use std::sync::Arc;

use crate::config::{ConfigError, EngineConfig, TopicConfig};
use crate::ids::{ShardId, TopicId};
use crate::metadata::{MetadataSnapshot, TopicMeta, colliding_topic, validate_topic_name};
use crate::metadata_store;
use crate::producer_ids::ProducerIds;
use crate::request::{Reply, ShardRequest};

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// Settings that differ from the broker's defaults, as Kafka key/value strings.
    pub configs: Vec<(String, String)>,
    /// The topic id (KIP-516) when the cluster's controller chose it, so every node names
    /// the topic alike; `None` draws a new one.
    pub id: Option<[u8; 16]>,
}

/// One change to a topic's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set {
        key: String,
        value: String,
    },
    /// Back to the broker's default.
    Reset {
        key: String,
    },
}

/// Why a topic change was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {name} already exists")]
    AlreadyExists { name: String },
    #[error("unknown topic {name}")]
    UnknownTopic { name: String },
    #[error("invalid topic name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid partition count {requested} for topic {name}: {reason}")]
    InvalidPartitions {
        name: String,
        requested: u32,
        reason: String,
    },
    #[error("invalid config for topic {name}: {error}")]
    InvalidConfig { name: String, error: ConfigError },
    #[error("cannot add topic {name}: the broker holds its maximum of {max} {what}")]
    LimitReached {
        name: String,
        what: &'static str,
        max: usize,
    },
    #[error("storage error: {detail}")]
    Storage { detail: String },
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// Admin requests, answered by the metadata service.
#[derive(Debug)]
pub(crate) enum MetadataRequest {
    CreateTopic {
        spec: TopicSpec,
        reply: Reply<Result<Arc<TopicMeta>, TopicError>>,
    },
    /// Checks a topic could be created, changing nothing (Kafka's `validate_only`).
    ValidateTopic {
        spec: TopicSpec,
        reply: Reply<Result<Arc<TopicMeta>, TopicError>>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<Result<(), TopicError>>,
    },
    /// `dry_run` checks the change and answers what it would make, changing nothing.
    CreatePartitions {
        name: String,
        total: u32,
        dry_run: bool,
        reply: Reply<Result<Arc<TopicMeta>, TopicError>>,
    },
    AlterConfig {
        name: String,
        changes: Vec<ConfigChange>,
        dry_run: bool,
        reply: Reply<Result<Arc<TopicMeta>, TopicError>>,
    },
    /// A producer id never handed out before (Kafka's InitProducerId).
    AllocateProducerId {
        reply: Reply<Result<i64, TopicError>>,
    },
}

pub(crate) struct MetadataService {
    config: Rc<EngineConfig>,
    current: Arc<MetadataSnapshot>,
    shards: Vec<flume::Sender<ShardRequest>>,
    /// Loaded on first use.
    producer_ids: Option<ProducerIds>,
}

impl MetadataService {
    pub(crate) fn new(
        config: Rc<EngineConfig>,
        current: Arc<MetadataSnapshot>,
        shards: Vec<flume::Sender<ShardRequest>>,
    ) -> Self {
        MetadataService {
            config,
            current,
            shards,
            producer_ids: None,
        }
    }

    pub(crate) async fn run(mut self, requests: flume::Receiver<MetadataRequest>) {
        while let Ok(request) = requests.recv_async().await {
            match request {
                MetadataRequest::CreateTopic { spec, reply } => {
                    let _ = reply.send(self.create_topic(spec).await);
                }
                MetadataRequest::AllocateProducerId { reply } => {
                    let _ = reply.send(self.allocate_producer_id().await);
                }
                MetadataRequest::ValidateTopic { spec, reply } => {
                    let _ = reply.send(self.plan_topic(spec).map(Arc::new));
                }
                MetadataRequest::DeleteTopic { name, reply } => {
                    let _ = reply.send(self.delete_topic(&name).await);
                }
                MetadataRequest::CreatePartitions {
                    name,
                    total,
                    dry_run,
                    reply,
                } => {
                    let _ = reply.send(self.create_partitions(&name, total, dry_run).await);
                }
                MetadataRequest::AlterConfig {
                    name,
                    changes,
                    dry_run,
                    reply,
                } => {
                    let _ = reply.send(self.alter_config(&name, &changes, dry_run).await);
                }
            }
        }
    }

    async fn create_topic(&mut self, spec: TopicSpec) -> Result<Arc<TopicMeta>, TopicError> {
        let topic = self.plan_topic(spec)?;
        self.commit(self.current.with_topic(topic.clone())).await?;
        Ok(Arc::new(topic))
    }

    /// The topic `spec` would create, or why it cannot be created; changes nothing.
    fn plan_topic(&self, spec: TopicSpec) -> Result<TopicMeta, TopicError> {
        let name = spec.name;
        validate_topic_name(&name).map_err(|reason| TopicError::InvalidName {
            name: name.clone(),
            reason,
        })?;
        if self.current.topic(&name).is_some() {
            return Err(TopicError::AlreadyExists { name });
        }
        if let Some(existing) = colliding_topic(&self.current, &name) {
            let reason = format!(
                "topic {name} collides with existing topic {existing} ('.' and '_' are interchangeable in metric names)"
            );
            return Err(TopicError::InvalidName { name, reason });
        }
        let limits = &self.config.limits;
        if self.current.topic_count() >= limits.topics_max {
            return Err(TopicError::LimitReached {
                name,
                what: "topics",
                max: limits.topics_max,
            });
        }
        self.check_partition_budget(&name, 0, spec.partitions)?;
        let mut config = self.config.topic_defaults.inherited();
        for (key, value) in &spec.configs {
            config
                .set(key, value)
                .map_err(|error| TopicError::InvalidConfig {
                    name: name.clone(),
                    error,
                })?;
        }
        self.check_config(&name, &config)?;
        Ok(TopicMeta {
            id: TopicId::new(self.current.next_topic_id()),
            uuid: match spec.id {
                Some(id) => id,
                None => random_uuid()?,
            },
            partitions: self.place(spec.partitions),
            name,
            config,
        })
    }

    async fn allocate_producer_id(&mut self) -> Result<i64, TopicError> {
        let data_dir = self.config.data_dir.clone();
        let storage = |detail: String| TopicError::Storage { detail };
        let mut ids = match self.producer_ids {
            Some(ids) => ids,
            None => {
                let dir = data_dir.clone();
                glommio::executor()
                    .spawn_blocking(move || ProducerIds::load(&dir))
                    .await
                    .map_err(storage)?
            }
        };
        let id = match ids.take() {
            Some(id) => id,
            None => {
                let end = ids.next_block_end();
                glommio::executor()
                    .spawn_blocking(move || crate::producer_ids::store(&data_dir, end))
                    .await
                    .map_err(|error| storage(format!("reserving producer ids: {error}")))?;
                ids.reserved(end);
                ids.take()
                    .ok_or_else(|| storage("producer ids exhausted".into()))?
            }
        };
        self.producer_ids = Some(ids);
        Ok(id)
    }

    async fn delete_topic(&mut self, name: &str) -> Result<(), TopicError> {
        if self.current.topic(name).is_none() {
            return Err(TopicError::UnknownTopic { name: name.into() });
        }
        self.commit(self.current.without_topic(name)).await
    }

    async fn create_partitions(
        &mut self,
        name: &str,
        total: u32,
        dry_run: bool,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        let topic = self
            .current
            .topic(name)
            .ok_or_else(|| TopicError::UnknownTopic { name: name.into() })?;
        let existing = topic.partition_count();
        if total <= existing {
            let reason =
                format!("the topic already has {existing} partitions; the count can only grow");
            return Err(TopicError::InvalidPartitions {
                name: name.into(),
                requested: total,
                reason,
            });
        }
        self.check_partition_budget(name, existing, total)?;
        let mut grown = TopicMeta::clone(topic);
        grown.partitions.extend(self.place(total - existing));
        if dry_run {
            return Ok(Arc::new(grown));
        }
        self.commit(self.current.with_topic(grown.clone())).await?;
        Ok(Arc::new(grown))
    }

    async fn alter_config(
        &mut self,
        name: &str,
        changes: &[ConfigChange],
        dry_run: bool,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        let topic = self
            .current
            .topic(name)
            .ok_or_else(|| TopicError::UnknownTopic { name: name.into() })?;
        let mut altered = TopicMeta::clone(topic);
        let defaults = &self.config.topic_defaults;
        for change in changes {
            let result = match change {
                ConfigChange::Set { key, value } => altered.config.set(key, value),
                ConfigChange::Reset { key } => altered.config.reset(key, defaults),
            };
            result.map_err(|error| TopicError::InvalidConfig {
                name: name.into(),
                error,
            })?;
        }
        self.check_config(name, &altered.config)?;
        if dry_run {
            return Ok(Arc::new(altered));
        }
        self.commit(self.current.with_topic(altered.clone()))
            .await?;
        Ok(Arc::new(altered))
    }

    fn check_partition_budget(
        &self,
        name: &str,
        existing: u32,
        total: u32,
    ) -> Result<(), TopicError> {
        if total == 0 {
            let reason = "a topic needs at least one partition".to_string();
            return Err(TopicError::InvalidPartitions {
                name: name.into(),
                requested: total,
                reason,
            });
        }
        let max = self.config.limits.partitions_max;
        let added = usize::try_from(total - existing).unwrap_or(usize::MAX);
        if self.current.partition_count().saturating_add(added) > max {
            return Err(TopicError::LimitReached {
                name: name.into(),
                what: "partitions",
                max,
            });
        }
        Ok(())
    }

    fn check_config(&self, name: &str, config: &TopicConfig) -> Result<(), TopicError> {
        let limit = self.config.limits.batch_bytes_max;
        if usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX) > limit {
            let error = ConfigError::InvalidValue {
                key: "max.message.bytes".into(),
                value: config.max_message_bytes.to_string(),
                reason: format!("must be at most the broker's batch limit of {limit} bytes"),
            };
            return Err(TopicError::InvalidConfig {
                name: name.into(),
                error,
            });
        }
        Ok(())
    }

    /// Owners for `count` new partitions: each goes to the shard holding the fewest.
    fn place(&self, count: u32) -> Vec<ShardId> {
        let mut load = self.current.load_by_shard(self.shards.len());
        (0..count)
            .map(|_| {
                let (index, _) = load
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, count)| **count)
                    .expect("at least one shard");
                load[index] += 1;
                ShardId::new(u16::try_from(index).expect("shard count fits in u16"))
            })
            .collect()
    }

    /// Persists `next`, then has every shard apply it.
    async fn commit(&mut self, next: MetadataSnapshot) -> Result<(), TopicError> {
        let next = Arc::new(next);
        let data_dir = self.config.data_dir.clone();
        let persisted = next.clone();
        glommio::executor()
            .spawn_blocking(move || metadata_store::store(&data_dir, &persisted))
            .await
            .map_err(|error| TopicError::Storage {
                detail: error.to_string(),
            })?;
        self.current = next.clone();
        let mut answers = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, answer) = futures::channel::oneshot::channel();
            let request = ShardRequest::ApplyMetadata {
                snapshot: next.clone(),
                reply,
            };
            shard
                .send_async(request)
                .await
                .map_err(|_| TopicError::ShuttingDown)?;
            answers.push(answer);
        }
        let mut failures = Vec::new();
        for answer in futures::future::join_all(answers).await {
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(detail)) => failures.push(detail),
                Err(_) => return Err(TopicError::ShuttingDown),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(TopicError::Storage {
                detail: failures.join("; "),
            })
        }
    }
}

/// A random (version 4) UUID for Kafka's topic id.
fn random_uuid() -> Result<[u8; 16], TopicError> {
    let mut uuid = [0u8; 16];
    getrandom::fill(&mut uuid).map_err(|error| TopicError::Storage {
        detail: format!("no randomness for a topic id: {error}"),
    })?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok(uuid)
}
