//! DeleteRecords: moves partitions' log start up (records below it are no longer read, and
//! whole segments below it are deleted by the next retention pass), as `kafka-delete-
//! records.sh` and admin clients ask. An offset of -1 means the high watermark; one past
//! it is OFFSET_OUT_OF_RANGE; a topic without `delete` in its `cleanup.policy` refuses
//! with POLICY_VIOLATION, as Kafka does.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strand_engine::Offset;

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;

pub async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> Option<DeleteRecordsResponse> {
    let topics = join_all(request.topics.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = join_all(topic.partitions.iter().map(|partition| {
            let name = &name;
            async move {
                let result = DeleteRecordsPartitionResult::default()
                    .with_partition_index(partition.partition_index);
                match delete(broker, name, partition.partition_index, partition.offset).await {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark),
                    Err(error) => result.with_low_watermark(-1).with_error_code(error.code()),
                }
            }
        }))
        .await;
        DeleteRecordsTopicResult::default()
            .with_name(topic.name)
            .with_partitions(partitions)
    }))
    .await;
    Some(DeleteRecordsResponse::default().with_topics(topics))
}

async fn delete(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, KafkaError> {
    let meta = broker
        .topic(topic)
        .ok_or_else(|| crate::broker::unknown_topic(topic))?;
    if !meta.config.cleanup_policy.delete {
        return Err(KafkaError::new(
            ResponseError::PolicyViolation,
            format!("records of {topic}, whose cleanup.policy has no delete, cannot be deleted"),
        ));
    }
    let index = u32::try_from(partition).map_err(|_| {
        KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{partition}"),
        )
    })?;
    let before = match offset {
        -1 => None,
        offset => Some(Offset::new(offset).ok_or_else(|| {
            KafkaError::new(
                ResponseError::OffsetOutOfRange,
                format!("offset {offset} is neither an offset nor -1 (the high watermark)"),
            )
        })?),
    };
    let log_start = broker.router.delete_records(topic, index, before).await?;
    Ok(log_start.value())
}
