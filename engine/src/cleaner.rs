//! One log-cleaning pass over a compacted partition (Kafka's `Cleaner.doClean`), run as a
//! task of its own, in the shard's low-share cleaner queue, beside the shard loop.
//!
//! The pass works on a [`CleanJob`] the shard took from the partition: the segments from
//! the log start to the end of the cleanable part (sealed and durable, so their files no
//! longer change), the first dirty offset and the producers' latest batches. It
//!
//! 1. indexes the latest offset of every key from the first dirty offset on, in a bounded
//!    [`KeyMap`]; a full map ends the indexed range early, at a batch boundary;
//! 2. rewrites every segment from the log start through the indexed range, in groups of
//!    at most `segment.bytes`, keeping what [`filter_batch`] keeps; a run of removed
//!    batches becomes one empty batch spanning their offsets (per leader epoch), so the
//!    log's offsets stay contiguous and every offset a batch held is still spanned: reads,
//!    ListOffsets and chain catch-up see the same offsets as before, with fewer records;
//! 3. swaps the cleaned segments in ([`clean_swap`]); the shard then stores the new
//!    checkpoint.
//!
//! The shard then installs the cleaned segments in the partition's log. While a pass runs,
//! the shard holds retention and cuts of that partition back, and appends and reads go on.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashSet;
use glommio::io::{DmaFile, OpenOptions};

use crate::batch::BatchHeader;
use crate::batch_filter::{FilterCounts, FilterRules, Filtered, filter_batch};
use crate::batch_rewrite::{BatchFields, delete_horizon, empty_batch, open_records};
use crate::clean_plan::{SegmentSummary, group_segments};
use crate::clean_swap::{SwapGroup, cleaned_path};
use crate::config::FsyncPolicy;
use crate::group_commit::write_index_file;
use crate::ids::PartitionId;
use crate::index_file::IndexKind;
use crate::key_map::KeyMap;
use crate::log_writer::{LogWriter, PendingWrite};
use crate::offset::Offset;
use crate::partition_marks::PartitionMarks;
use crate::records::parse;
use crate::segment::{Segment, SegmentCursor, segment_path};
use crate::segment_index::SegmentIndex;

/// One segment a pass reads.
#[derive(Debug, Clone)]
pub struct JobSegment {
    pub summary: SegmentSummary,
    pub file: Rc<DmaFile>,
}

/// Everything a pass needs, taken from the partition when it starts.
#[derive(Debug)]
pub struct CleanJob {
    pub partition: PartitionId,
    pub label: String,
    pub dir: PathBuf,
    /// From the log start, oldest first: the segments the pass may rewrite.
    pub segments: Vec<JobSegment>,
    pub first_dirty: Offset,
    /// The last offsets of each idempotent producer's latest batch: such a batch is kept,
    /// emptied if need be, for the producer's state.
    pub producer_last: AHashSet<i64>,
    pub marks: PartitionMarks,
    pub delete_retention_ms: i64,
    pub segment_bytes: u64,
    pub index_interval_bytes: u32,
    pub now_ms: i64,
    pub fsync: FsyncPolicy,
    pub limits: CleanLimits,
}

/// The pass's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanLimits {
    pub map_bytes_max: usize,
    pub decompressed_bytes_max: usize,
    pub read_bytes: usize,
    pub write_buffer_bytes: usize,
}

/// A cleaned segment and the offsets it replaces.
#[derive(Debug)]
pub struct CleanedSegment {
    pub group: SwapGroup,
    pub segment: Segment,
}

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub passes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub duration: Duration,
}

impl CleanStats {
    pub fn add(&mut self, other: &CleanStats) {
        self.passes += other.passes;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.records_removed += other.records_removed;
        self.tombstones_removed += other.tombstones_removed;
        self.duration += other.duration;
    }
}

/// The result of a pass, for the shard to install.
#[derive(Debug)]
pub struct CleanOutcome {
    pub partition: PartitionId,
    pub cleaned: Vec<CleanedSegment>,
    /// The new checkpoint: everything below it is clean.
    pub first_dirty: Offset,
    pub marks: PartitionMarks,
    pub stats: CleanStats,
}

/// Why a pass failed; the log is as it was (or, past the commit point, as recovery will
/// make it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cleaning {partition}: {detail}")]
pub struct CleanError {
    pub partition: String,
    pub detail: String,
}

