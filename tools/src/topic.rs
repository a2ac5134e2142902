//! `strand topic create|list|describe|delete|alter-config|add-partitions`, with rpk's and
//! kafka-topics.sh's habits: tables on stdout, one line per topic for changes, exit 1 if
//! any topic failed.

use anyhow::{Context, bail};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin_client::{AdminClient, error_text};

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create topics.
    Create {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions of each topic [default: the broker's num.partitions].
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's].
        #[arg(short, long)]
        replicas: Option<i16>,
        /// A topic config, KEY=VALUE (repeatable), e.g. -c retention.ms=3600000.
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(short, long)]
        internal: bool,
    },
    /// Show a topic's partitions, offsets and configs.
    Describe { topic: String },
    /// Delete topics and their data.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Add partitions to a topic (partitions are never removed, as in Kafka).
    AddPartitions {
        topic: String,
        /// How many partitions to add.
        #[arg(short, long)]
        num: u32,
    },
    /// Set or reset topic configs (any Kafka topic config; see the README's table).
    AlterConfig {
        topic: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// KEY to return to the broker's default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

/// Kafka's resource type for topics.
const TOPIC_RESOURCE: i8 = 2;

fn wire(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn key_value(pair: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = pair
        .split_once('=')
        .with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Runs the command; `Ok(false)` when the broker refused some of it.
pub fn run(bootstrap: &str, command: TopicCommand) -> anyhow::Result<bool> {
    let mut client = AdminClient::connect(bootstrap)?;
    match command {
        TopicCommand::Create {
            topics,
            partitions,
            replicas,
            configs,
        } => create(&mut client, &topics, partitions, replicas, &configs),
        TopicCommand::List { internal } => list(&mut client, internal),
        TopicCommand::Describe { topic } => describe(&mut client, &topic),
        TopicCommand::Delete { topics } => delete(&mut client, &topics),
        TopicCommand::AlterConfig { topic, set, delete } => {
            alter_config(&mut client, &topic, &set, &delete)
        }
        TopicCommand::AddPartitions { topic, num } => add_partitions(&mut client, &topic, num),
    }
}

/// The partition count of `topic`.
pub fn partition_count(client: &mut AdminClient, topic: &str) -> anyhow::Result<i32> {
    let response = metadata(client, Some(&[topic.to_string()]))?;
    let Some(found) = response.topics.into_iter().next() else {
        bail!("the broker did not describe {topic}");
    };
    if let Some(error) = error_text(found.error_code, None) {
        bail!("{topic}: {error}");
    }
    i32::try_from(found.partitions.len()).context("partition count")
}

fn add_partitions(client: &mut AdminClient, topic: &str, num: u32) -> anyhow::Result<bool> {
    use kafka_protocol::messages::CreatePartitionsRequest;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    if num == 0 {
        bail!("--num must be at least 1");
    }
    let current = partition_count(client, topic)?;
    let total = current
        .checked_add(i32::try_from(num).context("--num")?)
        .context("too many partitions")?;
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(TopicName(wire(topic)))
                .with_count(total),
        ]);
    let response = client.call(&request, 3)?;
    let mut ok = true;
    println!("{:<40} STATUS", "TOPIC");
    for result in response.results {
        let status = error_text(result.error_code, result.error_message.as_ref());
        ok &= status.is_none();
        println!(
            "{:<40} {}",
            result.name.0,
            status.unwrap_or_else(|| format!("OK: {current} -> {total} partitions"))
        );
    }
    Ok(ok)
}

fn create(
    client: &mut AdminClient,
    topics: &[String],
    partitions: Option<i32>,
    replicas: Option<i16>,
    configs: &[String],
) -> anyhow::Result<bool> {
    let configs = configs
        .iter()
        .map(|pair| {
            let (key, value) = key_value(pair)?;
            Ok(CreatableTopicConfig::default()
                .with_name(wire(&key))
                .with_value(Some(wire(&value))))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|name| {
                    CreatableTopic::default()
                        .with_name(TopicName(wire(name)))
                        .with_num_partitions(partitions.unwrap_or(-1))
                        .with_replication_factor(replicas.unwrap_or(-1))
                        .with_configs(configs.clone())
                })
                .collect(),
        );
    let response = client.call(&request, 4)?;
    let mut ok = true;
    println!("{:<40} STATUS", "TOPIC");
    for topic in response.topics {
        let status = error_text(topic.error_code, topic.error_message.as_ref());
        ok &= status.is_none();
        println!(
            "{:<40} {}",
            topic.name.0,
            status.unwrap_or_else(|| "OK".into())
        );
    }
    Ok(ok)
}

pub fn metadata(
    client: &mut AdminClient,
    topics: Option<&[String]>,
) -> anyhow::Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(TopicName(wire(name)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    client.call(&request, 9)
}

fn list(client: &mut AdminClient, internal: bool) -> anyhow::Result<bool> {
    let mut topics = metadata(client, None)?.topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    println!("{:<40} {:>10} {:>8}", "NAME", "PARTITIONS", "REPLICAS");
    for topic in topics.iter().filter(|topic| internal || !topic.is_internal) {
        let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
        let replicas = topic
            .partitions
            .first()
            .map_or(0, |p| p.replica_nodes.len());
        println!("{name:<40} {:>10} {replicas:>8}", topic.partitions.len());
    }
    Ok(true)
}

fn describe(client: &mut AdminClient, name: &str) -> anyhow::Result<bool> {
    let metadata = metadata(client, Some(&[name.to_string()]))?;
    let Some(topic) = metadata.topics.into_iter().next() else {
        bail!("the broker did not describe {name}");
    };
    if let Some(error) = error_text(topic.error_code, None) {
        eprintln!("{name}: {error}");
        return Ok(false);
    }
    let mut partitions = topic.partitions;
    partitions.sort_by_key(|partition| partition.partition_index);
    println!("SUMMARY\n=======");
    println!("NAME        {name}");
    println!("PARTITIONS  {}", partitions.len());
    println!(
        "REPLICAS    {}",
        partitions.first().map_or(0, |p| p.replica_nodes.len())
    );
    println!("INTERNAL    {}", topic.is_internal);
    let configs = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(wire(name))
            .with_configuration_keys(None),
    ]);
    let configs = client.call(&configs, 2)?;
    println!("\nCONFIGS\n=======");
    println!("{:<28} {:<24} SOURCE", "KEY", "VALUE");
    for result in configs.results {
        for entry in result.configs {
            let source = match entry.config_source {
                1 => "topic",
                5 => "default",
                _ => "broker",
            };
            let value = entry.value.as_ref().map_or("", |value| value.as_str());
            println!("{:<28} {value:<24} {source}", entry.name.as_str());
        }
    }
    let indexes: Vec<i32> = partitions.iter().map(|p| p.partition_index).collect();
    let earliest = offsets(client, name, &indexes, -2)?;
    let latest = offsets(client, name, &indexes, -1)?;
    println!("\nPARTITIONS\n==========");
    println!(
        "{:<10} {:<7} {:<8} {:<10} {:>16} {:>16}",
        "PARTITION", "LEADER", "EPOCH", "REPLICAS", "LOG-START", "HIGH-WATERMARK"
    );
    for (at, partition) in partitions.iter().enumerate() {
        let replicas: Vec<String> = partition
            .replica_nodes
            .iter()
            .map(|id| id.0.to_string())
            .collect();
        println!(
            "{:<10} {:<7} {:<8} {:<10} {:>16} {:>16}",
            partition.partition_index,
            partition.leader_id.0,
            partition.leader_epoch,
            format!("[{}]", replicas.join(",")),
            earliest[at],
            latest[at]
        );
    }
    Ok(true)
}

