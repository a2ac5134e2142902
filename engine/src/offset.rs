//! `Offset`: a record's position in a partition log, as Kafka numbers it.

use std::fmt;

/// The offset of a record in a partition: Kafka's non-negative 64-bit log position.
///
/// Offsets can be compared and subtracted (giving a distance); adding two offsets is
/// meaningless, so only a count can be added to one.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(i64);

impl Offset {
    /// The first offset of every partition.
    pub const ZERO: Offset = Offset(0);
    /// The largest offset Kafka can express.
    pub const MAX: Offset = Offset(i64::MAX);

    /// An offset from Kafka's wire value, or `None` when it is negative.
    pub fn new(value: i64) -> Option<Offset> {
        (value >= 0).then_some(Offset(value))
    }

    /// The wire value.
    pub fn value(self) -> i64 {
        self.0
    }

    /// The offset `count` records after this one.
    ///
    /// # Panics
    /// When the result passes `i64::MAX`, which no log reaches (it would take ~292 years
    /// at a billion records per second).
    pub fn plus(self, count: u64) -> Offset {
        let count = i64::try_from(count).expect("record count fits in i64");
        Offset(
            self.0
                .checked_add(count)
                .expect("offset overflow: log past i64::MAX"),
        )
    }

    /// The number of records from `earlier` up to (not including) this offset.
    ///
    /// # Panics
    /// When `earlier` is after `self`: callers compare first.
    pub fn distance_from(self, earlier: Offset) -> u64 {
        assert!(earlier <= self, "distance_from: {earlier} is after {self}");
        u64::try_from(self.0 - earlier.0).expect("non-negative distance fits in u64")
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_reject_negative_values_and_measure_distances() {
        assert_eq!(Offset::new(-1), None);
        let a = Offset::new(5).unwrap();
        let b = a.plus(10);
        assert_eq!(b.value(), 15);
        assert_eq!(b.distance_from(a), 10);
        assert_eq!(a.distance_from(a), 0);
    }

    #[test]
    #[should_panic(expected = "is after")]
    fn distance_from_a_later_offset_is_a_bug() {
        Offset::ZERO.distance_from(Offset::ZERO.plus(1));
    }
}
