//! The partition's side of log cleaning and of DeleteRecords: what a cleaning pass is
//! given, installing what it wrote, and the persisted marks (log start, checkpoint).

use crate::clean_plan::{Cleanable, CleanerView, SegmentSummary, cleanable};
use crate::cleaner::{CleanJob, CleanLimits, CleanOutcome, JobSegment};
use crate::offset::Offset;
use crate::partition_marks::PartitionMarks;

use super::{PartitionLog, ReadError};

impl PartitionLog {
    /// The marks stored beside the log.
    pub fn marks(&self) -> PartitionMarks {
        self.marks
    }

    /// Adopts the marks read back when the partition opened: a log start DeleteRecords
    /// moved inside the first segment counts again (never past the log end).
    pub fn set_marks(&mut self, marks: PartitionMarks) {
        self.marks = marks;
        if let Some(start) = marks.log_start {
            self.log_start = self.log_start.max(start.min(self.next_offset));
        }
    }

    /// Moves the log start up to `before` (Kafka's DeleteRecords): records below it are no
    /// longer read, and segments wholly below it are deleted by the next retention pass.
    /// Returns the marks to persist; an offset at or below the log start changes nothing.
    ///
    /// # Errors
    /// `before` is past the high watermark.
    pub fn delete_records(&mut self, before: Offset) -> Result<PartitionMarks, ReadError> {
        let offsets = self.offsets();
        if before > offsets.high_watermark {
            return Err(ReadError::OffsetOutOfRange {
                partition: self.label.clone(),
                requested: before.value(),
                log_start: offsets.log_start.value(),
                high_watermark: offsets.high_watermark.value(),
            });
        }
        if before > self.log_start {
            self.log_start = before;
            self.marks.log_start = Some(before);
        }
        Ok(self.marks)
    }

    /// The idempotent producers this partition knows, with their latest batch.
    pub fn producer_infos(&self) -> Vec<crate::request::ProducerInfo> {
        self.producers
            .latest_batches()
            .into_iter()
            .map(|(producer_id, batch)| crate::request::ProducerInfo {
                producer_id,
                producer_epoch: batch.epoch,
                last_sequence: batch.last_sequence,
                last_timestamp_ms: -1,
            })
            .collect()
    }

    /// Each segment's summary for the cleaner's plan, oldest first.
    pub fn segment_summaries(&self) -> Vec<SegmentSummary> {
        self.segments
            .values()
            .map(|segment| SegmentSummary {
                base: segment.base_offset(),
                next: segment.index.next_offset(),
                log_len: u64::from(segment.index.log_len()),
                max_timestamp_ms: segment.index.max_timestamp_ms(),
                first_timestamp_ms: segment.first_timestamp_ms,
            })
            .collect()
    }

    /// Whether the cleaner should take this partition now, and how much of it. `force`
    /// ignores the dirty ratio (a pass asked for by hand).
    pub fn cleanable(&self, now_ms: i64, force: bool) -> Option<Cleanable> {
        if !self.config.compacted() || self.poisoned.is_some() {
            return None;
        }
        let durable = self.segments.values().take_while(|segment| {
            segment.sealed && segment.durable_len == u64::from(segment.index.log_len())
        });
        // Only sealed, durable segments (and the active one after them) count.
        let mut summaries: Vec<SegmentSummary> = self.segment_summaries();
        summaries.truncate(durable.count() + 1);
        let view = CleanerView {
            first_dirty: self.marks.first_dirty.unwrap_or(self.log_start),
            high_watermark: self.offsets().high_watermark,
            min_cleanable_dirty_ratio: if force {
                -1.0
            } else {
                self.config.min_cleanable_dirty_ratio
            },
            min_compaction_lag_ms: self.config.min_compaction_lag_ms,
            max_compaction_lag_ms: self.config.max_compaction_lag_ms,
            next_horizon_ms: self.marks.next_horizon_ms,
            now_ms,
        };
        cleanable(&summaries, &view)
    }

    /// The job of a cleaning pass over what `plan` found cleanable.
    pub fn clean_job(&self, plan: &Cleanable, now_ms: i64, limits: CleanLimits) -> CleanJob {
        let segments = self
            .segments
            .values()
            .take(plan.segments)
            .zip(self.segment_summaries())
            .map(|(segment, summary)| JobSegment {
                summary,
                file: segment.file.clone().expect("a sealed segment has a file"),
            })
            .collect();
        CleanJob {
            partition: self.id,
            label: self.label.clone(),
            dir: self.dir.clone(),
            segments,
            first_dirty: plan.first_dirty,
            producer_last: self.producers.latest_batch_ends(),
            marks: self.marks,
            delete_retention_ms: self.config.delete_retention_ms,
            segment_bytes: u64::from(self.config.segment_bytes),
            index_interval_bytes: self.config.index_interval_bytes,
            now_ms,
            fsync: self.fsync,
            limits,
        }
    }

    /// Puts a pass's cleaned segments in place of the ones they replace (on disk they
    /// already are), and takes its checkpoint.
    ///
    /// # Panics
    /// When the segments a cleaned one replaces are not in the log: the shard holds
    /// retention and cuts back while a pass runs.
    pub fn install_cleaned(&mut self, outcome: CleanOutcome) {
        for cleaned in outcome.cleaned {
            let group = cleaned.group;
            let replaced: Vec<Offset> = self
                .segments
                .range(group.base..group.end)
                .map(|(base, _)| *base)
                .collect();
            assert_eq!(
                replaced.first(),
                Some(&group.base),
                "the segments a pass cleaned in {} are still there",
                self.label
            );
            assert!(
                self.segments.contains_key(&group.end),
                "the segment after a cleaned group of {} is still there",
                self.label
            );
            for base in replaced {
                self.segments.remove(&base);
            }
            self.segments.insert(group.base, cleaned.segment);
        }
        let first_dirty = self.marks.first_dirty.unwrap_or(Offset::ZERO);
        assert!(
            outcome.first_dirty >= first_dirty,
            "the cleaner checkpoint of {} moved back",
            self.label
        );
        self.marks = PartitionMarks {
            log_start: self.marks.log_start,
            ..outcome.marks
        };
    }
}
