//! Finding the first record at or after a timestamp inside one batch, for ListOffsets by
//! time. Kafka answers with the exact record (`LogSegment.findOffsetByTimestamp`), so
//! uncompressed batches are walked record by record, reading only each record's length,
//! timestamp delta and offset delta.

use crate::batch::{BatchHeader, Compression};
use crate::record_frames::RecordFrames;

/// The record a timestamp lookup settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAtTime {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// The first record of `batch` (whose header is `header`, with a max timestamp at or after
/// `target_ms`) whose timestamp is at or after `target_ms`.
///
/// Compressed batches would need decompressing to look inside, so for them this answers
/// with the batch's base offset and max timestamp: a consumer seeking there reads the
/// whole batch and skips nothing it asked for. Record bytes that do not parse (the broker
/// does not validate records, only the batch CRC) get the same batch-level answer.
pub fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    target_ms: i64,
) -> RecordAtTime {
    let batch_level = RecordAtTime {
        offset: header.base_offset,
        timestamp_ms: header.max_timestamp,
    };
    if header.is_log_append_time() || header.compression() != Ok(Compression::None) {
        return batch_level;
    }
    walk(batch, header, target_ms).unwrap_or(batch_level)
}

fn walk(batch: &[u8], header: &BatchHeader, target_ms: i64) -> Option<RecordAtTime> {
    for frame in RecordFrames::new(batch, header) {
        let frame = frame.ok()?;
        // Offsets outside the batch would send a consumer past the high watermark.
        if !(0..=header.last_offset_delta).contains(&frame.offset_delta) {
            return None;
        }
        let timestamp_ms = header.base_timestamp.checked_add(frame.timestamp_delta)?;
        if timestamp_ms >= target_ms {
            let offset = header
                .base_offset
                .checked_add(i64::from(frame.offset_delta))?;
            return Some(RecordAtTime {
                offset,
                timestamp_ms,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_batch;
    use crate::batch_builder::BatchBuilder;

    fn check(timestamps: &[i64], target: i64, expected: (i64, i64)) {
        let mut builder = BatchBuilder::new(timestamps[0]);
        for &timestamp in timestamps {
            builder.record_at(timestamp, None, Some(b"value"), &[]);
        }
        let bytes = builder.build();
        let header = check_batch(&bytes).unwrap();
        let found = first_record_at_or_after(&bytes, &header, target);
        assert_eq!(
            (found.offset, found.timestamp_ms),
            expected,
            "target {target}"
        );
    }

    #[test]
    fn finds_the_first_record_at_or_after_the_target() {
        check(&[10, 20, 30], 5, (0, 10));
        check(&[10, 20, 30], 20, (1, 20));
        check(&[10, 20, 30], 25, (2, 30));
        // Timestamps within a batch need not increase: the first qualifying record wins.
        check(&[10, 40, 30], 25, (1, 40));
    }

    #[test]
    fn garbage_records_fall_back_to_the_batch() {
        let mut builder = BatchBuilder::new(100);
        builder.record_at(200, None, Some(b"v"), &[]);
        let mut bytes = builder.build();
        bytes.truncate(crate::batch::BATCH_HEADER_LEN + 1);
        let mut header = check_batch(&builder.build()).unwrap();
        header.base_offset = 7;
        let found = first_record_at_or_after(&bytes, &header, 150);
        assert_eq!(
            found,
            RecordAtTime {
                offset: 7,
                timestamp_ms: 200
            }
        );
    }
}
