//! One segment of a partition log: `<base-offset>.log` with its `.index` and `.timeindex`,
//! its in-memory index, and reading batches back from its file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, ReadResult};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader};
use crate::index_file::IndexKind;
use crate::log_scan::{ScanStep, scan_next};
use crate::log_writer::LogWriter;
use crate::offset::Offset;
use crate::record_timestamps::{RecordAtTime, first_record_at_or_after};
use crate::segment_index::SegmentIndex;

/// Bytes a disk read asks for at least, so small fetches still read whole runs of batches.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// A segment in memory.
#[derive(Debug)]
pub struct Segment {
    pub index: SegmentIndex,
    /// The open log file; `None` until the first group commit creates it.
    pub file: Option<Rc<DmaFile>>,
    pub log_path: PathBuf,
    /// Appended bytes not yet handed to a group commit; `None` once the segment is sealed.
    pub writer: Option<LogWriter>,
    /// Bytes of the log known to be durable (or written, with fsync off).
    pub durable_len: u64,
    /// Where `segment.ms` counts the segment's age from: its first batch's timestamp, or its
    /// creation time when that batch has none (Kafka's `rollingBasedTimestamp`).
    pub roll_base_ms: i64,
    /// Wall-clock time of the last append (or the file's modification time after a restart).
    pub last_modified_ms: i64,
    /// True once rolled: no more appends; its index files are written by the next commit.
    pub rolled: bool,
    /// True once its index files are written and its log cut to its exact length.
    pub sealed: bool,
    /// True when the segment's file must exist even while the segment is empty: a segment
    /// rolled into after retention emptied the log carries the log's next offset in its name.
    pub file_required: bool,
    /// The first batch's timestamp, when this process saw it (not after a restart): where
    /// `max.compaction.lag.ms` counts from.
    pub first_timestamp_ms: Option<i64>,
}

impl Segment {
    /// A new, empty segment whose file the next group commit creates.
    pub fn create(
        dir: &Path,
        base_offset: Offset,
        interval_bytes: u32,
        buffer_bytes: usize,
        now_ms: i64,
    ) -> Segment {
        Segment {
            index: SegmentIndex::new(base_offset, interval_bytes),
            file: None,
            log_path: segment_path(dir, base_offset, "log"),
            writer: Some(LogWriter::new(0, Vec::new(), buffer_bytes)),
            durable_len: 0,
            roll_base_ms: now_ms,
            last_modified_ms: now_ms,
            rolled: false,
            sealed: false,
            file_required: false,
            first_timestamp_ms: None,
        }
    }

    /// A sealed segment whose durable file and index are complete (recovered, or cleaned).
    pub fn sealed(
        index: SegmentIndex,
        file: Rc<DmaFile>,
        log_path: PathBuf,
        modified_ms: i64,
    ) -> Segment {
        let durable_len = u64::from(index.log_len());
        Segment {
            index,
            file: Some(file),
            log_path,
            writer: None,
            durable_len,
            roll_base_ms: modified_ms,
            last_modified_ms: modified_ms,
            rolled: true,
            sealed: true,
            file_required: false,
            first_timestamp_ms: None,
        }
    }

    pub fn base_offset(&self) -> Offset {
        self.index.base_offset()
    }

    /// Appends one batch, in pieces, whose offsets the partition assigned.
    pub fn append(&mut self, header: &BatchHeader, parts: &[&[u8]], now_ms: i64) {
        let writer = self
            .writer
            .as_mut()
            .expect("appends go to the active segment, which has a writer");
        assert_eq!(
            writer.log_len(),
            u64::from(self.index.log_len()),
            "writer and index agree on the log length"
        );
        writer.append_parts(parts);
        if self.index.is_empty() && header.max_timestamp >= 0 {
            self.roll_base_ms = header.max_timestamp;
            self.first_timestamp_ms = Some(header.max_timestamp);
        }
        let len = parts.iter().map(|part| part.len()).sum::<usize>();
        let len = u32::try_from(len).expect("batches are below 4 GiB");
        self.index.observe(header, len);
        self.last_modified_ms = now_ms;
    }

