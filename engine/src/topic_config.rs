//! The settings of a topic, named, typed, defaulted and checked as Kafka's topic configs
//! are, and which of them were set on the topic itself (its overrides) rather than
//! inherited from the broker's defaults.
//!
//! [`TOPIC_CONFIGS`] lists every topic config Kafka accepts. Each is either honoured or
//! accepted and documented as having no effect here, with the reason ([`Effect`]). Kafka
//! checks values by type and range and refuses unknown keys; so does [`TopicConfig::set`].

use std::collections::BTreeMap;

use crate::batch::Compression;

/// What kind of value a setting takes, with its valid range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigKind {
    Boolean,
    Int {
        min: i64,
        max: i64,
    },
    Long {
        min: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A comma-separated list of these words.
    Subset(&'static [&'static str]),
    /// A comma-separated list of anything (replica lists).
    List,
    String,
}

impl ConfigKind {
    /// Kafka's config type code, as DescribeConfigs v3+ reports it.
    pub fn wire_type(&self) -> i8 {
        match self {
            ConfigKind::Boolean => 1,
            ConfigKind::String | ConfigKind::Choice(_) => 2,
            ConfigKind::Int { .. } => 3,
            ConfigKind::Long { .. } => 5,
            ConfigKind::Double { .. } => 6,
            ConfigKind::Subset(_) | ConfigKind::List => 7,
        }
    }
}

/// What Strand does with a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Honoured,
    /// Accepted and shown, with no effect here, for this reason.
    NoEffect(&'static str),
}

/// One topic config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfigDef {
    pub key: &'static str,
    pub kind: ConfigKind,
    /// Kafka's default, in the form DescribeConfigs shows.
    pub default: &'static str,
    /// The broker settings that give the default, most specific first (Kafka's synonyms).
    pub broker_keys: &'static [&'static str],
    /// Kafka's documentation of the setting.
    pub doc: &'static str,
    pub effect: Effect,
}

const LONG_MAX: &str = "9223372036854775807";
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const NO_TIERED: Effect = Effect::NoEffect("Strand has no tiered storage");
const NO_THROTTLE: Effect = Effect::NoEffect("chain replication is not throttled by replica lists");
const FSYNCED: Effect = Effect::NoEffect(
    "every acknowledged write is already fdatasync'd (see --no-fsync for the opposite)",
);
const REMOVED_IN_KAFKA_4: Effect =
    Effect::NoEffect("removed in Kafka 4; only record batch v2 is stored");

