//! Walking a segment's bytes batch by batch, checking each one, without I/O.
//!
//! Recovery, index rebuilds, disk reads and `strand dump-log` all walk logs the same way:
//! [`scan_next`] classifies the bytes at a position, and [`SegmentScan`] drives it over a
//! whole segment, asking its caller for more bytes as it goes and growing the segment's
//! index. Where a scan stops is the end of the segment's longest valid prefix.

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, LOG_OVERHEAD, check_stored_batch};
use crate::offset::Offset;
use crate::segment_index::SegmentIndex;

/// What the bytes at the front of a buffer hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStep {
    /// A whole, valid batch of `len` bytes.
    Batch { header: BatchHeader, len: usize },
    /// The buffer ends inside a batch that needs `needed` bytes in all.
    Incomplete { needed: usize },
    /// Zeros where a batch would start: O_DIRECT padding or a zero-filled tail.
    Zeros,
    /// The buffer is empty.
    End,
    /// Bytes that are not a valid batch.
    Invalid(BatchError),
}

/// Classifies the bytes at the front of `buf`, checking a whole batch's CRC. `reaches_end`
/// says whether `buf` runs to the end of the data (nothing follows it).
pub fn scan_next(buf: &[u8], reaches_end: bool) -> ScanStep {
    if buf.is_empty() {
        return ScanStep::End;
    }
    // A batch's length field is at least 49, so twelve zero bytes cannot start one; fewer
    // zeros may be the start of a batch at offset 0 unless nothing follows them.
    let probe = &buf[..buf.len().min(LOG_OVERHEAD)];
    if probe.iter().all(|byte| *byte == 0) && (probe.len() == LOG_OVERHEAD || reaches_end) {
        return ScanStep::Zeros;
    }
    if buf.len() < BATCH_HEADER_LEN {
        return ScanStep::Incomplete {
            needed: BATCH_HEADER_LEN,
        };
    }
    let header = match BatchHeader::parse(buf) {
        Ok(header) => header,
        Err(error) => return ScanStep::Invalid(error),
    };
    let len = header.total_len();
    let Some(bytes) = buf.get(..len) else {
        return ScanStep::Incomplete { needed: len };
    };
    match check_stored_batch(bytes) {
        Ok(header) => ScanStep::Batch { header, len },
        Err(error) => ScanStep::Invalid(error),
    }
}

/// Why a segment scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte of the log is a valid batch.
    CleanEnd,
    /// Zeros follow the last valid batch.
    ZeroTail,
    /// The last batch runs past the end of the file: a write cut short.
    Torn { needed: usize },
    /// Bytes that are not a valid batch.
    Corrupt(BatchError),
    /// A valid batch that does not continue the segment's offsets.
    OffsetMismatch { expected: i64, found: i64 },
}

impl ScanStop {
    /// True when the scan stopped at the end of the data, not at damage.
    pub fn is_clean(&self) -> bool {
        matches!(self, ScanStop::CleanEnd | ScanStop::ZeroTail)
    }
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanStop::CleanEnd => write!(f, "end of log"),
            ScanStop::ZeroTail => write!(f, "zero-filled tail"),
            ScanStop::Torn { needed } => write!(f, "torn batch needing {needed} bytes"),
            ScanStop::Corrupt(error) => write!(f, "corrupt batch: {error}"),
            ScanStop::OffsetMismatch { expected, found } => {
                write!(f, "batch at offset {found} where {expected} was expected")
            }
        }
    }
}

/// What a scan needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanNext {
    /// Bytes of the log from `position`, at least `len` of them when the file has them.
    Read { position: u64, len: usize },
    /// The scan is over; the valid prefix ends at [`SegmentScan::position`].
    Done(ScanStop),
}

/// A scan of one segment's log from its start, rebuilding its index.
#[derive(Debug)]
pub struct SegmentScan {
    index: SegmentIndex,
    position: u64,
    read_len: usize,
}

impl SegmentScan {
    /// A scan of the segment starting at `base_offset`, asking for `read_len` bytes at a time.
    pub fn new(base_offset: Offset, interval_bytes: u32, read_len: usize) -> SegmentScan {
        SegmentScan {
            index: SegmentIndex::new(base_offset, interval_bytes),
            position: 0,
            read_len,
        }
    }

