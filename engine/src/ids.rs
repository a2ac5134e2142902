//! Identifiers: shards, topics and partitions.

use std::fmt;

/// A shard: one executor pinned to one CPU, owning a set of partitions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u16);

impl ShardId {
    pub fn new(index: u16) -> ShardId {
        ShardId(index)
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn value(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Strand's internal number for a topic, assigned once at creation and never reused, so a
/// topic deleted and created again under the same name is a different topic. Kafka's topic
/// UUID lives beside it in the topic's metadata.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId(u32);

impl TopicId {
    pub fn new(value: u32) -> TopicId {
        TopicId(value)
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One partition of one topic: the unit of ordering, storage and ownership.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId {
    pub topic: TopicId,
    pub index: u32,
}

impl PartitionId {
    pub fn new(topic: TopicId, index: u32) -> PartitionId {
        PartitionId { topic, index }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.index)
    }
}