/// Every topic config Kafka accepts, in name order.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        key: "cleanup.policy",
        kind: ConfigKind::Subset(&["compact", "delete"]),
        default: "delete",
        broker_keys: &["log.cleanup.policy"],
        doc: "This config designates the retention policy to use on log segments. The \"delete\" policy (which is the default) will discard old segments when their retention time or size limit has been reached. The \"compact\" policy will enable log compaction, which retains the latest value for each key. It is also possible to specify both policies in a comma-separated list (e.g. \"delete,compact\").",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "compression.gzip.level",
        kind: ConfigKind::Int { min: -1, max: 9 },
        default: "-1",
        broker_keys: &["compression.gzip.level"],
        doc: "The compression level to use if compression.type is set to gzip.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "compression.lz4.level",
        kind: ConfigKind::Int { min: 1, max: 17 },
        default: "9",
        broker_keys: &["compression.lz4.level"],
        doc: "The compression level to use if compression.type is set to lz4.",
        effect: Effect::NoEffect("lz4 is written at its one fast level"),
    },
    ConfigDef {
        key: "compression.type",
        kind: ConfigKind::Choice(COMPRESSION_TYPES),
        default: "producer",
        broker_keys: &["compression.type"],
        doc: "Specify the final compression type for a given topic. This configuration accepts the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'). It additionally accepts 'uncompressed' which is equivalent to no compression; and 'producer' which means retain the original compression codec set by the producer.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "compression.zstd.level",
        kind: ConfigKind::Int {
            min: -131_072,
            max: 22,
        },
        default: "3",
        broker_keys: &["compression.zstd.level"],
        doc: "The compression level to use if compression.type is set to zstd.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "delete.retention.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "86400000",
        broker_keys: &["log.cleaner.delete.retention.ms"],
        doc: "The amount of time to retain tombstone message markers for log compacted topics. This setting also gives a bound on the time in which a consumer must complete a read if they begin from offset 0 to ensure that they get a valid snapshot of the final stage (otherwise tombstones messages may be collected before a consumer completes their scan).",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "file.delete.delay.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "60000",
        broker_keys: &["log.segment.delete.delay.ms"],
        doc: "The time to wait before deleting a file from the filesystem.",
        effect: Effect::NoEffect(
            "segment files leave the log at once and are unlinked in the background; open reads keep them readable until they finish",
        ),
    },
    ConfigDef {
        key: "flush.messages",
        kind: ConfigKind::Long { min: 1 },
        default: LONG_MAX,
        broker_keys: &["log.flush.interval.messages"],
        doc: "This setting allows specifying an interval at which we will force an fsync of data written to the log.",
        effect: FSYNCED,
    },
    ConfigDef {
        key: "flush.ms",
        kind: ConfigKind::Long { min: 0 },
        default: LONG_MAX,
        broker_keys: &["log.flush.interval.ms"],
        doc: "This setting allows specifying a time interval at which we will force an fsync of data written to the log.",
        effect: FSYNCED,
    },
    ConfigDef {
        key: "follower.replication.throttled.replicas",
        kind: ConfigKind::List,
        default: "",
        broker_keys: &[],
        doc: "A list of replicas for which log replication should be throttled on the follower side.",
        effect: NO_THROTTLE,
    },
    ConfigDef {
        key: "index.interval.bytes",
        kind: ConfigKind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        default: "4096",
        broker_keys: &["log.index.interval.bytes"],
        doc: "This setting controls how frequently Kafka adds entries to its offset index and, conditionally, to its time index.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "leader.replication.throttled.replicas",
        kind: ConfigKind::List,
        default: "",
        broker_keys: &[],
        doc: "A list of replicas for which log replication should be throttled on the leader side.",
        effect: NO_THROTTLE,
    },
    ConfigDef {
        key: "local.retention.bytes",
        kind: ConfigKind::Long { min: -2 },
        default: "-2",
        broker_keys: &["log.local.retention.bytes"],
        doc: "The maximum size of local log segments that can grow for a partition before it deletes the old segments. Default value is -2, it represents `retention.bytes` value to be used.",
        effect: NO_TIERED,
    },
    ConfigDef {
        key: "local.retention.ms",
        kind: ConfigKind::Long { min: -2 },
        default: "-2",
        broker_keys: &["log.local.retention.ms"],
        doc: "The number of milliseconds to keep the local log segment before it gets deleted. Default value is -2, it represents `retention.ms` value is to be used.",
        effect: NO_TIERED,
    },
    ConfigDef {
        key: "max.compaction.lag.ms",
        kind: ConfigKind::Long { min: 1 },
        default: LONG_MAX,
        broker_keys: &["log.cleaner.max.compaction.lag.ms"],
        doc: "The maximum time a message will remain ineligible for compaction in the log. Only applicable for logs that are being compacted.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "max.message.bytes",
        kind: ConfigKind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        default: "1048588",
        broker_keys: &["message.max.bytes"],
        doc: "The largest record batch size allowed by Kafka (after compression if compression is enabled).",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "message.downconversion.enable",
        kind: ConfigKind::Boolean,
        default: "true",
        broker_keys: &["log.message.downconversion.enable"],
        doc: "This configuration controls whether down-conversion of message formats is enabled to satisfy consume requests.",
        effect: REMOVED_IN_KAFKA_4,
    },
    ConfigDef {
        key: "message.format.version",
        kind: ConfigKind::String,
        default: "3.0-IV1",
        broker_keys: &["log.message.format.version"],
        doc: "Specify the message format version the broker will use to append messages to the logs.",
        effect: REMOVED_IN_KAFKA_4,
    },
    ConfigDef {
        key: "message.timestamp.after.max.ms",
        kind: ConfigKind::Long { min: 0 },
        // Kafka 4.0 lowered it from Long.MAX (KIP-937).
        default: "3600000",
        broker_keys: &["log.message.timestamp.after.max.ms"],
        doc: "This configuration sets the allowable timestamp difference between the message timestamp and the broker's timestamp. The message timestamp can be later than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "message.timestamp.before.max.ms",
        kind: ConfigKind::Long { min: 0 },
        default: LONG_MAX,
        broker_keys: &["log.message.timestamp.before.max.ms"],
        doc: "This configuration sets the allowable timestamp difference between the broker's timestamp and the message timestamp. The message timestamp can be earlier than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "message.timestamp.difference.max.ms",
        kind: ConfigKind::Long { min: 0 },
        default: LONG_MAX,
        broker_keys: &["log.message.timestamp.difference.max.ms"],
        doc: "[DEPRECATED] The maximum difference allowed between the timestamp when a broker receives a message and the timestamp specified in the message.",
        effect: Effect::NoEffect(
            "deprecated by Kafka (removed in 4.0); use message.timestamp.before.max.ms and message.timestamp.after.max.ms",
        ),
    },
    ConfigDef {
        key: "message.timestamp.type",
        kind: ConfigKind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        broker_keys: &["log.message.timestamp.type"],
        doc: "Define whether the timestamp in the message is message create time or log append time.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "min.cleanable.dirty.ratio",
        kind: ConfigKind::Double { min: 0.0, max: 1.0 },
        default: "0.5",
        broker_keys: &["log.cleaner.min.cleanable.ratio"],
        doc: "This configuration controls how frequently the log compactor will attempt to clean the log (assuming log compaction is enabled). By default we will avoid cleaning a log where more than 50% of the log has been compacted.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "min.compaction.lag.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "0",
        broker_keys: &["log.cleaner.min.compaction.lag.ms"],
        doc: "The minimum time a message will remain uncompacted in the log. Only applicable for logs that are being compacted.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "min.insync.replicas",
        kind: ConfigKind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        default: "1",
        broker_keys: &["min.insync.replicas"],
        doc: "When a producer sets acks to \"all\" (or \"-1\"), this configuration specifies the minimum number of replicas that must acknowledge a write for the write to be considered successful. If this minimum cannot be met, then the producer will raise an exception (either NotEnoughReplicas or NotEnoughReplicasAfterAppend).",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "preallocate",
        kind: ConfigKind::Boolean,
        default: "false",
        broker_keys: &["log.preallocate"],
        doc: "True if we should preallocate the file on disk when creating a new log segment.",
        effect: Effect::NoEffect(
            "measured without benefit on ext4 with O_DIRECT appends (ARCHITECTURE.md, known performance problems)",
        ),
    },
    ConfigDef {
        key: "remote.log.copy.disable",
        kind: ConfigKind::Boolean,
        default: "false",
        broker_keys: &[],
        doc: "Determines whether tiered data for a topic should become read only, and no more data uploading on a topic.",
        effect: NO_TIERED,
    },
    ConfigDef {
        key: "remote.log.delete.on.disable",
        kind: ConfigKind::Boolean,
        default: "false",
        broker_keys: &[],
        doc: "Determines whether tiered data for a topic should be deleted after tiered storage is disabled on a topic.",
        effect: NO_TIERED,
    },
    ConfigDef {
        key: "remote.storage.enable",
        kind: ConfigKind::Boolean,
        default: "false",
        broker_keys: &[],
        doc: "To enable tiered storage for a topic, set this configuration as true.",
        effect: NO_TIERED,
    },
    ConfigDef {
        key: "retention.bytes",
        kind: ConfigKind::Long { min: -1 },
        default: "-1",
        broker_keys: &["log.retention.bytes"],
        doc: "This configuration controls the maximum size a partition (which consists of log segments) can grow to before we will discard old log segments to free up space if we are using the \"delete\" retention policy.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "retention.ms",
        kind: ConfigKind::Long { min: -1 },
        default: "604800000",
        broker_keys: &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        doc: "This configuration controls the maximum time we will retain a log before we will discard old log segments to free up space if we are using the \"delete\" retention policy. If set to -1, no time limit is applied.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "segment.bytes",
        kind: ConfigKind::Int {
            min: SEGMENT_BYTES_MIN,
            max: i32::MAX as i64,
        },
        default: "1073741824",
        broker_keys: &["log.segment.bytes"],
        doc: "This configuration controls the segment file size for the log. Retention and cleaning is always done a file at a time so a larger segment size means fewer files but less granular control over retention.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "segment.index.bytes",
        kind: ConfigKind::Int {
            min: 4,
            max: i32::MAX as i64,
        },
        default: "10485760",
        broker_keys: &["log.index.size.max.bytes"],
        doc: "This configuration controls the size of the index that maps offsets to file positions.",
        effect: Effect::NoEffect(
            "indexes live in memory, about 12 bytes per index.interval.bytes of log, so they need no preallocated size",
        ),
    },
    ConfigDef {
        key: "segment.jitter.ms",
        kind: ConfigKind::Long { min: 0 },
        default: "0",
        broker_keys: &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        doc: "The maximum random jitter subtracted from the scheduled segment roll time to avoid thundering herds of segment rolling",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "segment.ms",
        kind: ConfigKind::Long { min: 1 },
        default: "604800000",
        broker_keys: &["log.roll.ms", "log.roll.hours"],
        doc: "This configuration controls the period of time after which Kafka will force the log to roll even if the segment file isn't full to ensure that retention can delete or compact old data.",
        effect: Effect::Honoured,
    },
    ConfigDef {
        key: "unclean.leader.election.enable",
        kind: ConfigKind::Boolean,
        default: "false",
        broker_keys: &["unclean.leader.election.enable"],
        doc: "Indicates whether to enable replicas not in the ISR set to be elected as leader as a last resort, even though doing so may result in data loss.",
        effect: Effect::NoEffect(
            "a chain only ever loses members; a new head always holds every committed offset, so there is no unclean choice to allow",
        ),
    },
];

