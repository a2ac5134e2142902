//! Kafka RecordBatch v2, read and checked without decoding its records.
//!
//! A batch is stored exactly as the client sent it. The broker only writes the two fields
//! the CRC does not cover: the base offset and the partition leader epoch (KIP-98 moved the
//! CRC to cover the bytes from `attributes` to the end for this reason).
//!
//! Layout (big-endian), 61 header bytes then the records:
//! ```text
//!  0 base_offset i64      | 12 partition_leader_epoch i32 | 16 magic i8 | 17 crc u32
//!  8 batch_length i32     | 21 attributes i16 | 23 last_offset_delta i32
//! 27 base_timestamp i64   | 35 max_timestamp i64 | 43 producer_id i64
//! 51 producer_epoch i16   | 53 base_sequence i32 | 57 record_count i32 | 61 records…
//! ```

use crate::offset::Offset;
use bytes::Bytes;

/// Bytes in a v2 batch header, before the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes in front of the part that `batch_length` counts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format Strand stores (Kafka 0.11 and later).
pub const MAGIC_V2: i8 = 2;
/// The most records one batch may claim. Uncompressed batches are checked record by record;
/// compressed ones cannot be until they are decompressed, so this caps the offsets a batch
/// can take (a 1 MiB batch of the smallest records holds about 150,000).
pub const RECORDS_PER_BATCH_MAX: i32 = 1 << 20;

const CRC_START: usize = 21;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;

/// The header fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// The compression codec in a batch's attributes (bits 0–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Why a batch was refused. Each variant names the field and the values involved.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the 61-byte record batch header")]
    TooShort { len: usize },
    #[error("batch length field says {declared} bytes follow it but {actual} do")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("batch length field is {declared}, below the header's 49 bytes")]
    LengthTooSmall { declared: i32 },
    #[error("batch of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("batch magic is {magic}; only record batch v2 (magic 2) is accepted")]
    UnsupportedMagic { magic: i8 },
    #[error("batch crc32c is {stored:#010x} but its bytes hash to {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch record count is {count}; it must be at least 1")]
    InvalidRecordCount { count: i32 },
    #[error("batch last offset delta is {last_offset_delta} but it holds {record_count} records")]
    OffsetDeltaMismatch {
        last_offset_delta: i32,
        record_count: i32,
    },
    #[error("batch compression codec is {codec}, which Kafka does not define")]
    UnknownCompression { codec: i16 },
    #[error("batch claims {count} records; at most {max} are accepted")]
    TooManyRecords { count: i32, max: i32 },
    #[error("record {index} of the batch is malformed: {reason}")]
    MalformedRecords { index: u64, reason: &'static str },
}

impl BatchHeader {
    /// Reads the header at the start of `buf` without checking the CRC.
    ///
    /// Checks only what is needed to know the batch's extent: the buffer holds a whole
    /// header, the length field covers at least a header, and the magic is 2.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        // The magic byte sits at the same place in message formats 0 and 1, whose messages
        // can be shorter than a v2 header: name the format rather than the length.
        if let Some(&magic) = buf.get(MAGIC_AT)
            && i8::from_be_bytes([magic]) != MAGIC_V2
        {
            return Err(BatchError::UnsupportedMagic {
                magic: i8::from_be_bytes([magic]),
            });
        }
        let Some(header) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(BatchError::TooShort { len: buf.len() });
        };
        let parsed = BatchHeader {
            base_offset: read_i64(header, 0),
            batch_length: read_i32(header, LENGTH_AT),
            partition_leader_epoch: read_i32(header, LEADER_EPOCH_AT),
            magic: i8::from_be_bytes([header[MAGIC_AT]]),
            crc: u32::from_be_bytes(field(header, CRC_AT)),
            attributes: i16::from_be_bytes(field(header, 21)),
            last_offset_delta: read_i32(header, 23),
            base_timestamp: read_i64(header, 27),
            max_timestamp: read_i64(header, 35),
            producer_id: read_i64(header, 43),
            producer_epoch: i16::from_be_bytes(field(header, 51)),
            base_sequence: read_i32(header, 53),
            record_count: read_i32(header, 57),
        };
        let minimum = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD).expect("49 fits in i32");
        if parsed.batch_length < minimum {
            return Err(BatchError::LengthTooSmall {
                declared: parsed.batch_length,
            });
        }
        if parsed.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic {
                magic: parsed.magic,
            });
        }
        Ok(parsed)
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        let covered = usize::try_from(self.batch_length).expect("length checked non-negative");
        LOG_OVERHEAD + covered
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    /// True when the records carry the broker's append time instead of the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks that `bytes` is exactly one well-formed v2 batch as a producer sends it, and
/// returns its header.
///
/// Checks length, magic, crc32c, record count, last offset delta and the codec, and for
/// uncompressed batches that the records frame exactly and are numbered 0 upwards.
pub fn check_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_envelope(bytes)?;
    if header.record_count < 1 {
        return Err(BatchError::InvalidRecordCount {
            count: header.record_count,
        });
    }
    if i64::from(header.last_offset_delta) != i64::from(header.record_count) - 1 {
        return Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    check_records(bytes, &header, Numbering::Consecutive)?;
    Ok(header)
}

