//! DeleteTopics: by name, or from version 6 by topic id.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use crate::broker::{Broker, topic_name, wire};
use crate::kafka_errors::KafkaError;

/// The first version that names topics in `topics` (by name or id) instead of `topic_names`.
const TOPIC_STATE_VERSION: i16 = 6;

pub async fn handle(
    broker: &Broker,
    request: DeleteTopicsRequest,
    version: i16,
) -> Option<DeleteTopicsResponse> {
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= TOPIC_STATE_VERSION {
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let found = match &name {
            Some(name) => broker
                .topic(&name.0)
                .ok_or_else(|| crate::broker::unknown_topic(&name.0)),
            None => broker.topic_by_id(id.as_bytes()).ok_or_else(|| {
                KafkaError::new(
                    ResponseError::UnknownTopicId,
                    format!("unknown topic id {id}"),
                )
            }),
        };
        let deleted = match (found, &broker.config.cluster) {
            (Ok(topic), Some(cluster)) => {
                crate::cluster::delete_topic(broker, cluster, &topic.name)
                    .await
                    .map(|()| topic)
            }
            (Ok(topic), None) => match broker.router.delete_topic(&topic.name).await {
                Ok(()) => {
                    tracing::info!(topic = %topic.name, "topic deleted");
                    Ok(topic)
                }
                Err(error) => Err(KafkaError::from(error)),
            },
            (Err(error), _) => Err(error),
        };
        let result = DeletableTopicResult::default();
        responses.push(match deleted {
            Ok(topic) => {
                let result = result.with_name(Some(topic_name(&topic.name)));
                if version >= TOPIC_STATE_VERSION {
                    result.with_topic_id(uuid::Uuid::from_bytes(topic.uuid))
                } else {
                    result
                }
            }
            Err(error) => {
                let result = result.with_name(name).with_error_code(error.code());
                // Error messages are in the answer from version 5.
                if version >= 5 {
                    result.with_error_message(Some(wire(error.message)))
                } else {
                    result
                }
            }
        });
    }
    Some(DeleteTopicsResponse::default().with_responses(responses))
}
