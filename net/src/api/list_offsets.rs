//! ListOffsets: a partition's earliest offset (-2, and -4 "earliest local", the same here:
//! every record is local), latest offset (-1), the first record with its largest timestamp
//! (-3), or the first record at or after a timestamp.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> Option<ListOffsetsResponse> {
    let topics = join_all(request.topics.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = join_all(
            topic
                .partitions
                .iter()
                .map(|partition| list_partition(broker, &name, partition, version)),
        )
        .await;
        ListOffsetsTopicResponse::default()
            .with_name(topic.name)
            .with_partitions(partitions)
    }))
    .await;
    Some(ListOffsetsResponse::default().with_topics(topics))
}

async fn list_partition(
    broker: &Broker,
    topic: &str,
    partition: &ListOffsetsPartition,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response =
        ListOffsetsPartitionResponse::default().with_partition_index(partition.partition_index);
    match lookup(broker, topic, partition).await {
        Ok((offset, timestamp)) => {
            let response = response.with_offset(offset).with_timestamp(timestamp);
            // Leader epochs are in the answer from version 4.
            if version >= 4 {
                response.with_leader_epoch(super::offset_for_leader_epoch::LEADER_EPOCH)
            } else {
                response
            }
        }
        Err(error) => response.with_error_code(error.code()),
    }
}

/// The offset and the timestamp of the record found; -1 and -1 when no record is at or
/// after the timestamp, as Kafka answers.
async fn lookup(
    broker: &Broker,
    topic: &str,
    partition: &ListOffsetsPartition,
) -> Result<(i64, i64), KafkaError> {
    let index = u32::try_from(partition.partition_index).map_err(|_| {
        KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{}", partition.partition_index),
        )
    })?;
    let router = &broker.router;
    match partition.timestamp {
        LATEST => {
            let offsets = router.offsets(topic, index).await?;
            Ok((offsets.high_watermark.value(), -1))
        }
        EARLIEST | EARLIEST_LOCAL => {
            let offsets = router.offsets(topic, index).await?;
            Ok((offsets.log_start.value(), -1))
        }
        MAX_TIMESTAMP => {
            let found = router.offset_of_max_timestamp(topic, index).await?;
            Ok(found.map_or((-1, -1), |record| (record.offset, record.timestamp_ms)))
        }
        target if target >= 0 => {
            let found = router.offset_for_timestamp(topic, index, target).await?;
            Ok(found.map_or((-1, -1), |record| (record.offset, record.timestamp_ms)))
        }
        other => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!(
                "timestamp {other} is neither a time nor one of -1 (latest), -2 (earliest), -3 (max timestamp) and -4 (earliest local)"
            ),
        )),
    }
}
