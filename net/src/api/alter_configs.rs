//! AlterConfigs and IncrementalAlterConfigs for topics. Broker settings are static here
//! (the TOML file), so altering a broker is refused with a message saying so.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use strand_engine::ConfigChange;
use strand_engine::topic_config::{ConfigKind, TOPIC_CONFIGS, config_def};

use super::describe_configs::{BROKER, TOPIC, unknown_type};
use crate::broker::{Broker, wire};
use crate::kafka_errors::KafkaError;

/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

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
        let changes = replacement(&given);
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

/// The changes that make a topic's settings exactly `given`.
fn replacement(given: &[(String, Option<String>)]) -> Result<Vec<ConfigChange>, KafkaError> {
    if let Some((key, _)) = given.iter().find(|(key, _)| config_def(key).is_none()) {
        return Err(unknown_key(key));
    }
    Ok(TOPIC_CONFIGS
        .iter()
        .map(
            |def| match given.iter().find(|(given, _)| given == def.key) {
                Some((_, Some(value))) => ConfigChange::Set {
                    key: def.key.to_owned(),
                    value: value.clone(),
                },
                _ => ConfigChange::Reset {
                    key: def.key.to_owned(),
                },
            },
        )
        .collect())
}

/// IncrementalAlterConfigs sets, deletes (returns to default), or for list settings
/// appends to or subtracts from single settings.
pub async fn alter_incrementally(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> Option<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let current = (resource.resource_type == TOPIC)
            .then(|| broker.topic(&resource.resource_name))
            .flatten();
        let changes: Result<Vec<ConfigChange>, KafkaError> = resource
            .configs
            .iter()
            .map(|config| {
                let key = config.name.to_string();
                let value = config.value.as_ref().map(ToString::to_string);
                let held = current.as_ref().and_then(|topic| topic.config.get(&key));
                incremental_change(key, config.config_operation, value, held)
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

/// One incremental operation as a change; `held` is the topic's current value.
fn incremental_change(
    key: String,
    operation: i8,
    value: Option<String>,
    held: Option<String>,
) -> Result<ConfigChange, KafkaError> {
    let def = config_def(&key).ok_or_else(|| unknown_key(&key))?;
    let invalid = |message: String| KafkaError::new(ResponseError::InvalidConfig, message);
    match (operation, value) {
        (SET, Some(value)) => Ok(ConfigChange::Set { key, value }),
        (SET, None) => Err(invalid(format!("setting {key} needs a value"))),
        (DELETE, _) => Ok(ConfigChange::Reset { key }),
        (APPEND | SUBTRACT, _) if !matches!(def.kind, ConfigKind::Subset(_) | ConfigKind::List) => {
            Err(invalid(format!(
                "{key} is not a list: APPEND and SUBTRACT apply only to list settings"
            )))
        }
        (APPEND | SUBTRACT, None) => Err(invalid(format!("{key}: the operation needs a value"))),
        (APPEND, Some(value)) => {
            let mut items = list_items(held.as_deref());
            for item in list_items(Some(&value)) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            Ok(ConfigChange::Set {
                key,
                value: items.join(","),
            })
        }
        (SUBTRACT, Some(value)) => {
            let removed = list_items(Some(&value));
            let items: Vec<String> = list_items(held.as_deref())
                .into_iter()
                .filter(|item| !removed.contains(item))
                .collect();
            Ok(ConfigChange::Set {
                key,
                value: items.join(","),
            })
        }
        (operation, _) => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!(
                "operation {operation} on {key}: only SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) exist"
            ),
        )),
    }
}

fn list_items(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unknown_key(key: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::InvalidConfig,
        format!("unknown topic config name: {key}"),
    )
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
                "broker settings are static in Strand: set them in the TOML file and restart",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(operation: i8, value: Option<&str>, held: Option<&str>, expected: &str) {
        let outcome = incremental_change(
            "cleanup.policy".into(),
            operation,
            value.map(str::to_owned),
            held.map(str::to_owned),
        );
        match outcome {
            Ok(ConfigChange::Set { value, .. }) => assert_eq!(value, expected),
            Ok(ConfigChange::Reset { .. }) => assert_eq!("reset", expected),
            Err(error) => assert!(error.message.contains(expected), "{}", error.message),
        }
    }

    #[test]
    fn list_settings_take_append_and_subtract() {
        check(APPEND, Some("compact"), Some("delete"), "delete,compact");
        check(APPEND, Some("delete"), Some("delete"), "delete");
        check(SUBTRACT, Some("delete"), Some("delete,compact"), "compact");
        check(SET, Some("compact"), Some("delete"), "compact");
        check(DELETE, None, Some("compact"), "reset");
        check(SET, None, None, "needs a value");
        check(9, Some("x"), None, "only SET (0)");
        let scalar = incremental_change("retention.ms".into(), APPEND, Some("1".into()), None);
        assert!(scalar.unwrap_err().message.contains("not a list"));
        let unknown = incremental_change("colour".into(), SET, Some("red".into()), None);
        assert_eq!(unknown.unwrap_err().code, ResponseError::InvalidConfig);
    }
}
