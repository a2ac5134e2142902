//! DescribeTopicPartitions (KIP-966): topics and their partitions, in name order, at most
//! `response_partition_limit` partitions per answer, continued from a cursor. Strand's
//! chains have no eligible-leader-replica sets (every replica of a chain holds every
//! committed record), so those lists are empty, as Kafka sends them with ELR off.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use crate::broker::{Broker, topic_name};

/// The most partitions one answer holds, whatever the client asks (Kafka's
/// `max.request.partition.size.limit` default).
const PARTITIONS_MAX: usize = 2000;

pub async fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
    _version: i16,
) -> Option<DescribeTopicPartitionsResponse> {
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(PARTITIONS_MAX)
        .clamp(1, PARTITIONS_MAX);
    let mut names: Vec<String> = if request.topics.is_empty() {
        broker
            .router
            .metadata()
            .topics()
            .map(|topic| topic.name.clone())
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|topic| topic.name.0.to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = match &request.cursor {
        Some(cursor) => (
            Some(cursor.topic_name.0.to_string()),
            u32::try_from(cursor.partition_index).unwrap_or(0),
        ),
        None => (None, 0),
    };
    let view = broker.config.cluster.as_ref().map(|cluster| cluster.view());
    let mut topics = Vec::new();
    let mut left = limit;
    let mut next_cursor = None;
    for name in names {
        if start_topic.as_ref().is_some_and(|start| &name < start) {
            continue;
        }
        let Some(meta) = broker.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(topic_name(&name))),
            );
            continue;
        };
        if left == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)));
            break;
        }
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for index in first..meta.partition_count() {
            if left == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX)),
                );
                break;
            }
            left -= 1;
            let (seen, error) =
                super::metadata::partition_seen(broker, view.as_deref(), &name, index);
            let replicas: Vec<BrokerId> = seen.replicas.iter().map(|&id| BrokerId(id)).collect();
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(error.map_or(0, |error| error.code()))
                    .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX))
                    .with_leader_id(BrokerId(seen.leader))
                    .with_leader_epoch(seen.leader_epoch)
                    .with_replica_nodes(replicas.clone())
                    .with_isr_nodes(replicas)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new())),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(uuid::Uuid::from_bytes(meta.uuid))
                .with_is_internal(name == crate::groups::offsets::OFFSETS_TOPIC)
                .with_partitions(partitions)
                .with_topic_authorized_operations(super::authorized::TOPIC),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    Some(
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}