/// Checks that `bytes` is exactly one well-formed v2 batch as a log may hold it, and
/// returns its header: as [`check_batch`], except that the log cleaner may have removed
/// records, so a batch may hold fewer records than the offsets it spans (their offset
/// deltas only increase, within the span), or none at all (a batch kept for its producer's
/// state, or one standing for a run of removed batches, as Kafka's cleaner leaves them).
/// Disk reads, recovery and replication check batches with this.
pub fn check_stored_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_envelope(bytes)?;
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::InvalidRecordCount {
            count: header.record_count,
        });
    }
    if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    check_records(bytes, &header, Numbering::Increasing)?;
    Ok(header)
}

/// How the offset deltas of a batch's records must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbering {
    /// 0, 1, 2… (as a producer numbers them).
    Consecutive,
    /// Strictly increasing within the batch's span (after compaction).
    Increasing,
}

/// Length, magic and CRC.
fn check_envelope(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.total_len() != bytes.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.batch_length),
            actual: bytes.len() - LOG_OVERHEAD,
        });
    }
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// The record count bound, the codec, and for uncompressed batches the records' framing.
fn check_records(
    bytes: &[u8],
    header: &BatchHeader,
    numbering: Numbering,
) -> Result<(), BatchError> {
    if header.record_count > RECORDS_PER_BATCH_MAX {
        return Err(BatchError::TooManyRecords {
            count: header.record_count,
            max: RECORDS_PER_BATCH_MAX,
        });
    }
    if header.compression()? == Compression::None {
        crate::record_frames::check_framing(bytes, header, numbering).map_err(|error| {
            BatchError::MalformedRecords {
                index: error.index,
                reason: error.reason,
            }
        })?;
    }
    Ok(())
}

/// Writes a batch's CRC over its bytes from the attributes on (after a field it covers
/// changed).
pub fn seal_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    bytes[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// The bytes of a batch the log rewrites: base offset, length and leader epoch.
const PREFIX_LEN: usize = MAGIC_AT;

/// One record batch that passed [`check_batch`]: the only form in which bytes from a
/// client reach a partition log.
///
/// The bytes stay where they arrived (a slice of the request frame, shared, never copied);
/// the fields the log assigns live in a small prefix that supersedes the frame's first
/// [`PREFIX_LEN`] bytes. The batch is copied once, into the segment's DMA buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    prefix: [u8; PREFIX_LEN],
    bytes: Bytes,
    header: BatchHeader,
    /// Bytes of memory `bytes` keeps alive: the whole request frame when it is a slice of
    /// one (see [`ValidatedBatch::holding`]).
    held_len: usize,
}

impl ValidatedBatch {
    /// Validates `bytes` as one batch from a producer, of at most `len_max` bytes.
    pub fn new(bytes: impl Into<Bytes>, len_max: usize) -> Result<ValidatedBatch, BatchError> {
        ValidatedBatch::checked(bytes.into(), len_max, check_batch)
    }

    /// Validates `bytes` as one batch a log holds (read back, or replicated from another
    /// node's log), which compaction may have thinned: see [`check_stored_batch`].
    pub fn stored(bytes: impl Into<Bytes>, len_max: usize) -> Result<ValidatedBatch, BatchError> {
        ValidatedBatch::checked(bytes.into(), len_max, check_stored_batch)
    }

    fn checked(
        bytes: Bytes,
        len_max: usize,
        check: fn(&[u8]) -> Result<BatchHeader, BatchError>,
    ) -> Result<ValidatedBatch, BatchError> {
        if bytes.len() > len_max {
            return Err(BatchError::TooLarge {
                len: bytes.len(),
                max: len_max,
            });
        }
        let header = check(&bytes)?;
        let prefix = field(&bytes, 0);
        let held_len = bytes.len();
        Ok(ValidatedBatch {
            prefix,
            bytes,
            header,
            held_len,
        })
    }

