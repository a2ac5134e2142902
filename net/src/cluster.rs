//! The Kafka view of a cluster, from this node's copy of the controller's state: the
//! live nodes are the brokers, the controller leader is the controller, and each
//! partition's chain gives its leader (the head), leader epoch (the chain epoch) and
//! replicas and in-sync replicas (the members, who all acknowledge every committed
//! offset). Topics are created by the controller leader, which places their chains.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use strand_engine::{ConfigChange, TopicMeta};
use strand_replication::controller::TopicChange;
pub use strand_replication::host::ClusterView;
use strand_replication::host::ControllerHandle;

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;

/// Chains of new topics have at most this many nodes when the client leaves the factor
/// to the broker (`default.replication.factor`).
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// How long a topic change may take to reach this node's engine.
const CREATED_TOPIC_WAIT: Duration = Duration::from_secs(10);

/// The replication factor a CreateTopics entry asks for (`-1`: the default, capped by the
/// registered nodes).
pub fn replication_factor(cluster: &ControllerHandle, asked: i16) -> Result<u16, KafkaError> {
    if asked == -1 {
        let nodes = cluster.view().state.nodes().len();
        let factor = nodes.clamp(1, DEFAULT_REPLICATION_FACTOR);
        return Ok(u16::try_from(factor).unwrap_or(1));
    }
    u16::try_from(asked)
        .ok()
        .filter(|&factor| factor > 0)
        .ok_or_else(|| {
            KafkaError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {asked} must be at least 1"),
            )
        })
}

/// Has the controller create a topic with `configs` (checked already), then waits until
/// this node's engine holds it.
pub async fn create_topic(
    broker: &Broker,
    cluster: &ControllerHandle,
    name: &str,
    partitions: u32,
    factor: u16,
    configs: Vec<(String, String)>,
) -> Result<Arc<TopicMeta>, KafkaError> {
    cluster
        .create_topic(name, partitions, factor, configs)
        .await?;
    tracing::info!(
        topic = name,
        partitions,
        factor,
        "topic created through the controller"
    );
    wait_for(name, || broker.topic(name).is_some()).await?;
    broker
        .topic(name)
        .ok_or_else(|| crate::broker::unknown_topic(name))
}

/// The largest node id of a cluster: producer ids carry it in their high bits.
pub const NODE_ID_MAX: u32 = (1 << 22) - 1;

/// Bits of a cluster producer id that count the node's own allocations.
const PRODUCER_ID_LOCAL_BITS: u32 = 40;

/// A producer id unique across the cluster: each node allocates its own sequence (kept in
/// its data directory), and the node id in the high bits keeps two nodes' ids apart, so an
/// idempotent producer's state never mixes with another's when a partition's head moves.
pub fn producer_id(node: i32, local: i64) -> Result<i64, KafkaError> {
    let node = i64::from(node);
    if !(0..=i64::from(NODE_ID_MAX)).contains(&node) || local >= 1 << PRODUCER_ID_LOCAL_BITS {
        return Err(KafkaError::new(
            ResponseError::UnknownServerError,
            format!("node {node} has allocated all its producer ids"),
        ));
    }
    Ok((node << PRODUCER_ID_LOCAL_BITS) | local)
}

/// Has the controller add partitions so `name` has `total`, then waits until this node's
/// engine holds them.
pub async fn add_partitions(
    broker: &Broker,
    cluster: &ControllerHandle,
    name: &str,
    total: u32,
) -> Result<(), KafkaError> {
    let change = TopicChange::AddPartitions {
        name: name.to_owned(),
        total,
    };
    cluster.change_topics(change).await?;
    tracing::info!(
        topic = name,
        partitions = total,
        "partitions added through the controller"
    );
    wait_for(name, || {
        broker
            .topic(name)
            .is_some_and(|topic| topic.partition_count() >= total)
    })
    .await
}

