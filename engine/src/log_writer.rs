//! Turning appends into O_DIRECT writes for one segment.
//!
//! O_DIRECT writes must start and end on block boundaries, but batches end anywhere. The
//! writer keeps the log's last partial block in memory and starts each new buffer with it,
//! so the next write rewrites that block whole (same bytes, now followed by new ones).
//!
//! The writes one [`LogWriter::take`] hands out never overlap: a buffer followed by another
//! stops before its partial last block (the next buffer starts with that block), and only
//! the last write ends in a zero-padded partial block. So a group commit may issue them all
//! at once. The next take's first write rewrites that last block, so the caller must let a
//! take's writes complete before issuing the next take's.

use glommio::io::DmaBuffer;

/// The block size O_DIRECT positions and lengths are aligned to.
pub const BLOCK_BYTES: usize = 4096;

/// The smallest write buffer: a quiet partition holds no more than this while it waits
/// for its commit.
pub const BUFFER_BYTES_MIN: usize = 16 << 10;

/// One aligned write: `buffer` goes to `position` of the segment file.
#[derive(Debug)]
pub struct PendingWrite {
    pub buffer: DmaBuffer,
    pub position: u64,
    /// The log's length once this write lands (the padding past it is not log).
    pub log_len_after: u64,
}

/// Appended bytes of one segment that are not yet handed out for writing.
#[derive(Debug)]
pub struct LogWriter {
    /// The largest buffer a busy partition grows to.
    buffer_bytes: usize,
    /// The size of the next buffer: doubles while appends overflow buffers, halves when a
    /// commit finds one mostly empty. Always a power of two, which is what glommio's buddy
    /// allocator hands out anyway.
    next_capacity: usize,
    log_len: u64,
    /// The bytes of the log's last, partial block (fewer than [`BLOCK_BYTES`]).
    tail: Vec<u8>,
    current: Option<Filling>,
    full: Vec<PendingWrite>,
}

#[derive(Debug)]
struct Filling {
    buffer: DmaBuffer,
    position: u64,
    filled: usize,
}

impl LogWriter {
    /// A writer for a log of `log_len` bytes whose last partial block holds `tail`, with
    /// buffers growing up to `buffer_bytes` (rounded up to a power of two).
    ///
    /// # Panics
    /// When `tail` is not the log's partial last block.
    pub fn new(log_len: u64, tail: Vec<u8>, buffer_bytes: usize) -> LogWriter {
        assert_eq!(
            to_u64(tail.len()),
            log_len % to_u64(BLOCK_BYTES),
            "tail must be the partial last block"
        );
        LogWriter {
            buffer_bytes: buffer_bytes.max(BUFFER_BYTES_MIN).next_power_of_two(),
            next_capacity: BUFFER_BYTES_MIN,
            log_len,
            tail,
            current: None,
            full: Vec::new(),
        }
    }

    /// Copies `bytes` to the end of the log. Needs a glommio executor (DMA memory).
    pub fn append(&mut self, bytes: &[u8]) {
        self.append_parts(&[bytes]);
    }

    /// Copies `parts`, in order, to the end of the log, all into one buffer.
    pub fn append_parts(&mut self, parts: &[&[u8]]) {
        let len = parts.iter().map(|part| part.len()).sum::<usize>();
        let fits = self
            .current
            .as_ref()
            .is_some_and(|current| current.filled + len <= current.buffer.len());
        if !fits {
            self.retire_current(Retire::Followed);
            self.current = Some(self.start_buffer(len));
        }
        let current = self.current.as_mut().expect("a buffer was just started");
        for part in parts {
            current.buffer.as_bytes_mut()[current.filled..current.filled + part.len()]
                .copy_from_slice(part);
            current.filled += part.len();
        }
        self.log_len += to_u64(len);
    }

    /// Every appended byte not yet taken, as aligned writes in log order.
    pub fn take(&mut self) -> Vec<PendingWrite> {
        self.retire_current(Retire::Last);
        std::mem::take(&mut self.full)
    }

    /// True when appended bytes wait to be taken.
    pub fn has_pending(&self) -> bool {
        self.current.is_some() || !self.full.is_empty()
    }

    /// Bytes of log, written or not.
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    fn start_buffer(&self, append_len: usize) -> Filling {
        let capacity = self
            .next_capacity
            .max((self.tail.len() + append_len).next_power_of_two());
        let mut buffer = glommio::allocate_dma_buffer(capacity);
        buffer.as_bytes_mut()[..self.tail.len()].copy_from_slice(&self.tail);
        let position = self.log_len - to_u64(self.tail.len());
        Filling {
            buffer,
            position,
            filled: self.tail.len(),
        }
    }

