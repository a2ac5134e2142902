//! The header every load message carries at the front of its value: when it was meant to be
//! sent, by which sender, its sequence number, and the run it belongs to. Consumers use it for
//! end-to-end latency and to check each message arrives once; messages of other runs on a
//! shared topic are told apart by the run id.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Bytes the stamp takes; `--size` must be at least this.
pub const STAMP_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Intended send time, nanoseconds since the Unix epoch.
    pub sent_nanos: u64,
    pub sequence: u64,
    pub sender: u32,
    pub run: u32,
}

impl Stamp {
    /// Writes the stamp over the first [`STAMP_BYTES`] of `value`.
    pub fn write(&self, value: &mut [u8]) {
        value[0..8].copy_from_slice(&self.sent_nanos.to_le_bytes());
        value[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        value[16..20].copy_from_slice(&self.sender.to_le_bytes());
        value[20..24].copy_from_slice(&self.run.to_le_bytes());
    }

    /// The stamp at the front of `value`, if it is long enough to hold one.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        let field = |range: std::ops::Range<usize>| value.get(range);
        Some(Stamp {
            sent_nanos: u64::from_le_bytes(field(0..8)?.try_into().ok()?),
            sequence: u64::from_le_bytes(field(8..16)?.try_into().ok()?),
            sender: u32::from_le_bytes(field(16..20)?.try_into().ok()?),
            run: u32::from_le_bytes(field(20..24)?.try_into().ok()?),
        })
    }
}

/// Maps the monotonic clock to wall-clock nanoseconds, so a stamp written by one process can be
/// compared with the receiving clock of another on the same machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    unix_nanos: u64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            unix_nanos: unix_nanos(SystemTime::now()),
        }
    }

    /// Wall-clock nanoseconds of `at`.
    pub fn unix_nanos_at(&self, at: Instant) -> u64 {
        let nanos =
            |duration: std::time::Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        if at >= self.instant {
            self.unix_nanos.saturating_add(nanos(at - self.instant))
        } else {
            self.unix_nanos.saturating_sub(nanos(self.instant - at))
        }
    }
}

pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_stamp_reads_back_from_a_value_and_short_values_have_none() {
        let stamp = Stamp {
            sent_nanos: 1_700_000_000_123_456_789,
            sequence: 42,
            sender: 7,
            run: 0xdead_beef,
        };
        let mut value = vec![0xAA; 1024];
        stamp.write(&mut value);
        assert_eq!(Stamp::read(&value), Some(stamp));
        assert_eq!(value[STAMP_BYTES], 0xAA, "the padding is left alone");
        assert_eq!(Stamp::read(&value[..STAMP_BYTES - 1]), None);
    }

    #[test]
    fn the_clock_maps_instants_both_ways() {
        let clock = Clock::now();
        let later = clock.instant + Duration::from_millis(5);
        assert_eq!(clock.unix_nanos_at(later) - clock.unix_nanos, 5_000_000);
        let earlier = clock.instant.checked_sub(Duration::from_millis(3)).unwrap();
        assert_eq!(clock.unix_nanos - clock.unix_nanos_at(earlier), 3_000_000);
    }
}
