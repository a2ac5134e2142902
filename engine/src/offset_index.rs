//! The sparse offset index of one segment: every few KiB of log, the position of a batch.
//!
//! Reads look up the last entry at or before the offset they want and walk the log from
//! there, so a lookup touches at most `index.interval.bytes` plus one batch of log.

/// One entry: the batch whose base offset is `relative_offset` past the segment's base
/// offset starts at byte `position` of the segment's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Entries in increasing order of both offset and position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetIndexEntry>,
}

/// Bytes one entry takes in an index file.
pub const OFFSET_ENTRY_LEN: usize = 8;

impl OffsetIndex {
    /// Builds an index from entries read back from disk, or `None` when they are not
    /// strictly increasing or point at or past `log_len`.
    pub fn from_entries(entries: Vec<OffsetIndexEntry>, log_len: u32) -> Option<OffsetIndex> {
        let increasing = entries.windows(2).all(|pair| {
            pair[0].relative_offset < pair[1].relative_offset && pair[0].position < pair[1].position
        });
        let in_log = entries.last().is_none_or(|last| last.position < log_len);
        (increasing && in_log).then_some(OffsetIndex { entries })
    }

    /// Adds an entry after every existing one.
    ///
    /// # Panics
    /// When the entry does not come after the last one: appends only move forward.
    pub fn push(&mut self, entry: OffsetIndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The last entry whose offset is at or before `relative_offset`; the segment's start
    /// when there is none.
    pub fn lookup(&self, relative_offset: u32) -> OffsetIndexEntry {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after
            .checked_sub(1)
            .map_or(OffsetIndexEntry::default(), |at| self.entries[at])
    }

    /// The position of the batch at exactly `relative_offset`, when it has an entry.
    pub fn position_of(&self, relative_offset: u32) -> Option<u32> {
        let at = self
            .entries
            .binary_search_by_key(&relative_offset, |entry| entry.relative_offset);
        at.ok().map(|at| self.entries[at].position)
    }

    pub fn entries(&self) -> &[OffsetIndexEntry] {
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
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
    }

    /// Decodes entries from their file encoding (a multiple of [`OFFSET_ENTRY_LEN`]).
    pub fn decode_entries(bytes: &[u8]) -> Vec<OffsetIndexEntry> {
        bytes
            .chunks_exact(OFFSET_ENTRY_LEN)
            .map(|chunk| OffsetIndexEntry {
                relative_offset: u32::from_be_bytes(chunk[..4].try_into().expect("4 bytes")),
                position: u32::from_be_bytes(chunk[4..].try_into().expect("4 bytes")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(pairs: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for &(relative_offset, position) in pairs {
            index.push(OffsetIndexEntry {
                relative_offset,
                position,
            });
        }
        index
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_before() {
        let index = index(&[(10, 4096), (25, 8200), (40, 12300)]);
        let check = |target: u32, expected: (u32, u32)| {
            let found = index.lookup(target);
            assert_eq!(
                (found.relative_offset, found.position),
                expected,
                "target {target}"
            );
        };
        check(0, (0, 0));
        check(9, (0, 0));
        check(10, (10, 4096));
        check(24, (10, 4096));
        check(25, (25, 8200));
        check(1000, (40, 12300));
        assert_eq!(index.position_of(25), Some(8200));
        assert_eq!(index.position_of(26), None);
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_refused() {
        let original = index(&[(1, 100), (5, 9000)]);
        let mut bytes = Vec::new();
        original.encode_entries(&mut bytes);
        let decoded = OffsetIndex::decode_entries(&bytes);
        assert_eq!(
            OffsetIndex::from_entries(decoded.clone(), 9001),
            Some(original)
        );
        assert_eq!(OffsetIndex::from_entries(decoded, 9000), None);
        let backwards = vec![
            OffsetIndexEntry {
                relative_offset: 5,
                position: 10,
            },
            OffsetIndexEntry {
                relative_offset: 4,
                position: 20,
            },
        ];
        assert_eq!(OffsetIndex::from_entries(backwards, 100), None);
    }

    #[test]
    #[should_panic(expected = "offset index must grow")]
    fn pushing_backwards_is_a_bug() {
        index(&[(10, 100), (10, 200)]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Lookups agree with a search of a plain `Vec` of the same entries.
            #[test]
            fn lookups_match_a_vec_model(
                steps in prop::collection::vec((1u32..50, 1u32..5000), 0..60),
                targets in prop::collection::vec(0u32..3000, 1..20),
            ) {
                let mut model = Vec::new();
                let mut index = OffsetIndex::default();
                let (mut relative_offset, mut position) = (0, 0);
                for (offset_step, position_step) in steps {
                    relative_offset += offset_step;
                    position += position_step;
                    model.push((relative_offset, position));
                    index.push(OffsetIndexEntry { relative_offset, position });
                }
                for target in targets {
                    let expected = model.iter().rev().find(|(offset, _)| *offset <= target).copied().unwrap_or((0, 0));
                    let found = index.lookup(target);
                    prop_assert_eq!((found.relative_offset, found.position), expected);
                    let exact = model.iter().find(|(offset, _)| *offset == target).map(|(_, position)| *position);
                    prop_assert_eq!(index.position_of(target), exact);
                }
            }
        }
    }
}
