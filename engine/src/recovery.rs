//! Opening a partition directory: loading sealed segments from their index files and
//! recovering the rest by scanning.
//!
//! After a crash the active segment is scanned batch by batch and cut at the first torn or
//! corrupt batch (an unacknowledged write, since acknowledgement waits for fdatasync).
//! Sealed segments are trusted when their index files are intact and describe exactly the
//! log on disk; otherwise they are scanned and their indexes rebuilt. A segment cut short
//! leaves a gap before the next one, so every later segment is dropped too: they can only
//! hold unacknowledged writes of the same interrupted commit. Every cut is logged and
//! reported. Segments that overlap are not a torn tail but damage, and stop the partition.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};

use crate::config::{FsyncPolicy, TopicConfig};
use crate::directory;
use crate::group_commit::write_index_file;
use crate::ids::PartitionId;
use crate::index_file::IndexKind;
use crate::log_scan::{ScanNext, ScanStop, SegmentScan};
use crate::log_writer::{BLOCK_BYTES, LogWriter, align_down};
use crate::offset::Offset;
use crate::partition::{PartitionLog, PartitionParts};
use crate::segment::{Segment, parse_segment_name, segment_path};
use crate::segment_index::SegmentIndex;

/// Bytes a recovery scan reads at a time.
const SCAN_READ_BYTES: usize = 1 << 20;

/// What to open.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    pub id: PartitionId,
    pub label: String,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub fsync: FsyncPolicy,
    pub write_buffer_bytes: usize,
    /// The broker shut down cleanly, so the active segment's index files can be trusted.
    pub clean_shutdown: bool,
    pub now_ms: i64,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub partition: String,
    pub segments: usize,
    /// Segments read batch by batch (the others opened from their index files).
    pub scanned: usize,
    pub cuts: Vec<RecoveryCut>,
}

/// Bytes recovery removed from one segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryCut {
    pub path: PathBuf,
    /// Where the valid log ends (and the file now ends).
    pub position: u64,
    pub bytes: u64,
    pub reason: String,
}

impl RecoveryReport {
    pub fn bytes_cut(&self) -> u64 {
        self.cuts.iter().map(|cut| cut.bytes).sum()
    }
}

/// Why a partition could not be opened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("i/o error on {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error(
        "segment {path} starts at offset {found} but the segment before it ends at {expected}: segments overlap"
    )]
    Overlap {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
    #[error("segment {path} is {len} bytes, larger than any segment Strand writes (4 GiB)")]
    TooLarge { path: PathBuf, len: u64 },
}

/// Opens (recovering if needed) the partition described by `spec`; the directory exists.
pub async fn open_partition(
    spec: PartitionSpec,
) -> Result<(PartitionLog, RecoveryReport), RecoveryError> {
    let mut report = RecoveryReport {
        partition: spec.label.clone(),
        ..RecoveryReport::default()
    };
    let logs = list_logs(&spec.dir).await?;
    let mut segments: Vec<Segment> = Vec::with_capacity(logs.len());
    let mut dropped: Vec<&LogFile> = Vec::new();
    for (position, log) in logs.iter().enumerate() {
        let LogFile {
            base,
            path,
            modified_ms,
            ..
        } = log;
        let expected = segments
            .last()
            .map(|segment: &Segment| segment.index.next_offset());
        match expected {
            Some(expected) if *base < expected => {
                let (expected, found) = (expected.value(), base.value());
                return Err(RecoveryError::Overlap {
                    path: path.clone(),
                    expected,
                    found,
                });
            }
            Some(expected) if *base > expected || !dropped.is_empty() => {
                dropped.push(log);
                continue;
            }
            _ => {}
        }
        let is_last = position + 1 == logs.len();
        let segment = open_segment(&spec, *base, path, *modified_ms, is_last, &mut report).await?;
        segments.push(segment);
    }
    drop_segments(&spec, dropped, &mut report).await?;
    let parts = match segments.last_mut() {
        None => {
            let log = PartitionLog::create(
                spec.id,
                spec.label,
                spec.dir,
                spec.config,
                spec.fsync,
                spec.write_buffer_bytes,
                spec.now_ms,
            );
            return Ok((log, report));
        }
        Some(active) => {
            make_active(active, spec.write_buffer_bytes, spec.now_ms).await?;
            report.segments = segments.len();
            PartitionParts {
                id: spec.id,
                label: spec.label,
                dir: spec.dir,
                config: spec.config,
                fsync: spec.fsync,
                write_buffer_bytes: spec.write_buffer_bytes,
                segments,
            }
        }
    };
    Ok((PartitionLog::assemble(parts), report))
}

