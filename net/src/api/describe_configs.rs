//! DescribeConfigs for topics and brokers: every key with its value, its source, whether
//! it is the default, its synonyms, type and documentation, as Kafka answers.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strand_engine::TopicMeta;
use strand_engine::topic_config::{ConfigDef, Effect, TOPIC_CONFIGS};

use crate::broker::{Broker, wire};
use crate::broker_configs::{BrokerConfig, broker_configs};
use crate::kafka_errors::KafkaError;

/// Kafka's resource types.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
/// Kafka's config sources.
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// What a request asked to be included, beyond names and values.
#[derive(Clone, Copy, Debug)]
struct Detail {
    synonyms: bool,
    documentation: bool,
    version: i16,
}

pub async fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> Option<DescribeConfigsResponse> {
    let detail = Detail {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
        version,
    };
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let keys = resource.configuration_keys;
            let configs = match resource.resource_type {
                TOPIC => topic(broker, &resource.resource_name)
                    .map(|topic| topic_configs(broker, &topic, keys.as_deref(), detail)),
                BROKER => broker_resource(broker, &resource.resource_name, keys.as_deref(), detail),
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

pub fn unknown_type(resource_type: i8) -> KafkaError {
    KafkaError::new(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not a topic (2) or a broker (4)"),
    )
}

fn wanted(keys: Option<&[StrBytes]>, key: &str) -> bool {
    keys.is_none_or(|keys| keys.iter().any(|wanted| wanted.as_str() == key))
}

fn topic_configs(
    broker: &Broker,
    topic: &TopicMeta,
    keys: Option<&[StrBytes]>,
    detail: Detail,
) -> Vec<DescribeConfigsResourceResult> {
    let defaults = &broker.config.topic_defaults;
    TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(keys, def.key))
        .map(|def| {
            let value = topic.config.get(def.key).unwrap_or_default();
            let mut synonyms = Vec::new();
            if topic.config.is_set(def.key) {
                synonyms.push(synonym(def.key, &value, TOPIC_CONFIG));
            }
            if defaults.is_set(def.key)
                && let Some(broker_key) = def.broker_keys.first()
            {
                let inherited = defaults.get(def.key).unwrap_or_default();
                synonyms.push(synonym(broker_key, &inherited, STATIC_BROKER_CONFIG));
            }
            let default_name = def.broker_keys.first().copied().unwrap_or(def.key);
            synonyms.push(synonym(default_name, def.default, DEFAULT_CONFIG));
            let source = synonyms
                .first()
                .map_or(DEFAULT_CONFIG, |first| first.source);
            let entry = Entry {
                name: def.key,
                value,
                source,
                read_only: false,
                config_type: def.kind.wire_type(),
                documentation: documentation(def),
                synonyms,
            };
            entry.into_result(detail)
        })
        .collect()
}

/// Kafka's documentation of a setting, with what it does here when that is nothing.
fn documentation(def: &ConfigDef) -> String {
    match def.effect {
        Effect::Honoured => def.doc.to_owned(),
        Effect::NoEffect(reason) => format!("{} (No effect in Strand: {reason}.)", def.doc),
    }
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(wire(name))
        .with_value(Some(wire(value)))
        .with_source(source)
}

/// The broker's settings: all read-only here (Strand has no dynamic broker configs).
fn broker_resource(
    broker: &Broker,
    name: &StrBytes,
    keys: Option<&[StrBytes]>,
    detail: Detail,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let this = broker.config.node_id.to_string();
    if !name.is_empty() && name.as_str() != this {
        return Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("broker {name} is not this broker ({this})"),
        ));
    }
    Ok(broker_configs(&broker.config)
        .into_iter()
        .filter(|config| wanted(keys, config.name))
        .map(|config| broker_entry(config).into_result(detail))
        .collect())
}

fn broker_entry(config: BrokerConfig) -> Entry {
    let source = if config.set {
        STATIC_BROKER_CONFIG
    } else {
        DEFAULT_CONFIG
    };
    let mut synonyms = Vec::new();
    if config.set {
        synonyms.push(synonym(config.name, &config.value, STATIC_BROKER_CONFIG));
    }
    if let Some(default) = &config.default {
        synonyms.push(synonym(config.name, default, DEFAULT_CONFIG));
    }
    Entry {
        name: config.name,
        value: config.value,
        source,
        read_only: true,
        config_type: config.config_type,
        documentation: config.doc.to_owned(),
        synonyms,
    }
}

/// One config entry, before it is laid out for the request's version.
struct Entry {
    name: &'static str,
    value: String,
    source: i8,
    read_only: bool,
    config_type: i8,
    documentation: String,
    synonyms: Vec<DescribeConfigsSynonym>,
}

impl Entry {
    fn into_result(self, detail: Detail) -> DescribeConfigsResourceResult {
        let mut result = DescribeConfigsResourceResult::default()
            .with_name(wire(self.name))
            .with_value(Some(wire(self.value)))
            .with_read_only(self.read_only);
        // Fields a version lacks stay at their defaults: the encoder refuses a set one.
        // Versions from 1 are served, which all carry the source and synonyms.
        result = result.with_config_source(self.source);
        if detail.synonyms {
            result = result.with_synonyms(self.synonyms);
        }
        if detail.version >= 3 {
            result = result.with_config_type(self.config_type);
            if detail.documentation {
                result = result.with_documentation(Some(wire(self.documentation)));
            }
        }
        result
    }
}
