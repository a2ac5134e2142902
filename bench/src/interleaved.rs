//! Ratios that hold up on a noisy machine: each round runs the baseline and every variant
//! back to back on the same amount of work, so slow drift in the disk or a neighbour's load
//! hits them alike; the report gives each variant's median per-round ratio and its range.

use std::time::Duration;

/// One variant's throughput in each round, and the baseline's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rounds {
    pub baseline_per_second: Vec<f64>,
    pub variants: Vec<(String, Vec<f64>)>,
}

/// The summary of one variant against the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct RatioSummary {
    pub variant: String,
    pub median_ratio: f64,
    pub min_ratio: f64,
    pub max_ratio: f64,
    pub median_per_second: f64,
    pub baseline_median_per_second: f64,
}

impl Rounds {
    /// Records a round: the baseline's rate and each variant's, in a fixed order.
    pub fn push(&mut self, baseline: f64, variants: &[(&str, f64)]) {
        self.baseline_per_second.push(baseline);
        for (name, rate) in variants {
            match self
                .variants
                .iter_mut()
                .find(|(existing, _)| existing == name)
            {
                Some((_, rates)) => rates.push(*rate),
                None => self.variants.push(((*name).to_string(), vec![*rate])),
            }
        }
    }

    pub fn summaries(&self) -> Vec<RatioSummary> {
        self.variants
            .iter()
            .map(|(name, rates)| {
                let ratios: Vec<f64> = rates
                    .iter()
                    .zip(&self.baseline_per_second)
                    .map(|(rate, base)| rate / base)
                    .collect();
                RatioSummary {
                    variant: name.clone(),
                    median_ratio: median(&ratios),
                    min_ratio: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                    max_ratio: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    median_per_second: median(rates),
                    baseline_median_per_second: median(&self.baseline_per_second),
                }
            })
            .collect()
    }
}

/// Units per second.
pub fn rate(units: u64, elapsed: Duration) -> f64 {
    units as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_round_by_round_then_summarized() {
        let mut rounds = Rounds::default();
        rounds.push(100.0, &[("a", 90.0), ("b", 200.0)]);
        rounds.push(50.0, &[("a", 50.0), ("b", 100.0)]);
        rounds.push(80.0, &[("a", 60.0), ("b", 160.0)]);
        let summaries = rounds.summaries();
        let a = &summaries[0];
        assert_eq!(a.variant, "a");
        assert!((a.median_ratio - 0.9).abs() < 1e-9, "{a:?}");
        assert!(
            (a.min_ratio - 0.75).abs() < 1e-9 && (a.max_ratio - 1.0).abs() < 1e-9,
            "{a:?}"
        );
        assert!((a.baseline_median_per_second - 80.0).abs() < 1e-9);
        assert!((summaries[1].median_ratio - 2.0).abs() < 1e-9);
    }

    #[test]
    fn rates_divide_units_by_seconds() {
        assert!((rate(300, Duration::from_millis(1500)) - 200.0).abs() < 1e-9);
    }
}