    /// Seals the buffer being filled and queues its write, keeping its partial last block as
    /// the start of the next buffer. A buffer another follows stops before that block; the
    /// last one writes it, zero-padded.
    fn retire_current(&mut self, retire: Retire) {
        let Some(Filling {
            mut buffer,
            position,
            filled,
        }) = self.current.take()
        else {
            return;
        };
        let tail_start = filled - filled % BLOCK_BYTES;
        self.tail.clear();
        self.tail
            .extend_from_slice(&buffer.as_bytes()[tail_start..filled]);
        let (len, log_len_after) = match retire {
            Retire::Followed => {
                self.next_capacity = (self.next_capacity * 2).min(self.buffer_bytes);
                (tail_start, position + to_u64(tail_start))
            }
            Retire::Last => {
                if filled < buffer.len() / 4 {
                    self.next_capacity = (self.next_capacity / 2).max(BUFFER_BYTES_MIN);
                }
                let padded = align_up(filled);
                buffer.as_bytes_mut()[filled..padded].fill(0);
                (padded, position + to_u64(filled))
            }
        };
        if len == 0 {
            return; // everything in it is in the next buffer's first block
        }
        buffer.trim_to_size(len);
        self.full.push(PendingWrite {
            buffer,
            position,
            log_len_after,
        });
    }
}

/// Why a buffer stops being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    /// A new buffer continues the log.
    Followed,
    /// The writes are being taken; this buffer ends them.
    Last,
}

/// `len` rounded up to whole blocks.
pub fn align_up(len: usize) -> usize {
    len.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// `position` rounded down to a block boundary.
pub fn align_down(position: u64) -> u64 {
    position - position % to_u64(BLOCK_BYTES)
}

fn to_u64(len: usize) -> u64 {
    u64::try_from(len).expect("usize fits in u64")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies taken writes to an in-memory image of the file, as the disk would, in reverse
    /// order: a take's writes must not overlap, so their order cannot matter.
    fn apply(image: &mut Vec<u8>, writes: Vec<PendingWrite>) {
        let spans: Vec<(u64, u64)> = writes
            .iter()
            .map(|write| {
                (
                    write.position,
                    write.position + u64::try_from(write.buffer.len()).unwrap(),
                )
            })
            .collect();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "writes of one take overlap: {spans:?}"
            );
        }
        for write in writes.into_iter().rev() {
            let position = usize::try_from(write.position).unwrap();
            assert_eq!(position % BLOCK_BYTES, 0, "write position must be aligned");
            assert_eq!(
                write.buffer.len() % BLOCK_BYTES,
                0,
                "write length must be aligned"
            );
            let end = position + write.buffer.len();
            if image.len() < end {
                image.resize(end, 0xEE);
            }
            image[position..end].copy_from_slice(write.buffer.as_bytes());
        }
    }

    /// Appends `sizes` bytes (taking after each `take_every` appends; every other append in
    /// two pieces) and checks the image.
    fn check(sizes: &[usize], take_every: usize, buffer_bytes: usize) {
        glommio::LocalExecutor::default().run(async {
            let mut writer = LogWriter::new(0, Vec::new(), buffer_bytes);
            let mut expected = Vec::new();
            let mut image = Vec::new();
            for (index, &size) in sizes.iter().enumerate() {
                let bytes: Vec<u8> = (0..size)
                    .map(|at| u8::try_from((at + index) % 251).unwrap())
                    .collect();
                if index % 2 == 1 {
                    // Batches arrive in two pieces (prefix and rest); any split must land
                    // as if it were one.
                    let (first, rest) = bytes.split_at(size / 3);
                    writer.append_parts(&[first, rest]);
                } else {
                    writer.append(&bytes);
                }
                expected.extend_from_slice(&bytes);
                if index % take_every == 0 {
                    apply(&mut image, writer.take());
                }
            }
            apply(&mut image, writer.take());
            assert!(!writer.has_pending());
            assert_eq!(writer.log_len(), u64::try_from(expected.len()).unwrap());
            assert_eq!(&image[..expected.len()], &expected[..]);
            assert!(
                image[expected.len()..].iter().all(|byte| *byte == 0),
                "padding is zeros"
            );
            assert_eq!(image.len(), align_up(expected.len()));
        });
    }

    #[test]
    fn appends_of_any_size_land_byte_exact() {
        check(&[100, 5000, 1, 4095, 4096, 7000, 12], 1, 8192);
        check(&[100, 5000, 1, 4095, 4096, 7000, 12], 3, 8192);
        check(&[20_000, 3, 20_000], 1, 4096);
        check(&[4096, 4096, 4096], 2, 4096);
    }

    #[test]
    fn reopening_continues_from_the_partial_block() {
        glommio::LocalExecutor::default().run(async {
            let mut writer = LogWriter::new(4100, vec![9; 4], 4096);
            writer.append(&[1, 2, 3]);
            let writes = writer.take();
            assert_eq!(writes.len(), 1);
            assert_eq!(writes[0].position, 4096);
            assert_eq!(&writes[0].buffer.as_bytes()[..8], &[9, 9, 9, 9, 1, 2, 3, 0]);
            assert_eq!(writes[0].log_len_after, 4103);
        });
    }
}