    /// Walks the batches in `window`, which holds the log's bytes from `window_start` (at
    /// or before the scan's position) in a file of `log_len` bytes.
    pub fn advance(&mut self, window: &[u8], window_start: u64, log_len: u64) -> ScanNext {
        assert!(
            window_start <= self.position,
            "window starts after the scan position"
        );
        loop {
            let skip =
                usize::try_from(self.position - window_start).expect("window fits in memory");
            let rest = window.get(skip..).unwrap_or_default();
            let reaches_end = window_start + to_u64(window.len()) >= log_len;
            match scan_next(rest, reaches_end) {
                ScanStep::Batch { header, len } => {
                    if header.base_offset != self.index.next_offset().value() {
                        let expected = self.index.next_offset().value();
                        return ScanNext::Done(ScanStop::OffsetMismatch {
                            expected,
                            found: header.base_offset,
                        });
                    }
                    let Ok(len_u32) = u32::try_from(len) else {
                        return ScanNext::Done(ScanStop::Torn { needed: len });
                    };
                    self.index.observe(&header, len_u32);
                    self.position += u64::from(len_u32);
                }
                ScanStep::End if self.position >= log_len => {
                    return ScanNext::Done(ScanStop::CleanEnd);
                }
                ScanStep::End => return self.read_more(BATCH_HEADER_LEN),
                ScanStep::Incomplete { needed } if self.position + to_u64(needed) > log_len => {
                    return ScanNext::Done(ScanStop::Torn { needed });
                }
                ScanStep::Incomplete { needed } => return self.read_more(needed),
                ScanStep::Zeros => return ScanNext::Done(ScanStop::ZeroTail),
                ScanStep::Invalid(error) => return ScanNext::Done(ScanStop::Corrupt(error)),
            }
        }
    }

    /// Scans a whole log image held in memory.
    pub fn scan_image(
        base_offset: Offset,
        interval_bytes: u32,
        image: &[u8],
    ) -> (SegmentIndex, ScanStop) {
        let mut scan = SegmentScan::new(base_offset, interval_bytes, image.len().max(1));
        match scan.advance(image, 0, to_u64(image.len())) {
            ScanNext::Done(stop) => (scan.into_index(), stop),
            ScanNext::Read { .. } => unreachable!("a whole image never needs more bytes"),
        }
    }

    /// The end of the valid prefix scanned so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }

    pub fn into_index(self) -> SegmentIndex {
        self.index
    }

    fn read_more(&self, needed: usize) -> ScanNext {
        ScanNext::Read {
            position: self.position,
            len: needed.max(self.read_len),
        }
    }
}

