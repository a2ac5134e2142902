//! Idempotent producers, per partition: the producer epoch and the last few batches of each
//! producer id, so a retried batch is answered with its original offsets instead of being
//! stored twice, a gap in sequence numbers is refused, and a producer with an older epoch
//! is fenced (Kafka's `ProducerStateManager`).
//!
//! The state follows every append, durable or not; [`ProducerStates::durable`] is what a
//! snapshot may hold: only batches below the high watermark. A snapshot file records that
//! state and the offset it covers, and a partition that opens replays the batches above
//! that offset on top of it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ahash::AHashMap;

use crate::batch::BatchHeader;
use crate::offset::Offset;

/// Batches remembered per producer, as Kafka does (the most a producer keeps in flight).
pub const BATCHES_KEPT: usize = 5;
/// Producer ids remembered per partition; past this the one idle longest is forgotten.
pub const PRODUCERS_MAX: usize = 10_000;
/// The snapshot file in a partition directory.
pub const SNAPSHOT_FILE: &str = "producers.snapshot";

const MAGIC: &[u8; 4] = b"SPRS";
const FORMAT_VERSION: u32 = 1;

/// One stored batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSequence {
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base: Offset,
    pub last: Offset,
}

/// What to do with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store it (also for batches without a producer id).
    Append,
    /// Already stored at these offsets.
    Duplicate { base: Offset, last: Offset },
}

/// Why a producer's batch is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {epoch} is older than the current {current}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
}

/// The producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: AHashMap<i64, VecDeque<BatchSequence>>,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Whether the batch with `header` is new, a retry, or refused.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let (epoch, first) = (header.producer_epoch, header.base_sequence);
        let last = last_sequence(header);
        let Some(batches) = self.producers.get(&producer_id) else {
            return fresh(producer_id, first);
        };
        let Some(latest) = batches.back() else {
            return fresh(producer_id, first);
        };
        if epoch < latest.epoch {
            return Err(SequenceError::Fenced {
                producer_id,
                epoch,
                current: latest.epoch,
            });
        }
        if epoch > latest.epoch {
            return fresh(producer_id, first);
        }
        if let Some(stored) = batches
            .iter()
            .find(|batch| batch.first_sequence == first && batch.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base: stored.base,
                last: stored.last,
            });
        }
        let expected = next_sequence(latest.last_sequence);
        if first == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                producer_id,
                expected,
                got: first,
            })
        }
    }

    /// Remembers a stored batch (one [`check`](Self::check) accepted, or one replayed from
    /// the log).
    pub fn record(&mut self, header: &BatchHeader, base: Offset, last: Offset) {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return;
        }
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.forget_idlest();
        }
        let batches = self.producers.entry(producer_id).or_default();
        let sequence = BatchSequence {
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base,
            last,
        };
        if batches
            .back()
            .is_some_and(|latest| latest.epoch != sequence.epoch)
        {
            batches.clear();
        }
        if batches.contains(&sequence) {
            return;
        }
        if batches.len() == BATCHES_KEPT {
            batches.pop_front();
        }
        batches.push_back(sequence);
    }

    /// The last offset of each producer's latest batch: the log cleaner keeps those batches
    /// (emptied if need be), so the producers' state can be rebuilt from the log.
    pub fn latest_batch_ends(&self) -> ahash::AHashSet<i64> {
        self.producers
            .values()
            .filter_map(|batches| batches.back().map(|batch| batch.last.value()))
            .collect()
    }

    /// Every producer with its latest batch (DescribeProducers).
    pub fn latest_batches(&self) -> Vec<(i64, BatchSequence)> {
        let mut latest: Vec<(i64, BatchSequence)> = self
            .producers
            .iter()
            .filter_map(|(id, batches)| batches.back().map(|batch| (*id, *batch)))
            .collect();
        latest.sort_unstable_by_key(|(id, _)| *id);
        latest
    }

    /// The state made by batches below `end` only: what may be saved once `end` is durable.
    pub fn durable(&self, end: Offset) -> ProducerStates {
        let producers = self
            .producers
            .iter()
            .filter_map(|(id, batches)| {
                let kept: VecDeque<BatchSequence> = batches
                    .iter()
                    .filter(|batch| batch.last < end)
                    .copied()
                    .collect();
                (!kept.is_empty()).then_some((*id, kept))
            })
            .collect();
        ProducerStates { producers }
    }

    fn forget_idlest(&mut self) {
        let idlest = self
            .producers
            .iter()
            .min_by_key(|(_, batches)| batches.back().map(|batch| batch.last))
            .map(|(id, _)| *id);
        if let Some(id) = idlest {
            self.producers.remove(&id);
        }
    }

    /// The snapshot bytes of this state, covering the log below `covered_end`.
    pub fn encode(&self, covered_end: Offset) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&covered_end.value().to_be_bytes());
        let count = u32::try_from(self.producers.len()).expect("bounded by PRODUCERS_MAX");
        body.extend_from_slice(&count.to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let batches = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.push(u8::try_from(batches.len()).expect("at most BATCHES_KEPT"));
            for batch in batches {
                body.extend_from_slice(&batch.epoch.to_be_bytes());
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.base.value().to_be_bytes());
                body.extend_from_slice(&batch.last.value().to_be_bytes());
            }
        }
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// A snapshot and the offset it covers up to, or why the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<(ProducerStates, Offset), String> {
        let mut reader = Reader(bytes);
        if reader.take(4)? != MAGIC {
            return Err("not a producer snapshot (bad magic)".into());
        }
        let version = u32::from_be_bytes(reader.array()?);
        if version != FORMAT_VERSION {
            return Err(format!("snapshot format {version} is not {FORMAT_VERSION}"));
        }
        let crc = u32::from_be_bytes(reader.array()?);
        if crc32c::crc32c(reader.0) != crc {
            return Err("snapshot checksum mismatch".into());
        }
        let covered = offset(i64::from_be_bytes(reader.array()?))?;
        let count = u32::from_be_bytes(reader.array()?);
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = i64::from_be_bytes(reader.array()?);
            let len = reader.take(1)?[0];
            let mut batches = VecDeque::with_capacity(BATCHES_KEPT);
            for _ in 0..len.min(u8::try_from(BATCHES_KEPT).unwrap_or(u8::MAX)) {
                batches.push_back(BatchSequence {
                    epoch: i16::from_be_bytes(reader.array()?),
                    first_sequence: i32::from_be_bytes(reader.array()?),
                    last_sequence: i32::from_be_bytes(reader.array()?),
                    base: offset(i64::from_be_bytes(reader.array()?))?,
                    last: offset(i64::from_be_bytes(reader.array()?))?,
                });
            }
            if id < 0 || states.producers.len() >= PRODUCERS_MAX {
                return Err(format!("bad producer entry {id}"));
            }
            states.producers.insert(id, batches);
        }
        if !reader.0.is_empty() {
            return Err("trailing bytes after the snapshot".into());
        }
        Ok((states, covered))
    }
}

