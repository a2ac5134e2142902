//! The in-memory indexes and summary of one segment, grown batch by batch as the segment
//! is written (or rebuilt by recovery), and saved to its `.index` and `.timeindex` files.

use crate::batch::BatchHeader;
use crate::index_file::{self, IndexFileError, IndexKind, SegmentSummary};
use crate::offset::Offset;
use crate::offset_index::{OffsetIndex, OffsetIndexEntry};
use crate::time_index::{TimeIndex, TimeIndexEntry};

/// A segment's sparse indexes plus what they summarize.
#[derive(Clone, Debug)]
pub struct SegmentIndex {
    base_offset: Offset,
    interval_bytes: u32,
    offsets: OffsetIndex,
    times: TimeIndex,
    log_len: u32,
    next_offset: Offset,
    max_timestamp_ms: i64,
    bytes_since_entry: u32,
}

/// Why saved index files cannot stand for a segment.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexLoadError {
    #[error(transparent)]
    File(#[from] IndexFileError),
    #[error("index describes {indexed} bytes of log but the log holds {on_disk}")]
    Stale { indexed: u32, on_disk: u64 },
    #[error("offset and time index disagree about the segment")]
    Disagree,
    #[error("index entries are out of order or point past the log")]
    BadEntries,
}

/// A timestamp that sorts before every real one: "no batch yet".
pub const NO_TIMESTAMP: i64 = i64::MIN;