/// The smallest `segment.bytes` accepted (Kafka 3's bound: one legacy record's overhead).
const SEGMENT_BYTES_MIN: i64 = 14;

/// The definition of `key`, if Kafka has such a topic config.
pub fn config_def(key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.key == key)
}

/// The definition whose broker setting (or one of its synonyms) is `broker_key`.
pub fn config_def_for_broker_key(broker_key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|def| def.broker_keys.contains(&broker_key))
}

/// What happens to old segments: `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Segments past `retention.ms` or `retention.bytes` are deleted.
    pub delete: bool,
    /// The log cleaner keeps only the latest record of each key.
    pub compact: bool,
}

/// `compression.type`: what the broker stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicCompression {
    /// Whatever the producer sent.
    Producer,
    /// This codec (`uncompressed` is [`Compression::None`]): batches sent otherwise are
    /// recompressed.
    Codec(Compression),
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// A refused configuration change, naming the key and the value.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config name: {key}")]
    UnknownKey { key: String },
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// Settings of one topic: every value in effect, and which were set on the topic itself.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub compression_type: TopicCompression,
    pub compression_gzip_level: i32,
    pub compression_zstd_level: i32,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone it has seen.
    pub delete_retention_ms: i64,
    /// `index.interval.bytes`: log bytes between two entries of the sparse indexes.
    pub index_interval_bytes: u32,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the log cleanable.
    pub max_compaction_lag_ms: i64,
    /// `max.message.bytes`: the largest batch a producer may append (as stored).
    pub max_message_bytes: u32,
    pub message_timestamp_after_max_ms: i64,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_type: TimestampType,
    /// `min.cleanable.dirty.ratio`: the dirty share of the log that makes it cleanable.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.insync.replicas`: the chain length acks=all needs in a cluster.
    pub min_insync_replicas: u32,
    /// `retention.bytes`: delete the oldest segments while a partition is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `retention.ms`: delete a segment once its newest timestamp is this old; -1 keeps forever.
    pub retention_ms: i64,
    /// `segment.bytes`: roll to a new segment before one grows past this size.
    pub segment_bytes: u32,
    /// `segment.jitter.ms`: at most this much is taken off `segment.ms` for each segment.
    pub segment_jitter_ms: i64,
    /// `segment.ms`: roll to a new segment once the active one is this old.
    pub segment_ms: i64,
    /// Every value, by key, in the form DescribeConfigs shows.
    values: BTreeMap<&'static str, String>,
    /// Keys set on this config itself rather than inherited.
    overrides: BTreeMap<&'static str, String>,
}

