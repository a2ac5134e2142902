//! The sparse time index of one segment, for ListOffsets by timestamp.
//!
//! Each entry names a batch and the largest timestamp of every batch *before* it in the
//! segment. Timestamps come from producers and need not increase, but that running maximum
//! does, so a lookup for `target` can start at the last entry whose maximum is below
//! `target`: no batch before it can hold a record at or after `target`.

/// One entry: every batch before the one at `relative_offset` has timestamps below or at
/// `max_timestamp_before_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub max_timestamp_before_ms: i64,
    pub relative_offset: u32,
}

/// Entries in increasing order of offset, with non-decreasing timestamps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeIndexEntry>,
}

/// Bytes one entry takes in an index file.
pub const TIME_ENTRY_LEN: usize = 12;

impl TimeIndex {
    /// Builds an index from entries read back from disk, or `None` when offsets do not
    /// strictly increase or timestamps go backwards.
    pub fn from_entries(entries: Vec<TimeIndexEntry>) -> Option<TimeIndex> {
        let ordered = entries.windows(2).all(|pair| {
            pair[0].relative_offset < pair[1].relative_offset
                && pair[0].max_timestamp_before_ms <= pair[1].max_timestamp_before_ms
        });
        ordered.then_some(TimeIndex { entries })
    }

    /// Adds an entry after every existing one.
    ///
    /// # Panics
    /// When the offset does not increase or the running maximum goes backwards.
    pub fn push(&mut self, entry: TimeIndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset,
                "time index offsets must grow: {last:?} then {entry:?}"
            );
            assert!(
                entry.max_timestamp_before_ms >= last.max_timestamp_before_ms,
                "time index maxima must not fall: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// Where a search for the first batch at or after `target_ms` may start: the relative
    /// offset of the last entry whose maximum is below `target_ms`, or the segment's start.
    pub fn lookup(&self, target_ms: i64) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.max_timestamp_before_ms < target_ms);
        after
            .checked_sub(1)
            .map_or(0, |at| self.entries[at].relative_offset)
    }

    pub fn entries(&self) -> &[TimeIndexEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the entries' file encoding to `out`.
    pub fn encode_entries(&self, out: &mut Vec<u8>) {
        for entry in &self.entries {
            out.extend_from_slice(&entry.max_timestamp_before_ms.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
    }

    /// Decodes entries from their file encoding (a multiple of [`TIME_ENTRY_LEN`]).
    pub fn decode_entries(bytes: &[u8]) -> Vec<TimeIndexEntry> {
        bytes
            .chunks_exact(TIME_ENTRY_LEN)
            .map(|chunk| TimeIndexEntry {
                max_timestamp_before_ms: i64::from_be_bytes(
                    chunk[..8].try_into().expect("8 bytes"),
                ),
                relative_offset: u32::from_be_bytes(chunk[8..].try_into().expect("4 bytes")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_starts_after_every_batch_that_cannot_match() {
        let mut index = TimeIndex::default();
        for (max_timestamp_before_ms, relative_offset) in
            [(100, 10), (100, 20), (250, 30), (400, 40)]
        {
            index.push(TimeIndexEntry {
                max_timestamp_before_ms,
                relative_offset,
            });
        }
        let check = |target: i64, expected: u32| {
            assert_eq!(index.lookup(target), expected, "target {target}")
        };
        check(50, 0);
        check(100, 0);
        check(101, 20);
        check(250, 20);
        check(300, 30);
        check(i64::MAX, 40);
    }

    #[test]
    fn entries_round_trip_and_falling_maxima_are_refused() {
        let entries = vec![
            TimeIndexEntry {
                max_timestamp_before_ms: -1,
                relative_offset: 3,
            },
            TimeIndexEntry {
                max_timestamp_before_ms: 7,
                relative_offset: 9,
            },
        ];
        let index = TimeIndex::from_entries(entries.clone()).unwrap();
        let mut bytes = Vec::new();
        index.encode_entries(&mut bytes);
        assert_eq!(TimeIndex::decode_entries(&bytes), entries);
        let falling = vec![
            entries[1],
            TimeIndexEntry {
                max_timestamp_before_ms: 6,
                relative_offset: 10,
            },
        ];
        assert_eq!(TimeIndex::from_entries(falling), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Lookups agree with a search of a plain `Vec` of the same entries.
            #[test]
            fn lookups_match_a_vec_model(
                steps in prop::collection::vec((1u32..50, 0i64..100), 0..60),
                targets in prop::collection::vec(-10i64..3000, 1..20),
            ) {
                let mut model = Vec::new();
                let mut index = TimeIndex::default();
                let (mut relative_offset, mut timestamp) = (0, 0);
                for (offset_step, time_step) in steps {
                    relative_offset += offset_step;
                    timestamp += time_step;
                    model.push((timestamp, relative_offset));
                    index.push(TimeIndexEntry { max_timestamp_before_ms: timestamp, relative_offset });
                }
                for target in targets {
                    let expected = model.iter().rev().find(|(time, _)| *time < target).map_or(0, |(_, offset)| *offset);
                    prop_assert_eq!(index.lookup(target), expected);
                }
            }
        }
    }
}
