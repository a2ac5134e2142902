//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch's log ends, so a consumer
//! can tell whether the log it read was truncated. Until replication brings epoch changes,
//! every partition has one leader epoch, 0, which ends at the high watermark.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;

/// The leader epoch of every partition on a single node.
pub const LEADER_EPOCH: i32 = 0;

pub async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> Option<OffsetForLeaderEpochResponse> {
    let topics = join_all(request.topics.into_iter().map(|topic| async move {
        let name = topic.topic.0.to_string();
        let partitions = join_all(
            topic
                .partitions
                .iter()
                .map(|partition| end_of_epoch(broker, &name, partition)),
        )
        .await;
        OffsetForLeaderTopicResult::default()
            .with_topic(topic.topic)
            .with_partitions(partitions)
    }))
    .await;
    Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
}

async fn end_of_epoch(
    broker: &Broker,
    topic: &str,
    partition: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    let answer = EpochEndOffset::default().with_partition(partition.partition);
    match lookup(broker, topic, partition).await {
        Ok((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
        Err(error) => answer.with_error_code(error.code()),
    }
}

/// The largest epoch at or below the one asked for, and the offset where it ends; -1 and
/// -1 when the epoch asked for precedes every epoch, as Kafka answers.
async fn lookup(
    broker: &Broker,
    topic: &str,
    partition: &OffsetForLeaderPartition,
) -> Result<(i32, i64), KafkaError> {
    match partition.current_leader_epoch {
        -1 | LEADER_EPOCH => {}
        newer if newer > LEADER_EPOCH => {
            return Err(KafkaError::new(
                ResponseError::UnknownLeaderEpoch,
                format!("leader epoch {newer} is newer than the broker's {LEADER_EPOCH}"),
            ));
        }
        older => {
            return Err(KafkaError::new(
                ResponseError::FencedLeaderEpoch,
                format!("leader epoch {older} is older than the broker's {LEADER_EPOCH}"),
            ));
        }
    }
    let index = u32::try_from(partition.partition).map_err(|_| {
        KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{}", partition.partition),
        )
    })?;
    let offsets = broker.router.offsets(topic, index).await?;
    if partition.leader_epoch < LEADER_EPOCH {
        return Ok((-1, -1));
    }
    Ok((LEADER_EPOCH, offsets.high_watermark.value()))
}
