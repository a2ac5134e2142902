//! The file framing shared by `.index` and `.timeindex` files.
//!
//! An index file is written whole when its segment is sealed (rolled) and when the broker
//! shuts down cleanly. Its header repeats the segment's summary (log length, next offset,
//! max timestamp) so a sealed segment opens without reading its log, and a crc32c over
//! header and entries tells a damaged file from a good one. A file whose `log_len` differs
//! from the log's size on disk is stale and is rebuilt. Layout in `docs/format.md`.

/// Bytes before the first entry.
pub const INDEX_HEADER_LEN: usize = 40;
const VERSION: u16 = 1;
const CRC_AT: usize = 32;

/// Which of the two index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    Offset,
    Time,
}

impl IndexKind {
    fn magic(self) -> [u8; 4] {
        match self {
            IndexKind::Offset => *b"SOFX",
            IndexKind::Time => *b"STMX",
        }
    }

    fn entry_len(self) -> usize {
        match self {
            IndexKind::Offset => crate::offset_index::OFFSET_ENTRY_LEN,
            IndexKind::Time => crate::time_index::TIME_ENTRY_LEN,
        }
    }

    /// The file name extension, as Kafka names its index files.
    pub fn extension(self) -> &'static str {
        match self {
            IndexKind::Offset => "index",
            IndexKind::Time => "timeindex",
        }
    }
}

/// What an index file says about its segment's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Bytes of log the index describes.
    pub log_len: u32,
    /// The offset after the segment's last record.
    pub next_offset: i64,
    /// The largest batch timestamp in the segment, -1 when it is empty.
    pub max_timestamp_ms: i64,
}

/// Why an index file could not be used. Each is answered by rebuilding the index.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexFileError {
    #[error("index file is {len} bytes, shorter than its 40-byte header")]
    TooShort { len: usize },
    #[error("index file magic is {found:?}, expected {expected:?}")]
    BadMagic { found: [u8; 4], expected: [u8; 4] },
    #[error("index file version {version} is not supported (expected 1)")]
    UnsupportedVersion { version: u16 },
    #[error("index file entries are {found} bytes each, expected {expected}")]
    EntryLenMismatch { found: u16, expected: usize },
    #[error("index file holds {actual} entry bytes but its header claims {claimed}")]
    Truncated { claimed: u64, actual: usize },
    #[error("index file crc32c is {stored:#010x} but its bytes hash to {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// Frames `entries` (already encoded) with a header for `summary`.
