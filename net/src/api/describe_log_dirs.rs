//! DescribeLogDirs: the broker's one log directory (the data directory) with its file
//! system's total and usable bytes and the bytes each partition holds on disk
//! (`kafka-log-dirs.sh --describe`). Every partition here is current, never a "future"
//! replica being moved, and a replica in a chain is caught up to what it holds, so the
//! offset lag is 0.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use strand_engine::ShardId;

use crate::broker::{Broker, topic_name, wire};

pub async fn handle(
    broker: &Broker,
    request: DescribeLogDirsRequest,
    version: i16,
) -> Option<DescribeLogDirsResponse> {
    let dir = broker.config.data_dir.clone();
    // Bytes by topic and partition, from every shard.
    let mut sizes: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for shard in 0..broker.router.shard_count() {
        let Ok(shard) = u16::try_from(shard) else {
            break;
        };
        let Some(stats) = broker.router.stats(ShardId::new(shard)).await else {
            continue;
        };
        for (label, bytes) in stats.partition_bytes {
            if let Some((topic, index)) = split_label(&label) {
                sizes.insert((topic, index), i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }
    let wanted = |topic: &str, index: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|asked| asked.topic.0.as_str() == topic && asked.partitions.contains(&index)),
    };
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, index), bytes) in sizes {
        if wanted(&topic, index) {
            topics.entry(topic).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(index)
                    .with_partition_size(bytes)
                    .with_offset_lag(0)
                    .with_is_future_key(false),
            );
        }
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(wire(dir.display().to_string()))
        .with_topics(topics);
    // Sizes of the file system are in the answer from version 4; -1 when unknown.
    if version >= 4 {
        let (total, usable) = match nix::sys::statvfs::statvfs(&dir) {
            Ok(stat) => {
                let block = i64::try_from(stat.fragment_size()).unwrap_or(0);
                let count = |blocks: u64| {
                    i64::try_from(blocks)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(block)
                };
                (count(stat.blocks()), count(stat.blocks_available()))
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the data directory's file system sizes");
                result = result.with_error_code(ResponseError::KafkaStorageError.code());
                (-1, -1)
            }
        };
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    Some(DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// `topic-index` back into its parts (topic names may hold dashes; the index is last).
fn split_label(label: &str) -> Option<(String, i32)> {
    let (topic, index) = label.rsplit_once('-')?;
    Some((topic.to_string(), index.parse().ok()?))
}