/// The snapshot path in `partition_dir`.
pub fn snapshot_path(partition_dir: &Path) -> PathBuf {
    partition_dir.join(SNAPSHOT_FILE)
}

/// Writes a snapshot atomically (temporary file, fsync, rename). Blocking.
pub fn store_snapshot(partition_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = snapshot_path(partition_dir);
    let temporary = path.with_extension("snapshot.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)
}

fn fresh(producer_id: i64, first: i32) -> Result<SequenceCheck, SequenceError> {
    if first == 0 {
        Ok(SequenceCheck::Append)
    } else {
        Err(SequenceError::OutOfOrder {
            producer_id,
            expected: 0,
            got: first,
        })
    }
}

/// Sequences wrap from `i32::MAX` to 0, as Kafka's do.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    i32::try_from(last % (i64::from(i32::MAX) + 1)).expect("below 2^31")
}

fn offset(value: i64) -> Result<Offset, String> {
    Offset::new(value).ok_or_else(|| format!("negative offset {value} in snapshot"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err("snapshot cut short".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::batch::BatchHeader;
    use crate::batch_builder::BatchBuilder;

    fn header(id: i64, epoch: i16, first: i32, records: usize) -> BatchHeader {
        let mut builder = BatchBuilder::new(1_000);
        builder.producer(id, epoch, first);
        for _ in 0..records {
            builder.record(None, Some(b"v"), &[]);
        }
        BatchHeader::parse(&builder.build()).unwrap()
    }

    fn at(value: u64) -> Offset {
        Offset::ZERO.plus(value)
    }

    #[test]
    fn a_retry_gets_the_original_offsets_and_a_gap_is_refused() {
        let mut states = ProducerStates::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first, at(10), at(12));
        assert_eq!(
            states.check(&first),
            Ok(SequenceCheck::Duplicate {
                base: at(10),
                last: at(12)
            })
        );
        assert_eq!(states.check(&header(7, 0, 3, 1)), Ok(SequenceCheck::Append));
        assert_eq!(
            states.check(&header(7, 0, 5, 1)),
            Err(SequenceError::OutOfOrder {
                producer_id: 7,
                expected: 3,
                got: 5
            })
        );
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 2, 0, 1), at(0), at(0));
        assert!(matches!(
            states.check(&header(7, 1, 1, 1)),
            Err(SequenceError::Fenced { current: 2, .. })
        ));
        assert_eq!(states.check(&header(7, 3, 0, 1)), Ok(SequenceCheck::Append));
        assert!(matches!(
            states.check(&header(7, 3, 4, 1)),
            Err(SequenceError::OutOfOrder { expected: 0, .. })
        ));
        assert!(matches!(
            states.check(&header(8, 0, 1, 1)),
            Err(SequenceError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(
            states.check(&header(-1, -1, -1, 1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for batch in 0..7u64 {
            let seq = i32::try_from(batch).unwrap();
            states.record(&header(1, 0, seq, 1), at(batch), at(batch));
        }
        assert_eq!(
            states.check(&header(1, 0, 1, 1)),
            Err(SequenceError::OutOfOrder {
                producer_id: 1,
                expected: 7,
                got: 1
            })
        );
        assert!(matches!(
            states.check(&header(1, 0, 2, 1)),
            Ok(SequenceCheck::Duplicate { .. })
        ));
    }

    #[test]
    fn snapshots_keep_durable_batches_only_and_round_trip() {
        let mut states = ProducerStates::default();
        states.record(&header(1, 0, 0, 2), at(0), at(1));
        states.record(&header(1, 0, 2, 2), at(2), at(3));
        states.record(&header(2, 5, 0, 1), at(4), at(4));
        let durable = states.durable(at(2));
        assert_eq!(durable.len(), 1);
        let bytes = durable.encode(at(2));
        assert_eq!(
            ProducerStates::decode(&bytes).unwrap(),
            (durable.clone(), at(2))
        );
        let mut replayed = durable;
        replayed.record(&header(1, 0, 2, 2), at(2), at(3));
        replayed.record(&header(2, 5, 0, 1), at(4), at(4));
        assert_eq!(replayed, states);
        for flip in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x10;
            assert!(ProducerStates::decode(&damaged).is_err(), "flip at {flip}");
        }
    }
}
