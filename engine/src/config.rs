//! Engine configuration: the engine's bounds ([`Limits`]) and how a shard set starts
//! ([`EngineConfig`]); topic settings are in `topic_config`.

use std::path::PathBuf;

pub use crate::topic_config::{
    CleanupPolicy, ConfigError, TimestampType, TopicCompression, TopicConfig,
};

/// When an append counts as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after fdatasync: a crash or power loss loses nothing acknowledged.
    EveryCommit,
    /// Acknowledge once the O_DIRECT write completes, without fdatasync. A power loss can
    /// lose acknowledged data. For benchmarks that measure the broker without the disk's
    /// flush cost; results must say they ran this way.
    UnsafeNoFsync,
}

/// Bounds on every queue, buffer and cache of the engine, per shard unless said otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests waiting in a shard's inbound channel; senders wait when it is full.
    pub shard_queue_depth_max: usize,
    /// Bytes appended but not yet written; a shard stops taking requests past this.
    pub pending_write_bytes_max: usize,
    /// Size of one DMA write buffer; a group commit writes one or more of them.
    pub write_buffer_bytes: usize,
    /// Bytes of recent batches kept in memory for tail reads.
    pub batch_cache_bytes_max: usize,
    /// Disk reads (fetches, timestamp lookups) in flight; a shard stops taking requests past this.
    pub reads_in_flight_max: usize,
    /// The largest batch any topic may accept, whatever its `max.message.bytes`.
    pub batch_bytes_max: usize,
    /// The most bytes one read may return (a batch larger than a read's `max_bytes` is still
    /// returned whole, as Kafka does, so this must be at least `batch_bytes_max`).
    pub read_bytes_max: usize,
    /// Topics the broker holds (the metadata map is keyed by client-chosen names).
    pub topics_max: usize,
    /// Partitions the broker holds, over all topics.
    pub partitions_max: usize,
    /// glommio's I/O memory per shard, allocated at start and registered with io_uring
    /// when RLIMIT_MEMLOCK allows (unregistered otherwise, which costs a page pin per
    /// write). Write buffers come from it; past it they come from the system allocator.
    pub io_memory_bytes: usize,
    /// Depth of each io_uring ring of a shard.
    pub ring_depth: usize,
    /// How long an idle shard spins before it sleeps. Waking a sleeping shard from another
    /// core costs tens of microseconds; spinning trades idle CPU for that latency.
    pub spin_before_park_us: u64,
    /// Reads waiting for a partition to grow (Kafka fetches with `max_wait_ms`); past this a
    /// wait is answered at once, so the fetch returns what it has.
    pub data_waits_max: usize,
    /// Bytes of the cleaner's key map (the latest offset of each key of a pass); a pass
    /// that finds more keys cleans what the map covers and the next pass goes on.
    pub cleaner_map_bytes_max: usize,
    /// Bytes one compressed batch may inflate to when the broker opens it (compaction,
    /// recompression, key checks); a larger batch is refused or left as it is.
    pub batch_decompressed_bytes_max: usize,
    /// Bytes the cleaner reads from a segment at a time.
    pub cleaner_read_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            shard_queue_depth_max: 1024,
            pending_write_bytes_max: 64 << 20,
            write_buffer_bytes: 1 << 20,
            batch_cache_bytes_max: 128 << 20,
            reads_in_flight_max: 256,
            batch_bytes_max: 16 << 20,
            read_bytes_max: 64 << 20,
            topics_max: 100_000,
            partitions_max: 200_000,
            io_memory_bytes: 16 << 20,
            ring_depth: 128,
            spin_before_park_us: 50,
            data_waits_max: 10_000,
            cleaner_map_bytes_max: 32 << 20,
            batch_decompressed_bytes_max: 64 << 20,
            cleaner_read_bytes: 1 << 20,
        }
    }
}

/// How to start a shard set.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where partitions and metadata live.
    pub data_dir: PathBuf,
    /// Number of shards (executors); one per online CPU by default.
    pub shard_count: usize,
    /// Pin shard `i` to CPU `i % cpus`. Off for tests that run many shard sets at once.
    pub pin_cpus: bool,
    pub fsync: FsyncPolicy,
    pub limits: Limits,
    /// Settings of topics created without their own.
    pub topic_defaults: TopicConfig,
    /// How often each shard applies retention and time-based rolls.
    pub housekeeping_interval_ms: u64,
}

impl EngineConfig {
    /// A configuration with Kafka-like defaults and one shard per online CPU.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        EngineConfig {
            data_dir: data_dir.into(),
            shard_count: cpus,
            pin_cpus: true,
            fsync: FsyncPolicy::EveryCommit,
            limits: Limits::default(),
            topic_defaults: TopicConfig::default(),
            housekeeping_interval_ms: 30_000,
        }
    }
}

impl EngineConfig {
    /// Checks that the bounds fit together; the error names the setting and its value.
    pub fn validate(&self) -> Result<(), String> {
        let limits = &self.limits;
        if self.shard_count == 0 || self.shard_count > usize::from(u16::MAX) {
            return Err(format!(
                "shard count {} must be between 1 and 65535",
                self.shard_count
            ));
        }
        if limits.read_bytes_max < limits.batch_bytes_max {
            return Err(format!(
                "read_bytes_max {} must be at least batch_bytes_max {}: a read returns a whole batch",
                limits.read_bytes_max, limits.batch_bytes_max
            ));
        }
        if limits.pending_write_bytes_max < limits.batch_bytes_max {
            return Err(format!(
                "pending_write_bytes_max {} must be at least batch_bytes_max {}",
                limits.pending_write_bytes_max, limits.batch_bytes_max
            ));
        }
        let max_message_bytes =
            usize::try_from(self.topic_defaults.max_message_bytes).unwrap_or(usize::MAX);
        if max_message_bytes > limits.batch_bytes_max {
            return Err(format!(
                "default max.message.bytes {max_message_bytes} exceeds batch_bytes_max {}",
                limits.batch_bytes_max
            ));
        }
        let positive = [
            ("shard_queue_depth_max", limits.shard_queue_depth_max),
            ("write_buffer_bytes", limits.write_buffer_bytes),
            ("reads_in_flight_max", limits.reads_in_flight_max),
            ("ring_depth", limits.ring_depth),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        Ok(())
    }
}
