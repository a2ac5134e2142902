//! The handle code on a shard uses to reach any partition: it resolves a topic and
//! partition to the owning shard with the shard's own metadata snapshot, sends the work
//! over that shard's bounded channel and awaits the answer.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::batch::ValidatedBatch;
use crate::cleaner::CleanStats;
use crate::ids::{PartitionId, ShardId};
use crate::metadata::{MetadataSnapshot, TopicMeta, partition_label};
use crate::metadata_service::{ConfigChange, MetadataRequest, TopicError, TopicSpec};
use crate::offset::Offset;
use crate::partition::{AppendError, PartitionOffsets, ReadError, TruncateError};
use crate::record_timestamps::RecordAtTime;
use crate::request::{
    AppendOutcome, HeadAppend, ProducerInfo, ReadLimit, ReadOutcome, Reply, ShardRequest,
    ShardStats,
};

/// Where a queued append's durability is answered.
pub type DurableAnswer = futures::channel::oneshot::Receiver<Result<AppendOutcome, AppendError>>;

/// A shard-local handle to every partition and to topic administration. Cheap to clone;
/// not `Send`: each shard has its own.
#[derive(Clone)]
pub struct Router {
    inner: Rc<RouterInner>,
}

struct RouterInner {
    shard: ShardId,
    shards: Vec<flume::Sender<ShardRequest>>,
    metadata_requests: flume::Sender<MetadataRequest>,
    metadata: Rc<RefCell<Arc<MetadataSnapshot>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shard", &self.inner.shard)
            .finish()
    }
}

impl Router {
    pub(crate) fn new(
        shard: ShardId,
        shards: Vec<flume::Sender<ShardRequest>>,
        metadata_requests: flume::Sender<MetadataRequest>,
        metadata: Rc<RefCell<Arc<MetadataSnapshot>>>,
    ) -> Router {
        Router {
            inner: Rc::new(RouterInner {
                shard,
                shards,
                metadata_requests,
                metadata,
            }),
        }
    }