fn to_u64(len: usize) -> u64 {
    u64::try_from(len).expect("usize fits in u64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_builder::BatchBuilder;

    /// `count` batches with contiguous offsets from `base`, concatenated.
    fn log(base: i64, count: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut next = base;
        for index in 0..count {
            let mut builder = BatchBuilder::new(1000 + i64::try_from(index).unwrap());
            builder.record(None, Some(&vec![1; 50 + index * 10]), &[]);
            builder.record(Some(b"k"), None, &[]);
            let mut bytes = builder.build();
            bytes[..8].copy_from_slice(&next.to_be_bytes());
            next += 2;
            out.extend_from_slice(&bytes);
            ends.push(out.len());
        }
        (out, ends)
    }

    fn check(image: &[u8], valid_len: usize, stop: impl Fn(&ScanStop) -> bool) {
        let (index, found) = SegmentScan::scan_image(Offset::new(10).unwrap(), 64, image);
        assert_eq!(
            usize::try_from(index.log_len()).unwrap(),
            valid_len,
            "stopped with {found}"
        );
        assert!(stop(&found), "unexpected stop: {found}");
    }

    #[test]
    fn a_clean_log_scans_to_its_end() {
        let (image, ends) = log(10, 5);
        check(&image, ends[4], |stop| *stop == ScanStop::CleanEnd);
    }

    #[test]
    fn damage_stops_the_scan_after_the_last_good_batch() {
        let (image, ends) = log(10, 5);
        let mut padded = image.clone();
        padded.resize(image.len() + 4000, 0);
        check(&padded, ends[4], |stop| *stop == ScanStop::ZeroTail);
        check(&image[..ends[3] + 30], ends[3], |stop| {
            matches!(stop, ScanStop::Torn { .. })
        });
        check(&image[..ends[3] + 10], ends[3], |stop| {
            matches!(stop, ScanStop::Torn { .. })
        });
        check(&image[..ends[3] + 5], ends[3], |stop| {
            *stop == ScanStop::ZeroTail
        });
        let mut flipped = image.clone();
        flipped[ends[1] + 70] ^= 0x40;
        check(&flipped, ends[1], |stop| {
            matches!(stop, ScanStop::Corrupt(BatchError::CrcMismatch { .. }))
        });
        let (other, _) = log(99, 1);
        let mut spliced = image[..ends[2]].to_vec();
        spliced.extend_from_slice(&other);
        check(&spliced, ends[2], |stop| {
            matches!(
                stop,
                ScanStop::OffsetMismatch {
                    expected: 16,
                    found: 99
                }
            )
        });
    }

    #[test]
    fn chunked_scans_agree_with_whole_image_scans() {
        let (image, _) = log(10, 20);
        for read_len in [1, 61, 100, 333, 4096] {
            let mut scan = SegmentScan::new(Offset::new(10).unwrap(), 64, read_len);
            let (mut start, mut end) = (0usize, read_len.min(image.len()));
            let stop = loop {
                match scan.advance(
                    &image[start..end],
                    u64::try_from(start).unwrap(),
                    u64::try_from(image.len()).unwrap(),
                ) {
                    ScanNext::Done(stop) => break stop,
                    ScanNext::Read { position, len } => {
                        start = usize::try_from(position).unwrap();
                        end = (start + len).min(image.len());
                    }
                }
            };
            assert_eq!(stop, ScanStop::CleanEnd, "read_len {read_len}");
            assert_eq!(usize::try_from(scan.position()).unwrap(), image.len());
            assert_eq!(scan.index().next_offset().value(), 50);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Damage {
            Truncate(prop::sample::Index),
            Flip(prop::sample::Index, u8),
            Append(Vec<u8>),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                any::<prop::sample::Index>().prop_map(Damage::Truncate),
                (any::<prop::sample::Index>(), 1u8..=255)
                    .prop_map(|(at, mask)| Damage::Flip(at, mask)),
                prop_oneof![
                    (1usize..5000).prop_map(|len| vec![0; len]),
                    prop::collection::vec(any::<u8>(), 1..200),
                ]
                .prop_map(Damage::Append),
            ]
        }

        /// Whether a flip at `at` can go unseen: the partition leader epoch of a batch
        /// (bytes 12..16 of it) is covered by neither the CRC nor any other check.
        fn unseen(at: usize, starts: &[usize]) -> bool {
            starts
                .iter()
                .any(|start| (start + 12..start + 16).contains(&at))
        }

        proptest! {
            /// Scanning any damaged image of a log stops exactly at the end of its longest
            /// prefix of undamaged whole batches.
            #[test]
            fn scans_stop_at_the_longest_valid_prefix(count in 0usize..8, damage in damage()) {
                let (image, ends) = log(10, count);
                let starts: Vec<usize> = std::iter::once(0).chain(ends.iter().copied()).take(count).collect();
                let mut damaged = image.clone();
                let first_damage = match &damage {
                    Damage::Truncate(at) => {
                        let at = at.index(image.len() + 1);
                        damaged.truncate(at);
                        at
                    }
                    Damage::Flip(at, mask) if !image.is_empty() => {
                        let at = at.index(image.len());
                        damaged[at] ^= mask;
                        if unseen(at, &starts) { image.len() } else { at }
                    }
                    Damage::Flip(..) => 0,
                    Damage::Append(bytes) => {
                        damaged.extend_from_slice(bytes);
                        image.len()
                    }
                };
                let expected = ends.iter().copied().filter(|end| *end <= first_damage).max().unwrap_or(0);
                let (index, stop) = SegmentScan::scan_image(Offset::new(10).unwrap(), 64, &damaged);
                prop_assert_eq!(usize::try_from(index.log_len()).unwrap(), expected, "stopped with {}", stop);
                let kept = ends.iter().filter(|end| **end <= expected).count();
                prop_assert_eq!(index.next_offset().value(), 10 + 2 * i64::try_from(kept).unwrap());
            }
        }
    }
}
