//! Walking the records of an uncompressed v2 batch by their framing only: each record's
//! length, timestamp delta and offset delta, never its key, value or headers.
//!
//! Batch validation uses it to check that the batch holds exactly `record_count` records
//! numbered 0, 1, 2… (as Kafka's `LogValidator` does for uncompressed batches), so the
//! offsets a batch claims are the offsets it holds; timestamp lookups use it to find a record.

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, Numbering};
use crate::varint::{get_varint, get_varlong};

/// The framing of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFrame {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
}

/// Why the records of a batch do not frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramingError {
    /// The record that failed, counted from 0.
    pub index: u64,
    pub reason: &'static str,
}

/// An iterator over the records of the uncompressed batch `batch`.
#[derive(Debug)]
pub struct RecordFrames<'a> {
    batch: &'a [u8],
    position: usize,
    remaining: u64,
    index: u64,
}

impl<'a> RecordFrames<'a> {
    pub fn new(batch: &'a [u8], header: &BatchHeader) -> RecordFrames<'a> {
        RecordFrames {
            batch,
            position: BATCH_HEADER_LEN,
            remaining: u64::try_from(header.record_count).unwrap_or(0),
            index: 0,
        }
    }

    /// True once every record was read and they filled the batch exactly.
    pub fn exhausted_exactly(&self) -> bool {
        self.remaining == 0 && self.position == self.batch.len()
    }

    fn frame(&mut self) -> Result<RecordFrame, &'static str> {
        let rest = self.batch.get(self.position..).unwrap_or_default();
        let (len, len_bytes) = get_varint(rest).ok_or("record length is not a varint")?;
        let len = usize::try_from(len).map_err(|_| "record length is negative")?;
        let record = rest
            .get(len_bytes..len_bytes + len)
            .ok_or("record runs past the batch")?;
        let (timestamp_delta, delta_bytes) = get_varlong(record.get(1..).unwrap_or_default(), 10)
            .ok_or("record timestamp delta is not a varlong")?;
        let (offset_delta, _) = get_varint(record.get(1 + delta_bytes..).unwrap_or_default())
            .ok_or("record offset delta is not a varint")?;
        self.position += len_bytes + len;
        Ok(RecordFrame {
            timestamp_delta,
            offset_delta,
        })
    }
}

impl Iterator for RecordFrames<'_> {
    type Item = Result<RecordFrame, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let index = self.index;
        self.index += 1;
        Some(self.frame().map_err(|reason| {
            self.remaining = 0; // nothing after a bad frame can be trusted
            FramingError { index, reason }
        }))
    }
}

/// Checks that the uncompressed `batch` holds exactly its records, numbered as `numbering`
/// says: 0 upwards, or (after compaction) strictly increasing within the batch's span.
pub fn check_framing(
    batch: &[u8],
    header: &BatchHeader,
    numbering: Numbering,
) -> Result<(), FramingError> {
    let mut frames = RecordFrames::new(batch, header);
    let mut previous: Option<i32> = None;
    for index in 0u64.. {
        let Some(frame) = frames.next() else { break };
        let delta = frame?.offset_delta;
        let follows = match numbering {
            Numbering::Consecutive => u64::try_from(delta).ok() == Some(index),
            Numbering::Increasing => {
                previous.is_none_or(|previous| delta > previous)
                    && (0..=header.last_offset_delta).contains(&delta)
            }
        };
        if !follows {
            return Err(FramingError {
                index,
                reason: "record offset delta does not follow its position",
            });
        }
        previous = Some(delta);
    }
    if !frames.exhausted_exactly() {
        let index = u64::try_from(header.record_count).unwrap_or(0);
        return Err(FramingError {
            index,
            reason: "bytes follow the last record",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;
    use crate::batch_builder::BatchBuilder;

    fn built(records: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new(100);
        for index in 0..records {
            builder.record_at(
                100 + i64::try_from(index).unwrap(),
                Some(b"k"),
                Some(b"value"),
                &[("h", b"v")],
            );
        }
        builder.build()
    }

    #[test]
    fn well_framed_records_pass_and_report_their_deltas() {
        let bytes = built(3);
        let header = BatchHeader::parse(&bytes).unwrap();
        let frames: Vec<RecordFrame> = RecordFrames::new(&bytes, &header)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            frames
                .iter()
                .map(|frame| frame.offset_delta)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(frames[2].timestamp_delta, 2);
        assert_eq!(
            check_framing(&bytes, &header, Numbering::Consecutive),
            Ok(())
        );
    }

    #[test]
    fn miscounted_or_misnumbered_records_are_refused() {
        let bytes = built(3);
        let mut header = BatchHeader::parse(&bytes).unwrap();
        header.record_count = 2;
        assert_eq!(
            check_framing(&bytes, &header, Numbering::Consecutive)
                .unwrap_err()
                .reason,
            "bytes follow the last record"
        );
        header.record_count = 4;
        assert_eq!(
            check_framing(&bytes, &header, Numbering::Consecutive)
                .unwrap_err()
                .index,
            3
        );
        let mut renumbered = bytes.clone();
        let header = BatchHeader::parse(&bytes).unwrap();
        // The second record's offset delta: after its length (1), attributes (1), timestamp (1).
        let first_len =
            usize::try_from(crate::varint::get_varint(&bytes[61..]).unwrap().0).unwrap();
        renumbered[61 + 1 + first_len + 3] = 8; // zigzag 4
        let error = check_framing(&renumbered, &header, Numbering::Consecutive).unwrap_err();
        assert_eq!(
            (error.index, error.reason),
            (1, "record offset delta does not follow its position")
        );
    }
}
