//! Engine configuration: the per-topic settings Kafka users know (`retention.ms`, …), the
//! engine's bounds ([`Limits`]) and how a shard set starts ([`EngineConfig`]).

use std::path::PathBuf;

/// Settings of one topic, named and defaulted as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// `retention.ms`: delete a segment once its newest timestamp is this old; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while a partition is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `segment.bytes`: roll to a new segment before one grows past this size.
    pub segment_bytes: u32,
    /// `segment.ms`: roll to a new segment once the active one is this old.
    pub segment_ms: i64,
    /// `max.message.bytes`: the largest batch a producer may append.
    pub max_message_bytes: u32,
    /// `index.interval.bytes`: log bytes between two entries of the sparse indexes.
    pub index_interval_bytes: u32,
    /// `cleanup.policy`: only `delete` is supported until compaction lands.
    pub cleanup_policy: CleanupPolicy,
}

/// What happens to old segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
}

/// A refused configuration change, naming the key and the value.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config {key:?}")]
    UnknownKey { key: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{key}={value} is not supported yet (only cleanup.policy=delete)")]
    Unsupported { key: String, value: String },
}

/// The topic config keys Strand understands, in the order `describe` lists them.
pub const TOPIC_CONFIG_KEYS: [&str; 7] = [
    "cleanup.policy",
    "index.interval.bytes",
    "max.message.bytes",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// The smallest `segment.bytes` Kafka accepts (one legacy record's overhead).
const SEGMENT_BYTES_MIN: i64 = 14;

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            cleanup_policy: CleanupPolicy::Delete,
        }
    }
}

impl TopicConfig {
    /// The value of `key` in Kafka's string form.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => "delete".to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => return None,
        })
    }

    /// Sets `key` from Kafka's string form, checking the value's range.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "cleanup.policy" if value == "delete" => self.cleanup_policy = CleanupPolicy::Delete,
            "cleanup.policy" => {
                return Err(ConfigError::Unsupported {
                    key: key.into(),
                    value: value.into(),
                });
            }
            "index.interval.bytes" => self.index_interval_bytes = parse_u32(key, value, 0)?,
            "max.message.bytes" => self.max_message_bytes = parse_u32(key, value, 0)?,
            "retention.bytes" => self.retention_bytes = parse_i64(key, value, -1)?,
            "retention.ms" => self.retention_ms = parse_i64(key, value, -1)?,
            "segment.bytes" => self.segment_bytes = parse_u32(key, value, SEGMENT_BYTES_MIN)?,
            "segment.ms" => self.segment_ms = parse_i64(key, value, 1)?,
            _ => return Err(ConfigError::UnknownKey { key: key.into() }),
        }
        Ok(())
    }

    /// Every setting as `(key, value)` pairs.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        TOPIC_CONFIG_KEYS
            .iter()
            .map(|key| (*key, self.get(key).expect("every listed key has a value")))
            .collect()
    }
}

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason,
    };
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not an integer".into()))?;
    if parsed < min {
        return Err(invalid(format!("must be at least {min}")));
    }
    Ok(parsed)
}

fn parse_u32(key: &str, value: &str, min: i64) -> Result<u32, ConfigError> {
    let parsed = parse_i64(key, value, min)?;
    // Kafka types these as int: the same upper bound keeps segment positions in 31 bits.
    i32::try_from(parsed)
        .ok()
        .and_then(|parsed| u32::try_from(parsed).ok())
        .ok_or_else(|| ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            reason: format!("must be at most {}", i32::MAX),
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_their_kafka_names() {
        let mut config = TopicConfig::default();
        for (key, value) in [
            ("retention.ms", "60000"),
            ("segment.bytes", "1048576"),
            ("retention.bytes", "-1"),
        ] {
            config.set(key, value).unwrap();
            assert_eq!(config.get(key).as_deref(), Some(value));
        }
        assert_eq!(config.entries().len(), TOPIC_CONFIG_KEYS.len());
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let mut config = TopicConfig::default();
        let error = config.set("segment.bytes", "10").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid value \"10\" for segment.bytes: must be at least 14"
        );
        let error = config.set("retention.ms", "soon").unwrap_err();
        assert!(error.to_string().contains("not an integer"), "{error}");
        let error = config.set("segment.bytes", "4294967296").unwrap_err();
        assert!(error.to_string().contains("at most 2147483647"), "{error}");
        assert!(matches!(
            config.set("cleanup.policy", "compact"),
            Err(ConfigError::Unsupported { .. })
        ));
        assert!(matches!(
            config.set("colour", "red"),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert_eq!(
            config,
            TopicConfig::default(),
            "refused changes leave the config as it was"
        );
    }
}
