//! A partition log: its segments, offsets, appends, group-commit plans, reads and
//! retention. All methods are synchronous: they change state and hand out plans and
//! cursors, and the owning shard runs the I/O (see `group_commit` and `segment`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::batch::ValidatedBatch;
use crate::config::{FsyncPolicy, TopicConfig};
use crate::group_commit::{FileTarget, FlushOutcome, FlushPlan, Seal, SegmentFlush};
use crate::ids::PartitionId;
use crate::index_file::IndexKind;
use crate::offset::Offset;
use crate::partition_marks::PartitionMarks;
use crate::producer_state::{ProducerStates, SequenceCheck, SequenceError};
use crate::retention::{SegmentFacts, segments_to_delete};
use crate::segment::{READ_CHUNK_BYTES, Segment, SegmentCursor, SegmentReadError};

mod cleaning;

/// The most a read asks of the disk beyond the bytes it returns.
const READ_SLACK_MAX: usize = 1 << 20;

/// Offsets of a partition, in Kafka's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset still stored.
    pub log_start: Offset,
    /// What consumers may read below: the offset after the last durable batch or, for a
    /// replicated partition, the committed offset when that is lower.
    pub high_watermark: Offset,
    /// The offset the next append gets.
    pub log_end: Offset,
}

/// Why an append was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("unknown topic or partition {partition}")]
    UnknownPartition { partition: String },
    #[error("batch of {len} bytes exceeds max.message.bytes {max} of {partition}")]
    BatchTooLarge {
        partition: String,
        len: usize,
        max: usize,
    },
    #[error("partition {partition} refuses writes after a storage failure: {reason}")]
    Poisoned { partition: String, reason: String },
    #[error("partition {partition} is offline: {reason}")]
    Offline { partition: String, reason: String },
    #[error("partition {partition} cannot take {records} more records: offsets would pass 2^63")]
    OffsetOverflow { partition: String, records: u64 },
    #[error("partition {partition} is being cut back; try again")]
    CutInProgress { partition: String },
    #[error(
        "a replicated batch at offset {got} does not continue partition {partition}, whose log ends at {expected}"
    )]
    NotAtLogEnd {
        partition: String,
        expected: i64,
        got: i64,
    },
    #[error("partition {partition}: {error}")]
    Sequence {
        partition: String,
        error: SequenceError,
    },
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// Why a read or lookup failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("unknown topic or partition {partition}")]
    UnknownPartition { partition: String },
    #[error(
        "offset {requested} is out of range for {partition} (log start {log_start}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        partition: String,
        requested: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("corrupt data in {path} at byte {position} of {partition}: {reason}")]
    Corrupt {
        partition: String,
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("i/o error reading {path} of {partition}: {detail}")]
    Io {
        partition: String,
        path: PathBuf,
        detail: String,
    },
    #[error("partition {partition} is offline: {reason}")]
    Offline { partition: String, reason: String },
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// Why a log could not be cut back.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TruncateError {
    #[error("unknown topic or partition {partition}")]
    UnknownPartition { partition: String },
    #[error("cannot cut {partition} at {to}: its log starts at {log_start}")]
    BelowLogStart {
        partition: String,
        to: i64,
        log_start: i64,
    },
    #[error("cannot cut {partition} at {to}: offsets below {committed} are committed")]
    BelowCommitted {
        partition: String,
        to: i64,
        committed: i64,
    },
    #[error("cannot cut {partition} at {to}: no batch starts there")]
    NotABatchBoundary { partition: String, to: i64 },
    #[error("a cut of {partition} is already waiting")]
    Busy { partition: String },
    #[error("cutting {partition}: {detail}")]
    Io { partition: String, detail: String },
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// What cutting a log back at an offset touches (see [`PartitionLog::plan_cut`]).
#[derive(Debug)]
pub struct CutPlan {
    /// The segment that ends at the cut: its log file, index files and base offset.
    pub keep_log: PathBuf,
    pub keep_indexes: Vec<PathBuf>,
    pub keep_base: Offset,
    /// A cursor from an indexed batch at or before the cut, and its file position.
    pub cursor: Option<(SegmentCursor, u64)>,
    /// Files of the segments wholly past the cut.
    pub delete: Vec<PathBuf>,
    /// The idempotent producers' snapshot, which may cover batches past the cut.
    pub producer_snapshot: PathBuf,
}

