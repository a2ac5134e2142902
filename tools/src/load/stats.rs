//! What a load run measures: a latency histogram (hdrhistogram, microseconds), message and
//! byte counts, and a per-second timeline. Each thread keeps its own [`Recorder`]; they are
//! merged when the run ends.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant digits.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;
/// The timeline keeps at most a day of seconds; later completions count in the last slot.
const TIMELINE_SECONDS_MAX: usize = 86_400;

#[derive(Debug, Clone)]
pub struct Recorder {
    latency: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Messages completed in each second of the measured window.
    timeline: Vec<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                .expect("constant histogram bounds are valid"),
            messages: 0,
            bytes: 0,
            errors: 0,
            timeline: Vec::new(),
        }
    }

    /// One message of `bytes` completed `since_start` into the measured window, `latency`
    /// after it was meant to be sent (`None` when the workload has no latency for it).
    pub fn record(&mut self, latency: Option<Duration>, bytes: usize, since_start: Duration) {
        self.messages += 1;
        self.bytes += bytes as u64;
        if let Some(latency) = latency {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency.saturating_record(micros.max(1));
        }
        let second = usize::try_from(since_start.as_secs())
            .unwrap_or(usize::MAX)
            .min(TIMELINE_SECONDS_MAX - 1);
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, 0);
        }
        self.timeline[second] += 1;
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency
            .add(&other.latency)
            .expect("recorders share their bounds");
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (slot, count) in self.timeline.iter_mut().zip(&other.timeline) {
            *slot += count;
        }
    }

    /// The latency percentiles, or `None` when nothing had a latency.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.latency.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let millis = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| millis(self.latency.value_at_quantile(quantile));
        Some(Percentiles {
            count: self.latency.len(),
            mean_ms: self.latency.mean() / 1000.0,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: millis(self.latency.max()),
        })
    }

    pub fn timeline(&self) -> &[u64] {
        &self.timeline
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Option<Duration> {
        Some(Duration::from_millis(millis))
    }

    #[test]
    fn percentiles_come_from_recorded_latencies() {
        let mut recorder = Recorder::new();
        for millis in 1..=1000 {
            recorder.record(ms(millis), 100, Duration::ZERO);
        }
        let figures = recorder.percentiles().unwrap();
        assert_eq!(figures.count, 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(figures.p50_ms, 500.0), "{figures:?}");
        assert!(near(figures.p90_ms, 900.0), "{figures:?}");
        assert!(near(figures.p99_ms, 990.0), "{figures:?}");
        assert!(near(figures.p999_ms, 999.0), "{figures:?}");
        assert!(near(figures.max_ms, 1000.0), "{figures:?}");
        assert!(near(figures.mean_ms, 500.5), "{figures:?}");
        assert_eq!(recorder.bytes, 100_000);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut whole = Recorder::new();
        let mut parts = vec![Recorder::new(), Recorder::new(), Recorder::new()];
        for index in 0..3000_u64 {
            let latency = ms(index % 97 + 1);
            let at = Duration::from_millis(index * 3);
            whole.record(latency, 10, at);
            let part = usize::try_from(index % 3).unwrap();
            parts[part].record(latency, 10, at);
            if index % 500 == 0 {
                whole.error();
                parts[part].error();
            }
        }
        let mut merged = Recorder::new();
        for part in &parts {
            merged.merge(part);
        }
        assert_eq!(merged.percentiles(), whole.percentiles());
        assert_eq!(merged.messages, 3000);
        assert_eq!(merged.bytes, 30_000);
        assert_eq!(merged.errors, 6);
        assert_eq!(merged.timeline(), whole.timeline());
        assert_eq!(merged.timeline().len(), 9, "3000 × 3 ms spans nine seconds");
        assert_eq!(merged.timeline().iter().sum::<u64>(), 3000);
    }

    #[test]
    fn merging_a_longer_timeline_extends_the_shorter_one() {
        let mut short = Recorder::new();
        short.record(None, 1, Duration::from_secs(0));
        let mut long = Recorder::new();
        long.record(None, 1, Duration::from_secs(4));
        short.merge(&long);
        assert_eq!(short.timeline(), &[1, 0, 0, 0, 1]);
        assert_eq!(short.percentiles(), None, "no latencies were recorded");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut recorder = Recorder::new();
        recorder.record(Some(Duration::ZERO), 1, Duration::from_secs(1_000_000));
        recorder.record(Some(Duration::from_secs(10_000)), 1, Duration::ZERO);
        let figures = recorder.percentiles().unwrap();
        assert_eq!(figures.count, 2);
        assert!(figures.max_ms >= 3_599_000.0);
        assert_eq!(recorder.timeline().len(), TIMELINE_SECONDS_MAX);
    }
}
