//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use strand_engine::config::TOPIC_CONFIG_KEYS;
use strand_engine::{ConfigChange, TopicMeta};

use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's config sources.
const TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;
/// Kafka's config types (DescribeConfigs v3+).
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;

pub async fn describe(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> Option<DescribeConfigsResponse> {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let configs = match resource.resource_type {
                TOPIC => topic(broker, &resource.resource_name).map(|topic| {
                    topic_configs(broker, &topic, resource.configuration_keys, version)
                }),
                BROKER => broker_configs(broker, &resource.resource_name),
                other => Err(unknown_type(other)),
            };
            match configs {
                Ok(configs) => result.with_configs(configs),
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(wire(error.message))),
            }
        })
        .collect();
    Some(DescribeConfigsResponse::default().with_results(results))
}

fn topic(broker: &Broker, name: &StrBytes) -> Result<Arc<TopicMeta>, KafkaError> {
    broker
        .topic(name)
        .ok_or_else(|| crate::broker::unknown_topic(name))
}

fn unknown_type(resource_type: i8) -> KafkaError {
    KafkaError::new(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not a topic (2) or a broker (4)"),
    )
}

fn topic_configs(
    broker: &Broker,
    topic: &TopicMeta,
    keys: Option<Vec<StrBytes>>,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    let defaults = &broker.config.topic_defaults;
    topic
        .config
        .entries()
        .into_iter()
        .filter(|(key, _)| {
            keys.as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == *key))
        })
        .map(|(key, value)| {
            let own = defaults.get(key).as_deref() != Some(value.as_str());
            let entry = DescribeConfigsResourceResult::default()
                .with_name(wire(key))
                .with_value(Some(wire(value)))
                .with_config_source(if own { TOPIC_CONFIG } else { DEFAULT_CONFIG });
            // Config types are in the answer from version 3.
            if version >= 3 {
                entry.with_config_type(config_type(key))
            } else {
                entry
            }
        })
        .collect()
}

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => LIST,
        "max.message.bytes" | "segment.bytes" | "index.interval.bytes" => INT,
        "retention.ms" | "retention.bytes" | "segment.ms" => LONG,
        _ => STRING,
    }
}

/// A broker's own settings are not described yet; its resource exists, with none listed.
fn broker_configs(
    broker: &Broker,
    name: &StrBytes,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let this = broker.config.node_id.to_string();
    if name.as_str() == this || name.is_empty() {
        Ok(Vec::new())
    } else {
        Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("broker {name} is not this broker ({this})"),
        ))
    }
}

/// AlterConfigs replaces a topic's whole set of settings: keys not given return to the
/// broker's defaults.
pub async fn alter(
    broker: &Broker,
    request: AlterConfigsRequest,
    _version: i16,
) -> Option<AlterConfigsResponse> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let given: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|config| {
                (
                    config.name.to_string(),
                    config.value.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        let unknown = given
            .iter()
            .find(|(key, _)| !TOPIC_CONFIG_KEYS.contains(&key.as_str()));
        let changes = match unknown {
            Some((key, _)) => Err(KafkaError::new(
                ResponseError::InvalidConfig,
                format!("unknown topic config {key:?}"),
            )),
            None => Ok(TOPIC_CONFIG_KEYS
                .iter()
                .map(|key| match given.iter().find(|(given, _)| given == key) {
                    Some((_, Some(value))) => ConfigChange::Set {
                        key: (*key).to_string(),
                        value: value.clone(),
                    },
                    _ => ConfigChange::Reset {
                        key: (*key).to_string(),
                    },
                })
                .collect()),
        };
        let (code, message) = settle(
            broker,
            resource.resource_type,
            &resource.resource_name,
            changes,
            request.validate_only,
        )
        .await;
        let response = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(response.with_error_code(code).with_error_message(message));
    }
    Some(AlterConfigsResponse::default().with_responses(responses))
}

/// IncrementalAlterConfigs sets or deletes (returns to default) single settings.
pub async fn alter_incrementally(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> Option<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let changes: Result<Vec<ConfigChange>, KafkaError> = resource
            .configs
            .iter()
            .map(|config| {
                let key = config.name.to_string();
                match (config.config_operation, &config.value) {
                    (SET, Some(value)) => Ok(ConfigChange::Set {
                        key,
                        value: value.to_string(),
                    }),
                    (SET, None) => Err(KafkaError::new(
                        ResponseError::InvalidConfig,
                        format!("setting {key} needs a value"),
                    )),
                    (DELETE, _) => Ok(ConfigChange::Reset { key }),
                    (operation, _) => Err(KafkaError::new(
                        ResponseError::InvalidConfig,
                        format!(
                            "operation {operation} on {key}: only SET (0) and DELETE (1) apply, no topic setting is a list"
                        ),
                    )),
                }
            })
            .collect();
        let (code, message) = settle(
            broker,
            resource.resource_type,
            &resource.resource_name,
            changes,
            request.validate_only,
        )
        .await;
        let response = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(response.with_error_code(code).with_error_message(message));
    }
    Some(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

/// Applies (or with `validate_only` checks) `changes` to a resource: the error code and
/// message of its answer.
async fn settle(
    broker: &Broker,
    resource_type: i8,
    name: &StrBytes,
    changes: Result<Vec<ConfigChange>, KafkaError>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let outcome = match changes {
        Ok(changes) => apply(broker, resource_type, name, changes, validate_only).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => (0, None),
        Err(error) => (error.code(), Some(wire(error.message))),
    }
}

async fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &StrBytes,
    changes: Vec<ConfigChange>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    match resource_type {
        TOPIC => {}
        BROKER => {
            return Err(KafkaError::new(
                ResponseError::InvalidRequest,
                "broker settings cannot be changed at run time yet",
            ));
        }
        other => return Err(unknown_type(other)),
    }
    let router = &broker.router;
    if validate_only {
        router.validate_topic_config(name, changes).await?;
    } else if let Some(cluster) = &broker.config.cluster {
        router.validate_topic_config(name, changes.clone()).await?;
        crate::cluster::configure_topic(broker, cluster, name, &changes).await?;
    } else {
        router.alter_topic_config(name, changes).await?;
        tracing::info!(topic = %name, "topic config changed");
    }
    Ok(())
}