/// A segment log file found in a partition directory.
#[derive(Debug)]
struct LogFile {
    base: Offset,
    path: PathBuf,
    modified_ms: i64,
    len: u64,
}

/// The partition's log files, oldest first; index files without a log are removed.
async fn list_logs(dir: &Path) -> Result<Vec<LogFile>, RecoveryError> {
    let entries = directory::list(dir)
        .await
        .map_err(|error| io_error(dir, &error))?;
    let mut logs = Vec::new();
    let mut orphans = Vec::new();
    for entry in &entries {
        match parse_segment_name(&entry.name) {
            Some((base, "log")) => logs.push(LogFile {
                base,
                path: entry.path.clone(),
                modified_ms: entry.modified_ms,
                len: entry.len,
            }),
            Some((base, "index" | "timeindex")) => {
                let has_log = entries
                    .iter()
                    .any(|other| other.path == segment_path(dir, base, "log"));
                if !has_log {
                    orphans.push(entry.path.clone());
                }
            }
            _ => {}
        }
    }
    if !orphans.is_empty() {
        tracing::info!(dir = %dir.display(), files = orphans.len(), "removing index files without a log");
        directory::remove_files(orphans)
            .await
            .map_err(|error| io_error(dir, &error))?;
    }
    logs.sort_by_key(|log| log.base);
    Ok(logs)
}

async fn open_segment(
    spec: &PartitionSpec,
    base: Offset,
    path: &Path,
    modified_ms: i64,
    is_last: bool,
    report: &mut RecoveryReport,
) -> Result<Segment, RecoveryError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(|error| io_error(path, &error))?;
    let size = file
        .file_size()
        .await
        .map_err(|error| io_error(path, &error))?;
    if size > u64::from(u32::MAX) {
        return Err(RecoveryError::TooLarge {
            path: path.to_path_buf(),
            len: size,
        });
    }
    let interval = spec.config.index_interval_bytes;
    let trusted = if is_last && !spec.clean_shutdown {
        None
    } else {
        load_index(base, interval, path, size).await
    };
    let index = match trusted {
        Some(index) => index,
        None => {
            report.scanned += 1;
            let index = scan_segment(&file, base, interval, path, size, report).await?;
            if !is_last {
                // Save the rebuilt index so the next start needs no scan.
                let (offsets, times) = index.encode_files();
                let index_path = |kind: IndexKind| path.with_extension(kind.extension());
                write_index_file(&index_path(IndexKind::Offset), &offsets, spec.fsync)
                    .await
                    .map_err(|detail| RecoveryError::Io {
                        path: path.into(),
                        detail,
                    })?;
                write_index_file(&index_path(IndexKind::Time), &times, spec.fsync)
                    .await
                    .map_err(|detail| RecoveryError::Io {
                        path: path.into(),
                        detail,
                    })?;
            }
            index
        }
    };
    let mut segment = Segment::sealed(index, Rc::new(file), path.to_path_buf(), modified_ms);
    segment.roll_base_ms = spec.now_ms;
    Ok(segment)
}

/// The segment's saved indexes, when they are intact and describe the log on disk.
async fn load_index(base: Offset, interval: u32, path: &Path, size: u64) -> Option<SegmentIndex> {
    let offsets = directory::read_file(&path.with_extension(IndexKind::Offset.extension()))
        .await
        .ok()??;
    let times = directory::read_file(&path.with_extension(IndexKind::Time.extension()))
        .await
        .ok()??;
    match SegmentIndex::decode_files(base, interval, &offsets, &times, size) {
        Ok(index) => Some(index),
        Err(error) => {
            tracing::info!(segment = %path.display(), %error, "rebuilding segment index");
            None
        }
    }
}