impl Default for TopicConfig {
    /// Kafka's defaults, with nothing overridden.
    fn default() -> Self {
        let mut config = TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            compression_type: TopicCompression::Producer,
            compression_gzip_level: -1,
            compression_zstd_level: 3,
            delete_retention_ms: 0,
            index_interval_bytes: 0,
            max_compaction_lag_ms: 0,
            max_message_bytes: 0,
            message_timestamp_after_max_ms: 0,
            message_timestamp_before_max_ms: 0,
            message_timestamp_type: TimestampType::CreateTime,
            min_cleanable_dirty_ratio: 0.0,
            min_compaction_lag_ms: 0,
            min_insync_replicas: 1,
            retention_bytes: 0,
            retention_ms: 0,
            segment_bytes: 0,
            segment_jitter_ms: 0,
            segment_ms: 0,
            values: BTreeMap::new(),
            overrides: BTreeMap::new(),
        };
        for def in TOPIC_CONFIGS {
            config
                .assign(def, def.default)
                .expect("Kafka's defaults are valid");
        }
        config
    }
}

impl TopicConfig {
    /// The value of `key` in Kafka's string form.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// Sets `key` from Kafka's string form, checking type and range, and records it as
    /// set on this config. A refused value changes nothing.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let def = config_def(key).ok_or_else(|| ConfigError::UnknownKey { key: key.into() })?;
        let normalized = self.assign(def, value)?;
        self.overrides.insert(def.key, normalized);
        Ok(())
    }

    /// Takes `key` back to the value `defaults` gives it.
    pub fn reset(&mut self, key: &str, defaults: &TopicConfig) -> Result<(), ConfigError> {
        let def = config_def(key).ok_or_else(|| ConfigError::UnknownKey { key: key.into() })?;
        let value = defaults
            .values
            .get(def.key)
            .map_or(def.default, String::as_str)
            .to_owned();
        self.assign(def, &value)?;
        self.overrides.remove(def.key);
        Ok(())
    }

    /// This config's values as the starting point of another's: the same values, none of
    /// them counted as set there (a topic inherits the broker's defaults).
    #[must_use]
    pub fn inherited(&self) -> TopicConfig {
        TopicConfig {
            overrides: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// True when `key` was set on this config rather than inherited.
    pub fn is_set(&self, key: &str) -> bool {
        self.overrides.contains_key(key)
    }

    /// The settings made on this config, as `(key, value)`.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        self.overrides
            .iter()
            .map(|(key, value)| (*key, value.clone()))
            .collect()
    }

    /// Every setting as `(key, value)`, in name order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        self.values
            .iter()
            .map(|(key, value)| (*key, value.clone()))
            .collect()
    }

    /// True when the cleaner compacts this topic.
    pub fn compacted(&self) -> bool {
        self.cleanup_policy.compact
    }

    /// Checks `value` for `def`, stores it in its typed field and among the values, and
    /// returns it in Kafka's form.
    fn assign(&mut self, def: &ConfigDef, value: &str) -> Result<String, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidValue {
            key: def.key.into(),
            value: value.into(),
            reason,
        };
        let parsed = parse_value(def.kind, value.trim()).map_err(invalid)?;
        let text = parsed.text();
        match def.key {
            "cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy {
                    delete: text.split(',').any(|word| word == "delete"),
                    compact: text.split(',').any(|word| word == "compact"),
                };
            }
            "compression.type" => self.compression_type = compression_of(&text),
            "compression.gzip.level" => self.compression_gzip_level = parsed.int(),
            "compression.zstd.level" => self.compression_zstd_level = parsed.int(),
            "delete.retention.ms" => self.delete_retention_ms = parsed.long(),
            "index.interval.bytes" => self.index_interval_bytes = parsed.unsigned(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parsed.long(),
            "max.message.bytes" => self.max_message_bytes = parsed.unsigned(),
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = parsed.long();
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = parsed.long();
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = if text == "LogAppendTime" {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                };
            }
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio = parsed.double(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parsed.long(),
            "min.insync.replicas" => self.min_insync_replicas = parsed.unsigned(),
            "retention.bytes" => self.retention_bytes = parsed.long(),
            "retention.ms" => self.retention_ms = parsed.long(),
            "segment.bytes" => self.segment_bytes = parsed.unsigned(),
            "segment.jitter.ms" => self.segment_jitter_ms = parsed.long(),
            "segment.ms" => self.segment_ms = parsed.long(),
            _ => {} // accepted with no effect (see its `Effect`)
        }
        self.values.insert(def.key, text.clone());
        Ok(text)
    }
}