/// Offsets of `partitions` of `topic` for `timestamp` (-2 earliest, -1 latest); -1 where
/// the broker answered an error.
pub fn offsets(
    client: &mut AdminClient,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(wire(topic)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&index| {
                            ListOffsetsPartition::default()
                                .with_partition_index(index)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
        ]);
    let response = client.call(&request, 4)?;
    let found: Vec<_> = response
        .topics
        .into_iter()
        .flat_map(|topic| topic.partitions)
        .collect();
    Ok(partitions
        .iter()
        .map(|index| {
            found
                .iter()
                .find(|p| p.partition_index == *index && p.error_code == 0)
                .map_or(-1, |p| p.offset)
        })
        .collect())
}

fn delete(client: &mut AdminClient, topics: &[String]) -> anyhow::Result<bool> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(topics.iter().map(|name| TopicName(wire(name))).collect());
    let response = client.call(&request, 5)?;
    let mut ok = true;
    println!("{:<40} STATUS", "TOPIC");
    for result in response.responses {
        let status = error_text(result.error_code, result.error_message.as_ref());
        ok &= status.is_none();
        let name = result.name.as_ref().map_or("", |name| name.0.as_str());
        println!("{name:<40} {}", status.unwrap_or_else(|| "OK".into()));
    }
    Ok(ok)
}

fn alter_config(
    client: &mut AdminClient,
    topic: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<bool> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let mut configs = Vec::new();
    for pair in set {
        let (key, value) = key_value(pair)?;
        configs.push(
            AlterableConfig::default()
                .with_name(wire(&key))
                .with_config_operation(0)
                .with_value(Some(wire(&value))),
        );
    }
    for key in delete {
        configs.push(
            AlterableConfig::default()
                .with_name(wire(key))
                .with_config_operation(1),
        );
    }
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(wire(topic))
            .with_configs(configs),
    ]);
    let response = client.call(&request, 0)?;
    let mut ok = true;
    for result in response.responses {
        match error_text(result.error_code, result.error_message.as_ref()) {
            Some(error) => {
                ok = false;
                println!("{topic}: {error}");
            }
            None => println!("{topic}: OK"),
        }
    }
    Ok(ok)
}