impl ReadError {
    /// The partition's error for a failed read of segment file `path`.
    pub fn from_segment(partition: String, path: PathBuf, error: SegmentReadError) -> ReadError {
        match error {
            SegmentReadError::Corrupt { position, reason } => ReadError::Corrupt {
                partition,
                path,
                position,
                reason,
            },
            SegmentReadError::Io { detail } => ReadError::Io {
                partition,
                path,
                detail,
            },
        }
    }
}

/// Where a read starts.
#[derive(Debug)]
pub enum ReadStart {
    /// Nothing to read: the offset is the high watermark.
    AtEnd,
    /// Read the disk with this cursor, from the batch holding `from`.
    Disk {
        cursor: SegmentCursor,
        path: PathBuf,
    },
}

/// One partition's log.
#[derive(Debug)]
pub struct PartitionLog {
    id: PartitionId,
    label: String,
    dir: PathBuf,
    config: TopicConfig,
    fsync: FsyncPolicy,
    write_buffer_bytes: usize,
    segments: BTreeMap<Offset, Segment>,
    log_start: Offset,
    next_offset: Offset,
    durable_end: Offset,
    /// The committed offset of a replicated partition (its chain says so); `None` for a
    /// partition only this node holds, whose durable end is what consumers may read.
    committed: Option<Offset>,
    unflushed_bytes: usize,
    unflushed_batches: u64,
    poisoned: Option<String>,
    /// Segments retention removed whose files wait for the new active segment's file.
    deletions_waiting: Vec<Segment>,
    /// Idempotent producers' epochs and recent batches.
    producers: ProducerStates,
    /// The log start DeleteRecords set and the cleaner's checkpoint, as persisted.
    marks: PartitionMarks,
}

/// What an append did.
#[derive(Debug)]
pub enum Appended {
    /// Stored at the offsets the batch now carries (durable after its commit).
    Stored(ValidatedBatch),
    /// An idempotent producer's retry of a batch already stored at these offsets.
    Duplicate { base: Offset, last: Offset },
}

/// Everything [`PartitionLog::assemble`] needs from the code that opened the partition.
#[derive(Debug)]
pub struct PartitionParts {
    pub id: PartitionId,
    pub label: String,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub fsync: FsyncPolicy,
    pub write_buffer_bytes: usize,
    /// At least one segment, the last one active (with a writer).
    pub segments: Vec<Segment>,
}

impl PartitionLog {
    /// A log from recovered (or new) segments: everything in them is durable.
    ///
    /// # Panics
    /// When there is no segment or segments do not follow each other: recovery ensures both.
    pub fn assemble(parts: PartitionParts) -> PartitionLog {
        let PartitionParts {
            id,
            label,
            dir,
            config,
            fsync,
            write_buffer_bytes,
            segments,
        } = parts;
        let log_start = segments
            .first()
            .expect("a partition has at least one segment")
            .base_offset();
        let next_offset = segments
            .last()
            .expect("a partition has at least one segment")
            .index
            .next_offset();
        for pair in segments.windows(2) {
            assert_eq!(
                pair[0].index.next_offset(),
                pair[1].base_offset(),
                "segments of {label} must be contiguous"
            );
        }
        let segments = segments
            .into_iter()
            .map(|segment| (segment.base_offset(), segment))
            .collect();
        PartitionLog {
            id,
            label,
            dir,
            config,
            fsync,
            write_buffer_bytes,
            segments,
            log_start,
            next_offset,
            durable_end: next_offset,
            committed: None,
            unflushed_bytes: 0,
            unflushed_batches: 0,
            poisoned: None,
            deletions_waiting: Vec::new(),
            producers: ProducerStates::default(),
            marks: PartitionMarks::default(),
        }
    }

    /// A new, empty partition in `dir` (which exists); its first commit creates a file.
    pub fn create(
        id: PartitionId,
        label: String,
        dir: PathBuf,
        config: TopicConfig,
        fsync: FsyncPolicy,
        write_buffer_bytes: usize,
        now_ms: i64,
    ) -> PartitionLog {
        let segment = Segment::create(
            &dir,
            Offset::ZERO,
            config.index_interval_bytes,
            write_buffer_bytes,
            now_ms,
        );
        PartitionLog::assemble(PartitionParts {
            id,
            label,
            dir,
            config,
            fsync,
            write_buffer_bytes,
            segments: vec![segment],
        })
    }

