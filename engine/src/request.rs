//! The messages shards send each other over their bounded channels, and the answers.
//! Everything here is `Send`: record bytes travel as owned `Vec`s, moved, never shared.

use std::sync::Arc;

use futures::channel::oneshot;

use crate::batch::ValidatedBatch;
use crate::cleaner::CleanStats;
use crate::group_commit::CommitProbe;
use crate::ids::{PartitionId, ShardId};
use crate::metadata::MetadataSnapshot;
use crate::offset::Offset;
use crate::partition::{AppendError, PartitionOffsets, ReadError, TruncateError};
use crate::record_timestamps::RecordAtTime;

/// Where an answer goes.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// Work for the shard that owns a partition.
#[derive(Debug)]
pub(crate) enum ShardRequest {
    Append {
        partition: PartitionId,
        batch: ValidatedBatch,
        leader_epoch: i32,
        reply: Reply<Result<AppendOutcome, AppendError>>,
    },
    /// A chain head's client batch: offsets assigned here from `expected_start` (refused
    /// unless the log ends there) in `leader_epoch`. Answered as soon as it is stored (or
    /// found a duplicate), with the batch as stored and a receiver for its durability.
    AppendHead {
        partition: PartitionId,
        batch: ValidatedBatch,
        leader_epoch: i32,
        expected_start: Offset,
        reply: Reply<Result<HeadAppend, AppendError>>,
    },
    /// A batch a chain's head assigned offsets to, appended at them; answered once
    /// durable here.
    AppendReplica {
        partition: PartitionId,
        batch: ValidatedBatch,
        reply: Reply<Result<AppendOutcome, AppendError>>,
    },
    /// Cuts the log back so it ends at `to`, once every append is durable; answered with
    /// the offsets after the cut.
    Truncate {
        partition: PartitionId,
        to: Offset,
        reply: Reply<Result<PartitionOffsets, TruncateError>>,
    },
    /// The chain's committed offset: consumers read no further.
    SetCommitted {
        partition: PartitionId,
        committed: Offset,
        reply: Reply<Result<PartitionOffsets, ReadError>>,
    },
    Read {
        partition: PartitionId,
        from: Offset,
        bytes_max: usize,
        limit: ReadLimit,
        reply: Reply<Result<ReadOutcome, ReadError>>,
    },
    Offsets {
        partition: PartitionId,
        reply: Reply<Result<PartitionOffsets, ReadError>>,
    },
    FindTimestamp {
        partition: PartitionId,
        target_ms: i64,
        reply: Reply<Result<Option<RecordAtTime>, ReadError>>,
    },
    /// The first record with the partition's largest timestamp (ListOffsets -3).
    FindMaxTimestamp {
        partition: PartitionId,
        reply: Reply<Result<Option<RecordAtTime>, ReadError>>,
    },
    /// Answered once the partition's high watermark passes `beyond` (at once if it already
    /// has, or if the shard holds its maximum of waits); the answer is dropped when the
    /// partition goes away.
    WaitForData {
        partition: PartitionId,
        beyond: Offset,
        reply: Reply<()>,
    },
    /// A cleaning pass over a compacted partition now, whatever its dirty ratio.
    Clean {
        partition: PartitionId,
        reply: Reply<CleanReply>,
    },
    /// Kafka's DeleteRecords: moves the log start up to `before` (the high watermark when
    /// `None`); answered with the new log start once it is durable.
    DeleteRecords {
        partition: PartitionId,
        before: Option<Offset>,
        reply: Reply<Result<Offset, ReadError>>,
    },
    /// The idempotent producers the partition knows (Kafka's DescribeProducers).
    Producers {
        partition: PartitionId,
        reply: Reply<Result<Vec<ProducerInfo>, ReadError>>,
    },
    ApplyMetadata {
        snapshot: Arc<MetadataSnapshot>,
        reply: Reply<Result<(), String>>,
    },
    Housekeeping {
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<ShardStats>,
    },
    Ping {
        reply: Reply<ShardId>,
    },
}

/// Orders from the shard set to a shard, on a channel of their own that the shard reads
/// even while it pushes back on requests.
#[derive(Debug)]
pub(crate) enum ShardControl {
    Shutdown {
        reply: flume::Sender<ShutdownReport>,
    },
}

/// How far a read may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadLimit {
    /// What consumers see: up to the high watermark.
    HighWatermark,
    /// What replication forwards: everything durable here, committed or not.
    Durable,
}

/// A head's append, as soon as it is stored.
#[derive(Debug)]
pub enum HeadAppend {
    /// Stored as `batch` (offsets and epoch assigned); `durable` answers once it is durable.
    Stored {
        batch: ValidatedBatch,
        durable: oneshot::Receiver<Result<AppendOutcome, AppendError>>,
    },
    /// An idempotent producer's retry of a batch stored earlier at these offsets.
    Duplicate { base: Offset, last: Offset },
}

/// What a cleaning pass asked for by hand did, or why it could not run.
pub type CleanReply = Result<CleanStats, String>;

/// One idempotent producer of a partition, as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The last sequence number of its latest batch.
    pub last_sequence: i32,
    /// The largest timestamp of its latest batch; -1, as Kafka reports an unknown one:
    /// producer state does not keep timestamps here.
    pub last_timestamp_ms: i64,
}

/// A durable append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start: Offset,
}

/// Batches read from a partition, as stored, with the partition's offsets at the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    pub bytes: Vec<u8>,
    pub offsets: PartitionOffsets,
}

/// What a shard holds, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub partitions: usize,
    pub offline_partitions: usize,
    pub cache_bytes: usize,
    pub cache_batches: usize,
    pub pending_write_bytes: usize,
    pub flushes_in_flight: usize,
    pub jobs_in_flight: usize,
    /// Fetches waiting for data.
    pub data_waits: usize,
    pub queue_depth: usize,
    pub commits: CommitProbe,
    /// Totals of every cleaning pass the shard ran.
    pub cleaner: CleanStats,
    /// Cleaning passes that failed (the log was left as it was).
    pub cleaner_failures: u64,
    /// Bytes on disk of each partition the shard holds, by `topic-index` label.
    pub partition_bytes: Vec<(String, u64)>,
}

/// How a shard closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    pub partitions_closed: usize,
    /// Partitions that could not be closed cleanly, with the reason.
    pub failures: Vec<(String, String)>,
}
