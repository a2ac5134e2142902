//! The broker's own settings as Kafka names them, for DescribeConfigs on a broker: the
//! `log.*` defaults every topic inherits (set in the TOML file's `[topic_defaults]`) and
//! the listener's settings. None can be changed at run time.

use strand_engine::topic_config::TOPIC_CONFIGS;

use crate::config::NetConfig;

/// One broker setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    pub name: &'static str,
    pub value: String,
    /// True when the operator set it (the TOML file or a flag).
    pub set: bool,
    /// Kafka's default, when Kafka has one.
    pub default: Option<String>,
    /// Kafka's config type code (DescribeConfigs v3+).
    pub config_type: i8,
    pub doc: &'static str,
}

const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const SHORT: i8 = 4;
const LIST: i8 = 7;

/// Every broker setting, in name order.
pub fn broker_configs(config: &NetConfig) -> Vec<BrokerConfig> {
    let defaults = &config.topic_defaults;
    let mut configs: Vec<BrokerConfig> = TOPIC_CONFIGS
        .iter()
        .filter_map(|def| {
            let name = def.broker_keys.first()?;
            Some(BrokerConfig {
                name,
                value: defaults.get(def.key).unwrap_or_default(),
                set: defaults.is_set(def.key),
                default: Some(def.default.to_owned()),
                config_type: def.kind.wire_type(),
                doc: def.doc,
            })
        })
        .collect();
    configs.extend(listener_configs(config));
    configs.sort_by_key(|config| config.name);
    configs
}

/// The settings of the listener and the node, beyond the topic defaults.
fn listener_configs(config: &NetConfig) -> [BrokerConfig; 11] {
    let listener = format!("PLAINTEXT://{}", config.listen);
    let advertised = format!(
        "PLAINTEXT://{}:{}",
        config.advertised_host, config.advertised_port
    );
    let replication_factor = if config.cluster.is_some() { 3 } else { 1 };
    [
        own(
            "advertised.listeners",
            advertised,
            STRING,
            "Listeners to publish to clients.",
        ),
        fixed(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            "true",
            BOOLEAN,
            "Enable auto creation of topic on the server.",
        ),
        own(
            "broker.id",
            config.node_id.to_string(),
            INT,
            "The broker id for this server.",
        ),
        fixed(
            "default.replication.factor",
            replication_factor.to_string(),
            "1",
            INT,
            "The replication factor for automatically created topics, and for topics created with -1 as the replication factor.",
        ),
        own(
            "listeners",
            listener,
            STRING,
            "Listener List - Comma-separated list of URIs we will listen on and the listener names.",
        ),
        own(
            "log.dirs",
            config.data_dir.display().to_string(),
            STRING,
            "A comma-separated list of the directories where the log data is stored.",
        ),
        own(
            "node.id",
            config.node_id.to_string(),
            INT,
            "The node ID associated with the roles this process is playing.",
        ),
        fixed(
            "num.partitions",
            config.default_partitions.to_string(),
            "1",
            INT,
            "The default number of log partitions per topic.",
        ),
        fixed(
            "offsets.topic.num.partitions",
            config.offsets_partitions.to_string(),
            "50",
            INT,
            "The number of partitions for the offset commit topic (should not change after deployment).",
        ),
        fixed(
            "offsets.topic.replication.factor",
            replication_factor.to_string(),
            "3",
            SHORT,
            "The replication factor for the offsets topic.",
        ),
        fixed(
            "process.roles",
            if config.cluster.is_some() {
                "broker,controller"
            } else {
                "broker"
            }
            .to_owned(),
            "",
            LIST,
            "The roles that this process plays: 'broker', 'controller', or 'broker,controller' if it is both.",
        ),
    ]
}

/// A setting this broker always sets itself (addresses, ids).
fn own(name: &'static str, value: String, config_type: i8, doc: &'static str) -> BrokerConfig {
    BrokerConfig {
        name,
        value,
        set: true,
        default: None,
        config_type,
        doc,
    }
}

/// A setting with Kafka's default, set when it differs from it.
fn fixed(
    name: &'static str,
    value: String,
    default: &str,
    config_type: i8,
    doc: &'static str,
) -> BrokerConfig {
    BrokerConfig {
        name,
        set: value != default,
        value,
        default: Some(default.to_owned()),
        config_type,
        doc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_defaults_and_the_listener_are_listed_once_in_name_order() {
        let mut config = NetConfig::new("127.0.0.1:9092".parse().unwrap());
        config.topic_defaults.set("retention.ms", "1000").unwrap();
        let configs = broker_configs(&config);
        for pair in configs.windows(2) {
            assert!(pair[0].name < pair[1].name, "{}", pair[1].name);
        }
        let retention = configs
            .iter()
            .find(|config| config.name == "log.retention.ms")
            .unwrap();
        assert_eq!((retention.value.as_str(), retention.set), ("1000", true));
        let segment = configs
            .iter()
            .find(|config| config.name == "log.segment.bytes")
            .unwrap();
        assert!(!segment.set);
        assert!(configs.iter().any(
            |config| config.name == "listeners" && config.value == "PLAINTEXT://127.0.0.1:9092"
        ));
    }
}
