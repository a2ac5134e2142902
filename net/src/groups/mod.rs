//! Consumer groups (Kafka's classic group protocol) and their committed offsets.
//!
//! [`group`] is one group's membership state machine, [`offsets`] the records of
//! `__consumer_offsets`, [`coordinator`] the per-shard task that owns the groups of the
//! offsets partitions on its shard. [`route`] finds a group's coordinator.

pub mod coordinator;
pub mod group;
pub mod offsets;

use crate::broker::Broker;

/// The shard whose coordinator owns `group`: the owner of the group's partition of
/// `__consumer_offsets` (this shard until that topic exists; its coordinator creates it).
pub fn route(broker: &Broker, group: &str) -> usize {
    let partition = offsets::partition_for(group, broker.config.offsets_partitions);
    broker
        .router
        .resolve(offsets::OFFSETS_TOPIC, partition)
        .map_or(broker.router.shard().index(), |(_, shard)| shard.index())
}