    pub fn id(&self) -> PartitionId {
        self.id
    }

    /// The partition's name for people: `topic-index`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: TopicConfig) {
        self.config = config;
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let readable = self.committed.map_or(self.durable_end, |committed| {
            committed.min(self.durable_end)
        });
        PartitionOffsets {
            log_start: self.log_start,
            high_watermark: readable.max(self.log_start),
            log_end: self.next_offset,
        }
    }

    /// The offset after the last durable batch (what replication may read and what an
    /// append's durability is measured against).
    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// Makes the partition replicated with `committed` as its committed offset: consumers
    /// read no further than it. It only rises; a lower value is ignored (a chain's
    /// committed offset never goes back). Returns the offsets after the change.
    pub fn set_committed(&mut self, committed: Offset) -> PartitionOffsets {
        if self.committed.is_none_or(|held| held < committed) {
            self.committed = Some(committed);
        }
        self.offsets()
    }

    /// Bytes of log on disk or about to be.
    pub fn size_bytes(&self) -> u64 {
        self.segments
            .values()
            .map(|segment| u64::from(segment.index.log_len()))
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Drops appended bytes no commit has taken (the partition failed or is being deleted)
    /// and returns how many there were.
    pub fn discard_unflushed(&mut self) -> usize {
        for segment in self.segments.values_mut() {
            if let Some(writer) = segment.writer.as_mut() {
                drop(writer.take());
            }
        }
        self.unflushed_batches = 0;
        std::mem::take(&mut self.unflushed_bytes)
    }

    /// Refuses further writes, for the reason given (a failed write or fdatasync).
    pub fn poison(&mut self, reason: String) {
        tracing::error!(partition = %self.label, %reason, "partition refuses further writes");
        self.poisoned.get_or_insert(reason);
    }

    /// Assigns offsets to `batch`, stamps `leader_epoch` and queues its bytes for the next
    /// group commit, rolling the segment first when size or age says so. Returns the batch
    /// as stored, for the cache.
    pub fn append(
        &mut self,
        mut batch: ValidatedBatch,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        self.writable()?;
        let max = usize::try_from(self.config.max_message_bytes).unwrap_or(usize::MAX);
        if batch.len() > max {
            return Err(AppendError::BatchTooLarge {
                partition: self.label.clone(),
                len: batch.len(),
                max,
            });
        }
        if self
            .next_offset
            .value()
            .checked_add(i64::from(batch.header().last_offset_delta) + 1)
            .is_none()
        {
            let (partition, records) = (self.label.clone(), batch.record_count());
            return Err(AppendError::OffsetOverflow { partition, records });
        }
        let check =
            self.producers
                .check(batch.header())
                .map_err(|error| AppendError::Sequence {
                    partition: self.label.clone(),
                    error,
                })?;
        if let SequenceCheck::Duplicate { base, last } = check {
            return Ok(Appended::Duplicate { base, last });
        }
        if self.should_roll(&batch, now_ms) {
            self.roll(now_ms);
        }
        batch.assign(self.next_offset, leader_epoch);
        self.store(&batch, now_ms);
        Ok(Appended::Stored(batch))
    }

    /// Refuses writes to a partition a storage failure poisoned.
    fn writable(&self) -> Result<(), AppendError> {
        match &self.poisoned {
            Some(reason) => Err(AppendError::Poisoned {
                partition: self.label.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Copies a batch that carries its offsets to the end of the log (rolled already if
    /// need be) and records its producer's sequence.
    fn store(&mut self, batch: &ValidatedBatch, now_ms: i64) {
        let active = self.active_mut();
        active.append(batch.header(), &batch.parts(), now_ms);
        self.next_offset = batch.last_offset().plus(1);
        self.unflushed_bytes += batch.len();
        self.unflushed_batches += 1;
        self.producers
            .record(batch.header(), batch.base_offset(), batch.last_offset());
    }

    /// Appends a batch another node's log assigned (a chain's head): it must start at this
    /// log's end, and keeps its offsets and leader epoch. Its idempotent producer state is
    /// recorded as the head's was, so this node can take over as head. Returns the batch
    /// for the cache, as [`PartitionLog::append`] does.
    pub fn append_replica(
        &mut self,
        batch: ValidatedBatch,
        now_ms: i64,
    ) -> Result<ValidatedBatch, AppendError> {
        self.writable()?;
        if batch.base_offset().value() != batch.header().base_offset
            || batch.base_offset() != self.next_offset
        {
            return Err(AppendError::NotAtLogEnd {
                partition: self.label.clone(),
                expected: self.next_offset.value(),
                got: batch.header().base_offset,
            });
        }
        if self.should_roll(&batch, now_ms) {
            self.roll(now_ms);
        }
        self.store(&batch, now_ms);
        Ok(batch)
    }

    /// The committed offset, once the partition is replicated.
    pub fn committed(&self) -> Option<Offset> {
        self.committed
    }

    /// Plans cutting the log back so it ends at `to` (a chain member dropping entries a
    /// deposed head never committed). Everything must be durable first: no commit in
    /// flight, nothing unflushed.
    ///
    /// # Panics
    /// When appended bytes are not durable yet, or `to` is not below the log end.
    pub fn plan_cut(&self, to: Offset) -> Result<CutPlan, TruncateError> {
        assert!(
            !self.has_unflushed() && self.durable_end == self.next_offset,
            "a cut waits for every append of {} to be durable",
            self.label
        );
        assert!(to < self.next_offset, "a cut at or past the log end");
        if to < self.log_start {
            return Err(TruncateError::BelowLogStart {
                partition: self.label.clone(),
                to: to.value(),
                log_start: self.log_start.value(),
            });
        }
        if let Some(committed) = self.committed.filter(|committed| *committed > to) {
            return Err(TruncateError::BelowCommitted {
                partition: self.label.clone(),
                to: to.value(),
                committed: committed.value(),
            });
        }
        let (&keep_base, keep) = self
            .segments
            .range(..=to)
            .next_back()
            .expect("log start is a segment base");
        let cursor = (keep_base < to).then(|| {
            let start = u64::from(keep.index.position_for_offset(to));
            (self.cursor(keep, start, READ_CHUNK_BYTES), start)
        });
        let delete = self
            .segments
            .range(to.plus(1)..)
            .flat_map(|(_, segment)| {
                [
                    segment.log_path.clone(),
                    segment.index_path(IndexKind::Offset),
                    segment.index_path(IndexKind::Time),
                ]
            })
            .collect();
        Ok(CutPlan {
            keep_log: keep.log_path.clone(),
            keep_indexes: vec![
                keep.index_path(IndexKind::Offset),
                keep.index_path(IndexKind::Time),
            ],
            keep_base,
            cursor,
            delete,
            producer_snapshot: crate::producer_state::snapshot_path(&self.dir),
        })
    }

    /// The idempotent producers' state, for replaying stored batches into it when the
    /// partition opens.
    pub fn producers_mut(&mut self) -> &mut ProducerStates {
        &mut self.producers
    }

    /// A snapshot of the producer state that is durable now, and the offset it covers.
    pub fn producer_snapshot(&self) -> (Vec<u8>, Offset) {
        let end = self.durable_end;
        (self.producers.durable(end).encode(end), end)
    }

    /// The next group commit: everything appended since the last one, plus seals of rolled
    /// segments and files to create. `None` when there is nothing to commit.
    pub fn take_flush(&mut self) -> Option<FlushPlan> {
        if self.poisoned.is_some() {
            return None;
        }
        let mut work: Vec<SegmentFlush> = self
            .segments
            .values_mut()
            .rev()
            .map_while(segment_flush)
            .collect();
        if work.is_empty() {
            return None;
        }
        work.reverse();
        let batch_bytes = std::mem::take(&mut self.unflushed_bytes);
        let batch_count = std::mem::take(&mut self.unflushed_batches);
        Some(self.plan(work, batch_bytes, batch_count))
    }

    /// A final commit that seals the active segment too, for a clean shutdown: its index
    /// files are written and its log cut to its exact length, so it reopens without a scan.
    pub fn take_close(&mut self) -> Option<FlushPlan> {
        if self.poisoned.is_some() {
            return None;
        }
        let mut plan = self.take_flush();
        let active = self.active_mut();
        if active.file.is_none() {
            return plan;
        }
        let seal = seal_of(active);
        match plan.as_mut().and_then(|plan| plan.segments.last_mut()) {
            Some(last) if last.base == active.base_offset() => last.seal = Some(seal),
            _ => {
                let flush = SegmentFlush {
                    base: active.base_offset(),
                    target: FileTarget::Open(active.file.clone().expect("checked above")),
                    writes: Vec::new(),
                    seal: Some(seal),
                    durable_len: active.durable_len,
                };
                let plan = plan.get_or_insert_with(|| self.plan(Vec::new(), 0, 0));
                plan.segments.push(flush);
            }
        }
        plan
    }

    /// Applies a finished commit: installs created files, advances durable lengths and the
    /// high watermark, or poisons the partition when the commit failed.
    ///
    /// A commit that succeeds after an earlier one failed changes nothing: the partition
    /// stays poisoned, and no later fdatasync vouches for bytes an earlier one lost.
    pub fn finish_flush(&mut self, outcome: &mut FlushOutcome) {
        let done = match &mut outcome.result {
            Ok(_) if self.poisoned.is_some() => return,
            Ok(done) => done,
            Err(reason) => {
                self.poison(reason.clone());
                return;
            }
        };
        self.install_files(&done.created);
        for base in &done.sealed {
            if let Some(segment) = self.segments.get_mut(base) {
                segment.sealed = true;
            }
        }
        for &(base, durable_len) in &done.durable_lens {
            if let Some(segment) = self.segments.get_mut(&base) {
                assert!(
                    durable_len >= segment.durable_len,
                    "durable length of {base} moved back"
                );
                segment.durable_len = durable_len;
            }
        }
        assert!(
            outcome.durable_end >= self.durable_end,
            "high watermark of {} moved back",
            self.label
        );
        self.durable_end = outcome.durable_end;
    }

    /// Gives segments the files a commit created for them, once its writes completed: the
    /// next commit writes to them rather than creating them again.
    pub fn install_files(&mut self, created: &[(Offset, Rc<DmaFile>)]) {
        for (base, file) in created {
            if let Some(segment) = self.segments.get_mut(base) {
                segment.file = Some(file.clone());
            }
        }
    }

    /// Where a read of `from` up to `limit` (the high watermark for consumers, the
    /// durable end for replication) starts, or why it cannot. An offset between the limit
    /// and the durable end reads nothing yet.
    pub fn plan_read(
        &self,
        from: Offset,
        bytes_max: usize,
        limit: Offset,
    ) -> Result<ReadStart, ReadError> {
        if from < self.log_start || from > self.durable_end {
            return Err(ReadError::OffsetOutOfRange {
                partition: self.label.clone(),
                requested: from.value(),
                log_start: self.log_start.value(),
                high_watermark: self.durable_end.value(),
            });
        }
        if from >= limit.min(self.durable_end) {
            return Ok(ReadStart::AtEnd);
        }
        let (_, segment) = self
            .segments
            .range(..=from)
            .next_back()
            .expect("log start is a segment base");
        let start = u64::from(segment.index.position_for_offset(from));
        // A read walks at most one index interval before the batch it wants, so read that
        // much more than asked, within reason for huge `index.interval.bytes`.
        let interval = usize::try_from(self.config.index_interval_bytes)
            .unwrap_or(usize::MAX)
            .min(READ_SLACK_MAX);
        let chunk = bytes_max.saturating_add(2 * interval);
        Ok(ReadStart::Disk {
            cursor: self.cursor(segment, start, chunk),
            path: segment.log_path.clone(),
        })
    }

    /// Cursors over up to `count` segments after the one holding `from`, with batches
    /// below `limit`: a consumer read that finds only batches the cleaner emptied in one
    /// segment goes on into the next.
    pub fn following_cursors(
        &self,
        from: Offset,
        limit: Offset,
        count: usize,
    ) -> Vec<(SegmentCursor, PathBuf)> {
        let limit = limit.min(self.durable_end);
        self.segments
            .range(from.plus(1)..limit)
            .filter(|(base, _)| **base > from)
            .take(count)
            .filter(|(_, segment)| segment.durable_len > 0)
            .map(|(_, segment)| {
                (
                    self.cursor(segment, 0, READ_CHUNK_BYTES),
                    segment.log_path.clone(),
                )
            })
            .collect()
    }

    /// The largest record timestamp of the durable log (-1 when it holds none): ListOffsets'
    /// max-timestamp lookup finds the first record with it.
    pub fn max_timestamp_ms(&self) -> i64 {
        self.segments
            .values()
            .filter(|segment| segment.durable_len > 0)
            .map(|segment| segment.index.max_timestamp_ms())
            .max()
            .unwrap_or(-1)
    }

    /// A cursor over the first segment that can hold a record at or after `target_ms`, or
    /// `None` when no durable batch is that recent.
    pub fn plan_timestamp_lookup(&self, target_ms: i64) -> Option<(SegmentCursor, PathBuf)> {
        let segment = self.segments.values().find(|segment| {
            segment.durable_len > 0 && segment.index.max_timestamp_ms() >= target_ms
        })?;
        let start = u64::from(segment.index.position_for_timestamp(target_ms));
        Some((
            self.cursor(segment, start, READ_CHUNK_BYTES),
            segment.log_path.clone(),
        ))
    }

    /// Applies `retention.ms` and `retention.bytes` when `cleanup.policy` has `delete`, and
    /// whatever the policy deletes segments wholly below a log start DeleteRecords moved.
    /// Removed segments leave the log at once (the log start advances); their files are
    /// returned by [`PartitionLog::take_deletions`].
    pub fn apply_retention(&mut self, now_ms: i64) {
        let facts: Vec<SegmentFacts> = self.segments.values().map(segment_facts).collect();
        let by_policy = if self.config.cleanup_policy.delete {
            segments_to_delete(&facts, &self.config, now_ms)
        } else {
            0
        };
        let below_start = self
            .segments
            .values()
            .zip(&facts)
            .take(self.segments.len() - 1)
            .take_while(|(segment, facts)| {
                facts.durable && segment.index.next_offset() <= self.log_start
            })
            .count();
        let count = by_policy.max(below_start);
        if count == 0 {
            return;
        }
        if count == self.segments.len() {
            self.roll(now_ms);
        }
        for _ in 0..count {
            let (_, segment) = self.segments.pop_first().expect("counted segments exist");
            tracing::info!(partition = %self.label, base = %segment.base_offset(), "retention deletes segment");
            self.deletions_waiting.push(segment);
        }
        let first = self
            .segments
            .first_key_value()
            .expect("the active segment stays")
            .0;
        self.log_start = self.log_start.max(*first);
    }

    /// Segments whose files may now be deleted: retention removed them and the active
    /// segment has a file, so the partition's offsets survive a restart.
    pub fn take_deletions(&mut self) -> Vec<Segment> {
        if self.active().file.is_none() {
            return Vec::new();
        }
        std::mem::take(&mut self.deletions_waiting)
    }

    /// True when a commit has work: appended bytes, rolled segments or a file to create.
    pub fn has_unflushed(&self) -> bool {
        // Work is always a run of the newest segments, so the active one tells.
        needs_flush(self.active())
    }

    fn plan(&self, segments: Vec<SegmentFlush>, batch_bytes: usize, batch_count: u64) -> FlushPlan {
        FlushPlan {
            partition: self.id,
            dir: self.dir.clone(),
            segments,
            fsync: self.fsync,
            durable_end: self.next_offset,
            batch_bytes,
            batch_count,
        }
    }

    fn cursor(&self, segment: &Segment, start: u64, chunk: usize) -> SegmentCursor {
        let file = segment
            .file
            .clone()
            .expect("a segment with durable bytes has a file");
        SegmentCursor::new(
            file,
            start,
            segment.durable_len,
            chunk.max(READ_CHUNK_BYTES),
        )
    }

    fn should_roll(&self, batch: &ValidatedBatch, now_ms: i64) -> bool {
        let active = self.active();
        if active.index.is_empty() {
            return false;
        }
        let len = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let too_big =
            u64::from(active.index.log_len()) + len > u64::from(self.config.segment_bytes);
        // `segment.jitter.ms`: each segment rolls up to that much early, by an amount fixed
        // by its base offset, so segments of many partitions created together do not all
        // roll at once.
        let jitter = match u64::try_from(self.config.segment_jitter_ms) {
            Ok(jitter) if jitter > 0 => {
                let spread = (active.base_offset().value().unsigned_abs())
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    % jitter;
                i64::try_from(spread).unwrap_or(0)
            }
            _ => 0,
        };
        // A compacted topic also rolls at `max.compaction.lag.ms` (KIP-354), so no record
        // stays in the never-cleaned active segment longer than the lag.
        let roll_ms = if self.config.compacted() {
            self.config
                .segment_ms
                .min(self.config.max_compaction_lag_ms)
        } else {
            self.config.segment_ms
        };
        let too_old = now_ms.saturating_sub(active.roll_base_ms) > roll_ms.saturating_sub(jitter);
        let span = self
            .next_offset
            .plus(batch.offset_span())
            .distance_from(active.base_offset());
        too_big || too_old || span > u64::from(u32::MAX)
    }

    fn roll(&mut self, now_ms: i64) {
        let next = self.next_offset;
        let interval = self.config.index_interval_bytes;
        let buffer_bytes = self.write_buffer_bytes;
        let active = self.active_mut();
        if active.index.is_empty() {
            return;
        }
        active.rolled = true;
        tracing::info!(partition = %self.label, base = %next, "segment rolled");
        let mut segment = Segment::create(&self.dir, next, interval, buffer_bytes, now_ms);
        segment.file_required = true;
        self.segments.insert(next, segment);
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a partition always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a partition always has an active segment")
    }
}

fn needs_flush(segment: &Segment) -> bool {
    let writes = segment
        .writer
        .as_ref()
        .is_some_and(|writer| writer.has_pending() || segment.rolled);
    writes || (segment.file.is_none() && segment.file_required)
}

/// The commit work of one segment, or `None` when it has none (older segments have none
/// either: work is always a run of the newest segments).
fn segment_flush(segment: &mut Segment) -> Option<SegmentFlush> {
    if !needs_flush(segment) {
        return None;
    }
    let target = match &segment.file {
        Some(file) => FileTarget::Open(file.clone()),
        None => FileTarget::Create(segment.log_path.clone()),
    };
    let writes = segment
        .writer
        .as_mut()
        .map(crate::log_writer::LogWriter::take)
        .unwrap_or_default();
    let seal = segment.rolled.then(|| seal_of(segment));
    if segment.rolled {
        segment.writer = None;
    }
    Some(SegmentFlush {
        base: segment.base_offset(),
        target,
        writes,
        seal,
        durable_len: u64::from(segment.index.log_len()),
    })
}

fn seal_of(segment: &Segment) -> Seal {
    let (offset_index, time_index) = segment.index.encode_files();
    Seal {
        log_len: u64::from(segment.index.log_len()),
        offset_index: (segment.index_path(IndexKind::Offset), offset_index),
        time_index: (segment.index_path(IndexKind::Time), time_index),
    }
}

fn segment_facts(segment: &Segment) -> SegmentFacts {
    let log_len = u64::from(segment.index.log_len());
    let pending = segment
        .writer
        .as_ref()
        .is_some_and(|writer| writer.has_pending() || segment.rolled);
    SegmentFacts {
        log_len,
        max_timestamp_ms: segment.index.max_timestamp_ms(),
        last_modified_ms: segment.last_modified_ms,
        durable: segment.durable_len == log_len
            && !pending
            && segment.file.is_some()
            && (segment.sealed || !segment.rolled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_commit::FlushDone;
    use crate::ids::TopicId;

    fn outcome(
        partition: PartitionId,
        end: i64,
        result: Result<FlushDone, String>,
    ) -> FlushOutcome {
        FlushOutcome {
            partition,
            durable_end: Offset::new(end).expect("non-negative"),
            batch_bytes: 0,
            batch_count: 0,
            result,
        }
    }

    #[test]
    fn a_commit_that_succeeds_after_an_earlier_one_failed_makes_nothing_durable() {
        let id = PartitionId {
            topic: TopicId::new(1),
            index: 0,
        };
        let mut log = PartitionLog::create(
            id,
            "topic-0".into(),
            PathBuf::from("/nonexistent"),
            TopicConfig::default(),
            FsyncPolicy::EveryCommit,
            BUFFER_BYTES_FOR_TESTS,
            0,
        );
        log.finish_flush(&mut outcome(id, 10, Err("fdatasync failed".into())));
        log.finish_flush(&mut outcome(id, 20, Ok(FlushDone::default())));
        assert_eq!(log.poisoned(), Some("fdatasync failed"));
        assert_eq!(log.durable_end(), Offset::ZERO);
    }

    const BUFFER_BYTES_FOR_TESTS: usize = 1 << 16;
}
