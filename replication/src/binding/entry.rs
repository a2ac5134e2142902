//! A record batch as the chain's entry: it spans its records' offsets and carries the
//! chain epoch of the head that stored it as its partition leader epoch (Kafka's field for
//! the same purpose), so logs compare by the epochs stored in them.

use strand_engine::{BatchHeader, ValidatedBatch};

use crate::chain::Entry;
use crate::ids::ChainEpoch;

impl Entry for ValidatedBatch {
    fn offsets(&self) -> u64 {
        self.offset_span()
    }

    fn epoch(&self) -> ChainEpoch {
        epoch_of(self.header())
    }

    fn set_epoch(&mut self, epoch: ChainEpoch) {
        let base = self.base_offset();
        self.assign(base, leader_epoch(epoch));
    }

    fn bytes(&self) -> usize {
        self.len()
    }
}

/// The chain epoch a batch header carries (a negative leader epoch, from a client that
/// never had one stamped, reads as epoch 0).
pub fn epoch_of(header: &BatchHeader) -> ChainEpoch {
    ChainEpoch::new(u64::try_from(header.partition_leader_epoch).unwrap_or(0))
}

/// A chain epoch as Kafka's int32 leader epoch. Epochs grow by one per chain change, so
/// they stay far below `i32::MAX`; past it they saturate.
pub fn leader_epoch(epoch: ChainEpoch) -> i32 {
    i32::try_from(epoch.value()).unwrap_or(i32::MAX)
}
