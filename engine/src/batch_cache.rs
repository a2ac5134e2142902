//! The per-shard cache of recent batches, so consumers reading at the tail never touch
//! the disk (the log is written with O_DIRECT, so the page cache holds none of it).
//!
//! For each partition the cache holds a contiguous run of the newest batches. Eviction is
//! first-in first-out across the shard's partitions: the oldest batch goes first, which
//! suits logs, where readers are mostly at or near the tail.

use std::collections::VecDeque;

use ahash::AHashMap;
use bytes::Bytes;

use crate::ids::PartitionId;
use crate::offset::Offset;

/// Recent batches of every partition of one shard, bounded in bytes.
#[derive(Debug)]
pub struct BatchCache {
    bytes_max: usize,
    bytes: usize,
    partitions: AHashMap<PartitionId, VecDeque<CachedBatch>>,
    /// Every cached batch in insertion order, for eviction.
    order: VecDeque<(PartitionId, Offset)>,
}

#[derive(Debug)]
struct CachedBatch {
    base: Offset,
    last: Offset,
    /// The batch's bytes, in pieces (see `ValidatedBatch::into_parts`).
    parts: [Bytes; 2],
    /// What the batch counts against the bound: the memory its pieces keep alive, which
    /// is the whole request frame they were sliced from.
    charge: usize,
}

impl CachedBatch {
    fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }
}

/// The answer of [`BatchCache::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum CacheRead {
    /// The cache holds the batch with the requested offset; this many bytes were copied.
    Hit { bytes: usize },
    /// The requested offset is older than anything cached: read the disk.
    Miss,
}