    /// Records that the batch's bytes are a slice of a buffer of `held_len` bytes, all of
    /// which stays in memory as long as the batch does (for the batch cache's bound).
    #[must_use]
    pub fn holding(mut self, held_len: usize) -> ValidatedBatch {
        self.held_len = self.held_len.max(held_len);
        self
    }

    /// Bytes of memory the batch keeps alive: at least its own length.
    pub fn held_len(&self) -> usize {
        self.held_len
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch as stored, in two pieces: the log-owned prefix, then the rest.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.prefix, &self.bytes[PREFIX_LEN..]]
    }

    /// The same two pieces as shared buffers (the prefix is copied; the rest is not).
    pub fn into_parts(self) -> [Bytes; 2] {
        [
            Bytes::copy_from_slice(&self.prefix),
            self.bytes.slice(PREFIX_LEN..),
        ]
    }

    /// The batch as stored, in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for part in self.parts() {
            out.extend_from_slice(part);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Records in the batch (fewer than the offsets it spans after compaction).
    pub fn record_count(&self) -> u64 {
        u64::try_from(self.header.record_count).expect("record count checked non-negative")
    }

    /// Offsets the batch spans: its last offset delta plus one.
    pub fn offset_span(&self) -> u64 {
        u64::try_from(self.header.last_offset_delta).expect("offset delta checked non-negative") + 1
    }

    /// The batch's base offset (meaningful once the log has assigned it).
    pub fn base_offset(&self) -> Offset {
        Offset::new(self.header.base_offset).unwrap_or(Offset::ZERO)
    }

    /// The last offset the batch spans (meaningful once the log has assigned offsets).
    pub fn last_offset(&self) -> Offset {
        self.base_offset().plus(self.offset_span() - 1)
    }

    /// Writes the broker-owned fields: the base offset the log assigns and the leader epoch
    /// of the writer. Neither is covered by the CRC, so the batch stays valid.
    pub fn assign(&mut self, base_offset: Offset, leader_epoch: i32) {
        self.prefix[..LENGTH_AT].copy_from_slice(&base_offset.value().to_be_bytes());
        self.prefix[LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&leader_epoch.to_be_bytes());
        self.header.base_offset = base_offset.value();
        self.header.partition_leader_epoch = leader_epoch;
    }
}

fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf[at..at + N].try_into().expect("slice length equals N")
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(field(buf, at))
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(field(buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_builder::BatchBuilder;

    fn sample() -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_700_000_000_000);
        builder.record(Some(b"k1"), Some(b"v1"), &[]);
        builder.record(None, Some(b"v2"), &[("h", b"x")]);
        builder.build()
    }

    /// Mutates a valid batch and expects the named error.
    fn check(mutate: impl FnOnce(&mut Vec<u8>), expected: impl Fn(&BatchError) -> bool) {
        let mut bytes = sample();
        mutate(&mut bytes);
        let error = ValidatedBatch::new(bytes, 1 << 20).expect_err("mutated batch accepted");
        assert!(expected(&error), "unexpected error: {error}");
    }

    #[test]
    fn a_built_batch_is_valid() {
        let batch = ValidatedBatch::new(sample(), 1 << 20).unwrap();
        assert_eq!(batch.record_count(), 2);
        assert_eq!(batch.header().last_offset_delta, 1);
        assert_eq!(batch.header().compression(), Ok(Compression::None));
    }

    #[test]
    fn each_damage_gets_its_own_error() {
        check(
            |b| b.truncate(40),
            |e| matches!(e, BatchError::TooShort { len: 40 }),
        );
        check(
            |b| b.push(0),
            |e| matches!(e, BatchError::LengthMismatch { .. }),
        );
        check(
            |b| b[16] = 1,
            |e| matches!(e, BatchError::UnsupportedMagic { magic: 1 }),
        );
        check(
            |b| b[70] ^= 0xff,
            |e| matches!(e, BatchError::CrcMismatch { .. }),
        );
        check(
            |b| b[8..12].copy_from_slice(&10i32.to_be_bytes()),
            |e| matches!(e, BatchError::LengthTooSmall { declared: 10 }),
        );
    }

    #[test]
    fn record_count_and_offset_delta_must_agree() {
        let recrc = |b: &mut Vec<u8>| {
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
        };
        check(
            |b| {
                b[57..61].copy_from_slice(&3i32.to_be_bytes());
                recrc(b);
            },
            |e| {
                matches!(
                    e,
                    BatchError::OffsetDeltaMismatch {
                        last_offset_delta: 1,
                        ..
                    }
                )
            },
        );
        check(
            |b| {
                b[57..61].copy_from_slice(&0i32.to_be_bytes());
                recrc(b);
            },
            |e| matches!(e, BatchError::InvalidRecordCount { count: 0 }),
        );
        check(
            |b| {
                b[22] |= 0x07;
                recrc(b);
            },
            |e| matches!(e, BatchError::UnknownCompression { codec: 7 }),
        );
        // A header that claims more records than the batch holds, consistently.
        check(
            |b| {
                b[23..27].copy_from_slice(&2i32.to_be_bytes());
                b[57..61].copy_from_slice(&3i32.to_be_bytes());
                recrc(b);
            },
            |e| matches!(e, BatchError::MalformedRecords { index: 2, .. }),
        );
        check(
            |b| {
                b[23..27].copy_from_slice(&RECORDS_PER_BATCH_MAX.to_be_bytes());
                b[57..61].copy_from_slice(&(RECORDS_PER_BATCH_MAX + 1).to_be_bytes());
                recrc(b);
            },
            |e| matches!(e, BatchError::TooManyRecords { .. }),
        );
    }

    #[test]
    fn oversized_batches_are_refused_before_hashing() {
        let bytes = sample();
        let len = bytes.len();
        let error = ValidatedBatch::new(bytes, len - 1).unwrap_err();
        assert_eq!(error, BatchError::TooLarge { len, max: len - 1 });
    }

    #[test]
    fn a_batch_keeps_the_frames_memory_and_never_writes_to_it() {
        let mut frame = vec![0xAB; 7];
        frame.extend_from_slice(&sample());
        let frame = Bytes::from(frame);
        let records = frame.slice(7..);
        let mut batch = ValidatedBatch::new(records.clone(), 1 << 20).unwrap();
        batch.assign(Offset::new(99).unwrap(), 3);
        let [_, rest] = batch.parts();
        assert_eq!(rest.as_ptr(), records[PREFIX_LEN..].as_ptr(), "no copy");
        assert_eq!(&frame[7..], &sample()[..], "the frame is unchanged");
        let [prefix, rest] = batch.clone().into_parts();
        assert_eq!([prefix, rest].concat(), batch.to_vec());
        assert_eq!(check_batch(&batch.to_vec()).unwrap().base_offset, 99);
        assert_eq!(batch.held_len(), batch.len());
        assert_eq!(batch.clone().holding(frame.len()).held_len(), frame.len());
        assert_eq!(
            batch.holding(1).held_len(),
            sample().len(),
            "never below its length"
        );
    }

    #[test]
    fn assigning_offsets_keeps_the_crc_valid() {
        let mut batch = ValidatedBatch::new(sample(), 1 << 20).unwrap();
        batch.assign(Offset::new(1234).unwrap(), 7);
        let header = check_batch(&batch.to_vec()).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(batch.last_offset(), Offset::new(1235).unwrap());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn valid_batch() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec((any::<bool>(), 0usize..200, -5i64..5), 1..6).prop_map(
                |records| {
                    let mut builder = BatchBuilder::new(1_000);
                    for (keyed, value_len, delta) in records {
                        let key = keyed.then_some(&b"key"[..]);
                        builder.record_at(1_000 + delta, key, Some(&vec![3; value_len]), &[]);
                    }
                    builder.build()
                },
            )
        }

        /// Bytes the broker owns and the CRC does not cover: base offset, leader epoch.
        fn broker_owned(at: usize) -> bool {
            at < 8 || (12..16).contains(&at)
        }

        proptest! {
            /// A mutated valid batch is either rejected or differs only in broker-owned bytes.
            #[test]
            fn mutated_batches_are_rejected_or_unchanged(
                bytes in valid_batch(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            ) {
                let mut mutated = bytes.clone();
                for (at, mask) in &flips {
                    mutated[at.index(bytes.len())] ^= mask;
                }
                if ValidatedBatch::new(mutated.clone(), 1 << 20).is_ok() {
                    let changed: Vec<usize> = (0..bytes.len()).filter(|at| bytes[*at] != mutated[*at]).collect();
                    prop_assert!(changed.iter().all(|at| broker_owned(*at)), "accepted changes at {:?}", changed);
                }
            }

            /// Cutting a batch anywhere, or extending it, is always rejected.
            #[test]
            fn resized_batches_are_rejected(bytes in valid_batch(), cut in any::<prop::sample::Index>(), extra in 1usize..10) {
                let cut = cut.index(bytes.len());
                prop_assert!(ValidatedBatch::new(bytes[..cut].to_vec(), 1 << 20).is_err());
                let mut longer = bytes.clone();
                longer.extend(std::iter::repeat_n(0, extra));
                prop_assert!(ValidatedBatch::new(longer, 1 << 20).is_err());
            }
        }
    }
}
