//! Topic metadata: names, Kafka topic UUIDs, settings, and which shard owns each partition.
//!
//! Shards share only immutable [`MetadataSnapshot`]s: a change builds a new snapshot, which
//! is persisted and then sent to every shard.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::TopicConfig;
use crate::ids::{PartitionId, ShardId, TopicId};

/// One topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicMeta {
    pub id: TopicId,
    /// Kafka's topic id (KIP-516), random at creation.
    pub uuid: [u8; 16],
    pub name: String,
    pub config: TopicConfig,
    /// The owning shard of each partition, by partition index.
    pub partitions: Vec<ShardId>,
}

impl TopicMeta {
    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).expect("partition count is bounded by limits")
    }

    pub fn partition_id(&self, index: u32) -> PartitionId {
        PartitionId::new(self.id, index)
    }

    /// The shard owning partition `index`, if the topic has it.
    pub fn owner(&self, index: u32) -> Option<ShardId> {
        self.partitions.get(usize::try_from(index).ok()?).copied()
    }
}

/// The name people use for a partition, and its directory name's start: `topic-index`.
pub fn partition_label(topic: &str, index: u32) -> String {
    format!("{topic}-{index}")
}

/// Every topic, at one version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataSnapshot {
    version: u64,
    next_topic_id: u32,
    topics: BTreeMap<String, Arc<TopicMeta>>,
}

impl MetadataSnapshot {
    /// A snapshot from persisted topics.
    pub fn new(version: u64, next_topic_id: u32, topics: Vec<TopicMeta>) -> MetadataSnapshot {
        let topics = topics
            .into_iter()
            .map(|topic| (topic.name.clone(), Arc::new(topic)))
            .collect();
        MetadataSnapshot {
            version,
            next_topic_id,
            topics,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id the next created topic gets.
    pub fn next_topic_id(&self) -> u32 {
        self.next_topic_id
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// Topics in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicMeta>> {
        self.topics.values()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn partition_count(&self) -> usize {
        self.topics
            .values()
            .map(|topic| topic.partitions.len())
            .sum()
    }

    /// The partition `index` of `topic` and its owning shard.
    pub fn resolve(&self, topic: &str, index: u32) -> Option<(PartitionId, ShardId)> {
        let meta = self.topics.get(topic)?;
        Some((meta.partition_id(index), meta.owner(index)?))
    }

    /// The partitions `shard` owns, with their topics.
    pub fn owned_by(&self, shard: ShardId) -> Vec<(Arc<TopicMeta>, u32)> {
        let mut owned = Vec::new();
        for topic in self.topics.values() {
            for (index, owner) in topic.partitions.iter().enumerate() {
                if *owner == shard {
                    owned.push((
                        topic.clone(),
                        u32::try_from(index).expect("bounded partition count"),
                    ));
                }
            }
        }
        owned
    }

    /// Partitions per shard, for placing new ones on the least loaded.
    pub fn load_by_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut load = vec![0; shard_count];
        for topic in self.topics.values() {
            for owner in &topic.partitions {
                if let Some(count) = load.get_mut(owner.index()) {
                    *count += 1;
                }
            }
        }
        load
    }

    /// The next version with `topic` added or replaced.
    pub fn with_topic(&self, topic: TopicMeta) -> MetadataSnapshot {
        let mut next = self.successor();
        next.next_topic_id = next.next_topic_id.max(topic.id.value() + 1);
        next.topics.insert(topic.name.clone(), Arc::new(topic));
        next
    }

    /// The next version without `name`.
    pub fn without_topic(&self, name: &str) -> MetadataSnapshot {
        let mut next = self.successor();
        next.topics.remove(name);
        next
    }

    fn successor(&self) -> MetadataSnapshot {
        MetadataSnapshot {
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// Why a topic name is refused, as Kafka's `Topic.validate` words it.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters, longer than 249",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// The existing topic that `name` collides with: Kafka forbids topics whose names differ
/// only by '.' versus '_', since metric names cannot tell them apart.
pub fn colliding_topic<'a>(snapshot: &'a MetadataSnapshot, name: &str) -> Option<&'a str> {
    let folded = name.replace('.', "_");
    snapshot
        .topics
        .keys()
        .find(|existing| existing.as_str() != name && existing.replace('.', "_") == folded)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(id: u32, name: &str, owners: &[u16]) -> TopicMeta {
        TopicMeta {
            id: TopicId::new(id),
            uuid: [0; 16],
            name: name.into(),
            config: TopicConfig::default(),
            partitions: owners.iter().map(|owner| ShardId::new(*owner)).collect(),
        }
    }

    #[test]
    fn snapshots_resolve_partitions_to_owning_shards() {
        let snapshot = MetadataSnapshot::default().with_topic(topic(3, "orders", &[0, 1, 1]));
        assert_eq!(snapshot.version(), 1);
        assert_eq!(snapshot.next_topic_id(), 4);
        let (partition, owner) = snapshot.resolve("orders", 2).unwrap();
        assert_eq!(
            (partition, owner),
            (PartitionId::new(TopicId::new(3), 2), ShardId::new(1))
        );
        assert_eq!(snapshot.resolve("orders", 3), None);
        assert_eq!(snapshot.resolve("nope", 0), None);
        assert_eq!(snapshot.load_by_shard(3), vec![1, 2, 0]);
        assert_eq!(snapshot.owned_by(ShardId::new(1)).len(), 2);
        let removed = snapshot.without_topic("orders");
        assert_eq!(
            (
                removed.version(),
                removed.topic_count(),
                removed.next_topic_id()
            ),
            (2, 0, 4)
        );
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for good in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "has space", "slash/y", &"x".repeat(250), "é"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
        let snapshot = MetadataSnapshot::default().with_topic(topic(0, "a.b", &[0]));
        assert_eq!(colliding_topic(&snapshot, "a_b"), Some("a.b"));
        assert_eq!(colliding_topic(&snapshot, "a.b"), None);
    }
}
