//! The cleaner's map from each key in the dirty part of a log to the offset of its latest
//! record (Kafka's `OffsetMap`), bounded in bytes.
//!
//! Kafka's map keeps a 16-byte hash of each key, so two keys whose hashes collide lose one
//! of them; this one keeps the keys themselves, so compaction never removes a record that
//! is still the latest of its key. The bound counts key bytes plus a fixed cost per entry;
//! a full map ends the pass early (at a batch boundary) and the rest stays dirty.

use ahash::AHashMap;

/// What each entry costs beyond its key's bytes: the offset, the map's slot and the box.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Keys to the offsets of their latest records.
#[derive(Debug)]
pub struct KeyMap {
    latest: AHashMap<Box<[u8]>, i64>,
    bytes: usize,
    bytes_max: usize,
}

/// The map has no room for another key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFull;

impl KeyMap {
    pub fn new(bytes_max: usize) -> KeyMap {
        KeyMap {
            latest: AHashMap::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Records that `key`'s latest record so far is at `offset` (offsets only grow).
    pub fn insert(&mut self, key: &[u8], offset: i64) -> Result<(), MapFull> {
        if let Some(held) = self.latest.get_mut(key) {
            debug_assert!(*held < offset, "offsets of one key grow");
            *held = offset;
            return Ok(());
        }
        let cost = key.len() + ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.bytes_max {
            return Err(MapFull);
        }
        self.bytes += cost;
        self.latest.insert(key.into(), offset);
        Ok(())
    }

    /// Whether the map has room for the keys `keys` (the keys of one batch), counting
    /// only the ones it does not hold yet.
    pub fn has_room_for<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> bool {
        let needed: usize = keys
            .filter(|key| !self.latest.contains_key(*key))
            .map(|key| key.len() + ENTRY_OVERHEAD_BYTES)
            .sum();
        self.bytes + needed <= self.bytes_max
    }

    /// The offset of `key`'s latest record, if the map holds the key.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Bytes the map counts against its bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_wins_and_the_bound_holds() {
        let mut map = KeyMap::new(2 * (ENTRY_OVERHEAD_BYTES + 1));
        map.insert(b"a", 1).unwrap();
        map.insert(b"a", 5).unwrap();
        map.insert(b"b", 2).unwrap();
        assert_eq!(map.insert(b"c", 3), Err(MapFull));
        assert_eq!(
            (map.latest(b"a"), map.latest(b"b"), map.latest(b"c")),
            (Some(5), Some(2), None)
        );
        assert!(map.has_room_for([&b"a"[..], &b"b"[..]].into_iter()));
        assert!(!map.has_room_for([&b"z"[..]].into_iter()));
        assert_eq!(map.len(), 2);
    }
}
