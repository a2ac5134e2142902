//! DescribeProducers: each partition's idempotent producers with the epoch and last
//! sequence of their latest batch (`kafka-transactions.sh describe-producers`). Strand has
//! no transactions yet, so no producer has an open one (-1), and producer state keeps no
//! timestamps (-1, Kafka's "unknown").

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

pub async fn handle(
    broker: &Broker,
    request: DescribeProducersRequest,
    _version: i16,
) -> Option<DescribeProducersResponse> {
    let topics = join_all(request.topics.into_iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let partitions = join_all(topic.partition_indexes.iter().map(|&index| {
            let name = &name;
            async move {
                let response = PartitionResponse::default().with_partition_index(index);
                match producers(broker, name, index).await {
                    Ok(active) => response.with_active_producers(active),
                    Err(error) => response
                        .with_error_code(error.code())
                        .with_error_message(Some(wire(error.message))),
                }
            }
        }))
        .await;
        TopicResponse::default()
            .with_name(topic.name)
            .with_partitions(partitions)
    }))
    .await;
    Some(DescribeProducersResponse::default().with_topics(topics))
}

async fn producers(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Result<Vec<ProducerState>, KafkaError> {
    let partition = u32::try_from(index).map_err(|_| {
        KafkaError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{index}"),
        )
    })?;
    let found = broker.router.producers(topic, partition).await?;
    Ok(found
        .into_iter()
        .map(|producer| {
            ProducerState::default()
                .with_producer_id(ProducerId(producer.producer_id))
                .with_producer_epoch(i32::from(producer.producer_epoch))
                .with_last_sequence(producer.last_sequence)
                .with_last_timestamp(producer.last_timestamp_ms)
                .with_coordinator_epoch(-1)
                .with_current_txn_start_offset(-1)
        })
        .collect())
}
