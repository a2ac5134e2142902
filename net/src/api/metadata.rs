//! Metadata: the broker, and the topics asked for (all when none are named), creating
//! unknown ones when auto-creation is on and the client allows it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use strand_engine::TopicMeta;

use crate::broker::{Broker, topic_name, wire};
use crate::kafka_errors::KafkaError;

pub async fn handle(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
) -> Option<MetadataResponse> {
    let config = &broker.config;
    let brokers = brokers(broker);
    let controller = match &config.cluster {
        Some(cluster) => BrokerId(crate::cluster::controller_id(cluster)),
        None => BrokerId(config.node_id),
    };
    // Version 0 asks for every topic with an empty list; later versions with null.
    let requested = request
        .topics
        .filter(|topics| version > 0 || !topics.is_empty());
    let topics = match requested {
        None => broker
            .router
            .metadata()
            .topics()
            .map(|topic| describe(broker, topic, version))
            .collect(),
        Some(wanted) => {
            // Version 4 added the client's say over auto-creation; before, it was always on.
            let create = version < 4 || request.allow_auto_topic_creation;
            let mut topics = Vec::with_capacity(wanted.len());
            for topic in wanted {
                topics.push(match topic.name {
                    Some(name) => lookup(broker, &name.0, create, version).await,
                    None => lookup_by_id(broker, topic.topic_id.as_bytes(), version),
                });
            }
            topics
        }
    };
    let topics = if version >= 8 && request.include_topic_authorized_operations {
        topics
            .into_iter()
            .map(|topic| topic.with_topic_authorized_operations(super::authorized::TOPIC))
            .collect()
    } else {
        topics
    };
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    // Versions 8 to 10 carry the cluster's operations when asked (11 moved them to
    // DescribeCluster).
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(super::authorized::CLUSTER);
    }
    // The controller is named from version 1, the cluster id from version 2.
    let response = if version >= 1 {
        response.with_controller_id(controller)
    } else {
        response
    };
    Some(if version >= 2 {
        response.with_cluster_id(Some(wire(config.cluster_id.clone())))
    } else {
        response
    })
}

async fn lookup(
    broker: &Broker,
    name: &StrBytes,
    create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let found = if create {
        broker.topic_or_create(name).await
    } else {
        broker
            .topic(name)
            .ok_or_else(|| crate::broker::unknown_topic(name))
    };
    match found {
        Ok(topic) => describe(broker, &topic, version),
        Err(error) => failed(Some(name.clone()), &error),
    }
}

fn lookup_by_id(broker: &Broker, uuid: &[u8; 16], version: i16) -> MetadataResponseTopic {
    match broker.topic_by_id(uuid) {
        Some(topic) => describe(broker, &topic, version),
        None => {
            let error = KafkaError::new(
                kafka_protocol::error::ResponseError::UnknownTopicId,
                "unknown topic id",
            );
            failed(None, &error).with_topic_id(uuid::Uuid::from_bytes(*uuid))
        }
    }
}

fn failed(name: Option<StrBytes>, error: &KafkaError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(kafka_protocol::messages::TopicName))
}

/// The brokers clients may use: this node alone, or in a cluster every registered node
/// the controller has not fenced.
fn brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    let config = &broker.config;
    let Some(cluster) = &config.cluster else {
        return vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(config.node_id))
                .with_host(wire(config.advertised_host.clone()))
                .with_port(i32::from(config.advertised_port)),
        ];
    };
    cluster
        .view()
        .state
        .nodes()
        .iter()
        .filter(|(_, record)| !record.fenced)
        .filter_map(|(node, record)| {
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(i32::try_from(node.value()).ok()?))
                    .with_host(wire(record.kafka.host.clone()))
                    .with_port(i32::from(record.kafka.port)),
            )
        })
        .collect()
}

/// Where partition `index` of `topic` lives: this node alone, or the chain the
/// controller placed (with LEADER_NOT_AVAILABLE while it has no head).
pub(super) fn partition_seen(
    broker: &Broker,
    view: Option<&crate::cluster::ClusterView>,
    topic: &str,
    index: u32,
) -> (
    crate::cluster::PartitionView,
    Option<kafka_protocol::error::ResponseError>,
) {
    let node = broker.config.node_id;
    match view {
        None => (
            crate::cluster::PartitionView {
                leader: node,
                leader_epoch: super::offset_for_leader_epoch::LEADER_EPOCH,
                replicas: vec![node],
            },
            None,
        ),
        Some(view) => match crate::cluster::partition(view, topic, index) {
            Some(seen) if seen.leader < 0 => (
                seen,
                Some(kafka_protocol::error::ResponseError::LeaderNotAvailable),
            ),
            Some(seen) => (seen, None),
            // A topic this node's engine holds that the controller does not know.
            None => (
                crate::cluster::PartitionView {
                    leader: -1,
                    leader_epoch: -1,
                    replicas: Vec::new(),
                },
                Some(kafka_protocol::error::ResponseError::LeaderNotAvailable),
            ),
        },
    }
}

fn describe(broker: &Broker, topic: &Arc<TopicMeta>, version: i16) -> MetadataResponseTopic {
    let view = broker.config.cluster.as_ref().map(|cluster| cluster.view());
    let partitions = (0..topic.partition_count())
        .map(|index| {
            let (seen, error) = partition_seen(broker, view.as_deref(), &topic.name, index);
            let replicas: Vec<BrokerId> = seen.replicas.iter().map(|&id| BrokerId(id)).collect();
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX))
                .with_leader_id(BrokerId(seen.leader))
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas);
            if let Some(error) = error {
                partition = partition.with_error_code(error.code());
            }
            // Leader epochs are in the answer from version 7.
            if version >= 7 {
                partition.with_leader_epoch(seen.leader_epoch)
            } else {
                partition
            }
        })
        .collect();
    let mut response = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions);
    if version >= 1 {
        response = response.with_is_internal(topic.name == crate::groups::offsets::OFFSETS_TOPIC);
    }
    if version >= 10 {
        response = response.with_topic_id(uuid::Uuid::from_bytes(topic.uuid));
    }
    response
}
