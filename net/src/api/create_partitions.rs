//! CreatePartitions: grow a topic to a new partition count (never shrink), on this broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> Option<CreatePartitionsResponse> {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match grow(broker, topic, request.validate_only).await {
            Ok(()) => result,
            Err(error) => result
                .with_error_code(error.code())
                .with_error_message(Some(wire(error.message))),
        });
    }
    Some(CreatePartitionsResponse::default().with_results(results))
}

async fn grow(
    broker: &Broker,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let name = topic.name.0.as_str();
    let total = u32::try_from(topic.count).map_err(|_| {
        KafkaError::new(
            ResponseError::InvalidPartitions,
            format!("partition count {} must be positive", topic.count),
        )
    })?;
    if let Some(cluster) = &broker.config.cluster {
        if topic.assignments.is_some() {
            return Err(KafkaError::new(
                ResponseError::InvalidReplicaAssignment,
                "in a cluster the controller places every partition's chain",
            ));
        }
        broker.router.validate_partitions(name, total).await?;
        if !validate_only {
            crate::cluster::add_partitions(broker, cluster, name, total).await?;
        }
        return Ok(());
    }
    let node = broker.config.node_id;
    let elsewhere = topic
        .assignments
        .iter()
        .flatten()
        .any(|assignment| !assignment.broker_ids.iter().map(|id| id.0).eq([node]));
    if elsewhere {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            format!("new partitions can only be assigned to broker {node}"),
        ));
    }
    if validate_only {
        broker.router.validate_partitions(name, total).await?;
    } else {
        broker.router.create_partitions(name, total).await?;
        tracing::info!(topic = name, partitions = total, "partitions added");
    }
    Ok(())
}
