//! Makes a producer's batch conform to its topic's settings before it is stored (Kafka's
//! `LogValidator`): compacted topics take only keyed records, CreateTime timestamps must
//! lie within `message.timestamp.before.max.ms` / `after.max.ms` of the broker's clock,
//! a topic whose `compression.type` names a codec stores its batches in that codec
//! (recompressed when the producer used another), and LogAppendTime topics stamp each
//! batch with the append time.
//!
//! Records are only opened when a setting needs them (a compacted topic, a before bound,
//! or recompression); the common batch passes with a look at its header.

use bytes::Bytes;

use crate::batch::{BatchError, Compression, ValidatedBatch};
use crate::batch_rewrite::{
    BatchFields, OpenError, encode_batch_at, open_records, stamp_log_append_time,
};
use crate::compression::{CodecError, Level};
use crate::records::{RecordError, parse};
use crate::topic_config::{TimestampType, TopicCompression, TopicConfig};

/// A batch ready to store.
#[derive(Debug)]
pub struct Conformed {
    pub batch: ValidatedBatch,
    /// The append time the batch was stamped with, on a LogAppendTime topic.
    pub log_append_time_ms: Option<i64>,
}

/// Why a batch does not fit its topic.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConformError {
    #[error("Compacted topic cannot accept message without key in topic partition {partition}.")]
    MissingKey { partition: String },
    #[error(
        "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{low}, {high}]"
    )]
    Timestamp {
        timestamp: i64,
        offset: i64,
        low: i64,
        high: i64,
    },
    #[error("the batch's records cannot be read: {0}")]
    Open(#[from] OpenError),
    #[error("the batch's records are malformed: {0}")]
    Records(#[from] RecordError),
    #[error("recompressing the batch for the topic's compression.type: {0}")]
    Codec(#[from] CodecError),
    #[error("the batch as the topic stores it: {0}")]
    Rebuilt(#[from] BatchError),
}

/// Checks (and where the topic asks, rewrites) `batch` for a topic with `config`, at
/// `now_ms`. `decompressed_max` bounds what a compressed batch may inflate to; `len_max`
/// bounds the rewritten batch.
///
/// # Errors
/// See [`ConformError`]; the batch is then refused whole, as Kafka does.
pub fn conform(
    batch: ValidatedBatch,
    config: &TopicConfig,
    partition: &str,
    now_ms: i64,
    decompressed_max: usize,
    len_max: usize,
) -> Result<Conformed, ConformError> {
    let header = *batch.header();
    let create_time = config.message_timestamp_type == TimestampType::CreateTime;
    let (low, high) = (
        now_ms.saturating_sub(config.message_timestamp_before_max_ms),
        now_ms.saturating_add(config.message_timestamp_after_max_ms),
    );
    let target = match config.compression_type {
        TopicCompression::Producer => None,
        TopicCompression::Codec(codec) => Some(codec),
    };
    let codec = header.compression().map_err(|_| OpenError::UnknownCodec {
        base_offset: header.base_offset,
    })?;
    let recompress = target.filter(|target| *target != codec);
    let check_before = create_time && config.message_timestamp_before_max_ms < i64::MAX;
    if create_time && header.max_timestamp > high {
        // The header's max bounds every record; find the one to name.
        return Err(
            first_out_of_range(&batch, low, high, decompressed_max)?.unwrap_or(
                ConformError::Timestamp {
                    timestamp: header.max_timestamp,
                    offset: i64::from(header.last_offset_delta),
                    low,
                    high,
                },
            ),
        );
    }
    let mut rebuilt: Option<Vec<u8>> = None;
    if config.compacted() || check_before || recompress.is_some() {
        let bytes = batch.to_vec();
        let records = open_records(&bytes, &header, decompressed_max)?;
        let count = usize::try_from(header.record_count).unwrap_or(0);
        let parsed = parse(&records, count)?;
        for record in &parsed {
            if config.compacted() && record.key.is_none() {
                return Err(ConformError::MissingKey {
                    partition: partition.to_string(),
                });
            }
            let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
            if create_time && !(low..=high).contains(&timestamp) {
                return Err(ConformError::Timestamp {
                    timestamp,
                    offset: i64::from(record.offset_delta),
                    low,
                    high,
                });
            }
        }
        if let Some(target) = recompress {
            let level = Level {
                gzip: config.compression_gzip_level,
                zstd: config.compression_zstd_level,
            };
            rebuilt = Some(encode_batch_at(
                &BatchFields::of(&header),
                target,
                &records,
                header.record_count,
                level,
            )?);
        }
    }
    let mut log_append_time_ms = None;
    if !create_time {
        let mut bytes = rebuilt.take().unwrap_or_else(|| batch.to_vec());
        stamp_log_append_time(&mut bytes, now_ms);
        rebuilt = Some(bytes);
        log_append_time_ms = Some(now_ms);
    }
    let batch = match rebuilt {
        Some(bytes) => ValidatedBatch::new(Bytes::from(bytes), len_max)?,
        None => batch,
    };
    Ok(Conformed {
        batch,
        log_append_time_ms,
    })
}

/// The first record of `batch` whose timestamp is outside `low..=high`, if any.
fn first_out_of_range(
    batch: &ValidatedBatch,
    low: i64,
    high: i64,
    decompressed_max: usize,
) -> Result<Option<ConformError>, ConformError> {
    let header = *batch.header();
    let bytes = batch.to_vec();
    let records = open_records(&bytes, &header, decompressed_max)?;
    let count = usize::try_from(header.record_count).unwrap_or(0);
    Ok(parse(&records, count)?.iter().find_map(|record| {
        let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
        (!(low..=high).contains(&timestamp)).then_some(ConformError::Timestamp {
            timestamp,
            offset: i64::from(record.offset_delta),
            low,
            high,
        })
    }))
}

/// True when `codec` is what a topic with `config` stores (for tests and tools).
pub fn stores_codec(config: &TopicConfig, codec: Compression) -> bool {
    match config.compression_type {
        TopicCompression::Producer => true,
        TopicCompression::Codec(target) => target == codec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_builder::BatchBuilder;

    const NOW: i64 = 1_800_000_000_000;

    fn batch(key: Option<&[u8]>, timestamp: i64) -> ValidatedBatch {
        let mut builder = BatchBuilder::new(timestamp);
        builder.record(key, Some(b"value"), &[]);
        builder.record(key, Some(b"value two"), &[]);
        ValidatedBatch::new(builder.build(), 1 << 20).unwrap()
    }

    fn config(settings: &[(&str, &str)]) -> TopicConfig {
        let mut config = TopicConfig::default();
        for (key, value) in settings {
            config.set(key, value).unwrap();
        }
        config
    }

    fn run(batch: ValidatedBatch, config: &TopicConfig) -> Result<Conformed, ConformError> {
        conform(batch, config, "t-0", NOW, 1 << 20, 1 << 20)
    }

    #[test]
    fn a_plain_batch_passes_untouched() {
        let sent = batch(None, NOW);
        let bytes = sent.to_vec();
        let conformed = run(sent, &TopicConfig::default()).unwrap();
        assert_eq!(conformed.batch.to_vec(), bytes);
        assert_eq!(conformed.log_append_time_ms, None);
    }

    #[test]
    fn compacted_topics_refuse_keyless_records() {
        let compacted = config(&[("cleanup.policy", "compact")]);
        let error = run(batch(None, NOW), &compacted).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Compacted topic cannot accept message without key in topic partition t-0."
        );
        assert!(run(batch(Some(b"k"), NOW), &compacted).is_ok());
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused() {
        let future = run(batch(None, NOW + 7_200_000), &TopicConfig::default()).unwrap_err();
        assert!(
            matches!(future, ConformError::Timestamp { offset: 0, .. }),
            "{future}"
        );
        let bounded = config(&[("message.timestamp.before.max.ms", "1000")]);
        let past = run(batch(None, NOW - 5000), &bounded).unwrap_err();
        assert!(past.to_string().contains("is out of range"), "{past}");
        assert!(run(batch(None, NOW - 500), &bounded).is_ok());
        // LogAppendTime topics overwrite the time instead.
        let stamped = config(&[("message.timestamp.type", "LogAppendTime")]);
        let conformed = run(batch(None, NOW - 99_999_999), &stamped).unwrap();
        assert_eq!(conformed.log_append_time_ms, Some(NOW));
        assert!(conformed.batch.header().is_log_append_time());
        assert_eq!(conformed.batch.header().max_timestamp, NOW);
    }

    #[test]
    fn batches_are_recompressed_to_the_topics_codec() {
        for (name, codec) in [
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
            ("uncompressed", Compression::None),
        ] {
            let topic = config(&[("compression.type", name)]);
            let sent = batch(Some(b"key"), NOW);
            let conformed = run(sent, &topic).unwrap();
            let header = *conformed.batch.header();
            assert_eq!(header.compression().unwrap(), codec, "{name}");
            assert!(stores_codec(&topic, codec));
            let bytes = conformed.batch.to_vec();
            let records = open_records(&bytes, &header, 1 << 20).unwrap();
            let parsed = parse(&records, 2).unwrap();
            assert_eq!(parsed[1].value, Some(&b"value two"[..]), "{name}");
        }
    }
}
