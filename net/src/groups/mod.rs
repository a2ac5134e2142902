//! Consumer groups (Kafka's classic group protocol) and their committed offsets.
//!
//! [`group`] is one group's membership state machine, [`offsets`] the records of
//! `__consumer_offsets`, [`coordinator`] the per-shard task that owns the groups of the
//! offsets partitions on its shard. [`route`] finds a group's coordinator.

pub mod coordinator;
pub mod group;
pub mod offsets;

use kafka_protocol::error::ResponseError;

use crate::broker::Broker;

/// Whether this node coordinates `group`: always on a single node. In a cluster, the
/// coordinator is the head of the group's `__consumer_offsets` partition, once it has
/// committed as head (its log then holds every offset committed before it took over):
/// NOT_COORDINATOR elsewhere, COORDINATOR_LOAD_IN_PROGRESS until then, as Kafka answers.
pub fn coordinates(broker: &Broker, group: &str) -> Result<(), ResponseError> {
    let Some(cluster) = &broker.config.cluster else {
        return Ok(());
    };
    let partition = offsets::partition_for(group, broker.config.offsets_partitions);
    let view = cluster.view();
    let record = view.state.topic(offsets::OFFSETS_TOPIC).and_then(|topic| {
        Some((
            topic.id,
            topic.partitions.get(usize::try_from(partition).ok()?)?,
        ))
    });
    let Some((topic_id, record)) = record else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    if record.chain.head() != view.node {
        return Err(ResponseError::NotCoordinator);
    }
    let ready = cluster.chains().head_ready((topic_id, partition));
    if ready != Some(record.chain.epoch.value()) {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    Ok(())
}

/// The shard whose coordinator owns `group`: the owner of the group's partition of
/// `__consumer_offsets` (this shard until that topic exists; its coordinator creates it).
pub fn route(broker: &Broker, group: &str) -> usize {
    let partition = offsets::partition_for(group, broker.config.offsets_partitions);
    broker
        .router
        .resolve(offsets::OFFSETS_TOPIC, partition)
        .map_or(broker.router.shard().index(), |(_, shard)| shard.index())
}