/// A checked value.
#[derive(Clone, Debug, PartialEq)]
enum Parsed {
    Integer(i64),
    Double(f64),
    Text(String),
}

impl Parsed {
    fn text(&self) -> String {
        match self {
            Parsed::Integer(value) => value.to_string(),
            Parsed::Double(value) => value.to_string(),
            Parsed::Text(text) => text.clone(),
        }
    }

    fn long(&self) -> i64 {
        match self {
            Parsed::Integer(value) => *value,
            _ => unreachable!("the kind of the key is an integer"),
        }
    }

    fn int(&self) -> i32 {
        i32::try_from(self.long()).expect("int settings are range-checked to i32")
    }

    fn unsigned(&self) -> u32 {
        u32::try_from(self.long()).expect("these int settings are range-checked non-negative")
    }

    fn double(&self) -> f64 {
        match self {
            Parsed::Double(value) => *value,
            _ => unreachable!("the kind of the key is a double"),
        }
    }
}

fn parse_value(kind: ConfigKind, value: &str) -> Result<Parsed, String> {
    match kind {
        ConfigKind::Boolean => match value.to_ascii_lowercase().as_str() {
            word @ ("true" | "false") => Ok(Parsed::Text(word.to_owned())),
            _ => Err("expected value to be either true or false".into()),
        },
        ConfigKind::Int { min, max } => {
            let parsed = parse_integer(value, "int")?;
            if parsed < min {
                return Err(format!("must be at least {min}"));
            }
            if parsed > max {
                return Err(format!("must be at most {max}"));
            }
            Ok(Parsed::Integer(parsed))
        }
        ConfigKind::Long { min } => {
            let parsed = parse_integer(value, "long")?;
            if parsed < min {
                return Err(format!("must be at least {min}"));
            }
            Ok(Parsed::Integer(parsed))
        }
        ConfigKind::Double { min, max } => {
            let parsed: f64 = value
                .parse()
                .map_err(|_| "not a number of type double".to_string())?;
            if !(min..=max).contains(&parsed) {
                return Err(format!("must be between {min} and {max}"));
            }
            Ok(Parsed::Double(parsed))
        }
        // Kafka matches these words case-sensitively.
        ConfigKind::Choice(words) => words
            .iter()
            .find(|word| **word == value)
            .map(|word| Parsed::Text((*word).to_owned()))
            .ok_or_else(|| format!("string must be one of: {}", words.join(", "))),
        ConfigKind::Subset(words) => {
            // An empty list is allowed (Kafka 3.9: neither policy, segments stay).
            let mut chosen: Vec<&str> = Vec::new();
            for item in value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
            {
                let word = words
                    .iter()
                    .find(|word| **word == item)
                    .ok_or_else(|| format!("{item:?} is not one of: {}", words.join(", ")))?;
                if !chosen.contains(word) {
                    chosen.push(word);
                }
            }
            Ok(Parsed::Text(chosen.join(",")))
        }
        ConfigKind::List => Ok(Parsed::Text(
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .collect::<Vec<_>>()
                .join(","),
        )),
        ConfigKind::String => Ok(Parsed::Text(value.to_owned())),
    }
}

