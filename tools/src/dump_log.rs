//! `strand dump-log PATH…`: prints what a segment's files hold, like Kafka's
//! `kafka-dump-log.sh`: each batch of a `.log` with its offsets, timestamps, size and
//! whether its CRC holds, or the entries of an `.index` or `.timeindex`.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use strand_engine::BatchError;
use strand_engine::batch::{BATCH_HEADER_LEN, BatchHeader, Compression, check_stored_batch};
use strand_engine::index_file::{self, IndexKind};
use strand_engine::offset_index::OffsetIndex;
use strand_engine::segment::parse_segment_name;
use strand_engine::time_index::TimeIndex;

/// What the dump found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpSummary {
    pub batches: u64,
    pub invalid: u64,
    /// Bytes after the last batch that are not zero padding.
    pub garbage_bytes: u64,
}

impl DumpSummary {
    pub fn is_clean(&self) -> bool {
        self.invalid == 0 && self.garbage_bytes == 0
    }
}

/// Dumps one file to `out`, choosing the format from its extension.
pub fn dump(path: &Path, out: &mut impl Write) -> anyhow::Result<DumpSummary> {
    writeln!(out, "Dumping {}", path.display())?;
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("log") => dump_log(path, out),
        Some("index") => dump_index(path, IndexKind::Offset, out),
        Some("timeindex") => dump_index(path, IndexKind::Time, out),
        _ => bail!(
            "{} is not a segment file (expected .log, .index or .timeindex)",
            path.display()
        ),
    }
}

fn dump_log(path: &Path, out: &mut impl Write) -> anyhow::Result<DumpSummary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    if let Some((base, _)) = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_segment_name)
    {
        writeln!(out, "Log starting offset: {base}")?;
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut summary = DumpSummary::default();
    let mut position: u64 = 0;
    let mut header = [0u8; BATCH_HEADER_LEN];
    while position < len {
        let available =
            usize::try_from((len - position).min(BATCH_HEADER_LEN as u64)).expect("at most 61");
        reader.read_exact(&mut header[..available])?;
        let parsed = if available == BATCH_HEADER_LEN {
            BatchHeader::parse(&header)
        } else {
            Err(BatchError::TooShort { len: available })
        };
        let parsed = match parsed {
            Ok(parsed) if position + parsed.total_len() as u64 <= len => parsed,
            outcome => {
                let rest = &header[..available];
                return finish_tail(reader, rest, position, len, outcome.err(), summary, out);
            }
        };
        let mut bytes = header.to_vec();
        bytes.resize(parsed.total_len(), 0);
        reader.read_exact(&mut bytes[BATCH_HEADER_LEN..])?;
        let valid = check_stored_batch(&bytes);
        summary.batches += 1;
        summary.invalid += u64::from(valid.is_err());
        write_batch(
            out,
            &parsed,
            position,
            valid.err().map(|error| error.to_string()),
        )?;
        position += parsed.total_len() as u64;
    }
    write_summary(out, &summary)?;
    Ok(summary)
}

/// Reports what follows the last batch: zero padding (normal after a crash or before a
/// clean shutdown trims it) or bytes that are not a batch.
fn finish_tail(
    mut reader: impl Read,
    first: &[u8],
    position: u64,
    len: u64,
    error: Option<BatchError>,
    mut summary: DumpSummary,
    out: &mut impl Write,
) -> anyhow::Result<DumpSummary> {
    let mut rest = first.to_vec();
    reader.read_to_end(&mut rest)?;
    let tail = len - position;
    if rest.iter().all(|byte| *byte == 0) {
        writeln!(out, "zero padding: {tail} bytes from position {position}")?;
    } else {
        let reason = error.map_or_else(
            || "batch runs past the end of the file".to_string(),
            |error| error.to_string(),
        );
        writeln!(
            out,
            "not a batch at position {position} ({tail} bytes to the end): {reason}"
        )?;
        summary.garbage_bytes = tail;
    }
    write_summary(out, &summary)?;
    Ok(summary)
}

fn write_summary(out: &mut impl Write, summary: &DumpSummary) -> io::Result<()> {
    writeln!(
        out,
        "{} batches, {} invalid",
        summary.batches, summary.invalid
    )
}

fn write_batch(
    out: &mut impl Write,
    header: &BatchHeader,
    position: u64,
    invalid: Option<String>,
) -> io::Result<()> {
    let last_sequence = if header.base_sequence < 0 {
        -1
    } else {
        header.base_sequence + header.last_offset_delta
    };
    let codec = match header.compression() {
        Ok(Compression::None) => "none",
        Ok(Compression::Gzip) => "gzip",
        Ok(Compression::Snappy) => "snappy",
        Ok(Compression::Lz4) => "lz4",
        Ok(Compression::Zstd) => "zstd",
        Err(_) => "unknown",
    };
    let time_type = if header.is_log_append_time() {
        "LogAppendTime"
    } else {
        "CreateTime"
    };
    writeln!(
        out,
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {last_sequence} producerId: {} \
         producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} isControl: {} position: {position} \
         baseTimestamp: {} {time_type}: {} size: {} magic: {} compresscodec: {codec} crc: {} isvalid: {}{}",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.base_sequence,
        header.producer_id,
        header.producer_epoch,
        header.partition_leader_epoch,
        header.is_transactional(),
        header.is_control(),
        header.base_timestamp,
        header.max_timestamp,
        header.total_len(),
        header.magic,
        header.crc,
        invalid.is_none(),
        invalid
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default(),
    )
}

fn dump_index(path: &Path, kind: IndexKind, out: &mut impl Write) -> anyhow::Result<DumpSummary> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (summary, entries) = match index_file::decode(kind, &bytes) {
        Ok(decoded) => decoded,
        Err(error) => {
            writeln!(
                out,
                "damaged index (the broker rebuilds it on start): {error}"
            )?;
            return Ok(DumpSummary {
                invalid: 1,
                ..DumpSummary::default()
            });
        }
    };
    let base = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_segment_name)
        .map_or(0, |(base, _)| base.value());
    writeln!(
        out,
        "Segment log length: {} next offset: {} max timestamp: {}",
        summary.log_len, summary.next_offset, summary.max_timestamp_ms
    )?;
    let count = match kind {
        IndexKind::Offset => {
            let entries = OffsetIndex::decode_entries(entries);
            for entry in &entries {
                writeln!(
                    out,
                    "offset: {} position: {}",
                    base + i64::from(entry.relative_offset),
                    entry.position
                )?;
            }
            entries.len()
        }
        IndexKind::Time => {
            let entries = TimeIndex::decode_entries(entries);
            for entry in &entries {
                let offset = base + i64::from(entry.relative_offset);
                writeln!(
                    out,
                    "timestamp before: {} offset: {offset}",
                    entry.max_timestamp_before_ms
                )?;
            }
            entries.len()
        }
    };
    writeln!(out, "{count} entries")?;
    Ok(DumpSummary::default())
}