impl SegmentIndex {
    /// The index of an empty segment starting at `base_offset`.
    pub fn new(base_offset: Offset, interval_bytes: u32) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            interval_bytes,
            offsets: OffsetIndex::default(),
            times: TimeIndex::default(),
            log_len: 0,
            next_offset: base_offset,
            max_timestamp_ms: NO_TIMESTAMP,
            bytes_since_entry: 0,
        }
    }

    /// Records the batch `header` of `len` bytes, written at the end of the segment.
    ///
    /// # Panics
    /// When the batch does not start at the segment's next offset, or the segment would pass
    /// 4 GiB or 2^32 offsets: the partition rolls long before either.
    pub fn observe(&mut self, header: &BatchHeader, len: u32) {
        assert_eq!(
            header.base_offset,
            self.next_offset.value(),
            "batch must continue the segment"
        );
        let relative = self
            .relative(Offset::new(header.base_offset).expect("assigned offsets are non-negative"));
        if self.log_len > 0 && self.bytes_since_entry >= self.interval_bytes {
            self.offsets.push(OffsetIndexEntry {
                relative_offset: relative,
                position: self.log_len,
            });
            self.times.push(TimeIndexEntry {
                max_timestamp_before_ms: self.max_timestamp_ms,
                relative_offset: relative,
            });
            self.bytes_since_entry = 0;
        }
        self.log_len = self
            .log_len
            .checked_add(len)
            .expect("segment stays below 4 GiB");
        self.bytes_since_entry = self.bytes_since_entry.saturating_add(len);
        let last = Offset::new(header.last_offset()).expect("assigned offsets are non-negative");
        self.next_offset = last.plus(1);
        self.max_timestamp_ms = self.max_timestamp_ms.max(header.max_timestamp);
    }

    /// A batch position at or before the batch holding `offset`.
    pub fn position_for_offset(&self, offset: Offset) -> u32 {
        let relative = self.relative(offset.max(self.base_offset).min(self.next_offset));
        self.offsets.lookup(relative).position
    }

    /// A batch position at or before the first batch with a timestamp at or after `target_ms`.
    pub fn position_for_timestamp(&self, target_ms: i64) -> u32 {
        let relative = self.times.lookup(target_ms);
        self.offsets
            .position_of(relative)
            .unwrap_or_else(|| self.offsets.lookup(relative).position)
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// The offset after the segment's last batch.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    /// Bytes of log the segment holds.
    pub fn log_len(&self) -> u32 {
        self.log_len
    }

    /// The largest batch timestamp, or [`NO_TIMESTAMP`].
    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    pub fn is_empty(&self) -> bool {
        self.log_len == 0
    }

    pub fn entry_count(&self) -> usize {
        self.offsets.len()
    }

    /// The `.index` and `.timeindex` file contents.
    pub fn encode_files(&self) -> (Vec<u8>, Vec<u8>) {
        let summary = SegmentSummary {
            log_len: self.log_len,
            next_offset: self.next_offset.value(),
            max_timestamp_ms: self.max_timestamp_ms,
        };
        let mut offset_entries = Vec::with_capacity(self.offsets.len() * 8);
        self.offsets.encode_entries(&mut offset_entries);
        let mut time_entries = Vec::with_capacity(self.times.len() * 12);
        self.times.encode_entries(&mut time_entries);
        (
            index_file::encode(IndexKind::Offset, summary, &offset_entries),
            index_file::encode(IndexKind::Time, summary, &time_entries),
        )
    }

    /// Loads the indexes saved in `offset_file` and `time_file` for a segment whose log
    /// holds `log_len_on_disk` bytes.
    pub fn decode_files(
        base_offset: Offset,
        interval_bytes: u32,
        offset_file: &[u8],
        time_file: &[u8],
        log_len_on_disk: u64,
    ) -> Result<SegmentIndex, IndexLoadError> {
        let (summary, offset_entries) = index_file::decode(IndexKind::Offset, offset_file)?;
        let (time_summary, time_entries) = index_file::decode(IndexKind::Time, time_file)?;
        if summary != time_summary {
            return Err(IndexLoadError::Disagree);
        }
        if u64::from(summary.log_len) != log_len_on_disk {
            return Err(IndexLoadError::Stale {
                indexed: summary.log_len,
                on_disk: log_len_on_disk,
            });
        }
        let next_offset = Offset::new(summary.next_offset).filter(|next| *next >= base_offset);
        let offsets =
            OffsetIndex::from_entries(OffsetIndex::decode_entries(offset_entries), summary.log_len);
        let times = TimeIndex::from_entries(TimeIndex::decode_entries(time_entries));
        let (Some(next_offset), Some(offsets), Some(times)) = (next_offset, offsets, times) else {
            return Err(IndexLoadError::BadEntries);
        };
        let span = next_offset.distance_from(base_offset);
        let within = |relative: u32| u64::from(relative) < span;
        let entries_within = offsets
            .entries()
            .iter()
            .all(|entry| within(entry.relative_offset))
            && times
                .entries()
                .iter()
                .all(|entry| within(entry.relative_offset));
        if !entries_within || (summary.log_len == 0) != (span == 0) {
            return Err(IndexLoadError::BadEntries);
        }
        let last_position = offsets.entries().last().map_or(0, |entry| entry.position);
        Ok(SegmentIndex {
            base_offset,
            interval_bytes,
            offsets,
            times,
            log_len: summary.log_len,
            next_offset,
            max_timestamp_ms: summary.max_timestamp_ms,
            bytes_since_entry: summary.log_len - last_position,
        })
    }

    fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset.distance_from(self.base_offset))
            .expect("segment spans fewer than 2^32 offsets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_batch;
    use crate::batch_builder::BatchBuilder;

    /// Grows an index over batches of `sizes` records with timestamps `times`.
    fn grown(base: i64, batches: &[(usize, i64)], interval: u32) -> SegmentIndex {
        let mut index = SegmentIndex::new(Offset::new(base).unwrap(), interval);
        for &(records, timestamp) in batches {
            let mut builder = BatchBuilder::new(timestamp);
            for _ in 0..records {
                builder.record(None, Some(&[7; 100]), &[]);
            }
            let mut bytes = builder.build();
            bytes[..8].copy_from_slice(&index.next_offset().value().to_be_bytes());
            let header = check_batch(&bytes).unwrap();
            index.observe(&header, u32::try_from(bytes.len()).unwrap());
        }
        index
    }

    #[test]
    fn entries_appear_every_interval_and_lookups_land_before_the_target() {
        let index = grown(100, &[(3, 10), (3, 20), (3, 15), (3, 40), (3, 50)], 300);
        assert_eq!(index.next_offset().value(), 115);
        assert_eq!(index.max_timestamp_ms(), 50);
        assert!(index.entry_count() >= 2, "{index:?}");
        assert_eq!(index.position_for_offset(Offset::new(100).unwrap()), 0);
        let batch_len = index.log_len() / 5;
        for batch in 0..5 {
            let offset = Offset::new(100 + i64::from(batch) * 3 + 1).unwrap();
            assert!(index.position_for_offset(offset) <= batch * batch_len);
        }
        // Nothing before the start position may hold a timestamp at or after 40.
        assert!(index.position_for_timestamp(40) <= 3 * batch_len);
    }

    #[test]
    fn saved_files_load_back_and_stale_ones_are_refused() {
        let index = grown(0, &[(5, 10), (5, 20), (5, 30)], 100);
        let (offsets, times) = index.encode_files();
        let len = u64::from(index.log_len());
        let loaded = SegmentIndex::decode_files(Offset::ZERO, 100, &offsets, &times, len).unwrap();
        assert_eq!(loaded.next_offset(), index.next_offset());
        assert_eq!(loaded.offsets, index.offsets);
        assert_eq!(loaded.times, index.times);
        let stale = SegmentIndex::decode_files(Offset::ZERO, 100, &offsets, &times, len + 10);
        assert!(matches!(stale, Err(IndexLoadError::Stale { .. })));
        let (other_offsets, _) = grown(0, &[(5, 10)], 100).encode_files();
        let mixed = SegmentIndex::decode_files(Offset::ZERO, 100, &other_offsets, &times, len);
        assert!(matches!(mixed, Err(IndexLoadError::Disagree)));
    }
}