impl BatchCache {
    pub fn new(bytes_max: usize) -> BatchCache {
        BatchCache {
            bytes_max,
            bytes: 0,
            partitions: AHashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Caches the batch holding offsets `base..=last` of `partition`, whose bytes are
    /// `parts` in order and keep `held_len` bytes of memory alive, evicting the oldest
    /// batches to stay within the bound. A batch that does not continue the partition's
    /// cached run replaces it.
    pub fn insert(
        &mut self,
        partition: PartitionId,
        base: Offset,
        last: Offset,
        parts: [Bytes; 2],
        held_len: usize,
    ) {
        let len = parts.iter().map(Bytes::len).sum::<usize>().max(held_len);
        let batch = CachedBatch {
            base,
            last,
            parts,
            charge: len,
        };
        let continues = self
            .partitions
            .get(&partition)
            .and_then(VecDeque::back)
            .is_none_or(|tail| tail.last.plus(1) == base);
        if !continues || len > self.bytes_max {
            self.remove_partition(partition);
        }
        if len > self.bytes_max {
            return;
        }
        self.bytes += len;
        self.order.push_back((partition, base));
        self.partitions
            .entry(partition)
            .or_default()
            .push_back(batch);
        while self.bytes > self.bytes_max {
            self.evict_oldest();
        }
    }

    /// Copies into `out` the cached batches of `partition` from the one holding `from`,
    /// stopping before `end` (an offset not yet readable) and before passing `bytes_max`,
    /// except that the first batch is copied whatever its size (Kafka's KIP-74 rule: a
    /// fetch always makes progress).
    pub fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        end: Offset,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> CacheRead {
        let Some(batches) = self.partitions.get(&partition) else {
            return CacheRead::Miss;
        };
        if batches.front().is_none_or(|first| from < first.base) {
            return CacheRead::Miss;
        }
        let start = batches.partition_point(|batch| batch.last < from);
        let mut copied = 0;
        for batch in batches.range(start..) {
            let len = batch.len();
            let fits = copied == 0 || copied + len <= bytes_max;
            if batch.last >= end || !fits {
                break;
            }
            for part in &batch.parts {
                out.extend_from_slice(part);
            }
            copied += len;
        }
        CacheRead::Hit { bytes: copied }
    }

    /// Forgets every batch of `partition`.
    pub fn remove_partition(&mut self, partition: PartitionId) {
        if let Some(batches) = self.partitions.remove(&partition) {
            self.bytes -= batches.iter().map(|batch| batch.charge).sum::<usize>();
            self.order.retain(|(owner, _)| *owner != partition);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn evict_oldest(&mut self) {
        let (partition, base) = self
            .order
            .pop_front()
            .expect("bytes held means batches held");
        let batches = self
            .partitions
            .get_mut(&partition)
            .expect("ordered batches are cached");
        let evicted = batches.pop_front().expect("ordered batches are cached");
        assert_eq!(
            evicted.base, base,
            "cache eviction order matches insertion order"
        );
        self.bytes -= evicted.charge;
        if batches.is_empty() {
            self.partitions.remove(&partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TopicId;

    fn partition(index: u32) -> PartitionId {
        PartitionId::new(TopicId::new(1), index)
    }

    fn offset(value: i64) -> Offset {
        Offset::new(value).unwrap()
    }

    /// `bytes` split in two pieces, as stored batches are.
    fn parts(bytes: Vec<u8>) -> [Bytes; 2] {
        let mut rest = Bytes::from(bytes);
        let first = rest.split_to(3);
        [first, rest]
    }

    /// Inserts batches of 10 bytes holding 2 offsets each, starting at `from`.
    fn fill(cache: &mut BatchCache, index: u32, from: i64, count: i64) {
        for batch in 0..count {
            let base = from + batch * 2;
            let byte = u8::try_from(base % 256).unwrap();
            cache.insert(
                partition(index),
                offset(base),
                offset(base + 1),
                parts(vec![byte; 10]),
                10,
            );
        }
    }

    fn read(
        cache: &BatchCache,
        index: u32,
        from: i64,
        end: i64,
        bytes_max: usize,
    ) -> (CacheRead, Vec<u8>) {
        let mut out = Vec::new();
        let result = cache.read(
            partition(index),
            offset(from),
            offset(end),
            bytes_max,
            &mut out,
        );
        (result, out)
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_respect_bounds() {
        let mut cache = BatchCache::new(1000);
        fill(&mut cache, 0, 0, 5);
        let (result, out) = read(&cache, 0, 3, 10, 1000);
        assert_eq!(result, CacheRead::Hit { bytes: 40 });
        assert_eq!(out[0], 2);
        assert_eq!(read(&cache, 0, 3, 6, 1000).0, CacheRead::Hit { bytes: 20 });
        assert_eq!(read(&cache, 0, 3, 10, 25).0, CacheRead::Hit { bytes: 20 });
        assert_eq!(
            read(&cache, 0, 3, 10, 1).0,
            CacheRead::Hit { bytes: 10 },
            "first batch always"
        );
        assert_eq!(read(&cache, 0, 10, 10, 1000).0, CacheRead::Hit { bytes: 0 });
        assert_eq!(read(&cache, 1, 0, 10, 1000).0, CacheRead::Miss);
    }

    #[test]
    fn eviction_is_oldest_first_across_partitions() {
        let mut cache = BatchCache::new(50);
        fill(&mut cache, 0, 0, 3);
        fill(&mut cache, 1, 0, 3);
        assert_eq!(cache.bytes(), 50);
        assert_eq!(cache.len(), 5);
        assert_eq!(
            read(&cache, 0, 0, 100, 1000).0,
            CacheRead::Miss,
            "oldest batch evicted"
        );
        assert_eq!(
            read(&cache, 0, 2, 100, 1000).0,
            CacheRead::Hit { bytes: 20 }
        );
    }

    #[test]
    fn a_gap_restarts_the_partitions_run_and_removal_forgets_it() {
        let mut cache = BatchCache::new(1000);
        fill(&mut cache, 0, 0, 3);
        fill(&mut cache, 0, 100, 1);
        assert_eq!(read(&cache, 0, 0, 1000, 1000).0, CacheRead::Miss);
        assert_eq!(
            read(&cache, 0, 100, 1000, 1000).0,
            CacheRead::Hit { bytes: 10 }
        );
        assert_eq!(cache.bytes(), 10);
        cache.remove_partition(partition(0));
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_cache_is_not_kept() {
        let mut cache = BatchCache::new(15);
        fill(&mut cache, 0, 0, 1);
        cache.insert(partition(0), offset(2), offset(3), parts(vec![0; 20]), 20);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_batch_counts_the_frame_it_keeps_alive() {
        let mut cache = BatchCache::new(150);
        fill(&mut cache, 0, 0, 1);
        cache.insert(partition(1), offset(0), offset(1), parts(vec![7; 10]), 100);
        assert_eq!(cache.bytes(), 110);
        cache.insert(partition(2), offset(0), offset(1), parts(vec![8; 10]), 100);
        assert_eq!(
            cache.bytes(),
            100,
            "both older batches evicted for the frame's size"
        );
        assert_eq!(
            read(&cache, 2, 0, 10, 1000),
            (CacheRead::Hit { bytes: 10 }, vec![8; 10])
        );
    }
}