/// Runs one pass.
pub async fn clean(job: CleanJob) -> Result<CleanOutcome, CleanError> {
    let started = Instant::now();
    let failed = |detail: String| CleanError {
        partition: job.label.clone(),
        detail,
    };
    let mut stats = CleanStats {
        passes: 1,
        ..CleanStats::default()
    };
    let (map, map_end) = index_keys(&job, &mut stats).await.map_err(failed)?;
    let rewrite: Vec<&JobSegment> = job
        .segments
        .iter()
        .take_while(|segment| segment.summary.base < map_end)
        .collect();
    let summaries: Vec<SegmentSummary> = rewrite.iter().map(|segment| segment.summary).collect();
    let rules = FilterRules {
        map_end: map_end.value(),
        now_ms: job.now_ms,
        delete_retention_ms: job.delete_retention_ms,
        decompressed_bytes_max: job.limits.decompressed_bytes_max,
    };
    let mut cleaned = Vec::new();
    let mut next_horizon: Option<i64> = None;
    for group in group_segments(&summaries, job.segment_bytes) {
        let written = rewrite_group(&job, &rewrite[group], &map, &rules, &mut stats)
            .await
            .map_err(failed)?;
        if let Some(horizon) = written.next_horizon {
            next_horizon = Some(next_horizon.map_or(horizon, |held| held.min(horizon)));
        }
        if let Some(segment) = written.segment {
            cleaned.push(segment);
        }
    }
    let groups: Vec<SwapGroup> = cleaned.iter().map(|cleaned| cleaned.group).collect();
    if !groups.is_empty() {
        crate::clean_swap::commit(&job.dir, &groups)
            .await
            .map_err(|error| failed(format!("committing the swap: {error}")))?;
        crate::clean_swap::complete(&job.dir, &groups)
            .await
            .map_err(|error| failed(format!("completing the swap: {error}")))?;
    }
    // The shard stores the new checkpoint once it installed the pass (it alone writes a
    // partition's marks); a crash before that only makes the next pass clean again.
    let marks = PartitionMarks {
        first_dirty: Some(map_end),
        next_horizon_ms: next_horizon,
        ..job.marks
    };
    stats.duration = started.elapsed();
    Ok(CleanOutcome {
        partition: job.partition,
        cleaned,
        first_dirty: map_end,
        marks,
        stats,
    })
}

/// Indexes the latest offset of each key from the first dirty offset; returns the map and
/// the offset its range ends at.
async fn index_keys(job: &CleanJob, stats: &mut CleanStats) -> Result<(KeyMap, Offset), String> {
    let mut map = KeyMap::new(job.limits.map_bytes_max);
    let first_dirty = job.first_dirty.value();
    let mut map_end = job.first_dirty;
    for segment in &job.segments {
        if segment.summary.next <= job.first_dirty {
            continue;
        }
        let mut cursor = cursor_of(segment, job.limits.read_bytes);
        while let Some((header, range)) = next_batch(&mut cursor, segment).await? {
            if header.last_offset() < first_dirty {
                continue;
            }
            let end = Offset::new(header.last_offset() + 1).expect("offsets are non-negative");
            if header.is_control() || header.record_count == 0 {
                map_end = end;
                continue;
            }
            let bytes = &cursor.window()[range];
            let Some(keys) = batch_keys(bytes, &header, job) else {
                map_end = end; // unreadable records stay as they are, unindexed
                continue;
            };
            let fresh = keys.iter().filter(|(offset, _)| *offset >= first_dirty);
            if !map.has_room_for(fresh.clone().map(|(_, key)| key.as_slice())) {
                if map.is_empty() {
                    return Err(format!(
                        "the keys of the batch at {} do not fit the cleaner's map of {} bytes",
                        header.base_offset, job.limits.map_bytes_max
                    ));
                }
                return Ok((map, map_end));
            }
            for (offset, key) in fresh {
                map.insert(key, *offset).expect("room was checked");
            }
            stats.bytes_read += u64::try_from(bytes.len()).expect("fits");
            map_end = end;
            glommio::yield_if_needed().await;
        }
        map_end = map_end.max(segment.summary.next);
    }
    Ok((map, map_end))
}

/// The keyed records of a batch as (offset, key), or `None` (logged) when its records do
/// not open.
fn batch_keys(bytes: &[u8], header: &BatchHeader, job: &CleanJob) -> Option<Vec<(i64, Vec<u8>)>> {
    let opened = open_records(bytes, header, job.limits.decompressed_bytes_max);
    let records = match opened {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(partition = %job.label, %error, "cleaner keeps a batch it cannot open");
            return None;
        }
    };
    let count = usize::try_from(header.record_count).expect("record count checked positive");
    match parse(&records, count) {
        Ok(parsed) => Some(
            parsed
                .iter()
                .filter_map(|record| {
                    let key = record.key?;
                    Some((
                        header.base_offset + i64::from(record.offset_delta),
                        key.to_vec(),
                    ))
                })
                .collect(),
        ),
        Err(error) => {
            tracing::warn!(partition = %job.label, %error, base = header.base_offset, "cleaner keeps a batch whose records do not parse");
            None
        }
    }
}