fn parse_integer(value: &str, type_name: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("not a number of type {type_name}"))
}

fn compression_of(word: &str) -> TopicCompression {
    TopicCompression::Codec(match word {
        "producer" => return TopicCompression::Producer,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `key` to `value` on a default config and expects `expected` back from `get`,
    /// or an error whose message contains `expected` when it starts with "error: ".
    fn check(key: &str, value: &str, expected: &str) {
        let mut config = TopicConfig::default();
        match (config.set(key, value), expected.strip_prefix("error: ")) {
            (Ok(()), None) => assert_eq!(config.get(key).as_deref(), Some(expected), "{key}"),
            (Err(error), Some(wanted)) => {
                assert!(error.to_string().contains(wanted), "{key}={value}: {error}");
                assert_eq!(config, TopicConfig::default(), "a refusal changes nothing");
            }
            (outcome, _) => panic!("{key}={value}: {outcome:?}, expected {expected}"),
        }
    }

    #[test]
    fn every_kind_of_value_is_checked_and_normalized() {
        check("retention.ms", "60000", "60000");
        check("retention.ms", "-1", "-1");
        check("retention.ms", "-2", "error: must be at least -1");
        check("retention.ms", "soon", "error: not a number of type long");
        check("segment.bytes", "10", "error: must be at least 14");
        check(
            "segment.bytes",
            "4294967296",
            "error: must be at most 2147483647",
        );
        check("cleanup.policy", "compact", "compact");
        check("cleanup.policy", "delete, compact", "delete,compact");
        check("cleanup.policy", "compact,compact", "compact");
        check("cleanup.policy", "", "");
        check(
            "cleanup.policy",
            "shred",
            "error: \"shred\" is not one of: compact, delete",
        );
        check(
            "cleanup.policy",
            "Compact",
            "error: \"Compact\" is not one of",
        );
        check("compression.type", "zstd", "zstd");
        check("compression.type", "ZSTD", "error: string must be one of");
        check("compression.type", "brotli", "error: string must be one of");
        check("min.cleanable.dirty.ratio", "0.01", "0.01");
        check(
            "min.cleanable.dirty.ratio",
            "1.5",
            "error: must be between 0 and 1",
        );
        check("preallocate", "TRUE", "true");
        check(
            "preallocate",
            "yes",
            "error: expected value to be either true or false",
        );
        check("message.timestamp.type", "LogAppendTime", "LogAppendTime");
        check("min.insync.replicas", "0", "error: must be at least 1");
        check(
            "follower.replication.throttled.replicas",
            "0:1, 1:2",
            "0:1,1:2",
        );
        check("colour", "red", "error: unknown topic config name: colour");
    }

    #[test]
    fn typed_fields_follow_their_keys() {
        let mut config = TopicConfig::default();
        config.set("cleanup.policy", "compact,delete").unwrap();
        config.set("compression.type", "lz4").unwrap();
        config
            .set("message.timestamp.type", "LogAppendTime")
            .unwrap();
        config.set("min.cleanable.dirty.ratio", "0.25").unwrap();
        assert_eq!(
            config.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(
            config.compression_type,
            TopicCompression::Codec(Compression::Lz4)
        );
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert!((config.min_cleanable_dirty_ratio - 0.25).abs() < f64::EPSILON);
    }

    #[test]
    fn overrides_are_tracked_and_reset_to_the_given_defaults() {
        let mut broker = TopicConfig::default();
        broker.set("retention.ms", "1000").unwrap();
        let mut topic = broker.inherited();
        assert!(topic.overrides().is_empty());
        assert_eq!(topic.retention_ms, 1000);
        topic.set("retention.ms", "5").unwrap();
        topic.set("segment.ms", "60000").unwrap();
        assert_eq!(
            topic.overrides(),
            [
                ("retention.ms", "5".to_owned()),
                ("segment.ms", "60000".to_owned())
            ]
        );
        topic.reset("retention.ms", &broker).unwrap();
        assert_eq!(topic.retention_ms, 1000);
        assert!(!topic.is_set("retention.ms"));
        assert!(topic.is_set("segment.ms"));
    }

    #[test]
    fn every_key_has_a_valid_default_and_is_listed_once() {
        let config = TopicConfig::default();
        assert_eq!(config.entries().len(), TOPIC_CONFIGS.len());
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].key < pair[1].key,
                "{} before {}",
                pair[0].key,
                pair[1].key
            );
        }
        for def in TOPIC_CONFIGS {
            assert_eq!(
                config.get(def.key).as_deref(),
                Some(def.default),
                "{}",
                def.key
            );
        }
        assert_eq!(
            config_def_for_broker_key("log.retention.hours").map(|def| def.key),
            Some("retention.ms")
        );
    }
}