    /// The path of the segment's index file of `kind`.
    pub fn index_path(&self, kind: IndexKind) -> PathBuf {
        self.log_path.with_extension(kind.extension())
    }
}

/// `<dir>/<base offset, 20 digits>.<extension>`, as Kafka names segment files.
pub fn segment_path(dir: &Path, base_offset: Offset, extension: &str) -> PathBuf {
    dir.join(format!("{:020}.{extension}", base_offset.value()))
}

/// The base offset in a segment file name, or `None` when the name is not one.
pub fn parse_segment_name(name: &str) -> Option<(Offset, &str)> {
    let (stem, extension) = name.split_once('.')?;
    let valid = stem.len() == 20 && stem.bytes().all(|byte| byte.is_ascii_digit());
    valid
        .then(|| stem.parse().ok().and_then(Offset::new))
        .flatten()
        .map(|offset| (offset, extension))
}

/// Why bytes could not be read back from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentReadError {
    Corrupt { position: u64, reason: String },
    Io { detail: String },
}

/// A walk over the batches of a segment file between two positions, reading the file in
/// windows and checking every batch (length, magic, CRC) before handing it out.
pub struct SegmentCursor {
    file: Rc<DmaFile>,
    position: u64,
    end: u64,
    window_start: u64,
    window: Option<ReadResult>,
    chunk_bytes: usize,
}

impl SegmentCursor {
    /// A cursor at batch position `start`, stopping at `end` (the durable length).
    pub fn new(file: Rc<DmaFile>, start: u64, end: u64, chunk_bytes: usize) -> SegmentCursor {
        SegmentCursor {
            file,
            position: start,
            end,
            window_start: start,
            window: None,
            chunk_bytes,
        }
    }

    /// The next batch: its header, and where its bytes are in [`SegmentCursor::window`].
    pub async fn next(&mut self) -> Result<Option<(BatchHeader, Range<usize>)>, SegmentReadError> {
        loop {
            if self.position >= self.end {
                return Ok(None);
            }
            let skip = to_usize(self.position - self.window_start);
            let limit = to_usize(self.end - self.window_start);
            let window = self.window.as_deref().unwrap_or_default();
            let available = window
                .get(skip..limit.min(window.len()))
                .unwrap_or_default();
            let reaches_end = self.window_start + to_u64(window.len()) >= self.end;
            let needed = match scan_next(available, reaches_end) {
                ScanStep::Batch { header, len } => {
                    self.position += to_u64(len);
                    return Ok(Some((header, skip..skip + len)));
                }
                ScanStep::Incomplete { needed } => needed,
                ScanStep::End => BATCH_HEADER_LEN,
                ScanStep::Zeros => return Err(self.corrupt("zeros inside durable log".into())),
                ScanStep::Invalid(error) => return Err(self.corrupt(error.to_string())),
            };
            if self.position + to_u64(needed) > self.end {
                return Err(self.corrupt(format!(
                    "batch needs {needed} bytes, past the durable end {}",
                    self.end
                )));
            }
            self.read_window(needed).await?;
        }
    }

    /// The bytes read so far around the cursor.
    pub fn window(&self) -> &[u8] {
        self.window.as_deref().unwrap_or_default()
    }

    async fn read_window(&mut self, needed: usize) -> Result<(), SegmentReadError> {
        let len = needed
            .max(self.chunk_bytes)
            .min(to_usize(self.end - self.position));
        let window = self
            .file
            .read_at(self.position, len)
            .await
            .map_err(|error| SegmentReadError::Io {
                detail: format!("reading {len} bytes at {}: {error}", self.position),
            })?;
        if window.len() < needed {
            let detail = format!(
                "short read at {}: {} of {needed} bytes",
                self.position,
                window.len()
            );
            return Err(SegmentReadError::Io { detail });
        }
        self.window_start = self.position;
        self.window = Some(window);
        Ok(())
    }