fn cursor_of(segment: &JobSegment, read_bytes: usize) -> SegmentCursor {
    SegmentCursor::new(segment.file.clone(), 0, segment.summary.log_len, read_bytes)
}

async fn next_batch(
    cursor: &mut SegmentCursor,
    segment: &JobSegment,
) -> Result<Option<(BatchHeader, std::ops::Range<usize>)>, String> {
    cursor
        .next()
        .await
        .map_err(|error| format!("reading the segment at {}: {error:?}", segment.summary.base))
}

/// What rewriting one group gave.
struct GroupWritten {
    /// `None` when the group is one segment the pass left as it was.
    segment: Option<CleanedSegment>,
    next_horizon: Option<i64>,
}

/// A run of removed batches, written as one empty batch.
#[derive(Clone, Copy, Debug)]
struct RemovedRun {
    base: i64,
    last: i64,
    epoch: i32,
}

/// Rewrites the segments of one group into one cleaned segment.
async fn rewrite_group(
    job: &CleanJob,
    group: &[&JobSegment],
    map: &KeyMap,
    rules: &FilterRules,
    stats: &mut CleanStats,
) -> Result<GroupWritten, String> {
    let base = group[0].summary.base;
    let end = group[group.len() - 1].summary.next;
    let mut out = CleanedWriter::create(job, base).await?;
    let mut counts = FilterCounts::default();
    let mut changed = group.len() > 1;
    let mut fillers_read = 0u64;
    let mut run: Option<RemovedRun> = None;
    let mut next_horizon: Option<i64> = None;
    for segment in group {
        let mut cursor = cursor_of(segment, job.limits.read_bytes);
        while let Some((header, range)) = next_batch(&mut cursor, segment).await? {
            let bytes = &cursor.window()[range];
            stats.bytes_read += u64::try_from(bytes.len()).expect("fits");
            let last = header.last_offset();
            let producer_last = header.producer_id >= 0 && job.producer_last.contains(&last);
            let filtered = filter_batch(bytes, &header, map, rules, producer_last, &mut counts)
                .unwrap_or_else(|error| {
                    tracing::warn!(partition = %job.label, %error, "cleaner keeps a batch as it is");
                    Filtered::Unchanged
                });
            let kept: Option<std::borrow::Cow<'_, [u8]>> = match filtered {
                Filtered::Unchanged => Some(bytes.into()),
                Filtered::Rebuilt(new) | Filtered::Emptied(new) => {
                    changed = true;
                    Some(new.into())
                }
                Filtered::Removed => {
                    if header.producer_id < 0 && header.record_count == 0 {
                        fillers_read += 1; // an earlier pass's, merged again
                    } else {
                        changed = true;
                    }
                    run = extend_run(run, &header, &mut out).await?;
                    None
                }
            };
            if let Some(kept) = kept {
                if let Some(pending) = run.take() {
                    out.append_run(pending).await?;
                }
                let written = out.append(&kept).await?;
                if let Some(horizon) = delete_horizon(&written) {
                    next_horizon = Some(next_horizon.map_or(horizon, |held| held.min(horizon)));
                }
            }
            glommio::yield_if_needed().await;
        }
    }
    if let Some(pending) = run.take() {
        out.append_run(pending).await?;
    }
    stats.records_removed += counts.records_removed;
    stats.tombstones_removed += counts.tombstones_removed;
    assert_eq!(
        out.index.next_offset(),
        end,
        "a cleaned group of {} spans the offsets it replaces",
        job.label
    );
    if !changed && out.fillers_written == fillers_read {
        out.discard().await;
        return Ok(GroupWritten {
            segment: None,
            next_horizon,
        });
    }
    let segment = out.finish(job, stats).await?;
    Ok(GroupWritten {
        segment: Some(CleanedSegment {
            group: SwapGroup { base, end },
            segment,
        }),
        next_horizon,
    })
}

/// Adds a removed batch to the current run, or writes the run and starts another when the
/// batch's epoch differs or the run would span 2^31 offsets.
async fn extend_run(
    run: Option<RemovedRun>,
    header: &BatchHeader,
    out: &mut CleanedWriter,
) -> Result<Option<RemovedRun>, String> {
    let last = header.last_offset();
    let epoch = header.partition_leader_epoch;
    if let Some(mut held) = run {
        let fits = last - held.base <= i64::from(i32::MAX);
        if held.epoch == epoch && fits {
            held.last = last;
            return Ok(Some(held));
        }
        out.append_run(held).await?;
    }
    Ok(Some(RemovedRun {
        base: header.base_offset,
        last,
        epoch,
    }))
}

