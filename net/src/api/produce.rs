//! Produce: each partition's record batch is checked, sent to the shard that owns the
//! partition and stored as sent; acks=1 and acks=all are answered once the batch is
//! durable, acks=0 not at all.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strand_engine::ValidatedBatch;
use strand_engine::batch_conform::conform;

use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

/// Bytes one compressed batch may inflate to when the broker opens it (compacted topics'
/// key checks, timestamp bounds, recompression); a larger batch is refused.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let refusal = if !matches!(acks, -1..=1) {
        Some(KafkaError::new(
            ResponseError::InvalidRequiredAcks,
            format!("acks={acks} is not one of 0, 1 and -1 (all)"),
        ))
    } else if request.transactional_id.is_some() {
        Some(KafkaError::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported yet",
        ))
    } else {
        None
    };
    // Every batch is a slice of the request frame and keeps all of it in memory while the
    // batch cache holds the batch; the records are nearly all of the frame.
    let frame_len = request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .filter_map(|partition| partition.records.as_ref())
        .map(bytes::Bytes::len)
        .sum::<usize>();
    let topics = join_all(
        request
            .topic_data
            .into_iter()
            .map(|topic| produce_topic(broker, topic, refusal.as_ref(), version, frame_len, acks)),
    )
    .await;
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

async fn produce_topic(
    broker: &Broker,
    topic: TopicProduceData,
    refusal: Option<&KafkaError>,
    version: i16,
    frame_len: usize,
    acks: i16,
) -> TopicProduceResponse {
    let name = topic.name.0.to_string();
    let partitions = join_all(topic.partition_data.into_iter().map(|partition| {
        let name = &name;
        async move {
            let index = partition.index;
            let answer = match refusal {
                Some(error) => Err(error.clone()),
                None => produce_partition(broker, name, partition, version, frame_len, acks).await,
            };
            let response = match answer {
                Ok(response) => response,
                Err(error) => {
                    let response = PartitionProduceResponse::default()
                        .with_error_code(error.code())
                        .with_base_offset(-1);
                    // Error messages are in the answer from version 8.
                    if version >= 8 {
                        response.with_error_message(Some(wire(error.message)))
                    } else {
                        response
                    }
                }
            };
            response.with_index(index)
        }
    }))
    .await;
    TopicProduceResponse::default()
        .with_name(topic.name)
        .with_partition_responses(partitions)
}

async fn produce_partition(
    broker: &Broker,
    topic: &str,
    partition: PartitionProduceData,
    version: i16,
    frame_len: usize,
    acks: i16,
) -> Result<PartitionProduceResponse, KafkaError> {
    let unknown = || {
        KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic or partition {topic}-{}", partition.index),
        )
    };
    let index = u32::try_from(partition.index).map_err(|_| unknown())?;
    let Some(records) = partition.records else {
        return Err(KafkaError::new(
            ResponseError::InvalidRecord,
            "the partition's records are null",
        ));
    };
    let batch =
        ValidatedBatch::new(records, broker.config.limits.frame_bytes_max)?.holding(frame_len);
    if batch.header().is_transactional() {
        return Err(KafkaError::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional batches are not supported yet",
        ));
    }
    let (batch, log_append_time_ms) = match broker.topic(topic) {
        Some(meta) => {
            if acks == -1 {
                check_in_sync(broker, topic, index, meta.config.min_insync_replicas)?;
            }
            let label = strand_engine::metadata::partition_label(topic, index);
            let conformed = conform(
                batch,
                &meta.config,
                &label,
                now_ms(),
                DECOMPRESSED_BYTES_MAX,
                broker.config.limits.frame_bytes_max,
            )?;
            (conformed.batch, conformed.log_append_time_ms.unwrap_or(-1))
        }
        None => (batch, -1), // the append answers UNKNOWN_TOPIC_OR_PARTITION
    };
    let stored = broker.append(topic, index, batch).await?;
    let response = PartitionProduceResponse::default()
        .with_base_offset(stored.base_offset.value())
        .with_log_append_time_ms(log_append_time_ms);
    // The log start offset is in the answer from version 5.
    Ok(if version >= 5 {
        response.with_log_start_offset(stored.log_start.value())
    } else {
        response
    })
}

/// `min.insync.replicas` with acks=all: a chain shorter than the minimum (members whose
/// node failed have left it) refuses with NOT_ENOUGH_REPLICAS, as Kafka does when its ISR
/// is too small. A single node is a chain of one.
fn check_in_sync(broker: &Broker, topic: &str, index: u32, min: u32) -> Result<(), KafkaError> {
    let view = broker.config.cluster.as_ref().map(|cluster| cluster.view());
    let (seen, _) = super::metadata::partition_seen(broker, view.as_deref(), topic, index);
    let members = u32::try_from(seen.replicas.len()).unwrap_or(u32::MAX);
    if members >= min {
        return Ok(());
    }
    Err(KafkaError::new(
        ResponseError::NotEnoughReplicas,
        format!(
            "the chain of {topic}-{index} has {members} members, fewer than its min.insync.replicas {min}"
        ),
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .unwrap_or(0)
}
