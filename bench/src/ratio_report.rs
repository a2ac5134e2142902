//! Figures measured in one benchmark run, compared with their baselines from the same run
//! (these machines are shared and noisy, so only same-run ratios mean much), printed as a
//! table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Everything one measurement added up to over all its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub units: u64,
    pub elapsed: Duration,
}

impl Totals {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.units as f64 / self.elapsed.as_secs_f64()
        }
    }
}

/// Measurements by name, shared by the benchmark closures.
#[derive(Debug, Default)]
pub struct Registry {
    totals: Mutex<BTreeMap<String, Totals>>,
}

/// A figure and the baseline it is compared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub baseline: String,
    pub unit: &'static str,
    pub value: f64,
    pub baseline_value: f64,
}

impl Comparison {
    pub fn ratio(&self) -> f64 {
        if self.baseline_value == 0.0 {
            0.0
        } else {
            self.value / self.baseline_value
        }
    }
}

impl Registry {
    /// Adds `units` done in `elapsed` to the measurement `name`.
    pub fn record(&self, name: &str, units: u64, elapsed: Duration) {
        let mut totals = self
            .totals
            .lock()
            .expect("no benchmark panicked while recording");
        let entry = totals.entry(name.to_string()).or_default();
        entry.units += units;
        entry.elapsed += elapsed;
    }

    pub fn totals(&self, name: &str) -> Option<Totals> {
        self.totals
            .lock()
            .expect("no benchmark panicked while recording")
            .get(name)
            .copied()
    }

    /// `name` against `baseline`, when both were measured.
    pub fn compare(&self, name: &str, baseline: &str, unit: &'static str) -> Option<Comparison> {
        let value = self.totals(name)?.rate();
        let baseline_value = self.totals(baseline)?.rate();
        Some(Comparison {
            name: name.into(),
            baseline: baseline.into(),
            unit,
            value,
            baseline_value,
        })
    }
}

/// The comparisons as an aligned table.
pub fn table(title: &str, comparisons: &[Comparison]) -> String {
    let mut out = format!(
        "{title}\n{:<44} {:>14} {:>14} {:>8}\n",
        "measurement", "value", "baseline", "ratio"
    );
    for comparison in comparisons {
        let scale = if comparison.unit == "MB/s" { 1e-6 } else { 1.0 };
        out.push_str(&format!(
            "{:<44} {:>9.1} {:<4} {:>9.1} {:<4} {:>7.1}%   (baseline: {})\n",
            comparison.name,
            comparison.value * scale,
            comparison.unit,
            comparison.baseline_value * scale,
            comparison.unit,
            comparison.ratio() * 100.0,
            comparison.baseline,
        ));
    }
    out
}

/// Writes the comparisons and the run's context to `path` as JSON.
pub fn write_json(
    path: &Path,
    context: &[(&str, String)],
    comparisons: &[Comparison],
) -> std::io::Result<()> {
    let rows: Vec<serde_json::Value> = comparisons
        .iter()
        .map(|comparison| {
            serde_json::json!({
                "name": comparison.name,
                "baseline": comparison.baseline,
                "unit": comparison.unit,
                "value_per_second": comparison.value,
                "baseline_per_second": comparison.baseline_value,
                "ratio": comparison.ratio(),
            })
        })
        .collect();
    let context: serde_json::Map<String, serde_json::Value> = context
        .iter()
        .map(|(key, value)| ((*key).to_string(), serde_json::Value::String(value.clone())))
        .collect();
    let document = serde_json::json!({ "context": context, "comparisons": rows });
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&document).expect("json serializes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_come_from_totals_over_all_samples() {
        let registry = Registry::default();
        registry.record("engine", 300, Duration::from_secs(1));
        registry.record("engine", 300, Duration::from_secs(2));
        registry.record("raw", 400, Duration::from_secs(1));
        let comparison = registry.compare("engine", "raw", "MB/s").unwrap();
        assert_eq!(
            (comparison.value, comparison.baseline_value),
            (200.0, 400.0)
        );
        assert!((comparison.ratio() - 0.5).abs() < f64::EPSILON);
        assert!(registry.compare("engine", "missing", "MB/s").is_none());
        let text = table("t", &[comparison]);
        assert!(text.contains("50.0%"), "{text}");
    }

    #[test]
    fn json_holds_context_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/engine.json");
        let comparison = Comparison {
            name: "a".into(),
            baseline: "b".into(),
            unit: "ops/s",
            value: 3.0,
            baseline_value: 4.0,
        };
        write_json(&path, &[("commit", "abc".into())], &[comparison]).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(value["context"]["commit"], "abc");
        assert_eq!(value["comparisons"][0]["ratio"], 0.75);
    }
}