/// A cleaned segment being written: `<base>.log.cleaned`, its index, and aligned writes.
struct CleanedWriter {
    file: Rc<DmaFile>,
    path: PathBuf,
    writer: LogWriter,
    index: SegmentIndex,
    first_timestamp_ms: Option<i64>,
    max_timestamp_ms: i64,
    write_buffer_bytes: usize,
    pending_bytes: usize,
    fillers_written: u64,
}

impl CleanedWriter {
    async fn create(job: &CleanJob, base: Offset) -> Result<CleanedWriter, String> {
        let path = cleaned_path(&job.dir, base, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(|error| format!("creating {}: {error}", path.display()))?;
        Ok(CleanedWriter {
            file: Rc::new(file),
            path,
            writer: LogWriter::new(0, Vec::new(), job.limits.write_buffer_bytes),
            index: SegmentIndex::new(base, job.index_interval_bytes),
            first_timestamp_ms: None,
            max_timestamp_ms: i64::MIN,
            write_buffer_bytes: job.limits.write_buffer_bytes,
            pending_bytes: 0,
            fillers_written: 0,
        })
    }

    /// Appends one batch; returns its header.
    async fn append(&mut self, bytes: &[u8]) -> Result<BatchHeader, String> {
        let header = BatchHeader::parse(bytes).map_err(|error| error.to_string())?;
        if self.index.is_empty() && header.max_timestamp >= 0 {
            self.first_timestamp_ms = Some(header.max_timestamp);
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(header.max_timestamp);
        self.writer.append(bytes);
        self.index.observe(
            &header,
            u32::try_from(bytes.len()).expect("batches are below 4 GiB"),
        );
        self.pending_bytes += bytes.len();
        if self.pending_bytes >= self.write_buffer_bytes {
            self.write_pending().await?;
        }
        Ok(header)
    }

    async fn append_run(&mut self, run: RemovedRun) -> Result<(), String> {
        let delta = i32::try_from(run.last - run.base).expect("runs are split below 2^31");
        self.fillers_written += 1;
        self.append(&empty_batch(&BatchFields::filler(
            run.base, delta, run.epoch,
        )))
        .await
        .map(drop)
    }

    /// Issues what was appended; a take's writes go out together and complete before the
    /// next take (see `log_writer`).
    async fn write_pending(&mut self) -> Result<(), String> {
        self.pending_bytes = 0;
        let writes = self.writer.take();
        for result in
            futures::future::join_all(writes.into_iter().map(|write| write_one(&self.file, write)))
                .await
        {
            result?;
        }
        Ok(())
    }

    /// Writes the rest, cuts the file to its exact length, makes it and its index files
    /// durable, and returns the segment (named as it will be once swapped in).
    async fn finish(mut self, job: &CleanJob, stats: &mut CleanStats) -> Result<Segment, String> {
        self.write_pending().await?;
        let log_len = u64::from(self.index.log_len());
        self.file
            .truncate(log_len)
            .await
            .map_err(|error| format!("truncating {}: {error}", self.path.display()))?;
        if job.fsync == FsyncPolicy::EveryCommit {
            self.file
                .fdatasync()
                .await
                .map_err(|error| format!("fdatasync of {}: {error}", self.path.display()))?;
        }
        let base = self.index.base_offset();
        let (offsets, times) = self.index.encode_files();
        write_index_file(
            &cleaned_path(&job.dir, base, IndexKind::Offset.extension()),
            &offsets,
            job.fsync,
        )
        .await?;
        write_index_file(
            &cleaned_path(&job.dir, base, IndexKind::Time.extension()),
            &times,
            job.fsync,
        )
        .await?;
        stats.bytes_written += log_len;
        let mut segment = Segment::sealed(
            self.index,
            self.file,
            segment_path(&job.dir, base, "log"),
            job.now_ms,
        );
        segment.first_timestamp_ms = self.first_timestamp_ms;
        Ok(segment)
    }

    /// Removes the file of a group left as it was.
    async fn discard(self) {
        let path = self.path.clone();
        drop(self.file);
        if let Err(error) = crate::directory::remove_files(vec![path.clone()]).await {
            tracing::warn!(file = %path.display(), %error, "cannot remove an unneeded cleaned file");
        }
    }
}

async fn write_one(file: &DmaFile, write: PendingWrite) -> Result<(), String> {
    let len = write.buffer.len();
    let position = write.position;
    let written = file
        .write_at(write.buffer, position)
        .await
        .map_err(|error| format!("writing a cleaned segment at {position}: {error}"))?;
    if written != len {
        return Err(format!(
            "short write of a cleaned segment: {written} of {len} bytes at {position} (disk full?)"
        ));
    }
    Ok(())
}