/// Scans the log batch by batch, cuts it after the last valid batch and returns its index.
async fn scan_segment(
    file: &DmaFile,
    base: Offset,
    interval: u32,
    path: &Path,
    size: u64,
    report: &mut RecoveryReport,
) -> Result<SegmentIndex, RecoveryError> {
    let mut scan = SegmentScan::new(base, interval, SCAN_READ_BYTES);
    let mut window: Option<ReadResult> = None;
    let mut window_start = 0;
    let stop = loop {
        match scan.advance(window.as_deref().unwrap_or_default(), window_start, size) {
            ScanNext::Done(stop) => break stop,
            ScanNext::Read { position, len } => {
                let len = len.min(usize::try_from(size - position).expect("segment below 4 GiB"));
                let read = file
                    .read_at(position, len)
                    .await
                    .map_err(|error| io_error(path, &error))?;
                if read.len() < len {
                    let detail = format!("short read at {position}: {} of {len} bytes", read.len());
                    return Err(RecoveryError::Io {
                        path: path.to_path_buf(),
                        detail,
                    });
                }
                window = Some(read);
                window_start = position;
            }
        }
    };
    let valid_len = scan.position();
    if valid_len < size {
        cut(file, path, valid_len, size - valid_len, &stop, report).await?;
    }
    Ok(scan.into_index())
}

async fn cut(
    file: &DmaFile,
    path: &Path,
    position: u64,
    bytes: u64,
    stop: &ScanStop,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let padding = matches!(stop, ScanStop::ZeroTail)
        && bytes < u64::try_from(BLOCK_BYTES).expect("4096 fits");
    if padding {
        tracing::info!(segment = %path.display(), position, bytes, "recovery removed write padding");
    } else {
        tracing::warn!(segment = %path.display(), position, bytes, reason = %stop, "recovery cut the log");
    }
    file.truncate(position)
        .await
        .map_err(|error| io_error(path, &error))?;
    file.fdatasync()
        .await
        .map_err(|error| io_error(path, &error))?;
    report.cuts.push(RecoveryCut {
        path: path.to_path_buf(),
        position,
        bytes,
        reason: stop.to_string(),
    });
    Ok(())
}

/// Deletes segments that followed a cut: they hold only unacknowledged writes.
async fn drop_segments(
    spec: &PartitionSpec,
    dropped: Vec<&LogFile>,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    if dropped.is_empty() {
        return Ok(());
    }
    let mut files = Vec::with_capacity(dropped.len() * 3);
    for log in dropped {
        let (path, bytes) = (log.path.clone(), log.len);
        tracing::warn!(segment = %path.display(), bytes, "recovery dropped a segment that follows a cut");
        report.cuts.push(RecoveryCut {
            path: path.clone(),
            position: 0,
            bytes,
            reason: "follows a cut segment".into(),
        });
        files.push(path.with_extension(IndexKind::Offset.extension()));
        files.push(path.with_extension(IndexKind::Time.extension()));
        files.push(path);
    }
    directory::remove_files(files)
        .await
        .map_err(|error| io_error(&spec.dir, &error))?;
    crate::group_commit::sync_directory(&spec.dir)
        .await
        .map_err(|detail| RecoveryError::Io {
            path: spec.dir.clone(),
            detail,
        })
}

/// Gives the last segment a writer that continues its partial last block.
async fn make_active(
    segment: &mut Segment,
    write_buffer_bytes: usize,
    now_ms: i64,
) -> Result<(), RecoveryError> {
    let log_len = u64::from(segment.index.log_len());
    let tail_start = align_down(log_len);
    let tail_len = usize::try_from(log_len - tail_start).expect("below one block");
    let mut tail = Vec::with_capacity(tail_len);
    if tail_len > 0 {
        let file = segment.file.as_ref().expect("opened segments have files");
        let read = file
            .read_at(tail_start, tail_len)
            .await
            .map_err(|error| io_error(&segment.log_path, &error))?;
        if read.len() < tail_len {
            let detail = format!(
                "short read of the last block: {} of {tail_len} bytes",
                read.len()
            );
            return Err(RecoveryError::Io {
                path: segment.log_path.clone(),
                detail,
            });
        }
        tail.extend_from_slice(&read);
    }
    segment.writer = Some(LogWriter::new(log_len, tail, write_buffer_bytes));
    segment.rolled = false;
    segment.sealed = false;
    segment.roll_base_ms = now_ms;
    Ok(())
}

fn io_error(path: &Path, error: &dyn std::fmt::Display) -> RecoveryError {
    RecoveryError::Io {
        path: path.to_path_buf(),
        detail: error.to_string(),
    }
}
