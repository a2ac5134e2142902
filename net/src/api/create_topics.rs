//! CreateTopics: topics with a partition count (or explicit assignments to this broker),
//! a replication factor this single node can satisfy, and topic configs; `validate_only`
//! checks without creating.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use strand_engine::{TopicMeta, TopicSpec};

use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

/// Kafka's config source for a setting made on the topic.
const TOPIC_CONFIG_SOURCE: i8 = 1;
/// Kafka's config source for a broker default.
const DEFAULT_CONFIG_SOURCE: i8 = 5;

pub async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> Option<CreateTopicsResponse> {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let repeated = request
            .topics
            .iter()
            .filter(|other| other.name == topic.name)
            .count()
            > 1;
        let created = if repeated {
            Err(KafkaError::new(
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            ))
        } else {
            create(broker, topic, request.validate_only).await
        };
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        results.push(match created {
            // Versions before 5 answer with the error code alone.
            Ok(meta) if version >= 5 => describe(result, &meta, topic, version),
            Ok(_) => result,
            Err(error) => result
                .with_error_code(error.code())
                .with_error_message(Some(wire(error.message))),
        });
    }
    Some(CreateTopicsResponse::default().with_topics(results))
}

async fn create(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<std::sync::Arc<TopicMeta>, KafkaError> {
    let spec = spec(broker, topic)?;
    let router = &broker.router;
    if let Some(cluster) = &broker.config.cluster {
        let factor = crate::cluster::replication_factor(cluster, topic.replication_factor)?;
        let partitions = spec.partitions;
        let name = spec.name.clone();
        let configs = spec.configs.clone();
        let validated = router.validate_topic(spec).await?;
        if validate_only {
            return Ok(validated);
        }
        return crate::cluster::create_topic(broker, cluster, &name, partitions, factor, configs)
            .await;
    }
    let created = if validate_only {
        router.validate_topic(spec).await?
    } else {
        router.create_topic(spec).await?
    };
    if !validate_only {
        tracing::info!(topic = %created.name, partitions = created.partition_count(), "topic created");
    }
    Ok(created)
}

/// The engine's topic spec for a CreateTopics entry, or why this broker cannot create it.
fn spec(broker: &Broker, topic: &CreatableTopic) -> Result<TopicSpec, KafkaError> {
    let name = topic.name.0.to_string();
    let node = broker.config.node_id;
    let cluster = broker.config.cluster.is_some();
    if cluster && !topic.assignments.is_empty() {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            "in a cluster the controller places every partition's chain; give a partition \
             count and a replication factor",
        ));
    }
    if !cluster && !matches!(topic.replication_factor, -1 | 1) {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                topic.replication_factor
            ),
        ));
    }
    let partitions = if topic.assignments.is_empty() {
        match topic.num_partitions {
            -1 => broker.config.default_partitions,
            count => u32::try_from(count)
                .ok()
                .filter(|&count| count > 0)
                .ok_or_else(|| {
                    KafkaError::new(
                        ResponseError::InvalidPartitions,
                        format!("number of partitions {count} must be at least 1"),
                    )
                })?,
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                "with replica assignments, num_partitions and replication_factor must be -1",
            ));
        }
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        let dense = indexes
            .iter()
            .enumerate()
            .all(|(at, &index)| usize::try_from(index) == Ok(at));
        let here = topic
            .assignments
            .iter()
            .all(|assignment| assignment.broker_ids.iter().map(|id| id.0).eq([node]));
        if !dense || !here {
            return Err(KafkaError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("assignments must number partitions from 0 and name only broker {node}"),
            ));
        }
        u32::try_from(indexes.len()).unwrap_or(u32::MAX)
    };
    let mut configs = Vec::with_capacity(topic.configs.len());
    for config in &topic.configs {
        let Some(value) = &config.value else {
            return Err(KafkaError::new(
                ResponseError::InvalidConfig,
                format!("config {} of topic {name} has a null value", config.name),
            ));
        };
        configs.push((config.name.to_string(), value.to_string()));
    }
    Ok(TopicSpec {
        name,
        partitions,
        configs,
        id: None,
    })
}

/// The result of a created topic: its id, size and every effective config (version 5+).
fn describe(
    result: CreatableTopicResult,
    meta: &TopicMeta,
    topic: &CreatableTopic,
    version: i16,
) -> CreatableTopicResult {
    let configs = meta
        .config
        .entries()
        .into_iter()
        .map(|(key, value)| {
            let set_here = topic
                .configs
                .iter()
                .any(|config| config.name.as_str() == key);
            CreatableTopicConfigs::default()
                .with_name(wire(key))
                .with_value(Some(wire(value)))
                .with_config_source(if set_here {
                    TOPIC_CONFIG_SOURCE
                } else {
                    DEFAULT_CONFIG_SOURCE
                })
        })
        .collect();
    let result = if version >= 7 {
        result.with_topic_id(uuid::Uuid::from_bytes(meta.uuid))
    } else {
        result
    };
    result
        .with_num_partitions(i32::try_from(meta.partition_count()).unwrap_or(i32::MAX))
        .with_replication_factor(1)
        .with_configs(Some(configs))
}