/// Has the controller delete topic `name`, then waits until this node's engine let it go.
pub async fn delete_topic(
    broker: &Broker,
    cluster: &ControllerHandle,
    name: &str,
) -> Result<(), KafkaError> {
    cluster
        .change_topics(TopicChange::Delete {
            name: name.to_owned(),
        })
        .await?;
    tracing::info!(topic = name, "topic deleted through the controller");
    wait_for(name, || broker.topic(name).is_none()).await
}

/// Has the controller set topic `name`'s settings to `changes` applied to those it holds,
/// then waits until this node's engine has them.
pub async fn configure_topic(
    broker: &Broker,
    cluster: &ControllerHandle,
    name: &str,
    changes: &[ConfigChange],
) -> Result<(), KafkaError> {
    let view = cluster.view();
    let Some(topic) = view.state.topic(name) else {
        return Err(crate::broker::unknown_topic(name));
    };
    let mut configs = topic.configs.clone();
    for change in changes {
        match change {
            ConfigChange::Set { key, value } => {
                configs.retain(|(held, _)| held != key);
                configs.push((key.clone(), value.clone()));
            }
            ConfigChange::Reset { key } => configs.retain(|(held, _)| held != key),
        }
    }
    configs.sort();
    let wanted = configs.clone();
    cluster
        .change_topics(TopicChange::Configure {
            name: name.to_owned(),
            configs,
        })
        .await?;
    tracing::info!(topic = name, "topic config changed through the controller");
    wait_for(name, || {
        broker.topic(name).is_some_and(|topic| {
            wanted
                .iter()
                .all(|(key, value)| topic.config.get(key).as_deref() == Some(value.as_str()))
        })
    })
    .await
}

/// Waits until `done` (the controller's change reached this node's engine).
async fn wait_for(name: &str, done: impl Fn() -> bool) -> Result<(), KafkaError> {
    let waited = std::time::Instant::now();
    while !done() {
        if waited.elapsed() > CREATED_TOPIC_WAIT {
            return Err(KafkaError::new(
                ResponseError::RequestTimedOut,
                format!("the change to topic {name} has not reached this node yet"),
            ));
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A partition as Kafka clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
}

/// Partition `index` of `topic`, if the controller knows it. A head this node has no link
/// to (it may have died: the controller replaces it once its silence lasts) is reported as
/// no leader (-1), so clients keep asking for metadata, as they do for a leaderless
/// partition, and find the new head as soon as the chain changes.
pub fn partition(view: &ClusterView, topic: &str, index: u32) -> Option<PartitionView> {
    let record = view
        .state
        .topic(topic)?
        .partitions
        .get(usize::try_from(index).ok()?)?;
    let chain = &record.chain;
    let id = |node: strand_replication::NodeId| i32::try_from(node.value()).unwrap_or(-1);
    let head = chain.head();
    let reachable = head == view.node || view.connected.contains(&head);
    Some(PartitionView {
        leader: if reachable { id(head) } else { -1 },
        leader_epoch: strand_replication::binding::leader_epoch(chain.epoch),
        replicas: chain.members.iter().map(|member| id(member.node)).collect(),
    })
}

/// The controller leader this node knows of, or -1.
pub fn controller_id(cluster: &ControllerHandle) -> i32 {
    cluster
        .view()
        .leader
        .and_then(|leader| i32::try_from(leader.value()).ok())
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn producer_ids_of_two_nodes_never_meet() {
        assert_eq!(producer_id(0, 7).unwrap(), 7);
        assert_ne!(producer_id(1, 7).unwrap(), producer_id(2, 7).unwrap());
        let last = (1 << PRODUCER_ID_LOCAL_BITS) - 1;
        assert!(producer_id(1, last).unwrap() < producer_id(2, 0).unwrap());
        assert!(producer_id(1, last + 1).is_err());
        let top = i32::try_from(NODE_ID_MAX).unwrap();
        assert!(producer_id(top, last).unwrap() > 0, "fits a positive i64");
    }
}