    fn corrupt(&self, reason: String) -> SegmentReadError {
        SegmentReadError::Corrupt {
            position: self.position,
            reason,
        }
    }
}

impl std::fmt::Debug for SegmentCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCursor")
            .field("position", &self.position)
            .field("end", &self.end)
            .finish()
    }
}

/// Reads whole batches from the one holding `from`, up to `bytes_max` (the first batch is
/// returned whatever its size, as Kafka's fetch does since KIP-74).
pub async fn read_batches(
    mut cursor: SegmentCursor,
    from: Offset,
    end: Offset,
    bytes_max: usize,
) -> Result<Vec<u8>, SegmentReadError> {
    let mut out = Vec::new();
    while let Some((header, range)) = cursor.next().await? {
        if header.last_offset() < from.value() {
            continue;
        }
        if header.last_offset() >= end.value() {
            break; // at or past the limit (a batch straddling it is not readable yet)
        }
        if !out.is_empty() && out.len() + range.len() > bytes_max {
            break;
        }
        out.extend_from_slice(&cursor.window()[range]);
    }
    Ok(out)
}

/// A consumer's read: as [`read_batches`] from `first`, leaving out batches that hold no
/// records (the cleaner's), and going on into the `following` segments while nothing was
/// found. When only such batches lie before `end`, the last of them is returned alone, so
/// the consumer moves past them all (Kafka sends them too).
pub async fn read_records(
    first: (SegmentCursor, PathBuf),
    following: Vec<(SegmentCursor, PathBuf)>,
    from: Offset,
    end: Offset,
    bytes_max: usize,
) -> Result<Vec<u8>, (PathBuf, SegmentReadError)> {
    let mut out = Vec::new();
    let mut last_empty: Option<Vec<u8>> = None;
    let cursors = std::iter::once(first).chain(following);
    for (mut cursor, path) in cursors {
        loop {
            let next = cursor.next().await.map_err(|error| (path.clone(), error))?;
            let Some((header, range)) = next else { break };
            if header.last_offset() < from.value() {
                continue;
            }
            if header.last_offset() >= end.value() {
                return Ok(finish_read(out, last_empty));
            }
            if header.record_count == 0 {
                if out.is_empty() {
                    last_empty = Some(cursor.window()[range].to_vec());
                }
                continue;
            }
            if !out.is_empty() && out.len() + range.len() > bytes_max {
                return Ok(out);
            }
            out.extend_from_slice(&cursor.window()[range]);
        }
        if !out.is_empty() {
            break;
        }
    }
    Ok(finish_read(out, last_empty))
}

fn finish_read(out: Vec<u8>, last_empty: Option<Vec<u8>>) -> Vec<u8> {
    match last_empty {
        Some(empty) if out.is_empty() => empty,
        _ => out,
    }
}

/// The first record at or after `target_ms` between the cursor and its end, if any.
pub async fn find_by_timestamp(
    mut cursor: SegmentCursor,
    target_ms: i64,
) -> Result<Option<RecordAtTime>, SegmentReadError> {
    while let Some((header, range)) = cursor.next().await? {
        if header.max_timestamp >= target_ms && header.record_count > 0 {
            return Ok(Some(first_record_at_or_after(
                &cursor.window()[range],
                &header,
                target_ms,
            )));
        }
    }
    Ok(None)
}

fn to_usize(len: u64) -> usize {
    usize::try_from(len).expect("segment positions fit in usize")
}

fn to_u64(len: usize) -> u64 {
    u64::try_from(len).expect("usize fits in u64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_follow_kafka() {
        let dir = Path::new("/data/t-0");
        let path = segment_path(dir, Offset::new(42).unwrap(), "log");
        assert_eq!(path, Path::new("/data/t-0/00000000000000000042.log"));
        assert_eq!(
            parse_segment_name("00000000000000000042.log"),
            Some((Offset::new(42).unwrap(), "log"))
        );
        assert_eq!(
            parse_segment_name("00000000000000000042.timeindex").map(|(_, ext)| ext),
            Some("timeindex")
        );
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_name("notes"), None);
    }
}