    /// The shard this router runs on.
    pub fn shard(&self) -> ShardId {
        self.inner.shard
    }

    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// This shard's current view of every topic.
    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.inner.metadata.borrow().clone()
    }

    /// The partition and its owning shard, if the topic has that partition.
    pub fn resolve(&self, topic: &str, partition: u32) -> Option<(PartitionId, ShardId)> {
        self.inner.metadata.borrow().resolve(topic, partition)
    }

    /// Appends `batch` to a partition; answers once it is durable.
    pub async fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_in_epoch(topic, partition, batch, 0).await
    }

    /// Appends `batch` stamped with `leader_epoch` (a chain head's epoch); answers once it
    /// is durable here.
    pub async fn append_in_epoch(
        &self,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
        leader_epoch: i32,
    ) -> Result<AppendOutcome, AppendError> {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return Err(AppendError::UnknownPartition {
                partition: partition_label(topic, partition),
            });
        };
        let answer = self
            .ask(owner, |reply| ShardRequest::Append {
                partition: id,
                batch,
                leader_epoch,
                reply,
            })
            .await;
        answer.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// A chain head's append of a client's batch at `expected_start` (refused unless the
    /// log ends there), stamped `leader_epoch`: answers as soon as it is stored, with a
    /// receiver for its durability.
    pub async fn append_head(
        &self,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
        leader_epoch: i32,
        expected_start: Offset,
    ) -> Result<HeadAppend, AppendError> {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return Err(AppendError::UnknownPartition {
                partition: partition_label(topic, partition),
            });
        };
        let answer = self
            .ask(owner, |reply| ShardRequest::AppendHead {
                partition: id,
                batch,
                leader_epoch,
                expected_start,
                reply,
            })
            .await;
        answer.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// Queues a chain member's append of a batch at the offsets its head assigned, and
    /// returns once it is queued (appends queued in order are stored in order), with a
    /// receiver for its durability.
    pub async fn queue_replica_append(
        &self,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
    ) -> Result<DurableAnswer, AppendError> {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return Err(AppendError::UnknownPartition {
                partition: partition_label(topic, partition),
            });
        };
        let (reply, answer) = futures::channel::oneshot::channel();
        let queue = self
            .inner
            .shards
            .get(owner.index())
            .ok_or(AppendError::ShuttingDown)?;
        queue
            .send_async(ShardRequest::AppendReplica {
                partition: id,
                batch,
                reply,
            })
            .await
            .map_err(|_| AppendError::ShuttingDown)?;
        Ok(answer)
    }

    /// Appends a batch a chain's head assigned offsets to, at those offsets; answers once
    /// it is durable here.
    pub async fn append_replica(
        &self,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
    ) -> Result<AppendOutcome, AppendError> {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return Err(AppendError::UnknownPartition {
                partition: partition_label(topic, partition),
            });
        };
        let answer = self
            .ask(owner, |reply| ShardRequest::AppendReplica {
                partition: id,
                batch,
                reply,
            })
            .await;
        answer.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// Cuts the partition's log back so it ends at `to` (a batch boundary at or above the
    /// committed offset), once every append is durable; returns the offsets after it.
    pub async fn truncate(
        &self,
        topic: &str,
        partition: u32,
        to: Offset,
    ) -> Result<PartitionOffsets, TruncateError> {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return Err(TruncateError::UnknownPartition {
                partition: partition_label(topic, partition),
            });
        };
        let answer = self
            .ask(owner, |reply| ShardRequest::Truncate {
                partition: id,
                to,
                reply,
            })
            .await;
        answer.unwrap_or(Err(TruncateError::ShuttingDown))
    }

    /// Sets a replicated partition's committed offset (it only rises): consumers read no
    /// further. Returns the partition's offsets after it.
    pub async fn set_committed(
        &self,
        topic: &str,
        partition: u32,
        committed: Offset,
    ) -> Result<PartitionOffsets, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::SetCommitted {
                partition: id,
                committed,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// Reads whole batches below the high watermark from the one holding `from`, up to
    /// about `bytes_max` bytes.
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        bytes_max: usize,
    ) -> Result<ReadOutcome, ReadError> {
        self.read_up_to(topic, partition, from, bytes_max, ReadLimit::HighWatermark)
            .await
    }

    /// Reads whole batches below `limit` (see [`ReadLimit`]).
    pub async fn read_up_to(
        &self,
        topic: &str,
        partition: u32,
        from: Offset,
        bytes_max: usize,
        limit: ReadLimit,
    ) -> Result<ReadOutcome, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::Read {
                partition: id,
                from,
                bytes_max,
                limit,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// The partition's log start, high watermark and log end.
    pub async fn offsets(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::Offsets {
                partition: id,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// Kafka's DeleteRecords: records below `before` (the high watermark when `None`) are
    /// no longer readable and their segments go; returns the new log start (the low
    /// watermark) once it is durable.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before: Option<Offset>,
    ) -> Result<Offset, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::DeleteRecords {
                partition: id,
                before,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// The idempotent producers of a partition (Kafka's DescribeProducers).
    pub async fn producers(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<ProducerInfo>, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::Producers {
                partition: id,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// Runs a cleaning pass over a compacted partition now, whatever its dirty ratio, and
    /// returns what it did (nothing when no closed segment is past the checkpoint).
    ///
    /// # Errors
    /// The partition is unknown or not compacted, the pass failed, or too many wait.
    pub async fn clean(&self, topic: &str, partition: u32) -> Result<CleanStats, String> {
        let (id, owner) = self
            .resolve_for_read(topic, partition)
            .map_err(|error| error.to_string())?;
        let answer = self
            .ask(owner, |reply| ShardRequest::Clean {
                partition: id,
                reply,
            })
            .await;
        answer.unwrap_or_else(|| Err("the broker is shutting down".to_string()))
    }

    /// The first durable record with the partition's largest timestamp, if any.
    pub async fn offset_of_max_timestamp(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<RecordAtTime>, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::FindMaxTimestamp {
                partition: id,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// The first durable record at or after `target_ms`, if any.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        target_ms: i64,
    ) -> Result<Option<RecordAtTime>, ReadError> {
        let (id, owner) = self.resolve_for_read(topic, partition)?;
        let answer = self
            .ask(owner, |reply| ShardRequest::FindTimestamp {
                partition: id,
                target_ms,
                reply,
            })
            .await;
        answer.unwrap_or(Err(ReadError::ShuttingDown))
    }

    /// Resolves once the partition's high watermark passes `beyond`, the partition goes
    /// away, or its shard has no room for another wait. Dropping the future abandons the wait.
    pub async fn wait_for_data(&self, topic: &str, partition: u32, beyond: Offset) {
        let Some((id, owner)) = self.resolve(topic, partition) else {
            return;
        };
        // Whether the answer came or the shard went away, the wait is over.
        let _ = self
            .ask(owner, |reply| ShardRequest::WaitForData {
                partition: id,
                beyond,
                reply,
            })
            .await;
    }

    pub async fn create_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, TopicError> {
        self.admin(|reply| MetadataRequest::CreateTopic { spec, reply })
            .await
    }

    /// The topic `spec` would create, or why it cannot be; creates nothing.
    pub async fn validate_topic(&self, spec: TopicSpec) -> Result<Arc<TopicMeta>, TopicError> {
        self.admin(|reply| MetadataRequest::ValidateTopic { spec, reply })
            .await
    }

    /// A producer id for an idempotent producer, never handed out before on this broker.
    pub async fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        self.admin(|reply| MetadataRequest::AllocateProducerId { reply })
            .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.admin(|reply| MetadataRequest::DeleteTopic {
            name: name.into(),
            reply,
        })
        .await
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: u32,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.grow(name, total, false).await
    }

    /// The topic as growing it to `total` partitions would make it; changes nothing.
    pub async fn validate_partitions(
        &self,
        name: &str,
        total: u32,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.grow(name, total, true).await
    }

    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.alter(name, changes, false).await
    }

    /// The topic as `changes` would make it; changes nothing.
    pub async fn validate_topic_config(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.alter(name, changes, true).await
    }

    async fn grow(
        &self,
        name: &str,
        total: u32,
        dry_run: bool,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.admin(|reply| MetadataRequest::CreatePartitions {
            name: name.into(),
            total,
            dry_run,
            reply,
        })
        .await
    }

    async fn alter(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
        dry_run: bool,
    ) -> Result<Arc<TopicMeta>, TopicError> {
        self.admin(|reply| MetadataRequest::AlterConfig {
            name: name.into(),
            changes,
            dry_run,
            reply,
        })
        .await
    }

    /// Runs retention on every shard now, instead of at the next housekeeping tick.
    pub async fn housekeeping(&self) {
        for shard in 0..self.shard_count() {
            let shard = ShardId::new(u16::try_from(shard).expect("shard count fits in u16"));
            self.ask(shard, |reply| ShardRequest::Housekeeping { reply })
                .await;
        }
    }

    /// A round trip to `shard` and back; `None` when it is gone.
    pub async fn ping(&self, shard: ShardId) -> Option<ShardId> {
        self.ask(shard, |reply| ShardRequest::Ping { reply }).await
    }

    pub async fn stats(&self, shard: ShardId) -> Option<ShardStats> {
        let mut stats = self
            .ask(shard, |reply| ShardRequest::Stats { reply })
            .await?;
        stats.queue_depth = self.inner.shards.get(shard.index())?.len();
        Some(stats)
    }

    fn resolve_for_read(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(PartitionId, ShardId), ReadError> {
        self.resolve(topic, partition)
            .ok_or_else(|| ReadError::UnknownPartition {
                partition: partition_label(topic, partition),
            })
    }

    /// Sends a request to `shard` and awaits the answer; `None` when the shard is gone.
    async fn ask<T>(
        &self,
        shard: ShardId,
        request: impl FnOnce(Reply<T>) -> ShardRequest,
    ) -> Option<T> {
        let (reply, answer) = futures::channel::oneshot::channel();
        self.inner
            .shards
            .get(shard.index())?
            .send_async(request(reply))
            .await
            .ok()?;
        answer.await.ok()
    }

    async fn admin<T>(
        &self,
        request: impl FnOnce(Reply<Result<T, TopicError>>) -> MetadataRequest,
    ) -> Result<T, TopicError> {
        let (reply, answer) = futures::channel::oneshot::channel();
        self.inner
            .metadata_requests
            .send_async(request(reply))
            .await
            .map_err(|_| TopicError::ShuttingDown)?;
        answer.await.unwrap_or(Err(TopicError::ShuttingDown))
    }
}
