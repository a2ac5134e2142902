//! Fixed-rate pacing. Each message has an intended send time, and latency is measured from it,
//! so a sender held up by a slow broker cannot hide the delay (coordinated omission): when it
//! falls behind it sends at once, and the wait shows in the figures.

use std::time::{Duration, Instant};

/// The schedule of one sender: `rate` messages a second from `start`, or as fast as it can.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    /// Nanoseconds between messages; `None` sends unpaced.
    interval_nanos: Option<f64>,
    /// Where this sender's slots sit within the interval, so senders sharing a rate interleave.
    phase_nanos: f64,
}

impl Pacer {
    /// A sender's share of `total_rate` when `senders` split it; `index` is this sender's
    /// place among them. No rate, or a rate of zero, means unpaced.
    pub fn new(start: Instant, total_rate: Option<f64>, senders: u32, index: u32) -> Pacer {
        let senders = f64::from(senders.max(1));
        match total_rate {
            Some(rate) if rate > 0.0 => {
                let interval = 1e9 * senders / rate;
                Pacer {
                    start,
                    interval_nanos: Some(interval),
                    phase_nanos: interval * f64::from(index) / senders,
                }
            }
            _ => Pacer {
                start,
                interval_nanos: None,
                phase_nanos: 0.0,
            },
        }
    }

    /// When message `index` is due, or `None` when unpaced (send now).
    pub fn due(&self, index: u64) -> Option<Instant> {
        self.interval_nanos.map(|interval| {
            #[allow(clippy::cast_precision_loss)]
            let offset = self.phase_nanos + interval * index as f64;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let offset = Duration::from_nanos(offset as u64);
            self.start + offset
        })
    }

    /// Waits until message `index` is due and returns its intended send time (now when
    /// unpaced or late). `idle` is called with the time left while there is more than a
    /// millisecond of it, so a producer can serve its callbacks meanwhile.
    pub fn wait(&self, index: u64, mut idle: impl FnMut(Duration)) -> Instant {
        let Some(due) = self.due(index) else {
            return Instant::now();
        };
        loop {
            let now = Instant::now();
            if now >= due {
                return due;
            }
            let left = due - now;
            if left > Duration::from_millis(1) {
                idle(left - Duration::from_millis(1));
            } else {
                std::thread::sleep(left);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_senders_have_no_schedule() {
        let pacer = Pacer::new(Instant::now(), None, 4, 1);
        assert_eq!(pacer.due(10), None);
        let zero = Pacer::new(Instant::now(), Some(0.0), 1, 0);
        assert_eq!(zero.due(0), None);
    }

    #[test]
    fn slots_are_evenly_spaced_at_the_senders_share_of_the_rate() {
        let start = Instant::now();
        // 1,000 messages a second split over 4 senders: 250 each, one every 4 ms.
        let pacer = Pacer::new(start, Some(1000.0), 4, 0);
        for index in 0..100 {
            let due = pacer.due(index).unwrap();
            assert_eq!(due - start, Duration::from_millis(4 * index));
        }
    }

    #[test]
    fn senders_sharing_a_rate_interleave_and_together_send_the_rate() {
        let start = Instant::now();
        let senders = 3;
        let pacers: Vec<Pacer> = (0..senders)
            .map(|index| Pacer::new(start, Some(3000.0), senders, index))
            .collect();
        let window = Duration::from_secs(2);
        let mut due: Vec<Duration> = pacers
            .iter()
            .flat_map(|pacer| (0..10_000).map(|index| pacer.due(index).unwrap() - start))
            .filter(|offset| *offset < window)
            .collect();
        assert_eq!(due.len(), 6000, "3,000/s for 2 s");
        due.sort();
        for pair in due.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_micros(332) && gap <= Duration::from_micros(334),
                "gap {gap:?}"
            );
        }
    }

    #[test]
    fn a_late_sender_gets_the_intended_time_not_the_time_it_sent() {
        let start = Instant::now() - Duration::from_secs(1);
        let pacer = Pacer::new(start, Some(10.0), 1, 0);
        // Message 2 was due 200 ms after a start one second ago: it goes at once, and its
        // latency will count from the intended time.
        let intended = pacer.wait(2, |_| panic!("no waiting when late"));
        assert_eq!(intended - start, Duration::from_millis(200));
    }

    #[test]
    fn an_early_sender_waits_for_its_slot() {
        let start = Instant::now();
        let pacer = Pacer::new(start, Some(100.0), 1, 0);
        let mut idled = Duration::ZERO;
        let intended = pacer.wait(3, |left| {
            idled += left;
            std::thread::sleep(left);
        });
        assert_eq!(intended - start, Duration::from_millis(30));
        assert!(Instant::now() >= intended);
        assert!(idled > Duration::ZERO);
    }
}