pub fn encode(kind: IndexKind, summary: SegmentSummary, entries: &[u8]) -> Vec<u8> {
    assert!(
        entries.len().is_multiple_of(kind.entry_len()),
        "entry bytes must be whole entries"
    );
    let count = u32::try_from(entries.len() / kind.entry_len()).expect("entry count fits in u32");
    let entry_len = u16::try_from(kind.entry_len()).expect("entry length fits in u16");
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len());
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&entry_len.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&summary.log_len.to_be_bytes());
    out.extend_from_slice(&summary.next_offset.to_be_bytes());
    out.extend_from_slice(&summary.max_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // crc and reserved
    out.extend_from_slice(entries);
    let crc = checksum(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Checks an index file's framing and returns its summary and its entry bytes. Bytes past
/// the last entry (O_DIRECT padding) are ignored.
pub fn decode(kind: IndexKind, bytes: &[u8]) -> Result<(SegmentSummary, &[u8]), IndexFileError> {
    let Some(header) = bytes.get(..INDEX_HEADER_LEN) else {
        return Err(IndexFileError::TooShort { len: bytes.len() });
    };
    let magic: [u8; 4] = header[..4].try_into().expect("4 bytes");
    if magic != kind.magic() {
        return Err(IndexFileError::BadMagic {
            found: magic,
            expected: kind.magic(),
        });
    }
    let version = u16::from_be_bytes(header[4..6].try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(IndexFileError::UnsupportedVersion { version });
    }
    let entry_len = u16::from_be_bytes(header[6..8].try_into().expect("2 bytes"));
    if usize::from(entry_len) != kind.entry_len() {
        return Err(IndexFileError::EntryLenMismatch {
            found: entry_len,
            expected: kind.entry_len(),
        });
    }
    let count = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    let claimed = u64::from(count) * u64::from(entry_len);
    let available = bytes.len() - INDEX_HEADER_LEN;
    let entries_len = usize::try_from(claimed)
        .ok()
        .filter(|len| *len <= available);
    let Some(entries_len) = entries_len else {
        return Err(IndexFileError::Truncated {
            claimed,
            actual: available,
        });
    };
    let framed = &bytes[..INDEX_HEADER_LEN + entries_len];
    let stored = u32::from_be_bytes(header[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    let computed = checksum(framed);
    if stored != computed {
        return Err(IndexFileError::CrcMismatch { stored, computed });
    }
    let summary = SegmentSummary {
        log_len: u32::from_be_bytes(header[12..16].try_into().expect("4 bytes")),
        next_offset: i64::from_be_bytes(header[16..24].try_into().expect("8 bytes")),
        max_timestamp_ms: i64::from_be_bytes(header[24..32].try_into().expect("8 bytes")),
    };
    Ok((summary, &framed[INDEX_HEADER_LEN..]))
}

/// crc32c of the framed file with its crc field read as zero.
fn checksum(framed: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&framed[..CRC_AT]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &framed[CRC_AT + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: SegmentSummary = SegmentSummary {
        log_len: 8192,
        next_offset: 77,
        max_timestamp_ms: 1234,
    };

    fn check(mutate: impl FnOnce(&mut Vec<u8>), expected: impl Fn(&IndexFileError) -> bool) {
        let mut bytes = encode(IndexKind::Offset, SUMMARY, &[0, 0, 0, 5, 0, 0, 16, 0]);
        mutate(&mut bytes);
        let error = decode(IndexKind::Offset, &bytes).expect_err("damaged index accepted");
        assert!(expected(&error), "unexpected error: {error}");
    }

    #[test]
    fn a_framed_index_decodes_with_its_padding() {
        let entries = [0, 0, 0, 5, 0, 0, 16, 0];
        let mut bytes = encode(IndexKind::Offset, SUMMARY, &entries);
        bytes.resize(4096, 0);
        assert_eq!(
            decode(IndexKind::Offset, &bytes),
            Ok((SUMMARY, &entries[..]))
        );
    }

    #[test]
    fn damage_is_detected() {
        check(
            |b| b.truncate(20),
            |e| matches!(e, IndexFileError::TooShort { len: 20 }),
        );
        check(
            |b| b[0] = b'X',
            |e| matches!(e, IndexFileError::BadMagic { .. }),
        );
        check(
            |b| b[5] = 9,
            |e| matches!(e, IndexFileError::UnsupportedVersion { version: 9 }),
        );
        check(
            |b| b[7] = 12,
            |e| matches!(e, IndexFileError::EntryLenMismatch { found: 12, .. }),
        );
        check(
            |b| b.truncate(44),
            |e| {
                matches!(
                    e,
                    IndexFileError::Truncated {
                        claimed: 8,
                        actual: 4
                    }
                )
            },
        );
        check(
            |b| b[42] ^= 1,
            |e| matches!(e, IndexFileError::CrcMismatch { .. }),
        );
        check(
            |b| b[13] ^= 1,
            |e| matches!(e, IndexFileError::CrcMismatch { .. }),
        );
    }

    #[test]
    fn the_kinds_are_not_interchangeable() {
        let bytes = encode(IndexKind::Time, SUMMARY, &[]);
        assert!(matches!(
            decode(IndexKind::Offset, &bytes),
            Err(IndexFileError::BadMagic { .. })
        ));
    }
}
