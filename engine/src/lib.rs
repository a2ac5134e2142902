//! `strand-engine` owns Strand's storage: Kafka record batches checked on the way in and
//! stored byte for byte in segmented, direct-I/O partition logs, with sparse offset and
//! time indexes, group commit, crash recovery, retention and a per-shard cache of recent
//! batches; and the shards, one pinned glommio executor each, that own those partitions
//! and talk only through bounded channels.
//!
//! It never sees a socket or the Kafka wire protocol beyond the record-batch format, and
//! no lock is taken on its data path: each partition is changed only by its shard's loop.
//!
//! The public boundary: [`ShardSet`] starts and stops the shards; each shard's front end
//! gets a [`Router`] to append, read, look up offsets and administer topics;
//! [`ValidatedBatch`] is the only form in which client bytes reach a log;
//! [`EngineConfig`], [`TopicConfig`] and [`Limits`] configure it; [`log_scan`] and
//! [`segment_index`] let tools read segment files offline.

pub mod batch;
pub mod batch_builder;
pub mod batch_cache;
pub mod batch_conform;
pub mod batch_filter;
pub mod batch_rewrite;
pub mod clean_plan;
pub mod clean_swap;
pub mod cleaner;
pub mod compression;
pub mod config;
mod data_waits;
pub mod directory;
pub mod group_commit;
pub mod ids;
pub mod index_file;
pub mod iopoll_probe;
pub mod job_runner;
pub mod key_map;
pub mod layout;
pub mod log_scan;
pub mod log_writer;
pub mod metadata;
pub mod metadata_service;
pub mod metadata_store;
pub mod offset;
pub mod offset_index;
pub mod partition;
pub mod partition_marks;
pub mod producer_ids;
mod producer_restore;
pub mod producer_state;
pub mod record_frames;
pub mod record_timestamps;
pub mod records;
pub mod recovery;
pub mod request;
pub mod retention;
pub mod router;
pub mod segment;
pub mod segment_index;
pub mod shard_set;
pub mod time_index;
pub mod topic_config;
mod truncation;
pub mod varint;

mod shard;

pub use batch::{BatchError, BatchHeader, ValidatedBatch};
pub use cleaner::CleanStats;
pub use config::{EngineConfig, FsyncPolicy, Limits, TopicConfig};
pub use ids::{PartitionId, ShardId, TopicId};
pub use job_runner::{JobError, JobRunner};
pub use metadata::{MetadataSnapshot, TopicMeta};
pub use metadata_service::{ConfigChange, TopicError, TopicSpec};
pub use offset::Offset;
pub use partition::{AppendError, PartitionOffsets, ReadError, TruncateError};
pub use record_timestamps::RecordAtTime;
pub use request::{AppendOutcome, HeadAppend, ProducerInfo, ReadLimit, ReadOutcome, ShardStats};
pub use router::{DurableAnswer, Router};
pub use shard_set::{EngineError, ShardSet, ShutdownSummary};
