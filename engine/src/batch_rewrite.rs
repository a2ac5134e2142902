//! Building v2 batches from parts of others: the log cleaner's thinned batches and the
//! headers it keeps in place of removed ones, and the broker's restamped and recompressed
//! batches on the produce path. Every batch built here has a fresh CRC.

use std::borrow::Cow;

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, Compression, LOG_OVERHEAD, MAGIC_V2, seal_crc};
use crate::compression::{CodecError, Level, compress_at, decompress};

/// Attribute bits (Kafka's `DefaultRecordBatch`).
const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
/// KIP-534: the base timestamp holds the time after which the batch's tombstones go.
pub const DELETE_HORIZON: i16 = 0x40;

/// The header fields of a batch to build; `record_count`, the length, the codec bits of
/// the attributes and the CRC follow from the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchFields {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    /// Every bit but the codec's.
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchFields {
    /// The fields of an existing batch.
    pub fn of(header: &BatchHeader) -> BatchFields {
        BatchFields {
            base_offset: header.base_offset,
            partition_leader_epoch: header.partition_leader_epoch,
            attributes: header.attributes & !COMPRESSION_MASK,
            last_offset_delta: header.last_offset_delta,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
        }
    }

    /// A batch of no records spanning offsets `base..=base + last_offset_delta`, standing
    /// for batches the cleaner removed whole, so the log's offsets stay contiguous.
    pub fn filler(base_offset: i64, last_offset_delta: i32, partition_leader_epoch: i32) -> Self {
        BatchFields {
            base_offset,
            partition_leader_epoch,
            attributes: 0,
            last_offset_delta,
            base_timestamp: -1,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Why a batch's records could not be opened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("batch at offset {base_offset}: {error}")]
    Codec { base_offset: i64, error: CodecError },
    #[error("batch at offset {base_offset} has an unknown codec")]
    UnknownCodec { base_offset: i64 },
}

/// The record bytes of `batch` (after its header), decompressed when it is compressed,
/// refusing to decompress to more than `len_max` bytes.
pub fn open_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    len_max: usize,
) -> Result<Cow<'a, [u8]>, OpenError> {
    let base_offset = header.base_offset;
    let codec = header
        .compression()
        .map_err(|_| OpenError::UnknownCodec { base_offset })?;
    let records = &batch[BATCH_HEADER_LEN..];
    match codec {
        Compression::None => Ok(Cow::Borrowed(records)),
        codec => decompress(codec, records, len_max)
            .map(Cow::Owned)
            .map_err(|error| OpenError::Codec { base_offset, error }),
    }
}

/// A whole batch: `fields`, then `record_count` records whose uncompressed bytes are
/// `records`, compressed with `codec`.
pub fn encode_batch(
    fields: &BatchFields,
    codec: Compression,
    records: &[u8],
    record_count: i32,
) -> Result<Vec<u8>, CodecError> {
    encode_batch_at(fields, codec, records, record_count, Level::default())
}

/// [`encode_batch`] at the codec level `level`.
pub fn encode_batch_at(
    fields: &BatchFields,
    codec: Compression,
    records: &[u8],
    record_count: i32,
    level: Level,
) -> Result<Vec<u8>, CodecError> {
    let body = compress_at(codec, records, level)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    let batch_length =
        i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()).map_err(|_| {
            CodecError::Compress {
                codec,
                detail: format!("{} bytes do not fit a batch", body.len()),
            }
        })?;
    out.extend_from_slice(&fields.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&fields.partition_leader_epoch.to_be_bytes());
    out.extend_from_slice(&MAGIC_V2.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, sealed below
    let attributes = (fields.attributes & !COMPRESSION_MASK) | codec_bits(codec);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&fields.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&fields.base_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.max_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.producer_id.to_be_bytes());
    out.extend_from_slice(&fields.producer_epoch.to_be_bytes());
    out.extend_from_slice(&fields.base_sequence.to_be_bytes());
    out.extend_from_slice(&record_count.to_be_bytes());
    out.extend_from_slice(&body);
    seal_crc(&mut out);
    Ok(out)
}

/// A batch with no records and `fields` (uncompressed, as Kafka writes empty batches).
pub fn empty_batch(fields: &BatchFields) -> Vec<u8> {
    let fields = BatchFields {
        attributes: fields.attributes & !DELETE_HORIZON,
        ..*fields
    };
    encode_batch(&fields, Compression::None, &[], 0).expect("an empty batch always encodes")
}

/// Restamps a batch with the broker's append time (Kafka's LogAppendTime): the timestamp
/// type bit and the max timestamp change, the base timestamp and record deltas stay, and
/// the CRC is recomputed. Readers take the max timestamp as every record's timestamp.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    const ATTRIBUTES_AT: usize = 21;
    const MAX_TIMESTAMP_AT: usize = 35;
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
        .copy_from_slice(&(attributes | LOG_APPEND_TIME).to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    seal_crc(batch);
}

/// The delete horizon a batch carries (KIP-534), if any.
pub fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

fn codec_bits(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_stored_batch;
    use crate::batch_builder::BatchBuilder;
    use crate::records::parse;

    fn sample() -> Vec<u8> {
        let mut builder = BatchBuilder::new(5_000);
        builder.record(Some(b"a"), Some(b"1"), &[]);
        builder.record(Some(b"b"), None, &[]);
        builder.record(Some(b"c"), Some(b"3"), &[]);
        builder.build()
    }

    #[test]
    fn a_rebuilt_batch_keeps_its_span_and_checks_in_every_codec() {
        let bytes = sample();
        let header = BatchHeader::parse(&bytes).unwrap();
        let records = open_records(&bytes, &header, 1 << 20).unwrap();
        let parsed = parse(&records, 3).unwrap();
        let mut kept = Vec::new();
        for record in [parsed[0], parsed[2]] {
            kept.extend_from_slice(record.raw);
        }
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let rebuilt = encode_batch(&BatchFields::of(&header), codec, &kept, 2).unwrap();
            let checked = check_stored_batch(&rebuilt).unwrap();
            assert_eq!(checked.last_offset_delta, 2, "{codec:?}");
            assert_eq!(checked.record_count, 2);
            assert_eq!(checked.compression(), Ok(codec));
            let opened = open_records(&rebuilt, &checked, 1 << 20).unwrap();
            let deltas: Vec<i32> = parse(&opened, 2)
                .unwrap()
                .iter()
                .map(|record| record.offset_delta)
                .collect();
            assert_eq!(deltas, [0, 2]);
        }
    }

    #[test]
    fn empty_and_filler_batches_are_valid_stored_batches() {
        let header = BatchHeader::parse(&sample()).unwrap();
        let empty = empty_batch(&BatchFields::of(&header));
        assert_eq!(empty.len(), BATCH_HEADER_LEN);
        let checked = check_stored_batch(&empty).unwrap();
        assert_eq!((checked.record_count, checked.last_offset_delta), (0, 2));
        let filler = empty_batch(&BatchFields::filler(100, 41, 3));
        let checked = check_stored_batch(&filler).unwrap();
        assert_eq!((checked.base_offset, checked.last_offset()), (100, 141));
        assert_eq!(checked.max_timestamp, -1);
        assert!(
            crate::batch::check_batch(&filler).is_err(),
            "no producer sends one"
        );
    }

    #[test]
    fn log_append_time_changes_the_type_and_max_timestamp_only() {
        let mut bytes = sample();
        stamp_log_append_time(&mut bytes, 9_999);
        let header = crate::batch::check_batch(&bytes).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (5_000, 9_999)
        );
    }
}
